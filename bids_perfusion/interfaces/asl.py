"""ASL interfaces: ΔM and M0 from the series, single- and multi-delay CBF, CBF time series.

Thin wrappers of :mod:`bids_perfusion.asl`: read the files, call the core, write the maps
and return the sidecar entries that record how they were made.
"""

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_perfusion import constants
from bids_perfusion.asl import consensus, context, m0, quality, tissue
from bids_perfusion.asl.multi_delay import MultiDelayModel
from bids_perfusion.dsc import brain_mask
from bids_perfusion.interfaces.nifti import (
    load,
    load_mask,
    refused,
    save_like,
    voxel_size,
)
from bids_perfusion.tsv import write_tsv

#: Values of the ``nonfinite`` mask of :class:`ExtractASL` (bits): a non-finite value in
#: the series, in M0.
NONFINITE_SERIES, NONFINITE_M0 = 1, 2


def _optional(value, default=None):
    return value if isdefined(value) else default


class _ExtractASLInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="4-D ASL series")
    volume_types = traits.List(traits.Str, mandatory=True, desc="aslcontext, one per volume")
    delays = traits.List(traits.Float, mandatory=True,
                         desc="PLD or TI of each ΔM estimate (pairs, then deltam volumes)")
    durations = traits.List(traits.Float, desc="labelling duration of each ΔM estimate")
    m0_type = traits.Enum("Separate", "Included", "Estimate", "Absent", mandatory=True)
    m0_file = File(exists=True, desc="separate M0 scan")
    m0_estimate = traits.Float(desc="M0Estimate")
    m0_repetition_time = traits.Float(desc="TR of the M0 (or control) volumes, s")
    m0_t1 = traits.Float(mandatory=True, desc="T1 of the M0 recovery correction, s")
    m0_scale = traits.Float(1.0, usedefault=True, desc="M0 is multiplied by this")
    m0_recovery_correction = traits.Bool(True, usedefault=True)
    m0_source = traits.Str(desc="M0 file as recorded in the sidecars")
    m0_path = traits.Str(desc="file M0 is read from, named in error messages (default: "
                         "m0_file, else in_file)")
    excluded_volumes = traits.List(traits.Int, desc="volumes (0-based) whose pairs are left "
                                   "out of the mean ΔM (motion outliers)")
    source_file = traits.Str(desc="the user's series in_file comes from (e.g. before motion "
                             "correction), named in errors")


class _ExtractASLOutputSpec(TraitedSpec):
    mean_deltam = File(exists=True, desc="mean ΔM per delay: 3-D (one delay) or 4-D")
    deltam = File(exists=True, desc="every ΔM estimate, 4-D")
    m0 = File(exists=True, desc="M0 reference, 3-D")
    delays = traits.List(traits.Float, desc="delay of each volume of mean_deltam")
    durations = traits.List(traits.Float, desc="labelling duration of each volume")
    counts = traits.List(traits.Int, desc="ΔM estimates averaged into each volume")
    metadata = traits.Dict(desc="how M0 was made")
    nonfinite = File(exists=True, desc="voxels with a non-finite value: 1 in the series, "
                     "2 in M0, 3 both")


