"""stU-Net inference: CBV (mL/100 g) from the raw, possibly low-dose, DSC series.

Reads the first echo of the series, the brain mask and the run's area-ratio CBV (only
for the units: :func:`bids_perfusion.nn.cbv_models.to_units`), and writes
the CBV map of the strip model (:mod:`bids_perfusion.nn.cbv_models`) with a metadata dict
for the sidecar (the weights' sha256, device, timing, unit calibration).
"""


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

from bids_perfusion.interfaces.nifti import load, load_mask, save_like


class _StUNetInferenceInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True,
                                desc="DSC echo files; the model reads the first")
    brain_mask = File(exists=True, mandatory=True)
    cbv = File(exists=True, mandatory=True,
               desc="the run's area-ratio CBV, mL/100 g: the units of the output")
    weights = File(exists=True, desc="stU-Net weights (.safetensors with its .json card); "
                                     "default: the bundled weights")
    device = traits.Str("auto", usedefault=True, desc="auto, cpu, cuda or cuda:N")
    batch_size = traits.Int(desc="strips per forward pass; default: as many as fit the "
                                 "device's free memory (nn.device.batch_size), 64 on the CPU")


class _StUNetInferenceOutputSpec(TraitedSpec):
    cbv = File(exists=True, desc="mL/100 g (the units of the input CBV)")
    metadata = traits.Dict()


class StUNetInference(SimpleInterface):
    """CBV of the stU-Net (or another strip model) from the raw series."""

    input_spec = _StUNetInferenceInputSpec
    output_spec = _StUNetInferenceOutputSpec

    def _run_interface(self, runtime):
        from bids_perfusion.nn import cbv_models
        from bids_perfusion.nn import device as devices
        from bids_perfusion.nn.training_ranges import check_input
        from bids_perfusion.nn.weights import weights_sidecar

        series = load(self.inputs.in_files[0])
        brain = load_mask(self.inputs.brain_mask, series.shape[:3])
        reference = load(self.inputs.cbv)
        device = devices.select_device(self.inputs.device)
        weights = self.inputs.weights or None
        model, preprocessing, card = cbv_models.load_model(weights, device)
        strip_values = preprocessing.strip_width * preprocessing.size * series.shape[-1]
        batch = (self.inputs.batch_size if isdefined(self.inputs.batch_size) else
                 devices.batch_size(device, devices.INFERENCE_BYTES["stunet"] * strip_values,
                                    64))
        cbv, info = cbv_models.estimate_cbv(model, preprocessing, series, brain, reference,
                                            batch, device)
        self._results["cbv"] = save_like(cbv, self.inputs.cbv, "stunet_cbv.nii")
        self._results["metadata"] = {
            "EstimationMethod": "spatio-temporal U-Net (stU-Net) from the raw DSC series"
                                if card["model"] == "stunet" else
                                f"strip model {card['model']!r} from the raw DSC series",
            **weights_sidecar(weights or cbv_models.bundled_weights(), card),
            "UnitsCalibration": {
                "Description": info["description"],
                "Offset": round(info["offset"], 6), "Scale": round(info["scale"], 6)},
            "Device": devices.describe(device),
            "InferenceSeconds": round(float(info["seconds"]), 3),
            "InferenceBatchSize": int(batch),
            "BrainVoxels": int(np.count_nonzero(brain)),
            "OutsideTrainingRanges": check_input(card, {"Frames": series.shape[-1]}, "stU-Net"),
        }
        return runtime
