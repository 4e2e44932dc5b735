"""``bids-perfusion-train MODEL BIDS_DIR [BIDS_DIR ...] OUTPUT``: train a model, write a card.

Builds training samples from the DSC runs of one or more BIDS datasets, splits them by
subject (train / validation / test, reproducible from ``--seed``), trains with progress
bars and a loss log (``OUTPUT/losses.tsv``), keeps the best checkpoint on validation and
writes ``OUTPUT/<MODEL>.safetensors`` with its model card ``OUTPUT/<MODEL>.json``.

Models are registered in :data:`MODELS` as recipes: an object with ``add_arguments(group)``
(model options), ``load(args, run)`` (the samples of one run) and ``fit(args, loaded,
split, device, log)`` returning the training result, the configuration, metrics and
extra card entries. ``phae`` is self-supervised; ``stunet`` and ``hess`` learn CBV from
raw DSC against reference CBV maps of a derivatives folder (``--reference-derivatives``,
``--reference-desc``), at full dose and at simulated doses (``--train-doses``; model
``--train-lowdose-model``, by default ΔR2* scaled by the dose,
:mod:`bids_perfusion.dsc.lowdose`). torch is imported only when a model is trained, never
for ``--help``.
"""

import argparse
import csv
import dataclasses
import json
import logging
import shlex
import sys
from pathlib import Path

from bids_perfusion.cli.parser import LOWDOSE_MODELS, field_strength
from bids_perfusion.naming import parse_name

LOGGER = logging.getLogger("bids_perfusion.train")


class _PHAERecipe:
    """Physics-informed autoencoder (self-supervised on DSC curves)."""

    name = "phae"
    batch_size = 1024
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
                        blood_relaxivity=args.blood_relaxivity,
                        field_strength=run.metadata.magnetic_field_strength)

    @staticmethod
    def fit(args, curves, split, device, log):
        import torch

        from bids_perfusion.nn import phae
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
        _model, result, metrics, extra = _train(
            lambda: phae.PHAE(config), phae.loss, arrays, args, device, log,
            sample_key="tissue", loss="mean absolute error of the normalised tissue curve")
        return result, config.as_dict(), metrics, {"n_frames": n_frames, **extra}