class ExtractASL(SimpleInterface):
    """ΔM of each pair (control - label, either order) and deltam volume, their mean per
    delay (:mod:`asl.context`), and the M0 reference (:func:`asl.m0.m0_reference`)."""

    input_spec = _ExtractASLInputSpec
    output_spec = _ExtractASLOutputSpec

    def _run_interface(self, runtime):
        name = self.inputs.in_file
        shown = _optional(self.inputs.source_file, name)
        series = load(name, dtype=np.float64)
        if series.ndim == 3:
            series = series[..., None]
        with refused(shown):
            bad_series = quality.check_series(series)
        ctx = context.ASLContext(tuple(self.inputs.volume_types))
        differences = context.difference_images(series, ctx)
        with refused(shown):
            quality.check_differences(differences)
        durations = _optional(self.inputs.durations) or None
        delays = self.inputs.delays
        if excluded := _optional(self.inputs.excluded_volumes):
            from bids_perfusion.motion.series import drop_estimates, kept_estimates

            with refused(shown, "raise --fd-threshold, or run without "
                         "--exclude-motion-outliers"):
                differences, delays, durations = drop_estimates(
                    differences, delays, durations, kept_estimates(ctx.volume_types, excluded))
        means, delays, unique_durations, counts = context.mean_by_delay(
            differences, delays, durations)
        mean = means[..., 0] if means.shape[-1] == 1 else means
        kind = self.inputs.m0_type
        reference = m0.m0_reference(
            kind,
            m0_volumes=(load(self.inputs.m0_file, dtype=np.float64) if kind == "Separate"
                        else series[..., list(ctx.indices("m0scan"))]
                        if kind == "Included" else None),
            control_volumes=(series[..., list(ctx.indices("control"))]
                             if kind == "Absent" else None),
            estimate=_optional(self.inputs.m0_estimate), shape=series.shape,
            repetition_time=_optional(self.inputs.m0_repetition_time),
            t1_tissue=self.inputs.m0_t1, scale=self.inputs.m0_scale,
            correct_recovery=self.inputs.m0_recovery_correction,
            source=_optional(self.inputs.m0_source))
        bad_m0 = np.zeros(series.shape[:3], dtype=bool)
        if kind != "Estimate":
            with refused(_optional(self.inputs.m0_path, _optional(self.inputs.m0_file, name))):
                bad_m0 = quality.check_m0(reference.image)
        self._results["nonfinite"] = save_like(
            NONFINITE_SERIES * bad_series + NONFINITE_M0 * bad_m0, name,
            "nonfinite_mask.nii", dtype=np.uint8)
        self._results["mean_deltam"] = save_like(mean, name, "mean_deltam.nii")
        self._results["deltam"] = save_like(differences, name, "deltam.nii")
        self._results["m0"] = save_like(reference.image, name, "m0.nii")
        self._results["delays"] = [float(d) for d in delays]
        self._results["durations"] = ([] if unique_durations is None
                                      else [float(d) for d in unique_durations])
        self._results["counts"] = [int(c) for c in counts]
        self._results["metadata"] = reference.metadata
        return runtime


class _ASLBrainMaskInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="M0 reference (3-D) or the series (4-D)")
    source_file = traits.Str(desc="the user's file in_file was made from, named in errors")


class _MaskOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class ASLBrainMask(SimpleInterface):
    """Brain mask of the M0 image (or the mean series): :func:`dsc.brain_mask.brain_mask`.

    Non-finite values count as 0 (they are excluded later, :class:`PrepareM0`)."""

    input_spec = _ASLBrainMaskInputSpec
    output_spec = _MaskOutputSpec

    def _run_interface(self, runtime):
        image = np.nan_to_num(load(self.inputs.in_file), nan=0.0, posinf=0.0, neginf=0.0)
        if image.ndim == 4:
            image = image.mean(axis=-1)
        with refused(_optional(self.inputs.source_file, self.inputs.in_file),
                     "give a brain mask with --derivatives"):
            mask = brain_mask.brain_mask(image)
        self._results["out_file"] = save_like(mask, self.inputs.in_file, "brain_mask.nii",
                                              dtype=np.uint8)
        return runtime


