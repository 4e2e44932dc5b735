"""Train a registered model on BIDS datasets and write its weights with a model card.

Builds training samples from the DSC runs of one or more BIDS datasets
(:mod:`bids_perfusion.collect`), splits them by subject (train / validation / test,
reproducible from the seed), trains with the model's recipe
(:mod:`bids_perfusion.nn.recipes`), logs the losses (``OUTPUT/losses.tsv``), keeps the
best checkpoint on validation and writes ``OUTPUT/<MODEL>.safetensors`` with its model
card ``OUTPUT/<MODEL>.json`` (:mod:`bids_perfusion.nn.weights`).

Between the command line (``bids-perfusion-train``, which builds the
:class:`~bids_perfusion.nn.recipes.TrainingRequest`) and the cores: it reads the BIDS
datasets, which the recipes of ``nn/`` never do. A request that cannot be served raises
:class:`~bids_perfusion.collect.InputError`.
"""

import csv
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from bids_perfusion.collect import InputError

LOGGER = logging.getLogger("bids_perfusion.train")


@dataclass(frozen=True)
class TrainedModel:
    """The files written by :func:`train_model`, the card and its metrics."""

    weights: Path
    card: dict
    losses: Path

    @property
    def metrics(self):
        return self.card["metrics"]


def train_model(request):
    """Train ``request.model`` as the request asks; returns a :class:`TrainedModel`."""
    from tqdm.auto import tqdm

    from bids_perfusion.nn import device as devices
    from bids_perfusion.nn import training
    from bids_perfusion.nn import weights as weight_files

    recipe = request.recipe
    request = replace(request, output=Path(request.output).absolute(),
                      batch_size=request.batch_size or recipe.batch_size)
    output = request.output
    weights = output / f"{request.model}.safetensors"
    if weights.exists() and not request.overwrite:
        raise InputError(f"{weights} exists; pass --overwrite to replace it")
    try:
        device = devices.select_device(request.device)
    except (RuntimeError, ValueError) as error:
        raise InputError(str(error)) from None
    runs = training_runs(request)
    try:
        split = training.split_subjects([r.key for r in runs], request.val_fraction,
                                        request.test_fraction, request.seed)
    except ValueError as error:
        raise InputError(str(error)) from None
    LOGGER.info("%d runs; split by subject: %d train, %d validation, %d test", len(runs),
                *(len(split[k]) for k in ("train", "val", "test")))
    loaded = [recipe.load(request, run)
              for run in tqdm(runs, desc="runs", disable=not request.progress)]
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

        result, configuration, metrics, extra = recipe.fit(request, loaded, split, device,
                                                           log)
    card = {
        "model": request.model,
        "configuration": configuration,
        "data": {"datasets": [dataset_record(d) for d in request.bids_dirs],
                 "runs": len(runs), "derivatives": [str(d) for d in request.derivatives],
                 "aif": "given arterial masks" if all("arteries" in r.masks for r in runs)
                 else "automatic selection (where no arterial mask was given)",
                 "max_voxels_per_subject": request.max_voxels_per_subject,
                 "n_frames": extra["n_frames"], "samples": extra["samples"],
                 "synthetic": all((d / "derivatives" / "phantom-truth").is_dir()
                                  for d in request.bids_dirs),
                 **extra.get("data", {})},
        "split": {**split, "seed": request.seed, "val_fraction": request.val_fraction,
                  "test_fraction": request.test_fraction},
        "command": request.command,
        "metrics": {**metrics, "history": result.history},
        "training": {**extra["train_config"], "device": devices.describe(device)},
    }
    if "training_ranges" in extra:  # bids_perfusion.nn.training_ranges
        card["training_ranges"] = extra["training_ranges"]
    card = weight_files.save_weights(result.state_dict, weights, card)
    return TrainedModel(weights, card, log_path)


def training_runs(request):
    """Every DSC run (ASL run, for recipes whose ``modality`` is ``"asl"``) of the
    request's datasets, as :class:`~bids_perfusion.nn.recipes.KeyedRun` whose subject key
    is unique across datasets; runs that fail validation are skipped with a warning."""
    from bids_perfusion.collect import collect_asl_runs, collect_dsc_runs, layout_of
    from bids_perfusion.nn.recipes import KeyedRun

    modality = getattr(request.recipe, "modality", "dsc")

    runs, bids_dirs = [], request.bids_dirs
    for index, bids_dir in enumerate(bids_dirs):
        layout = layout_of(bids_dir)
        folders = [bids_dir / d if (bids_dir / d).is_dir() else Path(d)
                   for d in request.derivatives]
        if modality == "asl":
            found, errors = collect_asl_runs(layout, request.participant_label,
                                             derivatives=folders)
        else:
            found, errors = collect_dsc_runs(layout, request.participant_label,
                                             derivatives=folders,
                                             field_strength=request.field_strength)
        for message in errors:
            LOGGER.warning("skipped: %s", message)
        prefix = f"{bids_dir.name}/" if len(bids_dirs) > 1 else ""
        if len({d.name for d in bids_dirs}) < len(bids_dirs):
            prefix = f"{index}:{bids_dir.name}/"
        runs.extend(KeyedRun(f"{prefix}sub-{run.subject}", run) for run in found)
    if not runs:
        raise InputError(f"no usable {modality.upper()} run in {[str(d) for d in bids_dirs]}")
    return runs


def dataset_record(bids_dir):
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
        record["phantom"] = {key: config.get(key) for key in
                             ("seed", "grades", "matrix", "grade_ranges", "population",
                              "forward_model", "motion") if key in config}
        record["phantom"]["snr"] = dsc.get("snr")
    return record