class _StripRecipe:
    """CBV from raw DSC strips, supervised by reference CBV maps (stU-Net and Hess et al.)."""

    batch_size = 16

    @staticmethod
    def add_arguments(group):
        group.add_argument("--reference-derivatives", type=Path,
                           default=Path("derivatives/phantom-truth"), metavar="PATH",
                           help="stunet/hess: folder with the reference CBV maps (relative "
                                "paths are looked up inside each BIDS_DIR)")
        group.add_argument("--reference-desc", default="truth", metavar="DESC",
                           help="stunet/hess: desc entity of the reference maps "
                                "(sub-X_[...]desc-DESC_cbv.nii.gz): 'truth' for the "
                                "phantom's ground truth, 'areaRatio' for the pipeline's own "
                                "full-dose CBV")
        group.add_argument("--train-doses", type=float, nargs="+", default=(1.0, 0.5, 0.25),
                           metavar="D", help="stunet/hess: dose factors of the training "
                                             "series (d < 1 simulated from the full dose "
                                             "with --train-lowdose-model)")
        group.add_argument("--train-lowdose-model", choices=LOWDOSE_MODELS,
                           default="exponential",
                           help="stunet/hess: signal model of the simulated training doses "
                                "(exponential: ΔR2* scaled by d, the default; linear: Eq. 1 "
                                "of the stU-Net paper, which the bundled weights used); the "
                                "local average is temporal (Savitzky-Golay)")
        group.add_argument("--in-plane-size", type=int, default=64,
                           help="stunet/hess: in-plane size of the resampled slices "
                                "(paper: 256)")
        group.add_argument("--strip-width", type=int, default=16,
                           help="stunet/hess: rows of a strip")
        group.add_argument("--train-stride", type=int, default=8,
                           help="stunet/hess: rows between training strips (paper: 8)")
        group.add_argument("--test-stride", type=int, default=1,
                           help="stunet/hess: rows between inference strips (paper: 1)")
        group.add_argument("--widths", type=int, nargs="+", default=(8, 16, 32),
                           help="stunet: channels of the encoder levels (depth = count)")
        group.add_argument("--augment", choices=("none", "flips"), default="none",
                           help="stunet/hess: random flips of the training strips' rows "
                                "and columns (not in the paper)")

    @staticmethod
    def preprocessing(args):
        from bids_perfusion.nn.cbv_preprocessing import PreprocessingConfig

        return PreprocessingConfig(size=args.in_plane_size, strip_width=args.strip_width,
                                   train_stride=args.train_stride,
                                   test_stride=args.test_stride)

    @classmethod
    def load(cls, args, run):
        from bids_perfusion.dsc import brain_mask, lowdose
        from bids_perfusion.interfaces.nifti import load, load_mask
        from bids_perfusion.nn.cbv_preprocessing import prepare_run

        series = load(str(run.files[0]))
        if "brain" in run.masks:
            brain = load_mask(str(run.masks["brain"]), series.shape)
        else:
            brain = brain_mask.brain_mask(series.mean(axis=-1))
        reference = load(str(_reference_map(args, run)))
        config = cls.preprocessing(args)
        window = lowdose.baseline_of_run(series, brain)
        prepared = [prepare_run(series if dose >= 1 else
                                lowdose.simulate_low_dose_run(
                                    series, dose, window, tr=run.metadata.repetition_time,
                                    model=args.train_lowdose_model),
                                brain, config, reference) for dose in args.train_doses]
        return _Prepared(run.key, prepared)

    @classmethod
    def fit(cls, args, loaded, split, device, log):
        from bids_perfusion.nn import cbv_models, stunet
        from bids_perfusion.nn.strips import flip_strips

        config = cls.preprocessing(args)
        arrays, n_frames = {}, None
        for part in ("train", "val", "test"):
            runs = [p for item in loaded if item.subject in split[part] for p in item.runs]
            arrays[part] = None
            if runs:
                arrays[part], n_frames = cbv_models.strip_arrays(runs, config, n_frames)
        module, architecture = cls.architecture(args)
        model, result, metrics, extra = _train(
            lambda: module(architecture), stunet.masked_l2, arrays, args, device, log,
            sample_key="dsc", loss="mean squared error of the standardised CBV over brain voxels",
            augment=flip_strips if args.augment == "flips" else None)
        metrics["parameters"] = stunet.parameter_count(model)
        return result, cbv_models.configuration(architecture, config), metrics, {
            "n_frames": n_frames, **extra,
            "data": {"aif": "not used (the model reads the raw series)",
                     "max_voxels_per_subject": None,
                     "reference": {"derivatives": str(args.reference_derivatives),
                                   "desc": args.reference_desc},
                     "doses": list(args.train_doses),
                     "augmentation": args.augment,
                     "low_dose_model": args.train_lowdose_model,
                     "low_dose": ("simulated from the full-dose series, model "
                                  f"{args.train_lowdose_model} (dsc.lowdose), temporal "
                                  "Savitzky-Golay local average"),
                     "samples_are": "strips of rows of the resampled slices"}}


class _StUNetRecipe(_StripRecipe):
    """Spatio-temporal U-Net (CBV from raw DSC)."""

    name = "stunet"
    help = "spatio-temporal U-Net: CBV from raw (low-dose) DSC, against reference CBV maps"

    @staticmethod
    def architecture(args):
        from bids_perfusion.nn import stunet

        return stunet.StUNet, stunet.StUNetConfig(widths=tuple(args.widths))


class _HessRecipe(_StripRecipe):
    """Baseline of Hess et al. (2018): sequence encoder and spatial correlation module."""

    name = "hess"
    help = "baseline of Hess et al. 2018 (same data and options as stunet)"

    @staticmethod
    def add_arguments(group):
        group.description = "uses the reference, dose and strip options of stunet"

    @staticmethod
    def architecture(args):
        from bids_perfusion.nn import hess

        return hess.Hess, hess.HessConfig()


class _Prepared:
    """The prepared runs (one per training dose) of one subject's DSC run."""

    def __init__(self, subject, runs):
        self.subject, self.runs = subject, runs