class _PrepareM0InputSpec(BaseInterfaceInputSpec):
    m0 = File(exists=True, mandatory=True, desc="M0 reference (ExtractASL)")
    brain_mask = File(exists=True, mandatory=True)
    nonfinite = File(exists=True, mandatory=True, desc="non-finite voxels (ExtractASL)")
    min_fraction = traits.Float(constants.M0_MIN_FRACTION, usedefault=True,
                                desc="exclude brain voxels with M0 below this fraction of "
                                "the median M0 of the brain")
    smoothing_fwhm = traits.Float(constants.M0_SMOOTHING_FWHM, usedefault=True,
                                  desc="FWHM of the Gaussian smoothing of M0, mm")
    series_file = traits.Str(mandatory=True, desc="the ASL series, named in errors")
    m0_file = traits.Str(mandatory=True, desc="the file M0 came from, named in errors")
    m0_metadata = traits.Dict(desc="how M0 was made (ExtractASL)")


class _PrepareM0OutputSpec(TraitedSpec):
    m0 = File(exists=True, desc="M0 used for CBF (smoothed when asked)")
    excluded_mask = File(exists=True, desc="brain voxels left out of CBF and ROI statistics")
    metadata = traits.Dict(desc="how M0 was made and which voxels were excluded")


class PrepareM0(SimpleInterface):
    """The M0 that CBF divides by, and the brain voxels that cannot be quantified.

    The run is refused when non-finite voxels are too many (:mod:`asl.quality`); the
    exclusions and the smoothing are :func:`asl.m0.prepare_m0`.
    """

    input_spec = _PrepareM0InputSpec
    output_spec = _PrepareM0OutputSpec

    def _run_interface(self, runtime):
        image = load(self.inputs.m0, dtype=np.float64)
        brain = load_mask(self.inputs.brain_mask, image.shape)
        code = load(self.inputs.nonfinite).astype(np.uint8)
        bad_series = (code & NONFINITE_SERIES) > 0
        bad_m0 = (code & NONFINITE_M0) > 0
        with refused(self.inputs.series_file):
            quality.check_nonfinite_fraction(bad_series, brain)
        with refused(self.inputs.m0_file):
            quality.check_nonfinite_fraction(bad_m0, brain)
            prepared = m0.prepare_m0(image, brain, bad_series, bad_m0,
                                     fraction=self.inputs.min_fraction,
                                     fwhm=self.inputs.smoothing_fwhm,
                                     voxel_size=voxel_size(self.inputs.m0))
        self._results["m0"] = save_like(prepared.image, self.inputs.m0, "m0_used.nii")
        self._results["excluded_mask"] = save_like(prepared.excluded, self.inputs.m0,
                                                   "excluded_mask.nii", dtype=np.uint8)
        self._results["metadata"] = {
            **self.inputs.m0_metadata,
            "M0SmoothingFWHM": float(self.inputs.smoothing_fwhm),
            "M0MinFraction": float(self.inputs.min_fraction),
            "M0Threshold": prepared.threshold,
            "ExcludedVoxels": prepared.counts,
            "ExcludedVoxelsDescription": (
                "brain voxels left out of CBF (written 0) and of the ROI statistics: a "
                "non-finite value in the series (NonFiniteSeries) or else in M0 "
                "(NonFiniteM0), M0 below M0Threshold = M0MinFraction x the median M0 of "
                "the brain (LowM0)"),
        }
        return runtime


class _QuantifyInputSpec(BaseInterfaceInputSpec):
    m0 = File(exists=True, mandatory=True)
    brain_mask = File(exists=True, mandatory=True)
    excluded_mask = File(exists=True, desc="brain voxels left out of CBF (PrepareM0)")
    label_type = traits.Enum("PCASL", "CASL", "PASL", mandatory=True)
    t1_blood = traits.Float(mandatory=True, desc="s")
    efficiency = traits.Float(mandatory=True, desc="labelling efficiency α")
    partition = traits.Float(mandatory=True, desc="blood-brain partition coefficient λ, mL/g")
    bolus_duration = traits.Float(desc="TI1 of PASL, s")
    slice_timing = traits.List(traits.Float, desc="per-slice delay offset (2-D readout), s")
    parameters = traits.Dict(desc="sidecar entries recorded with the map")
    m0_metadata = traits.Dict(desc="how M0 was made (ExtractASL)")
    extra_metadata = traits.Dict(desc="further sidecar entries made at run time (how ΔM "
                                      "was denoised)")


