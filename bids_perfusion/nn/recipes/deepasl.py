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
#: Fewest ΔM estimates at each delay of a multi-delay run.
MIN_PAIRS_PER_DELAY = 5


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
    att_weight: float = option(50.0, "deepasl-multidelay: κ, mL/100 g/min per s, of the "
                                     "ATT term κ²‖Δt_t − Δt̂‖² of the kinetic loss")


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
        """The training samples of a run (refused with InputError when it has not the
        recipe's number of delays or too few ΔM estimates)."""
        import numpy as np

        arrays = cls.read(run)
        options = request.options
        rng = np.random.default_rng([request.seed, zlib.crc32(run.key.encode())])
        samples = cls.pairs(arrays, tuple(options.subset_fractions), options.subset_draws,
                            options.asl_patch_size, options.patches_per_slice, rng)
        n_pairs = (arrays.differences.shape[-1] if cls.maps == "single"
                   else sum(d.shape[-1] for d in arrays.differences))
        return LoadedASLRun(run.key, samples, n_pairs, arrays.scale)

    @staticmethod
    def read(run):
        return read_run(run)

    @staticmethod
    def pairs(arrays, *args):
        from bids_perfusion.nn.deepasl_data import training_pairs

        return training_pairs(arrays, *args)

    #: The maps rigid augmentation moves: those of single-delay samples.
    maps = "single"

    @classmethod
    def loss_function(cls, options):
        from bids_perfusion.nn import deepasl

        weight = cls.weight(options)
        return lambda m, batch: deepasl.deepasl_loss(m, batch, weight)

    @classmethod
    def configuration(cls, options):
        return {"kinetic_weight": cls.weight(options)}

    @classmethod
    def fit(cls, request, loaded, split, device, log):
        """Train on the patches of the split's subjects."""
        from functools import partial

        from bids_perfusion.nn import deepasl
        from bids_perfusion.nn.deepasl_data import MAPS, MULTI_DELAY_MAPS, rigid_augment

        options = request.options
        arrays = split_samples(loaded, split)
        configuration = {"width": options.denoise_width} if options.denoise_width else {}
        model_name = cls.name
        maps = MAPS if cls.maps == "single" else MULTI_DELAY_MAPS
        model, result, metrics, extra = fit_model(
            lambda: deepasl.build(model_name, configuration), cls.loss_function(options),
            arrays, request, device, log, sample_key="noisy", loss=cls.loss_text(options),
            augment=(partial(rigid_augment, maps=maps) if options.rigid_augment == "rigid"
                     else None))
        metrics["parameters"] = deepasl.parameter_count(model)
        metrics["receptive_field"] = model.receptive_field()
        return result, {**model.config.as_dict(), **cls.configuration(options),
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
                                    "(reference)" + ("" if cls.maps == "single" else
                                                     ", at every delay")}}


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

    @classmethod
    def loss_text(cls, options):
        return (f"λ ‖N − Ñ‖² + (1 − λ) ‖f_t − f(ΔM_n − Ñ)‖² over brain voxels, "
                f"λ = {cls.weight(options):g} (N in percent of the median brain M0, CBF in "
                "mL/100 g/min)")


@register
class DilatedConvRecipe(ASLDenoiseRecipe):
    """The Dilated Conv baseline of Kim et al. (Radiology 2018), mean squared error."""

    name = "dilatedconv"
    help = "Dilated Conv (Kim et al. 2018): ASL ΔM denoising baseline, mean squared error"

    @staticmethod
    def weight(options):
        return 1.0

    @staticmethod
    def loss_text(options):
        return ("mean squared error of the residual (equivalently of the denoised ΔM) over "
                "brain voxels, in percent of the median brain M0")


@register
class DeepASLMultiDelayRecipe(DeepASLRecipe):
    """Multi-delay DeepASL: the residual FCN on each delay, the general kinetic model in
    the loss (:mod:`bids_perfusion.nn.deepasl_multidelay`)."""

    name = "deepasl-multidelay"
    help = ("DeepASL for multi-delay runs: residual FCN per delay, general kinetic model "
            "(CBF and ATT) in the loss (--kinetic-weight λ, --att-weight κ)")
    batch_size = 16
    maps = "multi"

    @staticmethod
    def read(run):
        return read_multi_delay_run(run)

    @staticmethod
    def pairs(arrays, *args):
        from bids_perfusion.nn.deepasl_data import multi_delay_training_pairs

        return multi_delay_training_pairs(arrays, *args)

    @classmethod
    def loss_function(cls, options):
        from bids_perfusion.nn.deepasl_multidelay import multidelay_loss

        weight, kappa = cls.weight(options), options.att_weight
        return lambda m, batch: multidelay_loss(m, batch, weight, kappa)

    @classmethod
    def configuration(cls, options):
        return {"kinetic_weight": cls.weight(options), "att_weight": options.att_weight,
                "delays": "any number: each delay is denoised alone, shared weights"}

    @classmethod
    def loss_text(cls, options):
        return (f"λ ‖N − Ñ‖² + (1 − λ) (‖f_t − f̂‖² + κ² ‖Δt_t − Δt̂‖²) over brain voxels, "
                f"λ = {cls.weight(options):g}, κ = {options.att_weight:g} mL/100 g/min per s; "
                "(f̂, Δt̂) the weighted-delay + linear least-squares fit of the general "
                "kinetic model to the denoised ΔM of every delay, (f_t, Δt_t) that of the "
                "mean of all pairs (N in percent of the median brain M0)")

    @classmethod
    def fit(cls, request, loaded, split, device, log):
        """As the single-delay recipe, once every run has the same number of delays (the
        ATT tables padded to one length)."""
        import numpy as np

        from bids_perfusion.collect import InputError

        counts = {item.samples["noisy"].shape[1] for item in loaded}
        if len(counts) > 1:
            raise InputError(f"deepasl-multidelay trains on runs with one number of delays; "
                             f"these runs have {sorted(counts)}")
        length = max(item.samples["wd_table"].shape[1] for item in loaded)
        for item in loaded:
            for key in ("att_grid", "wd_table"):
                values = item.samples[key]
                item.samples[key] = np.pad(values, ((0, 0), (0, length - values.shape[1])),
                                           mode="edge")
        return super().fit(request, loaded, split, device, log)


