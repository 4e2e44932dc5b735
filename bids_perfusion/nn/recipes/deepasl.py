"""Recipes of the ASL denoisers (:mod:`bids_perfusion.nn.deepasl`): DeepASL's residual FCN
with the kinetic loss (``deepasl``) and the Dilated Conv baseline with the mean squared
error (``dilatedconv``), trained on pairs of (mean of a subset of the control/label
subtractions, mean of all) of single-delay ASL runs with many repetitions
(:mod:`bids_perfusion.nn.deepasl_data`)."""

import zlib
from dataclasses import dataclass

from bids_perfusion.constants import BLOOD_BRAIN_PARTITION
from bids_perfusion.nn.recipes import fit_model, option, register, split_samples

#: Fewest ΔM estimates a run needs to give inputs of 20 % of them and a reference.
MIN_PAIRS = 10


@dataclass(frozen=True)
class ASLDenoiseOptions:
    """Options of the ASL denoisers and of their training pairs."""

    kinetic_weight: float = option(0.2, "deepasl: λ of the loss λ‖N − Ñ‖² + (1 − λ)‖f_t − "
                                        "f(ΔM_n − Ñ)‖² (paper: 0.2 best; 1 is the plain "
                                        "residual loss)")
    subset_fractions: tuple = option((0.2, 0.4, 0.6, 0.8), "deepasl/dilatedconv: fractions "
                                     "of the pairs averaged into the noisy inputs",
                                     type=float, nargs="+", metavar="F")
    subset_draws: int = option(2, "deepasl/dilatedconv: random subsets drawn per fraction "
                                  "and run")
    asl_patch_size: int = option(40, "deepasl/dilatedconv: side of the training patches "
                                 "(paper: 40)")
    patches_per_slice: int = option(4, "deepasl/dilatedconv: patches drawn per slice of "
                                       "each noisy input")
    rigid_augment: str = option("rigid", "deepasl/dilatedconv: random rotations by 90° and "
                                         "flips of the training patches",
                                choices=("rigid", "none"))
    denoise_width: int = option(0, "deepasl/dilatedconv: filters per convolution (0: the "
                                   "paper's, 48 for deepasl, 64 for dilatedconv)")


@dataclass(frozen=True)
class LoadedASLRun:
    """The training samples of one run and what the card records of it."""

    subject: str
    samples: dict
    n_pairs: int
    scale: float


class ASLDenoiseRecipe:
    """What both denoisers share; subclasses name the model and its loss."""

    batch_size = 64
    modality = "asl"
    options = ASLDenoiseOptions
    description = None

    @classmethod
    def load(cls, request, run):
        """The training samples of a single-delay run (refused with InputError when it
        has several delays or fewer than :data:`MIN_PAIRS` ΔM estimates)."""
        import numpy as np

        from bids_perfusion.nn.deepasl_data import training_pairs

        arrays = read_run(run)
        options = request.options
        rng = np.random.default_rng([request.seed, zlib.crc32(run.key.encode())])
        samples = training_pairs(arrays, tuple(options.subset_fractions),
                                 options.subset_draws, options.asl_patch_size,
                                 options.patches_per_slice, rng)
        return LoadedASLRun(run.key, samples, arrays.differences.shape[-1], arrays.scale)

    @classmethod
    def fit(cls, request, loaded, split, device, log):
        """Train on the patches of the split's subjects."""
        from bids_perfusion.nn import deepasl
        from bids_perfusion.nn.deepasl_data import rigid_augment

        options = request.options
        arrays = split_samples(loaded, split)
        configuration = {"width": options.denoise_width} if options.denoise_width else {}
        model_name, weight = cls.name, cls.weight(options)
        model, result, metrics, extra = fit_model(
            lambda: deepasl.build(model_name, configuration),
            lambda m, batch: deepasl.deepasl_loss(m, batch, weight), arrays, request,
            device, log, sample_key="noisy", loss=cls.loss_text(weight),
            augment=rigid_augment if options.rigid_augment == "rigid" else None)
        metrics["parameters"] = deepasl.parameter_count(model)
        metrics["receptive_field"] = model.receptive_field()
        return result, {**model.config.as_dict(), "kinetic_weight": weight,
                        "intensity_scale": "ΔM / (median brain M0 / 100)"}, metrics, {
            "n_frames": sorted({item.n_pairs for item in loaded}), **extra,
            "data": {"aif": "not used (ASL)", "max_voxels_per_subject": None,
                     "pairs_per_run": [[item.subject, item.n_pairs] for item in loaded],
                     "scales": [[item.subject, item.scale] for item in loaded],
                     "subset_fractions": list(options.subset_fractions),
                     "subset_draws": options.subset_draws,
                     "patch_size": options.asl_patch_size,
                     "patches_per_slice": options.patches_per_slice,
                     "augmentation": options.rigid_augment,
                     "samples_are": "in-plane patches of the mean ΔM of a random subset of "
                                    "the control/label pairs (input) and of all pairs "
                                    "(reference)"}}


