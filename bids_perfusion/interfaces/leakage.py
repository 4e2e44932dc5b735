"""Leakage correction of ΔR2* and CBV (Boxerman, Schmainda and Weisskoff 2006)."""

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bids_perfusion.dsc import leakage
from bids_perfusion.interfaces.maps import first_pass_cbv
from bids_perfusion.interfaces.nifti import load, load_mask, save_like


class _LeakageCorrectionInputSpec(BaseInterfaceInputSpec):
    delta_r2star = File(exists=True, mandatory=True)
    brain_mask = File(exists=True, mandatory=True)
    aif_tsv = File(exists=True, mandatory=True)
    aif_mask = File(exists=True, mandatory=True, desc="arterial voxels, left out of the reference")
    frame_times = traits.List(traits.Float, mandatory=True)
    kh = traits.Float(mandatory=True)
    rho = traits.Float(mandatory=True)
    scaled = traits.Bool(True, usedefault=True)
    relaxivity = traits.Dict(mandatory=True, desc="relaxivities of the run's field "
                                                  "(dsc.relaxivity.Relaxivities.sidecar())")


class _LeakageCorrectionOutputSpec(TraitedSpec):
    k2 = File(exists=True, desc="leakage constant K2, s^-1")
    cbv = File(exists=True, desc="leakage-corrected CBV")
    metadata = traits.Dict()


class LeakageCorrection(SimpleInterface):
    """``ΔR2*(t) ≈ K1 ref(t) - K2 ∫ref``; corrected CBV from ``ΔR2* + K2 ∫ref``."""

    input_spec = _LeakageCorrectionInputSpec
    output_spec = _LeakageCorrectionOutputSpec

    def _run_interface(self, runtime):
        delta = load(self.inputs.delta_r2star)
        brain = load_mask(self.inputs.brain_mask, delta.shape)
        times = np.asarray(self.inputs.frame_times)
        tissue = brain & ~load_mask(self.inputs.aif_mask, delta.shape)
        reference = leakage.reference_curve(delta, tissue)
        fit = leakage.bsw_correction(delta[brain], reference, times)
        k2 = np.zeros(brain.shape, dtype=np.float32)
        cbv = np.zeros(brain.shape, dtype=np.float32)
        k2[brain] = fit.k2
        cbv[brain], _ = first_pass_cbv(fit.corrected, self.inputs)
        self._results["k2"] = save_like(k2, self.inputs.delta_r2star, "k2.nii.gz")
        self._results["cbv"] = save_like(cbv, self.inputs.delta_r2star, "cbv_corrected.nii.gz")
        self._results["metadata"] = {
            "LeakageCorrection": "Boxerman-Schmainda-Weisskoff (AJNR 2006;27:859) with "
                                 "transit-time terms (dsc/leakage.py)",
            "TransitKernels": list(leakage.TRANSIT_KERNELS),
            "kH": self.inputs.kh, "BrainDensity": self.inputs.rho,
            **self.inputs.relaxivity,
        }
        return runtime
