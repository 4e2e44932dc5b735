"""Deconvolution of every brain voxel by the AIF: CBF, Tmax and MTT of one method."""

import dataclasses

import numpy as np
from nipype.interfaces.base import (
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bids_perfusion.dsc import maps, relaxivity
from bids_perfusion.dsc.deconvolution import DeconvolutionModel
from bids_perfusion.interfaces.maps import first_pass_metadata
from bids_perfusion.interfaces.nifti import load, load_mask, save_like
from bids_perfusion.interfaces.specs import CurvesInputSpec, ScalingInputSpec
from bids_perfusion.tsv import read_tsv_columns


class _DeconvolveInputSpec(CurvesInputSpec, ScalingInputSpec):
    cbv = File(exists=True, mandatory=True, desc="CBV, mL/100 g, for MTT = CBV/CBF")
    method = traits.Enum("osvd", "ssvd", "csvd", "tikhonov", usedefault=True)
    parameters = traits.Dict(desc="method parameters; literature defaults when omitted")
    first_pass = traits.Dict(desc="first-pass fit for the sidecar; FirstPass none if absent")
    device = traits.Str("cpu", usedefault=True,
                        desc="cpu (numpy), auto, cuda or cuda:N (torch on the GPU: "
                             "bids_perfusion.dsc.deconvolution_torch)")


class _DeconvolveOutputSpec(TraitedSpec):
    cbf = File(exists=True)
    tmax = File(exists=True)
    mtt = File(exists=True)
    metadata = traits.Dict()


class Deconvolve(SimpleInterface):
    """``C_tis = Δt A(C_aif) CBF·R`` solved for all brain voxels at once, with numpy on the
    CPU or, when ``device`` selects a GPU, with torch on it in chunks that fit its memory."""

    input_spec = _DeconvolveInputSpec
    output_spec = _DeconvolveOutputSpec

    def _run_interface(self, runtime):
        delta = load(self.inputs.delta_r2star)
        brain = load_mask(self.inputs.brain_mask, delta.shape)
        columns = read_tsv_columns(self.inputs.aif_tsv)
        dt = float(np.mean(np.diff(columns["time"])))
        model = DeconvolutionModel(columns["concentration"], dt, self.inputs.method,
                                   **self.inputs.parameters)
        tissue = relaxivity.tissue_concentration(delta,
                                                 self.inputs.relaxivity["TissueRelaxivity"])
        fit, device = _fit(model, tissue.astype(np.float32), brain, self.inputs.device)
        scale = self.inputs.kh / self.inputs.rho if self.inputs.scaled else 1.0
        cbf = scale * fit.cbf
        mtt = maps.mean_transit_time(load(self.inputs.cbv), cbf)
        reference = self.inputs.delta_r2star
        self._results["cbf"] = save_like(cbf, reference, "cbf.nii")
        self._results["tmax"] = save_like(fit.tmax, reference, "tmax.nii")
        self._results["mtt"] = save_like(mtt, reference, "mtt.nii")
        self._results["metadata"] = {
            "DeconvolutionMethod": self.inputs.method,
            "DeconvolutionParameters": {k: list(v) if isinstance(v, tuple) else v
                                        for k, v in dataclasses.asdict(model.params).items()},
            "FrameInterval": dt,
            "Device": device,
            "kH": self.inputs.kh if self.inputs.scaled else None,
            "BrainDensity": self.inputs.rho if self.inputs.scaled else None,
            **first_pass_metadata(self.inputs),
            **self.inputs.relaxivity,
        }
        return runtime


def _fit(model, tissue, brain, request):
    """The fit of ``model`` on the device of ``request`` and that device's description:
    the numpy path on the CPU (``cpu``, or ``auto`` without a GPU), else
    :func:`~bids_perfusion.dsc.deconvolution_torch.fit_on_device` in chunks sized by
    :func:`~bids_perfusion.nn.device.batch_size`."""
    if request == "cpu":
        return model.fit(tissue, mask=brain), "cpu"
    from bids_perfusion.nn import device as devices

    device = devices.select_device(request)
    if device.type == "cpu":
        return model.fit(tissue, mask=brain), "cpu"
    from bids_perfusion.dsc.deconvolution_torch import bytes_per_voxel, fit_on_device

    chunk = devices.batch_size(device, bytes_per_voxel(model), model.chunk_size)
    return (fit_on_device(model, tissue, brain, device=device, chunk_size=chunk),
            devices.describe(device))