def _reference_map(args, run):
    """The reference CBV map of a run: ``sub-X[_ses-Y]_*desc-DESC_cbv.nii.gz`` in the
    reference folder, whose entities are all among the run's (no simulated ``rec-``)."""
    folder = args.reference_derivatives
    if not folder.is_absolute():
        inside = Path(run.files[0]).parents[3 if run.session else 2] / folder
        folder = inside if inside.is_dir() else folder
    entities = set(parse_name(run.files[0])[0].items())
    prefix = f"sub-{run.subject}" + (f"_ses-{run.session}" if run.session else "")
    found = []
    for path in sorted(folder.glob(f"**/{prefix}_*desc-{args.reference_desc}_cbv.nii*")):
        extra = set(parse_name(path)[0].items()) - entities
        if extra == {("desc", args.reference_desc)}:
            found.append(path)
    if not found:
        raise FileNotFoundError(f"{folder}: no reference CBV {prefix}_*desc-"
                                f"{args.reference_desc}_cbv.nii.gz for {run.files[0]}; set "
                                "--reference-derivatives and --reference-desc")
    return max(found, key=lambda path: len(path.name))


def _train(build, loss_fn, arrays, args, device, log, *, sample_key, loss, augment=None):
    """Seed, build the model with ``build()`` and train it on ``arrays['train']``
    (batches transformed by ``augment``, if given), keeping the best epoch on
    ``arrays['val']`` (:func:`bids_perfusion.nn.training.train`).

    Returns the model, the training result, the card's metrics (best epoch and validation
    loss, time, ``loss`` described, test loss when there is a test split) and the card's
    ``samples`` (counted on ``sample_key``) and ``train_config``.
    """
    from bids_perfusion.nn import training

    train_config = training.TrainingConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, lr_schedule=args.lr_schedule, seed=args.seed,
        amp=not args.no_amp, patience=args.patience, progress=not args.quiet)
    training.seed_everything(args.seed)
    model = build()
    result = training.train(model, loss_fn, arrays["train"], arrays["val"], train_config,
                            device, log=log, augment=augment)
    metrics = {"best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
               "training_seconds": round(result.seconds, 1), "loss": loss}
    if arrays["test"] is not None:
        metrics["test_loss"] = training.evaluate(model, loss_fn, arrays["test"],
                                                 args.batch_size, device)
    samples = {part: (0 if value is None else len(value[sample_key]))
               for part, value in arrays.items()}
    return model, result, metrics, {"samples": samples,
                                    "train_config": dataclasses.asdict(train_config)}


#: Trainable models: name -> recipe.
MODELS = {"phae": _PHAERecipe, "stunet": _StUNetRecipe, "hess": _HessRecipe}


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
    parser.add_argument("--batch-size", type=int, default=None,
                        help="samples per batch (default: 1024 voxels for phae, 16 strips "
                             "for stunet and hess)")
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
                                             derivatives=folders,
                                             field_strength=args.field_strength)
        except InputError as error:
            parser.error(str(error))
        for message in errors:
            LOGGER.warning("skipped: %s", message)
        prefix = f"{bids_dir.name}/" if len(args.bids_dir) > 1 else ""
        if len({d.name for d in args.bids_dir}) < len(args.bids_dir):
            prefix = f"{index}:{bids_dir.name}/"
        for run in found:
            run_key = f"{prefix}sub-{run.subject}"
            runs.append(_Run(run_key, run))
    if not runs:
        parser.error(f"no usable DSC run in {[str(d) for d in args.bids_dir]}")
    return runs


class _Run:
    """A DSC run (:class:`~bids_perfusion.workflows.options.DSCRun`) and its unique key."""

    def __init__(self, key, run):
        self.key, self.files, self.metadata, self.masks = key, run.files, run.metadata, run.masks
        self.subject, self.session = run.subject, run.session


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
    args.batch_size = args.batch_size or recipe.batch_size

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
        writer = csv.DictWriter(handle, ["epoch", "lr", "train_loss", "val_loss", "seconds"],
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
                                  for d in args.bids_dir),
                 **extra.get("data", {})},
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
