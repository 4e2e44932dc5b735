"""PHAE inference: MTT from the physics-informed autoencoder, CBV by area ratio, CBF = CBV/MTT.

The input's TR, frames, field and AIF peak and arrival are checked against the model
card's ``training_ranges`` (:mod:`bids_perfusion.nn.training_ranges`): values outside are
logged as warnings and listed in the sidecars' ``OutsideTrainingRanges``.

Mirrors :class:`bids_perfusion.interfaces.deconvolution.Deconvolve`: it reads ΔR2*, the
brain mask and the AIF table, and writes CBF (mL/100 g/min), MTT (s) and CBV (mL/100 g)
maps plus a metadata dict for the sidecars (the weights' sha256, device, timing). The
model, the normalisation and the units are in :mod:`bids_perfusion.nn.phae`.
"""

import numpy as np
from nipype.interfaces.base import (
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_perfusion.dsc import relaxivity, timing
from bids_perfusion.interfaces.nifti import load, load_mask, save_like
from bids_perfusion.interfaces.specs import CurvesInputSpec, ScalingInputSpec
from bids_perfusion.tsv import read_tsv_columns


class _PHAEInferenceInputSpec(CurvesInputSpec, ScalingInputSpec):
    weights = File(exists=True, desc="PHAE weights (.safetensors with its .json card); "
                                     "default: the bundled weights")
    device = traits.Str("auto", usedefault=True, desc="auto, cpu, cuda or cuda:N")
    batch_size = traits.Int(desc="voxels per forward pass; default: as many as fit the "
                                 "device's free memory (nn.device.batch_size), "
                                 "phae.CPU_BATCH_SIZE (128) on the CPU")


class _PHAEInferenceOutputSpec(TraitedSpec):
    cbf = File(exists=True, desc="mL/100 g/min")
    mtt = File(exists=True, desc="s")
    cbv = File(exists=True, desc="mL/100 g, first-pass area ratio")
    metadata = traits.Dict()


class PHAEInference(SimpleInterface):
    """Encode every brain voxel's concentration curve with the AIF into MTT; CBF = CBV/MTT."""

    input_spec = _PHAEInferenceInputSpec
    output_spec = _PHAEInferenceOutputSpec

    def _run_interface(self, runtime):
        from bids_perfusion.nn import device as devices
        from bids_perfusion.nn import phae
        from bids_perfusion.nn.training_ranges import check_input, dsc_acquisition
        from bids_perfusion.nn.weights import weights_sidecar

        delta = load(self.inputs.delta_r2star)
        brain = load_mask(self.inputs.brain_mask, delta.shape)
        columns = read_tsv_columns(self.inputs.aif_tsv)
        times = columns["time"]
        device = devices.select_device(self.inputs.device)
        weights = self.inputs.weights or None
        model, card = phae.load_model(weights, device)
        tissue = relaxivity.tissue_concentration(
            delta, self.inputs.relaxivity["TissueRelaxivity"]).astype(np.float32)
        end = timing.bolus_end(tissue[brain].mean(axis=0))
        batch = (self.inputs.batch_size if isdefined(self.inputs.batch_size) else
                 devices.batch_size(device, devices.INFERENCE_BYTES["phae"] * len(times),
                                    phae.CPU_BATCH_SIZE))
        fit = phae.PHAEModel(model, columns["concentration"], times, cbv_end=end,
                             kh=self.inputs.kh, rho=self.inputs.rho,
                             scaled=self.inputs.scaled, batch_size=batch,
                             device=device).fit(tissue, mask=brain)
        outside = check_input(card, dsc_acquisition(
            columns["concentration"], times,
            self.inputs.relaxivity["MagneticFieldStrength"]), "PHAE")
        reference = self.inputs.delta_r2star
        for name in ("cbf", "mtt", "cbv"):
            self._results[name] = save_like(getattr(fit, name), reference,
                                            f"phae_{name}.nii")
        self._results["metadata"] = {
            "EstimationMethod": "physics-informed autoencoder (PHAE)",
            **weights_sidecar(weights or phae.bundled_weights(), card),
            "Device": devices.describe(device),
            "InferenceSeconds": round(float(fit.seconds), 3),
            "InferenceBatchSize": int(batch),
            "FrameInterval": float(np.mean(np.diff(times))),
            "CBVIntegrationFrames": int(end),
            "OutsideTrainingRanges": outside,
            "kH": self.inputs.kh if self.inputs.scaled else None,
            "BrainDensity": self.inputs.rho if self.inputs.scaled else None,
            **self.inputs.relaxivity,
        }
        return runtime
