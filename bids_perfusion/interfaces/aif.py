"""Arterial input function: automatic selection or a given mask, written as a TSV."""

import numpy as np
from nipype.interfaces.base import (
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bids_perfusion.dsc import aif, relaxivity
from bids_perfusion.interfaces.nifti import load, load_mask, save_like
from bids_perfusion.interfaces.specs import DeltaR2StarInputSpec, RelaxivityInputSpec
from bids_perfusion.tsv import write_tsv

#: Columns of the AIF table.
AIF_COLUMNS = ("time", "delta_r2star", "concentration")


class _ArterialInputFunctionInputSpec(DeltaR2StarInputSpec, RelaxivityInputSpec):
    frame_times = traits.List(traits.Float, mandatory=True)
    aif_mask = File(exists=True, desc="arterial voxels; automatic selection when absent")
    signal_metadata = traits.Dict(desc="baseline and formula of ΔR2*, copied to the sidecar")


class _ArterialInputFunctionOutputSpec(TraitedSpec):
    aif_tsv = File(exists=True, desc="time (s), ΔR2* (s^-1), concentration (mM)")
    aif_mask = File(exists=True, desc="voxels averaged into the AIF")
    metadata = traits.Dict()


class ArterialInputFunction(SimpleInterface):
    """Mean ΔR2* of arterial voxels, converted to concentration with the blood relaxivity."""

    input_spec = _ArterialInputFunctionInputSpec
    output_spec = _ArterialInputFunctionOutputSpec

    def _run_interface(self, runtime):
        delta = load(self.inputs.delta_r2star)
        brain = load_mask(self.inputs.brain_mask, delta.shape)
        times = np.asarray(self.inputs.frame_times)
        if self.inputs.aif_mask:
            selection = aif.aif_from_mask(delta, load_mask(self.inputs.aif_mask, delta.shape))
            method = f"mean over the given mask {self.inputs.aif_mask}"
        else:
            echo_times = self.inputs.signal_metadata.get("EchoTime") or [None]
            selection = aif.select_aif(delta, brain, times, echo_time=echo_times[0])
            method = "automatic (Mouridsen et al. 2006; Peruzzo et al. 2011)"
        relax = relaxivity.Relaxivities.from_sidecar(self.inputs.relaxivity)
        concentration = relaxivity.blood_concentration(selection.curve, relax.blood_linear,
                                                       relax.blood_quadratic)
        rows = [dict(zip(AIF_COLUMNS, values, strict=True))
                for values in zip(times, selection.curve, concentration, strict=True)]
        self._results["aif_tsv"] = write_tsv(rows, AIF_COLUMNS, "aif.tsv")
        self._results["aif_mask"] = save_like(selection.mask, self.inputs.delta_r2star,
                                              "aif_mask.nii", dtype=np.uint8)
        self._results["metadata"] = {
            **self.inputs.signal_metadata,
            "AIFSelection": method,
            "AIFVoxels": int(selection.mask.sum()),
            **self.inputs.relaxivity,
        }
        return runtime
