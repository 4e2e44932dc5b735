"""What the strip models (stU-Net, Hess et al.) share: CBV learnt from raw DSC strips
against reference CBV maps of a derivatives folder, at full dose and at doses simulated
from it (:mod:`bids_perfusion.dsc.lowdose`), prepared by
:mod:`bids_perfusion.nn.cbv_preprocessing`."""

from dataclasses import dataclass, field
from pathlib import Path

from bids_perfusion.constants import CBV_TARGETS, LOWDOSE_MODELS
from bids_perfusion.naming import parse_name
from bids_perfusion.nn.recipes import fit_model, option


@dataclass(frozen=True)
class StripOptions:
    """Options of the strip models: reference maps, training doses, strips."""

    reference_derivatives: Path = field(default=Path("derivatives/phantom-truth"), metadata={
        "help": "stunet/hess: folder with the reference CBV maps (relative paths are looked "
                "up inside each BIDS_DIR)", "metavar": "PATH"})
    reference_desc: str = option(
        "truth", "stunet/hess: desc entity of the reference maps (sub-X_[...]desc-DESC_"
        "cbv.nii.gz): 'truth' for the phantom's ground truth, 'areaRatio' for the "
        "pipeline's own full-dose CBV", metavar="DESC")
    train_doses: tuple = option(
        (1.0, 0.5, 0.25), "stunet/hess: dose factors of the training series (d < 1 "
                          "simulated from the full dose with --train-lowdose-model)",
        type=float, nargs="+", metavar="D")
    train_lowdose_model: str = option(
        "exponential", "stunet/hess: signal model of the simulated training doses "
                       "(exponential: ΔR2* scaled by d, the default, on which the bundled "
                       "weights were trained; linear: Eq. 1 of the stU-Net paper); the "
                       "local average "
                       "is temporal (Savitzky-Golay)", choices=LOWDOSE_MODELS)
    in_plane_size: int = option(64, "stunet/hess: in-plane size of the resampled slices "
                                    "(paper: 256)")
    strip_width: int = option(16, "stunet/hess: rows of a strip")
    train_stride: int = option(8, "stunet/hess: rows between training strips (paper: 8)")
    test_stride: int = option(1, "stunet/hess: rows between inference strips (paper: 1)")
    widths: tuple = option((8, 16, 32), "stunet: channels of the encoder levels (depth = "
                                        "count)", type=int, nargs="+")
    augment: str = option("none", "stunet/hess: random flips of the training strips' rows "
                                  "and columns (not in the paper)", choices=("none", "flips"))
    cbv_target: str = option(
        "logRelative", "stunet/hess: representation of the CBV target: logRelative, ln of "
                       "CBV over its brain median (keeps tumour/NAWM ratios; the bundled "
                       "weights'), or standardised, the paper's clipped z-score",
        choices=CBV_TARGETS)
    init_weights: Path | None = field(default=None, metadata={
        "help": "stunet/hess: start training from these weights (.safetensors with its "
                "card; same model and architecture) instead of a random initialisation",
        "type": Path, "metavar": "PATH"})

    def preprocessing(self):
        """The :class:`~bids_perfusion.nn.cbv_preprocessing.PreprocessingConfig`."""
        from bids_perfusion.nn.cbv_preprocessing import PreprocessingConfig

        return PreprocessingConfig(size=self.in_plane_size, strip_width=self.strip_width,
                                   train_stride=self.train_stride,
                                   test_stride=self.test_stride,
                                   target=self.cbv_target)


@dataclass(frozen=True)
class PreparedRun:
    """The prepared runs (one per training dose) of one subject's DSC run."""

    subject: str
    runs: list