class _SingleDelayInputSpec(_QuantifyInputSpec):
    mean_deltam = File(exists=True, mandatory=True, desc="mean ΔM, 3-D")
    delay = traits.Float(mandatory=True, desc="PLD or TI, s")
    labeling_duration = traits.Float(desc="τ of PCASL/CASL, s")


class _CBFOutputSpec(TraitedSpec):
    cbf = File(exists=True)
    metadata = traits.Dict()


def _quantified(inputs, shape):
    """Brain voxels to quantify: the brain mask less the excluded voxels."""
    brain = load_mask(inputs.brain_mask, shape)
    if isdefined(inputs.excluded_mask):
        brain &= load(inputs.excluded_mask) == 0
    return brain


def _cbf_arguments(inputs):
    return {"label_type": inputs.label_type, "t1_blood": inputs.t1_blood,
            "efficiency": inputs.efficiency, "partition": inputs.partition,
            "bolus_duration": _optional(inputs.bolus_duration),
            "slice_timing": _optional(inputs.slice_timing) or None}


class SingleDelayCBF(SimpleInterface):
    """Consensus CBF of the mean ΔM (:func:`asl.consensus.single_delay_cbf`), brain only."""

    input_spec = _SingleDelayInputSpec
    output_spec = _CBFOutputSpec

    def _run_interface(self, runtime):
        delta_m = load(self.inputs.mean_deltam, dtype=np.float64)
        brain = _quantified(self.inputs, delta_m.shape)
        cbf = consensus.single_delay_cbf(
            delta_m, load(self.inputs.m0, dtype=np.float64), delay=self.inputs.delay,
            labeling_duration=_optional(self.inputs.labeling_duration),
            **_cbf_arguments(self.inputs))
        cbf = np.where(brain, cbf, 0.0)
        self._results["cbf"] = save_like(cbf, self.inputs.mean_deltam, "cbf.nii")
        self._results["metadata"] = {**self.inputs.parameters, **self.inputs.m0_metadata,
                                     **_optional(self.inputs.extra_metadata, {})}
        return runtime


class _TimeSeriesInputSpec(_QuantifyInputSpec):
    deltam = File(exists=True, mandatory=True, desc="every ΔM estimate, 4-D")
    delay = traits.Float(mandatory=True)
    labeling_duration = traits.Float()


class _TimeSeriesOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class CBFTimeSeries(SimpleInterface):
    """Mean brain CBF of each ΔM estimate (pair) in turn, as a TSV (stability QC)."""

    input_spec = _TimeSeriesInputSpec
    output_spec = _TimeSeriesOutputSpec

    def _run_interface(self, runtime):
        delta_m = load(self.inputs.deltam, dtype=np.float64)
        brain = _quantified(self.inputs, delta_m.shape)
        cbf = consensus.single_delay_cbf(
            delta_m, load(self.inputs.m0, dtype=np.float64)[..., None],
            delay=self.inputs.delay,
            labeling_duration=_optional(self.inputs.labeling_duration),
            **_cbf_arguments(self.inputs))[brain]
        rows = [{"pair": index, "cbf": float(values.mean()), "cbf_median":
                 float(np.median(values))} for index, values in enumerate(cbf.T)]
        self._results["out_file"] = write_tsv(rows, ["pair", "cbf", "cbf_median"],
                                              "cbf_timeseries.tsv")
        return runtime


