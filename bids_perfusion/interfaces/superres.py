"""Spatio-temporal super-resolution of a DSC run before its quantification
(:mod:`bids_perfusion.nn.superres_inference`), and its masks carried onto the new grid."""

import logging
import time
from pathlib import Path

import nibabel as nib
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

from bids_perfusion.constants import SUPERRES_MAX_NMSE, SUPERRES_METHODS
from bids_perfusion.errors import InputDataError

LOGGER = logging.getLogger("nipype.interface")


class _SuperResolveInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True, desc="DSC echo files")
    method = traits.Enum(*SUPERRES_METHODS, mandatory=True,
                         desc="node-liif: the neural-ODE + LIIF model; linear: bilinear in "
                              "plane and linear in time")
    space = traits.Float(2.0, usedefault=True, desc="in-plane scale (> 0)")
    time = traits.Int(4, usedefault=True, desc="frames per acquired frame interval (>= 1)")
    repetition_time = traits.Float(mandatory=True, desc="acquired frame interval, s")
    weights = File(exists=True, desc="node-liif weights (.safetensors with its .json card)")
    device = traits.Str("auto", usedefault=True, desc="auto, cpu, cuda or cuda:N")
    max_queries = traits.Int(desc="queries decoded at once (bounds memory); default: as "
                                  "many as fit the device's free memory "
                                  "(nn.device.batch_size), nn.superres.CPU_MAX_QUERIES on "
                                  "the CPU")
    max_nmse = traits.Float(SUPERRES_MAX_NMSE, usedefault=True,
                            desc="refuse a series whose frames at the acquired times do "
                                 "not reproduce the acquired frames within this NMSE")


class _SuperResolveOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(File(exists=True), desc="super-resolved echo files")
    reference = File(exists=True, desc="the first of them: the grid of the run's maps")
    metadata = traits.Dict(desc="sidecar record of the super-resolution")


class SuperResolve(SimpleInterface):
    """Each echo of the run on the super-resolved grid: in-plane size × ``space``, frame
    interval TR/``time`` (:func:`~bids_perfusion.nn.superres_inference.output_shape`), by
    the model (``node-liif``) or by interpolation (``linear``). Written uncompressed in
    the working directory, float32, with the affine of the same field of view.

    The super-resolved frames at the acquired times, brought back to the acquired grid,
    must reproduce the acquired frames
    (:func:`~bids_perfusion.nn.superres_inference.acquired_frames_nmse` ≤ ``max_nmse``);
    otherwise the run is refused (weights that do not fit the data), naming the file,
    the error and the fix."""

    input_spec = _SuperResolveInputSpec
    output_spec = _SuperResolveOutputSpec

    def _run_interface(self, runtime):
        from bids_perfusion.nn import superres_inference as inference

        inputs = self.inputs
        render, record = self._renderer()
        started = time.perf_counter()
        outputs, errors = [], []
        for index, path in enumerate(inputs.in_files):
            image = nib.load(path)
            series = np.asarray(image.dataobj, dtype=np.float32)
            out = render(series)
            errors.append(inference.acquired_frames_nmse(series, out, inputs.time))
            if errors[-1] > inputs.max_nmse:
                raise InputDataError(
                    f"{path}: the series super-resolved by {inputs.method} does not "
                    f"reproduce the acquired frames (NMSE {errors[-1]:.3g} > "
                    f"{inputs.max_nmse:g}): {record.get('ModelWeights', 'the method')} "
                    "does not fit these data; train weights on data like these "
                    "(bids-perfusion-train superres), use --dsc-superres linear, or raise "
                    "--superres-max-nmse")
            header = image.header.copy()
            header.set_data_dtype(np.float32)
            affine = inference.output_affine(image.affine, series.shape, out.shape)
            written = nib.Nifti1Image(out, affine, header)
            written.header.set_zooms((*written.header.get_zooms()[:3],
                                      inputs.repetition_time / inputs.time))
            name = Path(f"superres_echo{index + 1}.nii").absolute()
            written.to_filename(name)
            outputs.append(str(name))
        self._results["out_files"] = outputs
        self._results["reference"] = outputs[0]
        self._results["metadata"] = {
            "RepetitionTime": inputs.repetition_time / inputs.time,
            "SuperResolution": {
                **record,
                "InPlaneScale": inputs.space, "TemporalFactor": inputs.time,
                "AcquiredShape": list(image.shape), "Shape": list(written.shape),
                "VoxelSize": [round(float(v), 6) for v in written.header.get_zooms()[:3]],
                "AcquiredRepetitionTime": inputs.repetition_time,
                "AcquiredFramesNMSE": [round(e, 6) for e in errors],
                "Seconds": round(time.perf_counter() - started, 3)}}
        return runtime

    def _renderer(self):
        """The function that super-resolves one series, and its sidecar record."""
        from bids_perfusion.nn import superres_inference as inference

        inputs = self.inputs
        if inputs.method == "linear":
            return (lambda series: inference.interpolate(series, inputs.space, inputs.time),
                    {"Method": "bilinear interpolation in plane, linear in time"})
        from bids_perfusion.nn import device as devices
        from bids_perfusion.nn.superres import CPU_MAX_QUERIES, load_model
        from bids_perfusion.nn.training_ranges import check_input
        from bids_perfusion.nn.weights import bundled_weights, weights_sidecar

        device = devices.select_device(inputs.device)
        weights = inputs.weights or str(bundled_weights("superres"))
        model, card = load_model(weights, device)
        baseline = card["configuration"]["degradation"]["baseline_frames"]
        queries = (inputs.max_queries if isdefined(inputs.max_queries) else
                   devices.batch_size(device, devices.INFERENCE_BYTES["superres"],
                                      CPU_MAX_QUERIES))

        def render(series):
            return inference.super_resolve(
                model, series, inputs.space, inputs.time, baseline_frames=baseline,
                device=device, max_queries=queries,
                progress=lambda done: LOGGER.info("super-resolution: slice %d of %d",
                                                  done, series.shape[2]))

        return render, {
            "Method": "bi-directional neural ODE with a local implicit image function "
                      "(Lee et al., ISMRM 2024)",
            **weights_sidecar(weights, card),
            "OutsideTrainingRanges": check_input(
                card, {"RepetitionTime": inputs.repetition_time}, "super-resolution"),
            "Device": devices.describe(device), "DecodedQueriesPerBatch": int(queries)}


class _ResampleMaskInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="a mask on the acquired grid")
    reference = File(exists=True, mandatory=True, desc="an image on the super-resolved grid")


class _ResampleMaskOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class ResampleMask(SimpleInterface):
    """A mask given on the acquired grid carried onto the super-resolved grid by nearest
    neighbour (:func:`~bids_perfusion.nn.superres_inference.resample_nearest`)."""

    input_spec = _ResampleMaskInputSpec
    output_spec = _ResampleMaskOutputSpec

    def _run_interface(self, runtime):
        from bids_perfusion.nn.superres_inference import resample_nearest

        mask = nib.load(self.inputs.in_file)
        reference = nib.load(self.inputs.reference)
        data = resample_nearest(np.asanyarray(mask.dataobj) > 0, reference.shape[:3])
        header = reference.header.copy()
        header.set_data_dtype(np.uint8)
        name = Path(Path(self.inputs.in_file).name.split(".nii")[0]
                    + "_superres.nii").absolute()
        nib.Nifti1Image(data.astype(np.uint8), reference.affine, header).to_filename(name)
        self._results["out_file"] = str(name)
        return runtime
