"""The generic trainer: learning-rate schedules and augmentation of training batches."""

import itertools
import json
import math

import pytest
import torch

from bids_perfusion.nn import training
from bids_perfusion.train import dataset_record


def test_cosine_schedule_closed_form():
    config = training.TrainingConfig(epochs=10, lr=2e-3, lr_schedule="cosine")
    rates = [config.learning_rate(e) for e in range(1, 11)]
    assert rates[0] == pytest.approx(2e-3)
    assert rates[5] == pytest.approx(1e-3)  # epoch 6 of 10: cos(π/2) = 0
    assert rates[-1] == pytest.approx(1e-3 * (1 + math.cos(0.9 * math.pi)))
    assert all(a > b for a, b in itertools.pairwise(rates))
    constant = training.TrainingConfig(epochs=10, lr=2e-3)
    assert {constant.learning_rate(e) for e in range(1, 11)} == {2e-3}
    with pytest.raises(ValueError, match="lr_schedule"):
        training.TrainingConfig(lr_schedule="step")


def _line_data(n, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=generator)
    return {"x": x, "y": 3 * x - 1}


def _mse(model, batch):
    return ((model(batch["x"]) - batch["y"]) ** 2).mean()


def test_train_steps_adam_at_the_scheduled_rate_and_augments_training_batches_only(one_thread):
    seen = []

    def augment(batch, generator):
        seen.append(len(batch["x"]))
        noise = torch.randn(batch["x"].shape, generator=generator)
        return {"x": batch["x"], "y": batch["y"] + 1e-3 * noise}

    config = training.TrainingConfig(epochs=8, batch_size=16, lr=0.3, lr_schedule="cosine",
                                     progress=False)
    training.seed_everything(0)
    model = torch.nn.Linear(1, 1)
    validation = _line_data(32, 1)
    before = training.evaluate(model, _mse, validation, 32, "cpu")
    result = training.train(model, _mse, _line_data(64, 0), validation, config, "cpu",
                            augment=augment)
    assert [h["lr"] for h in result.history] == [config.learning_rate(e) for e in range(1, 9)]
    assert seen == [16] * 32  # 4 batches per epoch, never a validation batch
    assert result.best_val_loss < 0.01 * before


def test_dataset_record_keeps_the_phantom_options_that_change_its_data(tmp_path):
    """A card's dataset record names every option needed to write the same phantom again."""
    truth = tmp_path / "derivatives" / "phantom-truth"
    truth.mkdir(parents=True)
    config = {"seed": 5, "grades": ["LGG"], "matrix": [8, 8, 4], "grade_ranges": "overlapping",
              "population": True, "forward_model": "realistic", "motion": 0.0,
              "fov_mm": 220.0, "dsc": {"snr": 30.0}}
    (truth / "phantom_parameters.json").write_text(json.dumps({"config": config}))
    record = dataset_record(tmp_path)
    assert record["phantom"] == {"seed": 5, "grades": ["LGG"], "matrix": [8, 8, 4],
                                 "grade_ranges": "overlapping", "population": True,
                                 "forward_model": "realistic", "motion": 0.0, "snr": 30.0}