class _MultiDelayInputSpec(_QuantifyInputSpec):
    mean_deltam = File(exists=True, mandatory=True, desc="mean ΔM per delay, 4-D")
    delays = traits.List(traits.Float, mandatory=True)
    durations = traits.List(traits.Float, desc="τ per delay (PCASL/CASL)")
    counts = traits.List(traits.Int, desc="weight of each delay")
    t1_tissue = traits.Float(desc="T1 of tissue (T1' model); T1' = T1b when omitted")
    gm_fraction = File(exists=True, desc="grey-matter fraction on the ASL grid: with "
                       "wm_fraction, a voxelwise tissue T1 (unless t1_tissue is given)")
    wm_fraction = File(exists=True, desc="white-matter fraction on the ASL grid")
    t1_gm = traits.Float(desc="T1 of grey matter, s (with the fractions)")
    t1_wm = traits.Float(desc="T1 of white matter, s (with the fractions)")


class _MultiDelayOutputSpec(_CBFOutputSpec):
    att = File(exists=True)


class MultiDelayCBF(SimpleInterface):
    """CBF and ATT of every brain voxel (:class:`asl.multi_delay.MultiDelayModel`)."""

    input_spec = _MultiDelayInputSpec
    output_spec = _MultiDelayOutputSpec

    def _run_interface(self, runtime):
        delta_m = load(self.inputs.mean_deltam, dtype=np.float64)
        brain = _quantified(self.inputs, delta_m.shape)
        m0_image = load(self.inputs.m0, dtype=np.float64)
        inside = brain & (m0_image > 0)
        delays = np.asarray(self.inputs.delays, dtype=float)
        timing = _optional(self.inputs.slice_timing)
        if timing:  # (Z, K): broadcast over the voxels of each slice
            delays = delays[None, :] + np.asarray(timing)[:, None]
        t1_tissue = _optional(self.inputs.t1_tissue)
        if t1_tissue is None and isdefined(self.inputs.gm_fraction):
            t1_tissue = tissue.tissue_t1(load(self.inputs.gm_fraction, dtype=np.float64),
                                         load(self.inputs.wm_fraction, dtype=np.float64),
                                         self.inputs.t1_gm, self.inputs.t1_wm)
        model = MultiDelayModel(
            self.inputs.label_type, delays, self.inputs.t1_blood, self.inputs.efficiency,
            labeling_duration=(np.asarray(self.inputs.durations)
                               if _optional(self.inputs.durations) else None),
            bolus_duration=_optional(self.inputs.bolus_duration),
            weights=_optional(self.inputs.counts) or None,
            t1_tissue=t1_tissue, partition=self.inputs.partition)
        ratio = np.divide(delta_m, m0_image[..., None], out=np.zeros_like(delta_m),
                          where=inside[..., None])
        fit = model.fit(ratio, mask=inside)
        self._results["cbf"] = save_like(fit.cbf, self.inputs.m0, "cbf.nii")
        self._results["att"] = save_like(fit.att, self.inputs.m0, "att.nii")
        self._results["metadata"] = {**self.inputs.parameters, **self.inputs.m0_metadata,
                                     **_optional(self.inputs.extra_metadata, {}),
                                     "FitIterations": fit.iterations}
        return runtime


class _MeanCBFInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)
    volume_types = traits.List(traits.Str, mandatory=True)
    brain_mask = File(exists=True, mandatory=True)
    parameters = traits.Dict()


class MeanCBFVolumes(SimpleInterface):
    """Mean of the scanner's ``cbf`` volumes, for series that hold no ΔM."""

    input_spec = _MeanCBFInputSpec
    output_spec = _CBFOutputSpec

    def _run_interface(self, runtime):
        series = load(self.inputs.in_file, dtype=np.float64)
        if series.ndim == 3:
            series = series[..., None]
        with refused(self.inputs.in_file):
            quality.check_series(series)
        ctx = context.ASLContext(tuple(self.inputs.volume_types))
        cbf = series[..., list(ctx.indices("cbf"))].mean(axis=-1)
        brain = load_mask(self.inputs.brain_mask, cbf.shape)
        self._results["cbf"] = save_like(np.where(brain, cbf, 0.0), self.inputs.in_file,
                                         "cbf.nii")
        self._results["metadata"] = dict(self.inputs.parameters)
        return runtime
