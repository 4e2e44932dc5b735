"""``bids-perfusion-train MODEL BIDS_DIR [BIDS_DIR ...] OUTPUT``: train a model, write a card.

Builds training samples from the DSC runs of one or more BIDS datasets, splits them by
subject (train / validation / test, reproducible from ``--seed``), trains with progress
bars and a loss log (``OUTPUT/losses.tsv``), keeps the best checkpoint on validation and
writes ``OUTPUT/<MODEL>.safetensors`` with its model card ``OUTPUT/<MODEL>.json``.

Models are registered in :data:`MODELS` as recipes: an object with ``add_arguments(group)``
(model options), ``samples(args, runs)`` (numpy arrays per run) and ``fit(args, arrays,
split, device)`` returning the state_dict, the configuration and metrics. ``phae`` is the
first; later models (stU-Net, DeepASL...) add a recipe. torch is imported only when a model
is trained, never for ``--help``.
"""

import argparse
import csv
import json
import logging
import shlex
import sys
from pathlib import Path

LOGGER = logging.getLogger("bids_perfusion.train")


class _PHAERecipe:
    """Physics-informed autoencoder (self-supervised on DSC curves)."""

    name = "phae"
    help = "physics-informed autoencoder for DSC-MRI (self-supervised)"

    @staticmethod
    def add_arguments(group):
        group.add_argument("--residue", choices=("lorentzian", "exponential"),
                           default="lorentzian", help="PHAE: residue function of the decoder")
        group.add_argument("--pool-size", type=int, default=1,
                           help="PHAE: output length of the average pooling (1: global)")
        group.add_argument("--frame-interval", type=float, default=None,
                           help="PHAE: frame interval of the model, s (default: the first "
                                "run's); runs at other intervals are resampled")
        group.add_argument("--tissue-quantile", type=float, default=0.999,
                           help="PHAE: quantile of voxel peaks that scales tissue to [0, 1]")

    @staticmethod
    def load(args, run):
        from bids_perfusion.nn.samples import load_run

        return load_run(run.files, run.metadata.echo_times, run.metadata.repetition_time,
                        run.key, brain_file=run.masks.get("brain"),
                        aif_mask_file=run.masks.get("arteries"),
                        blood_relaxivity=args.blood_relaxivity)

    @staticmethod
    def fit(args, curves, split, device, log):
        import torch

        from bids_perfusion.nn import phae, training
        from bids_perfusion.nn.samples import training_arrays

        dt = args.frame_interval or float(curves[0].frame_times[1] - curves[0].frame_times[0])
        config = phae.PHAEConfig(residue=args.residue, pool_size=args.pool_size, dt=dt,
                                 tissue_quantile=args.tissue_quantile)
        arrays, n_frames = {}, None
        for part in ("train", "val", "test"):
            runs = [c for c in curves if c.subject in split[part]]
            if not runs:
                arrays[part] = None
                continue
            values, n_frames = training_arrays(runs, dt, config.tissue_quantile,
                                               args.max_voxels_per_subject, n_frames,
                                               seed=args.seed)
            values.pop("subject")
            arrays[part] = {k: torch.from_numpy(v) for k, v in values.items()}
        train_config = training.TrainingConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            weight_decay=args.weight_decay, seed=args.seed, amp=not args.no_amp,
            patience=args.patience, progress=not args.quiet)
        training.seed_everything(args.seed)
        model = phae.PHAE(config)
        result = training.train(model, phae.loss, arrays["train"], arrays["val"],
                                train_config, device, log=log)
        metrics = {"best_epoch": result.best_epoch,
                   "best_val_loss": result.best_val_loss,
                   "training_seconds": round(result.seconds, 1),
                   "loss": "mean absolute error of the normalised tissue curve"}
        if arrays["test"] is not None:
            metrics["test_loss"] = training.evaluate(model, phae.loss, arrays["test"],
                                                     args.batch_size, device)
        samples = {part: (0 if value is None else len(value["tissue"]))
                   for part, value in arrays.items()}
        return result, config.as_dict(), metrics, {"n_frames": n_frames,
                                                   "samples": samples,
                                                   "train_config": vars_of(train_config)}


def vars_of(dataclass_instance):
    import dataclasses

    return dataclasses.asdict(dataclass_instance)


#: Trainable models: name -> recipe.
MODELS = {"phae": _PHAERecipe}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="bids-perfusion-train",
        description="Train a deep model of bids-perfusion on BIDS datasets and write its "
                    "weights (safetensors) with a model card (JSON).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("model", choices=sorted(MODELS),
                        help="; ".join(f"{k}: {v.help}" for k, v in MODELS.items()))
    parser.add_argument("bids_dir", type=Path, nargs="+",
                        help="one or more BIDS datasets with DSC runs")
    parser.add_argument("output", type=Path, help="folder for the weights, card and log")
    parser.add_argument("--participant-label", nargs="+", metavar="LABEL",
                        help="subjects to use (without 'sub-'); default all")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the split, the voxel draw, initialisation and shuffling")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
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
    parser.add_argument("--no-amp", action="store_true",
                        help="no mixed precision on CUDA (it is never used on CPU)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing weights in OUTPUT")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    for name, recipe in MODELS.items():
        recipe.add_arguments(parser.add_argument_group(f"{name} options"))
    return parser


