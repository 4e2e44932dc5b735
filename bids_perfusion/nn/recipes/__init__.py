"""Training recipes: how each trainable model learns from DSC runs, in a registry.

A recipe is a class registered with :func:`register`, with

- ``name`` and ``help`` (one line), ``batch_size`` (the default of its samples);
- optionally ``modality``: ``"asl"`` for a recipe that learns from ASL runs (default:
  DSC runs);
- ``options``: a frozen dataclass of the model's own options, each field's ``metadata``
  holding its ``help`` (and, where needed, argparse's ``type``, ``nargs``, ``metavar``,
  ``choices``), from which ``bids-perfusion-train`` makes its command-line options;
- ``load(request, run)``: the samples of one :class:`KeyedRun`;
- ``fit(request, loaded, split, device, log)``: the training result, the model's
  configuration, the card's metrics and extra card entries (``n_frames``, ``samples``,
  ``train_config``, optionally ``data``).

A :class:`TrainingRequest` holds what is asked (the command line's options, the model's
in ``options``); :mod:`bids_perfusion.train` collects the runs of the BIDS datasets,
splits them by subject, calls the recipe and writes the weights with their model card.
A new model is one module here that registers its recipe, named in :data:`BUNDLED`.
torch is imported only when a model is trained, never by importing this package.
"""

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path

#: Trainable models: name -> recipe, in the order of :data:`BUNDLED`.
RECIPES = {}
#: Modules of this package that register a recipe, in the order of the command's help.
BUNDLED = ("phae", "stunet", "hess", "superres", "deepasl")


def register(recipe):
    """Class decorator: add ``recipe`` to :data:`RECIPES` under ``recipe.name``."""
    RECIPES[recipe.name] = recipe
    return recipe


@dataclass(frozen=True)
class TrainingRequest:
    """What to train, on which data, how (the options of ``bids-perfusion-train``).

    ``options`` is the recipe's options dataclass; ``batch_size`` None takes the recipe's
    default; ``max_voxels_per_subject`` None uses every voxel; ``command`` is written into
    the model card.
    """

    model: str
    bids_dirs: tuple
    output: Path
    options: object = None
    participant_label: tuple | None = None
    device: str = "auto"
    seed: int = 0
    epochs: int = 20
    batch_size: int | None = None
    lr: float = 1e-3
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    patience: int | None = None
    max_voxels_per_subject: int | None = 2000
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    derivatives: tuple = ()
    blood_relaxivity: str = "linear"
    field_strength: float | None = None
    amp: bool = True
    overwrite: bool = False
    progress: bool = True
    command: str = ""

    @property
    def recipe(self):
        """The registered recipe of :attr:`model`."""
        return RECIPES[self.model]


class KeyedRun:
    """A DSC or ASL run (:class:`~bids_perfusion.workflows.options.DSCRun`,
    :class:`~bids_perfusion.workflows.asl_options.ASLRun`: ``files``, ``metadata``,
    ``masks``, ``subject``, ``session``) and its subject key, unique across datasets
    (``[<dataset>/]sub-<label>``), by which the runs are split."""

    def __init__(self, key, run):
        self.key, self.files, self.metadata, self.masks = key, run.files, run.metadata, run.masks
        self.subject, self.session = run.subject, run.session


def option(default, help, **argparse):
    """A field of a recipe's options: its default, its ``help`` and argparse's keywords."""
    factory = {"default": default}
    if isinstance(default, list | dict):
        factory = {"default_factory": lambda: type(default)(default)}
    return field(**factory, metadata={"help": help, **argparse})


def split_samples(loaded, split):
    """``{"train"|"val"|"test": dict of tensors or None}``: the ``samples`` (dicts of numpy
    arrays) of the loaded items whose ``subject`` is in each part, concatenated."""
    import numpy as np
    import torch

    arrays = {}
    for part in ("train", "val", "test"):
        runs = [item.samples for item in loaded if item.subject in split[part]]
        arrays[part] = None if not runs else {
            key: torch.from_numpy(np.concatenate([r[key] for r in runs])) for key in runs[0]}
    return arrays


def fit_model(build, loss_fn, arrays, request, device, log, *, sample_key, loss,
              augment=None):
    """Seed, build the model with ``build()`` and train it on ``arrays['train']``
    (batches transformed by ``augment``, if given), keeping the best epoch on
    ``arrays['val']`` (:func:`bids_perfusion.nn.training.train`).

    Returns the model, the training result, the card's metrics (best epoch and validation
    loss, time, ``loss`` described, test loss when there is a test split) and the card's
    ``samples`` (counted on ``sample_key``) and ``train_config``.
    """
    from bids_perfusion.nn import training

    train_config = training.TrainingConfig(
        epochs=request.epochs, batch_size=request.batch_size, lr=request.lr,
        weight_decay=request.weight_decay, lr_schedule=request.lr_schedule,
        seed=request.seed, amp=request.amp, patience=request.patience,
        progress=request.progress)
    training.seed_everything(request.seed)
    model = build()
    result = training.train(model, loss_fn, arrays["train"], arrays["val"], train_config,
                            device, log=log, augment=augment)
    metrics = {"best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
               "training_seconds": round(result.seconds, 1), "loss": loss}
    if arrays["test"] is not None:
        metrics["test_loss"] = training.evaluate(model, loss_fn, arrays["test"],
                                                 request.batch_size, device)
    samples = {part: (0 if value is None else len(value[sample_key]))
               for part, value in arrays.items()}
    return model, result, metrics, {"samples": samples,
                                    "train_config": dataclasses.asdict(train_config)}


for _module in BUNDLED:
    importlib.import_module(f"{__name__}.{_module}")
