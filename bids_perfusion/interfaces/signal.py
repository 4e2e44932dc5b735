"""From the raw DSC series to ΔR2*(t): steady state, baseline and relaxation-rate change."""

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_perfusion.dsc.signal import series_to_delta_r2star
from bids_perfusion.errors import InputDataError
from bids_perfusion.interfaces.nifti import load, load_mask, refused, save_like


class _SignalToDeltaR2StarInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True,
                                desc="echo files of one run, ascending echo time")
    echo_times = traits.List(traits.Float, mandatory=True, desc="echo times, s")
    repetition_time = traits.Float(mandatory=True, desc="frame interval, s")
    brain_mask = File(exists=True, mandatory=True, desc="brain mask on the series grid")
    source_files = traits.List(traits.Str, desc="the user's echo files in_files come from "
                               "(e.g. before a low-dose simulation), named in errors")


class _SignalToDeltaR2StarOutputSpec(TraitedSpec):
    delta_r2star = File(exists=True, desc="ΔR2* (s^-1) of the frames from the baseline on")
    baseline_image = File(exists=True, desc="mean baseline signal of the first echo")
    frame_times = traits.List(traits.Float, desc="acquisition time of the kept frames, s")
    metadata = traits.Dict(desc="frames discarded, baseline window and formula")


class SignalToDeltaR2Star(SimpleInterface):
    """Drop the approach to steady state, find the baseline, convert signal to ΔR2*.

    One echo: ``ΔR2* = -ln(S/S0)/TE``. Two or more: the first two echoes give the
    T1-insensitive ``ΔR2* = ln[(S1/S1,0)/(S2/S2,0)]/(TE2 - TE1)``. S0 is each voxel's
    mean over the baseline frames of the mean brain curve.
    """

    input_spec = _SignalToDeltaR2StarInputSpec
    output_spec = _SignalToDeltaR2StarOutputSpec

    def _run_interface(self, runtime):
        series = [load(path) for path in self.inputs.in_files]
        names = (self.inputs.source_files if isdefined(self.inputs.source_files)
                 else self.inputs.in_files)
        mask = load_mask(self.inputs.brain_mask, series[0].shape)
        for path, data in zip(names, series, strict=True):
            # a sum in float64 of finite float32 values is finite: one pass, no copy
            bad = mask & ~np.isfinite(data.sum(axis=-1, dtype=np.float64))
            if bad.any():
                raise InputDataError(
                    f"{path}: {int(bad.sum())} brain voxel(s) hold NaN or infinite values "
                    "in some frames (the baseline S0 and ΔR2* cannot be computed there); "
                    "convert the series again, or give a brain mask with --derivatives "
                    "that leaves them out.")
        with refused(names[0], "it cannot be quantified as acquired: a DSC series needs "
                     "the whole bolus passage after at least 3 baseline frames"):
            delta, start, stop = series_to_delta_r2star(series, self.inputs.echo_times, mask)
        te = self.inputs.echo_times
        formula = "-ln(S/S0)/TE" if len(series) == 1 else "ln[(S1/S1,0)/(S2/S2,0)]/(TE2-TE1)"
        reference = self.inputs.in_files[0]
        self._results["delta_r2star"] = save_like(delta, reference, "delta_r2star.nii")
        self._results["baseline_image"] = save_like(
            series[0][..., start:stop].mean(axis=-1), reference, "baseline.nii")
        tr = self.inputs.repetition_time
        self._results["frame_times"] = [float(t) for t in (start + np.arange(
            delta.shape[-1])) * tr]
        self._results["metadata"] = {
            "SteadyStateFramesDiscarded": int(start),
            "BaselineFrames": [int(start), int(stop - 1)],
            "DeltaR2StarFormula": formula,
            "EchoTime": list(te),
            "RepetitionTime": tr,
        }
        return runtime
