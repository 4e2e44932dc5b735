"""DeepASL data: the phantom's many-repetition ASL runs, the training pairs, the recipes."""

import json

import numpy as np
import pytest
import torch
from helpers import truth

from bids_perfusion.cli import phantom as phantom_cli
from bids_perfusion.nn import deepasl_data
from bids_perfusion.nn.recipes import TrainingRequest
from bids_perfusion.nn.recipes.deepasl import ASLDenoiseOptions
from bids_perfusion.phantom import PhantomConfig, write_dataset
from bids_perfusion.phantom.config import ASLAcquisition

#: A tiny DeepASL synthetic set: 3 subjects (train, validation, test), 12 pairs each.
TINY = {"matrix": (32, 32, 4), "fov_mm": 220.0, "slab_mm": 64.0}


@pytest.fixture(scope="module")
def tiny_deepasl(tmp_path_factory):
    config = PhantomConfig.preset("deepasl", grades=("HGG", "LGG", "HGG"), **TINY,
                                  asl={"n_pairs": (12,)})
    return write_dataset(tmp_path_factory.mktemp("deepasl") / "bids", config)


def test_preset_is_the_synthetic_set_of_the_paper_and_defaults_are_unchanged():
    config = PhantomConfig.preset("deepasl")
    assert config.tissue_cbf == (65.0, 20.0) and config.dsc is None
    assert (config.asl.plds, config.asl.labeling_duration, config.asl.n_pairs) == (
        (2.2,), 1.6, (100,))
    assert config.flow_scale == (1.0, 1.0) and config.heterogeneity == 0.0
    assert PhantomConfig().tissue_cbf is None and ASLAcquisition().physiological_noise == 0


def test_cli_preset_sets_defaults_that_options_override():
    parser = phantom_cli.build_parser()
    args = phantom_cli.parse_args(parser, ["out", "--preset", "deepasl", "--n-pairs", "30"])
    config = phantom_cli.config_from_args(args)
    assert config.dsc is None and config.tissue_cbf == (65.0, 20.0)
    assert config.asl.n_pairs == (30,) and config.asl.plds == (2.2,)
    assert config.asl.physiological_noise == 0.005 and config.asl.snr == 200.0
    plain = phantom_cli.config_from_args(phantom_cli.parse_args(phantom_cli.build_parser(),
                                                                ["out"]))
    assert plain == PhantomConfig.cohort(4, dsc=plain.dsc, asl=plain.asl)
    assert plain.asl == ASLAcquisition() and plain.tissue_cbf is None


def test_phantom_writes_many_pairs_with_the_paper_s_truth(tiny_deepasl):
    root = tiny_deepasl
    sidecar = json.loads((root / "sub-01/perf/sub-01_asl.json").read_text())
    assert sidecar["TotalAcquiredPairs"] == 12 and sidecar["LabelingDuration"] == 1.6
    assert sidecar["PostLabelingDelay"] == 2.2
    cbf = truth(root, "01", "desc-truth_cbf")
    gm, wm = (truth(root, "01", f"label-{t}_probseg") for t in ("GM", "WM"))
    assert np.allclose(cbf[gm > 0.999], 65.0) and np.allclose(cbf[wm > 0.999], 20.0)
    assert not (root / "sub-01/perf/sub-01_ce-gadolinium_dsc.nii.gz").exists()


def _among(values, reference, rtol=1e-5):
    """Every value equals (float32 precision) one of the reference's."""
    gap = np.abs(np.asarray(values, float)[:, None] - np.ravel(reference)[None]).min(axis=1)
    return bool((gap <= rtol * np.abs(values)).all())


def test_training_pairs_are_subset_means_against_the_mean_of_all():
    rng = np.random.default_rng(0)
    shape = (12, 10, 3)
    brain = np.zeros(shape, bool)
    brain[2:10, 2:8] = True
    run = deepasl_data.ASLRunArrays(
        "sub-x", rng.normal(5, 2, (*shape, 10)).astype(np.float32),
        np.full(shape, 800.0), brain,
        deepasl_data.KineticConstants((2.2, 2.24, 2.28), 1.65, 0.85, 1.6, False, 0.9))
    samples = deepasl_data.training_pairs(run, fractions=(0.2, 0.8), draws=3, patch=8,
                                          patches_per_slice=2, rng=rng)
    n = 2 * 3 * 3 * 2  # fractions x draws x slices x patches
    assert samples["noisy"].shape == (n, 1, 8, 8) and samples["delay"].shape == (n, 1, 1, 1)
    assert run.scale == 8.0
    means, used = deepasl_data.noisy_means(run.differences, (0.2, 0.8), 1,
                                           np.random.default_rng(1))
    assert used.tolist() == [0.2, 0.8] and means.shape == (2, *shape)
    complete = run.differences.mean(axis=-1)
    # every noisy patch minus its residual is a patch of the mean of all pairs
    target = samples["noisy"] - samples["residual"]
    assert _among(target[:, 0, 0, 0] * 8.0, complete)
    np.testing.assert_allclose(np.unique(samples["delay"]), [2.2, 2.24, 2.28], rtol=1e-6)
    cbf = deepasl_data.consensus_cbf(complete, run.m0, run.constants)
    assert _among(samples["cbf"][:, 0, 0, 0], cbf)


def test_rigid_augment_applies_one_transform_to_every_map_of_a_sample():
    x = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 1, 4, 4)
    batch = {key: x.clone() for key in deepasl_data.MAPS}
    batch["delay"] = torch.ones(2, 1, 1, 1)
    out = deepasl_data.rigid_augment(batch, torch.Generator().manual_seed(3))
    for key in deepasl_data.MAPS:
        torch.testing.assert_close(out[key], out["noisy"])
    dihedral = [torch.rot90(x[0], k, dims=(-2, -1)) for k in range(4)]
    dihedral += [d.flip(-1) for d in dihedral]
    for i in range(2):
        assert any(torch.equal(out["noisy"][i], d if i == 0 else d + 16) for d in dihedral)
    assert torch.equal(out["delay"], batch["delay"])


@pytest.mark.parametrize("model", ["deepasl", "dilatedconv"])
def test_tiny_training_lowers_the_loss_and_writes_a_card(tiny_deepasl, tmp_path, model,
                                                         one_thread):
    from bids_perfusion.train import train_model

    options = ASLDenoiseOptions(kinetic_weight=0.5, subset_draws=1, asl_patch_size=16,
                                patches_per_slice=2, denoise_width=8)
    request = TrainingRequest(model=model, bids_dirs=(tiny_deepasl,), output=tmp_path,
                              options=options, epochs=4, lr=3e-3, progress=False,
                              batch_size=16, command=f"test {model}")
    trained = train_model(request)
    history = trained.metrics["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    card = trained.card
    assert card["model"] == model and card["configuration"]["width"] == 8
    assert card["configuration"]["kinetic_weight"] == (0.5 if model == "deepasl" else 1.0)
    assert card["data"]["pairs_per_run"][0][1] == 12 and card["data"]["synthetic"]
    assert len(card["sha256"]) == 64 and card["split"]["seed"] == 0


@pytest.mark.parametrize("model", ["deepasl", "dilatedconv"])
def test_command_line_defaults_are_the_recipe_s(model):
    """No other recipe's option of the same name replaces a default (the options of every
    recipe share one parser)."""
    from bids_perfusion.cli.train import build_parser, training_request

    argv = [model, "bids", "out"]
    request = training_request(build_parser().parse_args(argv), argv)
    assert request.options == ASLDenoiseOptions()
    assert request.options.asl_patch_size == 40