class StripRecipe:
    """CBV from raw DSC strips, supervised by reference CBV maps. Subclasses name the
    model and give ``architecture(request)``: its module and configuration."""

    batch_size = 16
    options = StripOptions
    description = None

    @classmethod
    def load(cls, request, run):
        """The run at every training dose, prepared with its reference map."""
        from bids_perfusion.dsc import brain_mask, lowdose
        from bids_perfusion.nn.cbv_preprocessing import prepare_run

        options = request.options
        series = _image(run.files[0])
        if "brain" in run.masks:
            brain = (_image(run.masks["brain"]) > 0).reshape(series.shape[:3])
        else:
            brain = brain_mask.brain_mask(series.mean(axis=-1))
        reference = _image(reference_map(request, run))
        config = options.preprocessing()
        window = lowdose.baseline_of_run(series, brain)
        prepared = [prepare_run(series if dose >= 1 else
                                lowdose.simulate_low_dose_run(
                                    series, dose, window, tr=run.metadata.repetition_time,
                                    model=options.train_lowdose_model),
                                brain, config, reference) for dose in options.train_doses]
        return PreparedRun(run.key, prepared)

    @classmethod
    def fit(cls, request, loaded, split, device, log):
        """Train on the strips of the split's subjects, against standardised CBV."""
        from bids_perfusion.nn import cbv_models, stunet
        from bids_perfusion.nn.strips import flip_strips

        options = request.options
        config = options.preprocessing()
        # every split cropped to the shortest run of all: batches need one frame count
        arrays, n_frames = {}, min(p.dsc.shape[-1] for item in loaded for p in item.runs)
        for part in ("train", "val", "test"):
            runs = [p for item in loaded if item.subject in split[part] for p in item.runs]
            arrays[part] = None
            if runs:
                arrays[part], n_frames = cbv_models.strip_arrays(runs, config, n_frames)
        module, architecture = cls.architecture(request)
        initial = None
        if options.init_weights is not None:
            initial, _preprocessing, card = cbv_models.load_model(options.init_weights)
            if card["model"] != cls.name or initial.config != architecture:
                raise ValueError(f"{options.init_weights}: --init-weights must hold a "
                                 f"{cls.name} of the architecture {architecture}; the card "
                                 f"is for a {card['model']} of {initial.config}")

        def build():
            model = module(architecture)
            if initial is not None:
                model.load_state_dict(initial.state_dict())
            return model

        model, result, metrics, extra = fit_model(
            build, stunet.masked_l2, arrays, request, device, log,
            sample_key="dsc", loss=f"mean squared error of the {config.target} CBV target "
                                   "over brain voxels",
            augment=flip_strips if options.augment == "flips" else None)
        metrics["parameters"] = stunet.parameter_count(model)
        return result, cbv_models.configuration(architecture, config), metrics, {
            "n_frames": n_frames, **extra,
            "data": {"aif": "not used (the model reads the raw series)",
                     "max_voxels_per_subject": None,
                     "reference": {"derivatives": str(options.reference_derivatives),
                                   "desc": options.reference_desc},
                     "doses": list(options.train_doses),
                     "augmentation": options.augment,
                     "initial_weights": None if initial is None else {
                         "path": str(options.init_weights), "sha256": card["sha256"]},
                     "low_dose_model": options.train_lowdose_model,
                     "low_dose": ("simulated from the full-dose series, model "
                                  f"{options.train_lowdose_model} (dsc.lowdose), temporal "
                                  "Savitzky-Golay local average"),
                     "samples_are": "strips of rows of the resampled slices"}}


def reference_map(request, run):
    """The reference CBV map of a run: ``sub-X[_ses-Y]_*desc-DESC_cbv.nii.gz`` in the
    reference folder (``request.options``: :class:`StripOptions`), whose entities are all
    among the run's (no simulated ``rec-``). A relative folder is looked up inside the
    run's dataset first."""
    folder, desc = request.options.reference_derivatives, request.options.reference_desc
    if not folder.is_absolute():
        inside = Path(run.files[0]).parents[3 if run.session else 2] / folder
        folder = inside if inside.is_dir() else folder
    entities = set(parse_name(run.files[0])[0].items())
    prefix = f"sub-{run.subject}" + (f"_ses-{run.session}" if run.session else "")
    found = []
    for path in sorted(folder.glob(f"**/{prefix}_*desc-{desc}_cbv.nii*")):
        extra = set(parse_name(path)[0].items()) - entities
        if extra == {("desc", desc)}:
            found.append(path)
    if not found:
        raise FileNotFoundError(f"{folder}: no reference CBV {prefix}_*desc-{desc}_cbv.nii.gz "
                                f"for {run.files[0]}; set --reference-derivatives and "
                                "--reference-desc")
    return max(found, key=lambda path: len(path.name))


def _image(path):
    """A NIfTI image's data as float32 (scaling applied)."""
    import nibabel as nib
    import numpy as np

    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
