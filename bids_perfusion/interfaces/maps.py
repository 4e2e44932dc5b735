"""Maps that need no deconvolution: CBV by area ratio, time to peak and bolus arrival."""

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_perfusion.dsc import maps, normalisation, relaxivity, timing
from bids_perfusion.interfaces.nifti import load, load_mask, save_like
from bids_perfusion.interfaces.specs import (
    CurvesInputSpec,
    DeltaR2StarInputSpec,
    ScalingInputSpec,
)
from bids_perfusion.tsv import read_tsv_columns


class _BloodVolumeInputSpec(CurvesInputSpec, ScalingInputSpec):
    first_pass = traits.Dict(desc="first-pass fit for the sidecar; FirstPass none if absent")


class _BloodVolumeOutputSpec(TraitedSpec):
    cbv = File(exists=True, desc="mL/100 g (mL/100 mL when not scaled)")
    metadata = traits.Dict()


class BloodVolume(SimpleInterface):
    """``CBV = 100 (kH/rho) ∫C_tis / ∫C_aif`` over the first pass (Rempp et al. 1994)."""

    input_spec = _BloodVolumeInputSpec
    output_spec = _BloodVolumeOutputSpec

    def _run_interface(self, runtime):
        delta = load(self.inputs.delta_r2star)
        brain = load_mask(self.inputs.brain_mask, delta.shape)
        cbv = np.zeros(brain.shape, dtype=np.float32)
        cbv[brain], end = first_pass_cbv(delta[brain], self.inputs)
        self._results["cbv"] = save_like(cbv, self.inputs.delta_r2star, "cbv.nii")
        self._results["metadata"] = {"kH": self.inputs.kh, "BrainDensity": self.inputs.rho,
                                     "Scaled": self.inputs.scaled,
                                     "IntegrationFrames": end,
                                     **self.inputs.relaxivity,
                                     **first_pass_metadata(self.inputs)}
        return runtime


def first_pass_metadata(inputs):
    """The sidecar keys of the first-pass fit the curves went through, or FirstPass none."""
    return inputs.first_pass if isdefined(inputs.first_pass) else {"FirstPass": "none"}


def first_pass_cbv(delta_r2star, inputs):
    """Area-ratio CBV of ΔR2* curves (N, T) integrated to the end of the bolus passage.

    The end is :func:`dsc.timing.bolus_end` of the mean curve; ``inputs`` gives the AIF
    TSV, kH, rho, the scaling and the relaxivities (tissue ``ΔR2* = r_t C``). Returns
    the CBV and the number of frames integrated.
    """
    columns = read_tsv_columns(inputs.aif_tsv)
    tissue = relaxivity.tissue_concentration(delta_r2star,
                                             inputs.relaxivity["TissueRelaxivity"])
    end = timing.bolus_end(tissue.mean(axis=0, dtype=np.float64))
    cbv = maps.cbv_area_ratio(tissue[:, :end], columns["concentration"][:end],
                              columns["time"][:end], kh=inputs.kh, rho=inputs.rho,
                              scaled=inputs.scaled)
    return cbv, end


class _BolusTimingInputSpec(DeltaR2StarInputSpec):
    frame_times = traits.List(traits.Float, mandatory=True)


class _BolusTimingOutputSpec(TraitedSpec):
    ttp = File(exists=True, desc="time to peak, s from the first frame")
    bat = File(exists=True, desc="bolus arrival time, s from the first frame")


class BolusTiming(SimpleInterface):
    """Time to peak and bolus arrival time of each voxel's ΔR2* curve."""

    input_spec = _BolusTimingInputSpec
    output_spec = _BolusTimingOutputSpec

    def _run_interface(self, runtime):
        delta = load(self.inputs.delta_r2star)
        brain = load_mask(self.inputs.brain_mask, delta.shape)
        times = np.asarray(self.inputs.frame_times)
        for name, function in (("ttp", timing.time_to_peak),
                               ("bat", timing.bolus_arrival_time)):
            values = np.zeros(brain.shape, dtype=np.float32)
            values[brain] = function(delta[brain], times)
            self._results[name] = save_like(values, self.inputs.delta_r2star,
                                            f"{name}.nii")
        return runtime


class _RelativeMapsInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True)
    nawm_mask = File(exists=True, mandatory=True)


class _RelativeMapsOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(File(exists=True), desc="maps over their NAWM median")
    references = traits.List(traits.Float, desc="NAWM median of each map")


class RelativeMaps(SimpleInterface):
    """``rX = X / median_NAWM(X)`` for each map (:func:`dsc.normalisation.relative_map`)."""

    input_spec = _RelativeMapsInputSpec
    output_spec = _RelativeMapsOutputSpec

    def _run_interface(self, runtime):
        outputs, references = [], []
        for index, path in enumerate(self.inputs.in_files):
            values = load(path)
            nawm = load_mask(self.inputs.nawm_mask, values.shape)
            relative, reference = normalisation.relative_map(values, nawm)
            references.append(reference)
            outputs.append(save_like(relative, path, f"relative{index:02d}.nii"))
        self._results["out_files"] = outputs
        self._results["references"] = references
        return runtime
