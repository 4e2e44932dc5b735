"""Leakage correction of ΔR2* and CBV: BSW (2006), its transit variant, bidirectional (2016)."""

import numpy as np
from nipype.interfaces.base import (
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bids_perfusion.dsc import leakage
from bids_perfusion.interfaces.maps import first_pass_cbv
from bids_perfusion.interfaces.nifti import load, load_mask, save_like
from bids_perfusion.interfaces.specs import CurvesInputSpec, ScalingInputSpec
from bids_perfusion.voxels import scatter

#: Sidecar text of each model: its equation and source.
DESCRIPTIONS = {
    "bsw": "Boxerman-Schmainda-Weisskoff (AJNR 2006;27:859): "
           "dR2*(t) = K1 ref(t) - K2 int_0^t ref",
    "bsw-transit": "Boxerman-Schmainda-Weisskoff (AJNR 2006;27:859) with transit-time "
                   "terms: dR2*(t) = a0 ref + sum_tau a_tau (ref * exp(-t/tau)/tau) "
                   "- K2 int_0^t ref (bids-perfusion, dsc/leakage.py)",
    "bidirectional": "bidirectional exchange (Leu et al., AJNR 2016;37:1440) with transit-time "
                     "terms (after Bjornerud et al., JCBFM 2011;31:2041): dR2*(t) = "
                     "sum_j a_j (ref * h_j)(t) - K2 int_0^t ref(s) exp(-kep (t-s)) ds, "
                     "h_0 = delta, h_tau = exp(-t/tau)/tau (dsc/leakage.py)",
}


class _LeakageCorrectionInputSpec(CurvesInputSpec, ScalingInputSpec):
    aif_mask = File(exists=True, mandatory=True, desc="arterial voxels, left out of the reference")
    frame_times = traits.List(traits.Float, mandatory=True)
    model = traits.Enum(*leakage.MODELS, usedefault=True, desc="leakage model (dsc/leakage.py)")


class _LeakageCorrectionOutputSpec(TraitedSpec):
    k2 = File(exists=True, desc="leakage constant K2, s^-1")
    cbv = File(exists=True, desc="leakage-corrected CBV")
    metadata = traits.Dict()


class LeakageCorrection(SimpleInterface):
    """Fit the leakage ``model`` to every brain voxel; corrected CBV from the corrected ΔR2*.

    bsw: ``ΔR2* = K1 ref − K2 ∫ref``; bsw-transit: with transit kernels; bidirectional:
    ``ΔR2* = K1 ref − K2 ∫ref(τ) e^(−kep(t−τ))dτ`` (equations in :mod:`dsc.leakage`).
    """

    input_spec = _LeakageCorrectionInputSpec
    output_spec = _LeakageCorrectionOutputSpec

    def _run_interface(self, runtime):
        delta = load(self.inputs.delta_r2star)
        brain = load_mask(self.inputs.brain_mask, delta.shape)
        times = np.asarray(self.inputs.frame_times)
        curves = delta[brain]  # (V, T): the fit reads the brain's curves only, once
        del delta
        tissue = ~load_mask(self.inputs.aif_mask, brain.shape)[brain]
        used = leakage.non_enhancing(curves, tissue)
        reference = curves[used].mean(axis=0)
        model = self.inputs.model
        fit = leakage.correct(model, curves, reference, times)
        corrected = fit.corrected
        cbv = np.zeros(brain.shape, dtype=np.float32)
        cbv[brain], _ = first_pass_cbv(corrected, self.inputs)
        self._results["k2"] = save_like(scatter(fit.k2, brain), self.inputs.delta_r2star,
                                        "k2.nii")
        self._results["cbv"] = save_like(cbv, self.inputs.delta_r2star, "cbv_corrected.nii")
        leak_term = corrected - curves  # the fitted leakage term, s^-1
        self._results["metadata"] = {
            "LeakageModel": model,
            "LeakageCorrection": DESCRIPTIONS[model],
            **({"TransitKernels": list(leakage.TRANSIT_KERNELS)}
               if model != "bsw" else {}),
            "LeakageFit": {
                "Method": "linear least squares, all brain voxels at once",
                "ReferenceVoxels": int(used.sum()),
                "EnhancingZ": leakage.ENHANCING_Z, "T2StarZ": leakage.T2STAR_Z,
                "MedianK1": float(np.median(fit.k1)),
                "MedianK2": float(np.median(fit.k2)),
                **({"MedianKep": float(np.median(fit.kep))}
                   if fit.kep is not None else {}),
                "MedianMeanAbsoluteLeakageTerm": float(np.median(np.abs(leak_term).mean(axis=-1))),
            },
            "kH": self.inputs.kh, "BrainDensity": self.inputs.rho,
            **self.inputs.relaxivity,
        }
        return runtime
