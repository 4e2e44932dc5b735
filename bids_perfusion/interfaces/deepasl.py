"""ASL denoising: the mean ΔM of a run through DeepASL or Dilated Conv (single delay) or
the multi-delay DeepASL (each delay's mean ΔM).

Reads the mean ΔM, the M0 the CBF map divides by and the brain mask (less the excluded
voxels), loads the denoiser with its model card (:func:`bids_perfusion.nn.deepasl.load_model`,
sha256 checked) and writes the denoised ΔM (:func:`bids_perfusion.nn.deepasl.denoise`)
with the sidecar entries that record the model, its λ and its weights.
"""

import time

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_perfusion.interfaces.nifti import load, load_mask, save_like

#: What each denoiser is, for the sidecars.
DESCRIPTIONS = {
    "deepasl": "DeepASL residual FCN with the kinetic-model loss (Ulas et al., MICCAI 2018)",
    "dilatedconv": "Dilated Conv (Kim et al., Radiology 2018;287:658), mean squared error",
    "deepasl-multidelay": "DeepASL residual FCN applied to each delay, trained with the "
                          "general kinetic model (CBF and ATT) in the loss",
}


class _DenoiseInputSpec(BaseInterfaceInputSpec):
    mean_deltam = File(exists=True, mandatory=True,
                       desc="mean ΔM, 3-D, or 4-D with one volume per delay")
    m0 = File(exists=True, mandatory=True, desc="M0 used for CBF (PrepareM0)")
    brain_mask = File(exists=True, mandatory=True)
    excluded_mask = File(exists=True, mandatory=True,
                         desc="brain voxels left out of CBF (PrepareM0)")
    method = traits.Enum("deepasl", "dilatedconv", "deepasl-multidelay", mandatory=True)
    weights = File(exists=True, desc="weights (.safetensors with its .json card); default: "
                                     "the bundled weights of the method")
    device = traits.Str("auto", usedefault=True, desc="auto, cpu, cuda or cuda:N")
    batch_slices = traits.Int(desc="slices per forward pass; default: as many as fit the "
                                   "device's free memory (nn.device.batch_size), 8 on the CPU")


class _DenoiseOutputSpec(TraitedSpec):
    deltam = File(exists=True, desc="denoised mean ΔM, units of the input")
    metadata = traits.Dict(desc="the model, its λ and weights, for the sidecars")


class DenoiseDeltaM(SimpleInterface):
    """Denoised mean ΔM (axial slices through the 2-D network), on the chosen device."""

    input_spec = _DenoiseInputSpec
    output_spec = _DenoiseOutputSpec

    def _run_interface(self, runtime):
        from bids_perfusion.nn import deepasl
        from bids_perfusion.nn import device as devices
        from bids_perfusion.nn.training_ranges import check_input
        from bids_perfusion.nn.weights import bundled_weights, weights_sidecar

        delta_m = load(self.inputs.mean_deltam, dtype=np.float64)
        m0 = load(self.inputs.m0, dtype=np.float64)
        brain = load_mask(self.inputs.brain_mask, delta_m.shape)
        brain &= load(self.inputs.excluded_mask) == 0
        method = self.inputs.method
        weights = self.inputs.weights or None
        device = devices.select_device(self.inputs.device)
        model, card = deepasl.load_model(method, weights)
        scale = deepasl.intensity_scale(m0, brain)
        slice_values = delta_m.shape[0] * delta_m.shape[1]
        batch = (self.inputs.batch_slices if isdefined(self.inputs.batch_slices) else
                 devices.batch_size(device, devices.INFERENCE_BYTES["deepasl"] * slice_values,
                                    8))
        started = time.perf_counter()
        denoised = deepasl.denoise(model, delta_m, scale, device, batch)
        seconds = time.perf_counter() - started
        self._results["deltam"] = save_like(denoised, self.inputs.mean_deltam,
                                            f"{method.replace('-', '_')}_deltam.nii")
        self._results["metadata"] = {
            "Denoising": DESCRIPTIONS[method],
            "DenoisingModel": method,
            "KineticLossWeight": card["configuration"].get("kinetic_weight"),
            **weights_sidecar(weights or bundled_weights(method), card),
            "DenoisingIntensityScale": scale,
            "DenoisingIntensityScaleDescription": "ΔM was divided by this (median M0 of the "
                                                  "brain / 100) before the network",
            "Device": devices.describe(device),
            "InferenceBatchSize": int(batch),
            "InferenceSeconds": round(seconds, 3),
            "OutsideTrainingRanges": check_input(
                card, {"Delays": delta_m.shape[3] if delta_m.ndim == 4 else 1}, method),
        }
        return runtime