@register
class DeepASLRecipe(ASLDenoiseRecipe):
    """DeepASL residual FCN with the kinetic-model loss (Ulas et al., MICCAI 2018)."""

    name = "deepasl"
    help = ("DeepASL: residual FCN denoising the mean ASL ΔM, kinetic-model loss "
            "(--kinetic-weight λ)")

    @staticmethod
    def weight(options):
        if not 0 <= options.kinetic_weight <= 1:
            raise ValueError(f"--kinetic-weight must be within [0, 1], got "
                             f"{options.kinetic_weight}")
        return float(options.kinetic_weight)

    @staticmethod
    def loss_text(weight):
        return (f"λ ‖N − Ñ‖² + (1 − λ) ‖f_t − f(ΔM_n − Ñ)‖² over brain voxels, λ = {weight:g} "
                "(N in percent of the median brain M0, CBF in mL/100 g/min)")


@register
class DilatedConvRecipe(ASLDenoiseRecipe):
    """The Dilated Conv baseline of Kim et al. (Radiology 2018), mean squared error."""

    name = "dilatedconv"
    help = "Dilated Conv (Kim et al. 2018): ASL ΔM denoising baseline, mean squared error"

    @staticmethod
    def weight(options):
        return 1.0

    @staticmethod
    def loss_text(weight):
        return ("mean squared error of the residual (equivalently of the denoised ΔM) over "
                "brain voxels, in percent of the median brain M0")


def read_run(run):
    """The :class:`~bids_perfusion.nn.deepasl_data.ASLRunArrays` of a collected ASL run
    (:class:`~bids_perfusion.nn.recipes.KeyedRun`): ΔM of every pair, the M0 reference
    of its M0 mode, the brain mask (given, else from M0) less the voxels the pipeline
    excludes (M0 below 0.2 of the brain median, :func:`bids_perfusion.asl.m0.prepare_m0`
    with its defaults) and the constants of the consensus formula."""
    import nibabel as nib
    import numpy as np

    from bids_perfusion.asl import context, m0
    from bids_perfusion.asl.m0 import T1_GREY_MATTER
    from bids_perfusion.collect import InputError
    from bids_perfusion.dsc import brain_mask
    from bids_perfusion.nn.deepasl_data import ASLRunArrays, KineticConstants

    meta = run.metadata
    if not meta.quantifiable or meta.multi_delay:
        raise InputError(f"{run.files[0]}: the ASL denoisers train on single-delay runs with "
                         "control/label pairs or ΔM volumes; this run has "
                         + ("several delays" if meta.quantifiable else "no ΔM"))
    series = np.asarray(nib.load(str(run.files[0])).dataobj, dtype=np.float64)
    differences = context.difference_images(series, meta.context)
    if differences.shape[-1] < MIN_PAIRS:
        raise InputError(f"{run.files[0]}: {differences.shape[-1]} ΔM estimates; training "
                         f"pairs need at least {MIN_PAIRS} repetitions")
    ctx = meta.context
    kind = meta.m0_type
    reference = m0.m0_reference(
        kind,
        m0_volumes=(np.asarray(nib.load(str(meta.m0_file)).dataobj, dtype=np.float64)
                    if kind == "Separate" else series[..., list(ctx.indices("m0scan"))]
                    if kind == "Included" else None),
        control_volumes=(series[..., list(ctx.indices("control"))]
                         if kind == "Absent" else None),
        estimate=meta.m0_estimate, shape=series.shape,
        repetition_time=meta.m0_repetition_time,
        t1_tissue=T1_GREY_MATTER[meta.nominal_field_strength]).image
    if "brain" in run.masks:
        brain = np.asarray(nib.load(str(run.masks["brain"])).dataobj) > 0
    else:
        brain = brain_mask.brain_mask(reference)
    brain = brain.reshape(reference.shape)
    none = np.zeros(brain.shape, dtype=bool)
    brain &= ~m0.prepare_m0(reference, brain, none, none).excluded
    delay = meta.unique_delays[0]
    timing = meta.slice_timing or (0.0,) * series.shape[2]
    pasl = meta.label_type == "PASL"
    constants = KineticConstants(
        slice_delays=tuple(delay + t for t in timing), t1_blood=meta.t1_blood(),
        efficiency=meta.efficiency()[0],
        duration=meta.bolus_cutoff_delay if pasl else meta.durations[0], pasl=pasl,
        partition=BLOOD_BRAIN_PARTITION)
    return ASLRunArrays(run.key, differences.astype(np.float32), reference, brain, constants)
