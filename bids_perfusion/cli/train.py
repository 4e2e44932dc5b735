"""``bids-perfusion-train MODEL BIDS_DIR [BIDS_DIR ...] OUTPUT``: train a model, write a card.

Parses the command line into a :class:`~bids_perfusion.nn.recipes.TrainingRequest` and
hands it to :func:`bids_perfusion.train.train_model`, which builds training samples from
the DSC runs of the BIDS datasets, splits them by subject (train / validation / test,
reproducible from ``--seed``), trains with progress bars and a loss log
(``OUTPUT/losses.tsv``), keeps the best checkpoint on validation and writes
``OUTPUT/<MODEL>.safetensors`` with its model card ``OUTPUT/<MODEL>.json``.

The models are the recipes of :mod:`bids_perfusion.nn.recipes`; each model's options are
the fields of its recipe's options dataclass, offered here as ``--<field-name>``.
``phae`` is self-supervised; ``stunet`` and ``hess`` learn CBV from raw DSC against
reference CBV maps of a derivatives folder (``--reference-derivatives``,
``--reference-desc``), at full dose and at simulated doses (``--train-doses``; model
``--train-lowdose-model``, by default ΔR2* scaled by the dose,
:mod:`bids_perfusion.dsc.lowdose`). ``deepasl`` and ``dilatedconv`` denoise the mean ΔM of
single-delay ASL runs with many control/label pairs (``--kinetic-weight`` λ of the DeepASL
loss). torch is imported only when a model is trained, never for ``--help``.
"""

import argparse
import dataclasses
import logging
import shlex
import sys
from pathlib import Path

from bids_perfusion.cli.parser import field_strength
from bids_perfusion.nn.recipes import RECIPES, TrainingRequest


def _add_option(group, option):
    """``--<name>`` of a field of a recipe's options (:func:`bids_perfusion.nn.recipes.option`)."""
    keywords = dict(option.metadata)
    if "type" not in keywords and "choices" not in keywords and option.default is not None:
        keywords["type"] = type(option.default)
    group.add_argument(f"--{option.name.replace('_', '-')}", default=option.default,
                       **keywords)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="bids-perfusion-train",
        description="Train a deep model of bids-perfusion on BIDS datasets and write its "
                    "weights (safetensors) with a model card (JSON).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("model", choices=sorted(RECIPES),
                        help="; ".join(f"{k}: {v.help}" for k, v in RECIPES.items()))
    parser.add_argument("bids_dir", type=Path, nargs="+",
                        help="one or more BIDS datasets with DSC runs (ASL runs for deepasl "
                             "and dilatedconv)")
    parser.add_argument("output", type=Path, help="folder for the weights, card and log")
    parser.add_argument("--participant-label", nargs="+", metavar="LABEL",
                        help="subjects to use (without 'sub-'); default all")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the split, the voxel draw, initialisation and shuffling")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="samples per batch (default: 1024 voxels for phae, 16 strips "
                             "for stunet and hess, 8 patches for superres)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                        help="learning rate constant, or on a cosine from --lr to ~0 over "
                             "--epochs")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--patience", type=int, default=None,
                        help="stop after this many epochs without a better validation loss")
    parser.add_argument("--max-voxels-per-subject", type=int, default=2000,
                        help="voxels drawn at random from each run (all when 0)")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    parser.add_argument("--derivatives", nargs="+", default=(), metavar="PATH",
                        help="folders with *_label-<brain|arteries>_mask files (relative "
                             "paths are looked up inside each BIDS_DIR first); a given "
                             "arterial mask replaces the automatic AIF selection")
    parser.add_argument("--blood-relaxivity", choices=("linear", "quadratic"),
                        default="linear", help="ΔR2* of the AIF: a C or a C + b C²")
    parser.add_argument("--field-strength", type=field_strength, metavar="T", default=None,
                        help="tesla, replacing the sidecars' MagneticFieldStrength (required "
                             "when they lack it); selects the relaxivities")
    parser.add_argument("--no-amp", action="store_true",
                        help="no mixed precision on CUDA (it is never used on CPU)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing weights in OUTPUT")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    added = set()
    for name, recipe in RECIPES.items():
        group = parser.add_argument_group(f"{name} options", recipe.description)
        for option in dataclasses.fields(recipe.options):
            if option.name not in added:
                added.add(option.name)
                _add_option(group, option)
    return parser


def training_request(args, argv):
    """The :class:`TrainingRequest` of parsed arguments (``argv``: the command line)."""
    recipe = RECIPES[args.model]
    values = vars(args)
    options = recipe.options(**{
        f.name: tuple(values[f.name]) if isinstance(values[f.name], list) else values[f.name]
        for f in dataclasses.fields(recipe.options)})
    return TrainingRequest(
        model=args.model, bids_dirs=tuple(args.bids_dir), output=args.output,
        options=options,
        participant_label=tuple(args.participant_label) if args.participant_label else None,
        device=args.device, seed=args.seed, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, lr_schedule=args.lr_schedule, weight_decay=args.weight_decay,
        patience=args.patience, max_voxels_per_subject=args.max_voxels_per_subject or None,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction,
        derivatives=tuple(args.derivatives), blood_relaxivity=args.blood_relaxivity,
        field_strength=args.field_strength, amp=not args.no_amp, overwrite=args.overwrite,
        progress=not args.quiet, command="bids-perfusion-train " + shlex.join(argv))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s bids-perfusion-train %(levelname)s: %(message)s")
    request = training_request(args, argv)

    from bids_perfusion.collect import InputError
    from bids_perfusion.train import train_model

    try:
        trained = train_model(request)
    except InputError as error:
        parser.error(str(error))
    metrics = trained.metrics
    print(f"{trained.weights} (sha256 {trained.card['sha256'][:16]}...), card "
          f"{trained.weights.with_suffix('.json')}, losses {trained.losses}; best validation "
          f"loss {metrics['best_val_loss']:.5g} at epoch {metrics['best_epoch']}"
          + (f", test loss {metrics['test_loss']:.5g}" if "test_loss" in metrics else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
