"""Gamma-variate first pass of the tissue curves and the AIF (``--first-pass gamma``)."""

import numpy as np
from nipype.interfaces.base import (
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bids_perfusion.dsc import first_pass
from bids_perfusion.interfaces.nifti import load, load_mask, save_like
from bids_perfusion.interfaces.specs import CurvesInputSpec
from bids_perfusion.tsv import read_tsv_columns, write_tsv


class _FirstPassFitOutputSpec(TraitedSpec):
    delta_r2star = File(exists=True, desc="fitted first pass of every brain voxel, s^-1")
    aif_tsv = File(exists=True, desc="the AIF table with its columns replaced by their fits")
    metadata = traits.Dict(desc="model, window and fit quality, for the map sidecars")


class FirstPassFit(SimpleInterface):
    """Replace ΔR2* curves and the AIF by their gamma-variate first passes
    (:func:`dsc.first_pass.fit_gamma_variate`)."""

    input_spec = CurvesInputSpec
    output_spec = _FirstPassFitOutputSpec

    def _run_interface(self, runtime):
        delta = load(self.inputs.delta_r2star)
        brain = load_mask(self.inputs.brain_mask, delta.shape)
        columns = read_tsv_columns(self.inputs.aif_tsv)
        times = columns["time"]
        tissue = first_pass.fit_gamma_variate(delta[brain], times)
        fitted = np.zeros_like(delta)
        fitted[brain] = tissue.curves
        names = [name for name in columns if name != "time"]
        arterial = first_pass.fit_gamma_variate(np.stack([columns[n] for n in names]), times)
        rows = [{"time": t, **dict(zip(names, values, strict=True))}
                for t, values in zip(times, arterial.curves.T, strict=True)]
        self._results["delta_r2star"] = save_like(fitted, self.inputs.delta_r2star,
                                                  "delta_r2star_first_pass.nii")
        self._results["aif_tsv"] = write_tsv(rows, ["time", *names], "aif_first_pass.tsv")
        concentration = names.index("concentration")
        self._results["metadata"] = {
            "FirstPass": "gamma",
            "FirstPassModel": "K (t - t0)^alpha exp(-(t - t0)/beta), fitted from the first "
                              "frame to the downslope (Madsen 1992; Benner et al. 1997)",
            "FirstPassDownslopeFraction": first_pass.DOWNSLOPE_FRACTION,
            "FirstPassMedianRSquared": float(np.nanmedian(tissue.r_squared)),
            "FirstPassAIFRSquared": float(arterial.r_squared[concentration]),
            "FirstPassAIFParameters": {
                "t0": float(arterial.t0[concentration]),
                "alpha": float(arterial.alpha[concentration]),
                "beta": float(arterial.beta[concentration]),
            },
        }
        return runtime