def read_run(run):
    """The :class:`~bids_perfusion.nn.deepasl_data.ASLRunArrays` of a collected ASL run
    (:class:`~bids_perfusion.nn.recipes.KeyedRun`): ΔM of every pair, the M0 reference
    of its M0 mode, the brain mask (given, else from M0) less the voxels the pipeline
    excludes (M0 below 0.2 of the brain median, :func:`bids_perfusion.asl.m0.prepare_m0`
    with its defaults) and the constants of the consensus formula."""
    import numpy as np

    from bids_perfusion.collect import InputError
    from bids_perfusion.nn.deepasl_data import ASLRunArrays, KineticConstants

    meta = run.metadata
    if not meta.quantifiable or meta.multi_delay:
        raise InputError(f"{run.files[0]}: the ASL denoisers train on single-delay runs with "
                         "control/label pairs or ΔM volumes; this run has "
                         + ("several delays" if meta.quantifiable else "no ΔM")
                         + (" (train 'deepasl-multidelay' on multi-delay runs)"
                            if meta.quantifiable else ""))
    differences, reference, brain, timing = _read_differences(run)
    delay = meta.unique_delays[0]
    pasl = meta.label_type == "PASL"
    constants = KineticConstants(
        slice_delays=tuple(delay + t for t in timing), t1_blood=meta.t1_blood(),
        efficiency=meta.efficiency()[0],
        duration=meta.bolus_cutoff_delay if pasl else meta.durations[0], pasl=pasl,
        partition=BLOOD_BRAIN_PARTITION)
    return ASLRunArrays(run.key, differences.astype(np.float32), reference, brain, constants)


def read_multi_delay_run(run):
    """The :class:`~bids_perfusion.nn.deepasl_data.MultiDelayRunArrays` of a collected
    multi-delay ASL run: the ΔM of every pair grouped by delay (and labelling duration,
    as the pipeline groups them), M0, brain mask and constants as :func:`read_run`; each
    delay needs :data:`MIN_PAIRS_PER_DELAY` estimates."""
    import numpy as np

    from bids_perfusion.collect import InputError
    from bids_perfusion.nn.deepasl_data import MultiDelayConstants, MultiDelayRunArrays

    meta = run.metadata
    if not meta.quantifiable or not meta.multi_delay:
        raise InputError(f"{run.files[0]}: deepasl-multidelay trains on multi-delay runs; "
                         "this run has " + ("one delay (train 'deepasl')"
                                            if meta.quantifiable else "no ΔM"))
    differences, reference, brain, timing = _read_differences(run, MIN_PAIRS_PER_DELAY)
    delays = np.round(np.asarray(meta.delays, dtype=float), 6)
    durations = (np.round(np.asarray(meta.durations, dtype=float), 6)
                 if meta.durations is not None else None)
    keys = sorted(set(zip(delays, delays if durations is None else durations,
                          strict=True)))
    groups = [(delays == d) & ((durations == t) if durations is not None else True)
              for d, t in keys]
    if min(int(g.sum()) for g in groups) < MIN_PAIRS_PER_DELAY:
        raise InputError(f"{run.files[0]}: {[int(g.sum()) for g in groups]} ΔM estimates "
                         f"per delay; training pairs need at least {MIN_PAIRS_PER_DELAY} "
                         "at every delay")
    pasl = meta.label_type == "PASL"
    constants = MultiDelayConstants(
        delays=tuple(float(d) for d, _ in keys), slice_timing=tuple(timing),
        durations=tuple(float(meta.bolus_cutoff_delay) if pasl else float(t)
                        for _, t in keys),
        counts=tuple(int(g.sum()) for g in groups), t1_blood=meta.t1_blood(),
        efficiency=meta.efficiency()[0], pasl=pasl, partition=BLOOD_BRAIN_PARTITION)
    return MultiDelayRunArrays(run.key, tuple(differences[..., g].astype(np.float32)
                                              for g in groups),
                               reference, brain, constants)


def _read_differences(run, min_pairs=MIN_PAIRS):
    """``(ΔM estimates (x, y, z, n), M0 reference, brain mask less the excluded voxels,
    slice times)`` of a run (:func:`read_run`)."""
    import nibabel as nib
    import numpy as np

    from bids_perfusion.asl import context, m0
    from bids_perfusion.asl.m0 import T1_GREY_MATTER
    from bids_perfusion.collect import InputError
    from bids_perfusion.dsc import brain_mask

    meta = run.metadata
    series = np.asarray(nib.load(str(run.files[0])).dataobj, dtype=np.float64)
    differences = context.difference_images(series, meta.context)
    if differences.shape[-1] < min_pairs:
        raise InputError(f"{run.files[0]}: {differences.shape[-1]} ΔM estimates; training "
                         f"pairs need at least {min_pairs} repetitions")
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
    timing = meta.slice_timing or (0.0,) * series.shape[2]
    return differences, reference, brain, timing