def _runs(args, parser):
    """Every DSC run of the datasets, each with a subject key unique across datasets."""
    from bids_perfusion.cli.inputs import InputError, collect_dsc_runs, layout_of

    runs = []
    for index, bids_dir in enumerate(args.bids_dir):
        try:
            layout = layout_of(bids_dir)
            folders = [bids_dir / d if (bids_dir / d).is_dir() else Path(d)
                       for d in args.derivatives]
            found, errors = collect_dsc_runs(layout, args.participant_label,
                                             derivatives=folders)
        except InputError as error:
            parser.error(str(error))
        for message in errors:
            LOGGER.warning("skipped: %s", message)
        prefix = f"{bids_dir.name}/" if len(args.bids_dir) > 1 else ""
        if len({d.name for d in args.bids_dir}) < len(args.bids_dir):
            prefix = f"{index}:{bids_dir.name}/"
        for run in found:
            run_key = f"{prefix}sub-{run.subject}"
            runs.append(_Run(run_key, run.files, run.metadata, run.masks))
    if not runs:
        parser.error(f"no usable DSC run in {[str(d) for d in args.bids_dir]}")
    return runs


class _Run:
    def __init__(self, key, files, metadata, masks):
        self.key, self.files, self.metadata, self.masks = key, files, metadata, masks


def _dataset_record(bids_dir):
    """Name and, for phantoms, the generator parameters of a dataset, for the model card."""
    record = {"path": str(bids_dir)}
    description = bids_dir / "dataset_description.json"
    if description.is_file():
        record["name"] = json.loads(description.read_text()).get("Name")
    phantom = bids_dir / "derivatives" / "phantom-truth" / "phantom_parameters.json"
    if phantom.is_file():
        parameters = json.loads(phantom.read_text())
        config = parameters.get("config", parameters)
        dsc = config.get("dsc") or {}
        record["phantom"] = {key: config.get(key) for key in ("seed", "grades", "matrix")
                             if key in config}
        record["phantom"]["snr"] = dsc.get("snr")
    return record


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s bids-perfusion-train %(levelname)s: %(message)s")
    if args.max_voxels_per_subject == 0:
        args.max_voxels_per_subject = None
    output = args.output.absolute()
    weights = output / f"{args.model}.safetensors"
    if weights.exists() and not args.overwrite:
        parser.error(f"{weights} exists; pass --overwrite to replace it")
    recipe = MODELS[args.model]

    from bids_perfusion.nn import device as devices
    from bids_perfusion.nn import training
    from bids_perfusion.nn import weights as weight_files

    try:
        device = devices.select_device(args.device)
    except (RuntimeError, ValueError) as error:
        parser.error(str(error))
    runs = _runs(args, parser)
    try:
        split = training.split_subjects([r.key for r in runs], args.val_fraction,
                                        args.test_fraction, args.seed)
    except ValueError as error:
        parser.error(str(error))
    LOGGER.info("%d runs; split by subject: %d train, %d validation, %d test", len(runs),
                *(len(split[k]) for k in ("train", "val", "test")))
    from tqdm.auto import tqdm

    curves = [recipe.load(args, run) for run in tqdm(runs, desc="runs", disable=args.quiet)]
    output.mkdir(parents=True, exist_ok=True)
    log_path = output / "losses.tsv"
    with log_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["epoch", "train_loss", "val_loss", "seconds"],
                                delimiter="\t", lineterminator="\n")
        writer.writeheader()

        def log(record):
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                             for k, v in record.items()})
            handle.flush()

        result, configuration, metrics, extra = recipe.fit(args, curves, split, device, log)
    card = {
        "model": args.model,
        "configuration": configuration,
        "data": {"datasets": [_dataset_record(d) for d in args.bids_dir],
                 "runs": len(runs), "derivatives": [str(d) for d in args.derivatives],
                 "aif": "given arterial masks" if all("arteries" in r.masks for r in runs)
                 else "automatic selection (where no arterial mask was given)",
                 "max_voxels_per_subject": args.max_voxels_per_subject,
                 "n_frames": extra["n_frames"], "samples": extra["samples"],
                 "synthetic": all((d / "derivatives" / "phantom-truth").is_dir()
                                  for d in args.bids_dir)},
        "split": {**split, "seed": args.seed, "val_fraction": args.val_fraction,
                  "test_fraction": args.test_fraction},
        "command": "bids-perfusion-train " + shlex.join(argv),
        "metrics": {**metrics, "history": result.history},
        "training": {**extra["train_config"], "device": devices.describe(device)},
    }
    card = weight_files.save_weights(result.state_dict, weights, card)
    print(f"{weights} (sha256 {card['sha256'][:16]}...), card {weights.with_suffix('.json')}, "
          f"losses {log_path}; best validation loss {metrics['best_val_loss']:.5g} at epoch "
          f"{metrics['best_epoch']}" + (f", test loss {metrics['test_loss']:.5g}"
                                         if "test_loss" in metrics else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
