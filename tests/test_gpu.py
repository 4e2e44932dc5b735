"""``--device``: device selection and its CPU fallback, batch sizes from the device memory,
the torch path of the classical deconvolution against the numpy path, and (where torch
sees a GPU) every model's inference and the deconvolution on CUDA against the CPU.

Self-contained (no fixture of ``conftest.py``, no nipype, pybids or nibabel at import), so
that ``benchmarks/gpu_check.sh`` runs it with ``--noconftest`` on a GPU machine that has
only torch, numpy and scipy; the tests that need nipype skip without it.

Tolerances (docs/gpu.md): the torch path solves in float32 like the numpy path of the
pipeline's float32 data; CBF agrees within 1e-5 of the largest CBF on the CPU device and
within 1e-4 on CUDA (the products are summed in another order), with the same threshold
(oSVD) or λ (Tikhonov) in at least 99.9 % of the voxels. The models agree with their CPU
outputs within 1e-2 of the largest output on CUDA, where cuDNN's convolutions may use
TF32 (10-bit mantissa) by default.
"""

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from bids_perfusion.dsc.deconvolution import DeconvolutionModel
from bids_perfusion.dsc.deconvolution_torch import (
    bytes_per_voxel,
    fit_on_device,
    oscillation_index,
)
from bids_perfusion.dsc.truncated_svd import oscillation_index as numpy_oscillation_index
from bids_perfusion.nn import device as devices
from bids_perfusion.testing.curves import brain_curves

CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason="torch sees no CUDA device (run benchmarks/gpu_check.sh "
                                 "on a GPU machine)")

#: (method, parameters) of every method and criterion.
ALL_METHODS = [("ssvd", {}), ("csvd", {}), ("osvd", {}), ("tikhonov", {"criterion": "fixed"}),
               ("tikhonov", {"criterion": "gcv"}), ("tikhonov", {"criterion": "lcurve"})]
METHOD_IDS = ["ssvd", "csvd", "osvd", "tikhonov-fixed", "tikhonov-gcv", "tikhonov-lcurve"]
#: Largest |CBF_torch − CBF_numpy| / max CBF_numpy on the CPU device and on CUDA.
CPU_TOLERANCE, CUDA_TOLERANCE = 1e-5, 1e-4
#: Smallest share of voxels with the same threshold or λ on both paths.
SAME_REGULARISATION = 0.999
#: Largest |model on CUDA − model on the CPU| / max |model on the CPU|.
MODEL_TOLERANCE = 1e-2

OSIPI = Path(__file__).parent / "data" / "osipi-dsc" / "dsc_data.csv"


@pytest.fixture(scope="module")
def curves():
    """4000 noisy synthetic curves of 80 frames (CBF 10–80, MTT 2–10 s, delay 0–3 s)."""
    aif, tissue, _truth = brain_curves(4000, n_frames=80, dt=1.5, noise=0.02, seed=3)
    return aif, tissue


def _compare(numpy_fit, torch_fit, tolerance):
    same = numpy_fit.regularisation == torch_fit.regularisation
    assert same.mean() >= SAME_REGULARISATION
    scale = np.abs(numpy_fit.cbf).max()
    assert np.abs(torch_fit.cbf - numpy_fit.cbf)[same].max() <= tolerance * scale
    assert np.mean(torch_fit.tmax == numpy_fit.tmax) >= SAME_REGULARISATION


# --- device selection and batch sizes (CPU) ------------------------------------------------


def test_cpu_and_unknown_requests():
    assert devices.select_device("cpu") == torch.device("cpu")
    assert devices.select_device("CPU") == torch.device("cpu")
    for request in ("tpu", "cuda:x", "cuda0", ""):
        if request:
            with pytest.raises(ValueError, match="unknown device"):
                devices.select_device(request)
    assert devices.describe("cpu") == "cpu"


def test_auto_falls_back_to_the_cpu_with_a_log_line(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="nipype.interface"):
        assert devices.select_device("auto") == torch.device("cpu")
    assert "--device auto" in caplog.text and "CPU" in caplog.text


@pytest.mark.parametrize("request_", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_a_gpu_is_an_error_naming_the_option_and_the_fix(monkeypatch, request_):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(devices.DeviceError, match=f"--device {request_} .* no CUDA device"
                                                   ".* use --device cpu or auto"):
        devices.select_device(request_)


def test_cuda_index_beyond_the_visible_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(devices.DeviceError, match=r"--device cuda:2: only 2 CUDA .* cuda:0 to "
                                                  r"cuda:1"):
        devices.select_device("cuda:2")
    assert devices.select_device("cuda:1") == torch.device("cuda", 1)


def test_batch_size_is_the_default_on_the_cpu_and_fits_free_memory_on_cuda(monkeypatch):
    assert devices.batch_size("cpu", 10**6, 8192) == 8192
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4 * 10**9, 8 * 10**9))
    cuda = torch.device("cuda", 0)
    # half of the 4 GB free, 1 MB per item
    assert devices.batch_size(cuda, 10**6, 8192) == 2000
    assert devices.batch_size(cuda, 10**6, 8192, maximum=500) == 500
    assert devices.batch_size(cuda, 10**12, 8192) == 1
    assert set(devices.INFERENCE_BYTES) == {"phae", "stunet", "deepasl", "superres"}


def test_cli_refuses_cuda_without_a_gpu_before_any_processing(monkeypatch, tmp_path, capsys):
    pytest.importorskip("nipype")
    from bids_perfusion.cli import run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (tmp_path / "bids").mkdir()
    status = None
    with pytest.raises(SystemExit) as exit_info:
        status = run.main([str(tmp_path / "bids"), str(tmp_path / "out"), "participant",
                           "--device", "cuda", "-w", str(tmp_path / "work")])
    assert status is None and exit_info.value.code == 2
    assert "--device cuda was requested but torch sees no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()
    with pytest.raises(SystemExit):
        run.main([str(tmp_path / "bids"), str(tmp_path / "out"), "participant",
                  "--device", "tpu"])
    assert "--device: tpu: use auto, cpu, cuda or cuda:N" in capsys.readouterr().err


def test_auto_is_the_cpu_without_a_gpu_driver_and_left_to_torch_with_one(monkeypatch):
    pytest.importorskip("nipype")
    from bids_perfusion.cli import parser

    monkeypatch.setattr(parser.os.path, "exists", lambda path: False)
    assert parser._device("AUTO") == "cpu"
    assert parser._device("cuda:1") == "cuda:1"
    args = parser.build_parser().parse_args(["bids", "out", "participant"])
    assert args.device == "cpu"
    monkeypatch.setattr(parser.os.path, "exists", lambda path: path == "/dev/nvidiactl")
    assert parser._device("auto") == "auto"


# --- the torch deconvolution on the CPU device against numpy -------------------------------


def test_oscillation_index_matches_numpy(curves):
    residue = DeconvolutionModel(curves[0], 1.5, "csvd").fit(curves[1][:200]).residue
    np.testing.assert_allclose(oscillation_index(torch.from_numpy(residue)).numpy(),
                               numpy_oscillation_index(residue), rtol=1e-5)
    assert oscillation_index(torch.zeros(2, 10)).tolist() == [0.0, 0.0]


@pytest.mark.parametrize(("method", "params"), ALL_METHODS, ids=METHOD_IDS)
def test_torch_path_on_the_cpu_equals_the_numpy_path(curves, method, params):
    aif, tissue = curves
    model = DeconvolutionModel(aif, 1.5, method, **params)
    expected = model.fit(tissue)
    fit = fit_on_device(model, tissue, device="cpu", chunk_size=1500)
    assert fit.residue.dtype == np.float32 and fit.residue.shape == expected.residue.shape
    _compare(expected, fit, CPU_TOLERANCE)


@pytest.mark.parametrize(("method", "params"), ALL_METHODS, ids=METHOD_IDS)
def test_torch_path_in_float64_with_a_mask(curves, method, params):
    aif, tissue = curves
    volume = tissue[:400].astype(np.float64).reshape(20, 20, -1)
    mask = np.zeros((20, 20), bool)
    mask[2:15, 5:] = True
    model = DeconvolutionModel(aif, 1.5, method, **params)
    expected = model.fit(volume, mask=mask)
    fit = fit_on_device(model, volume, mask, device="cpu", chunk_size=37)
    assert fit.residue.dtype == np.float64 and fit.cbf.shape == (20, 20)
    assert np.all(fit.cbf[~mask] == 0)
    np.testing.assert_array_equal(fit.regularisation, expected.regularisation)
    np.testing.assert_allclose(fit.cbf, expected.cbf, rtol=1e-9, atol=1e-9)


def test_torch_path_checks_its_input(curves):
    model = DeconvolutionModel(curves[0], 1.5, "osvd")
    with pytest.raises(ValueError, match="frames on its last axis"):
        fit_on_device(model, curves[1][:, :10], device="cpu")
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_on_device(model, np.full((2, 80), np.nan), device="cpu")
    with pytest.raises(ValueError, match="chunk_size"):
        fit_on_device(model, curves[1], device="cpu", chunk_size=0)
    assert bytes_per_voxel(model) == 4 * 19 * 160 * 4


@pytest.mark.parametrize(("method", "params"), ALL_METHODS, ids=METHOD_IDS)
def test_torch_path_passes_the_osipi_curves(method, params):
    """The OSIPI DSC curves (van Houdt et al., MRM 2024;91:1774; tests/test_osipi.py): the
    same CBF as numpy, within OSIPI's tolerance |CBF − cbf| ≤ 15 + 0.1 cbf."""
    with OSIPI.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        aif, tissue = (np.array(row[key].split(), dtype=float) for key in ("C_aif", "C_tis"))
        model = DeconvolutionModel(aif, float(row["tr"]), method, **params)
        fit = fit_on_device(model, tissue.astype(np.float32), device="cpu")
        np.testing.assert_allclose(fit.cbf, model.fit(tissue.astype(np.float32)).cbf,
                                   rtol=1e-5)
        assert abs(fit.cbf - float(row["cbf"])) <= 15 + 0.1 * float(row["cbf"])


@pytest.mark.parametrize("method", ["csvd", "osvd"])
def test_block_circulant_torch_path_is_delay_insensitive(method):
    """A 3 s delay of the tissue curve leaves cSVD/oSVD CBF within 5 % and moves Tmax by
    the delay (within a frame), as on the numpy path (tests/test_deconvolution.py)."""
    from bids_perfusion.dsc import kinetics

    dt = 1.5
    t = np.arange(60) * dt
    aif = 5.0 * kinetics.gamma_variate(t, t0=6.0, alpha=3.0, beta=1.5)
    residue = 0.01 * np.stack([kinetics.residue_exponential(t - delay, 4.0)
                               for delay in (0.0, 3.0)])
    tissue = kinetics.convolve(aif, residue, dt).astype(np.float32)
    fit = fit_on_device(DeconvolutionModel(aif, dt, method), tissue, device="cpu")
    assert abs(fit.cbf[1] / fit.cbf[0] - 1) < 0.05
    assert abs(fit.tmax[1] - fit.tmax[0] - 3.0) <= dt


def test_deconvolve_interface_records_the_device_and_keeps_the_numpy_path(tmp_path,
                                                                          monkeypatch):
    pytest.importorskip("nipype")
    nib = pytest.importorskip("nibabel")
    from bids_perfusion.dsc import relaxivity
    from bids_perfusion.interfaces.deconvolution import Deconvolve

    aif, tissue, _truth = brain_curves(64, n_frames=40, dt=1.5, seed=5)
    r2 = relaxivity.at_field(1.5).sidecar()
    delta = tissue.reshape(8, 8, 1, -1) * r2["TissueRelaxivity"]
    nib.Nifti1Image(delta, np.eye(4)).to_filename(tmp_path / "delta.nii.gz")
    nib.Nifti1Image(np.ones((8, 8, 1), np.uint8), np.eye(4)).to_filename(tmp_path / "b.nii.gz")
    nib.Nifti1Image(np.full((8, 8, 1), 4.0, np.float32), np.eye(4)).to_filename(
        tmp_path / "cbv.nii.gz")
    rows = "\n".join(f"{i * 1.5}\t{value}" for i, value in enumerate(aif))
    (tmp_path / "aif.tsv").write_text(f"time\tconcentration\n{rows}\n")
    maps = {}
    for device in ("cpu", "auto"):
        folder = tmp_path / device
        folder.mkdir()
        monkeypatch.chdir(folder)
        result = Deconvolve(delta_r2star=str(tmp_path / "delta.nii.gz"),
                            brain_mask=str(tmp_path / "b.nii.gz"),
                            aif_tsv=str(tmp_path / "aif.tsv"), cbv=str(tmp_path / "cbv.nii.gz"),
                            method="osvd", parameters={}, kh=1.0, rho=1.0, relaxivity=r2,
                            device=device).run()
        maps[device] = np.asarray(nib.load(result.outputs.cbf).dataobj)
        expected = "cpu" if device == "cpu" else devices.describe(devices.select_device())
        assert result.outputs.metadata["Device"] == expected
    if not torch.cuda.is_available():  # auto on the CPU: the numpy path, bit for bit
        np.testing.assert_array_equal(maps["auto"], maps["cpu"])


# --- CUDA ----------------------------------------------------------------------------------


@CUDA
def test_cuda_device_description_and_batch_size():
    device = devices.select_device("cuda")
    assert device.type == "cuda" and device.index is not None
    assert devices.select_device("auto") == device
    assert devices.describe(device).startswith(f"cuda:{device.index} (")
    assert devices.batch_size(device, 10**6, 8) > 8


@CUDA
@pytest.mark.parametrize(("method", "params"), ALL_METHODS, ids=METHOD_IDS)
def test_deconvolution_on_cuda_equals_the_numpy_path(curves, method, params):
    aif, tissue = curves
    model = DeconvolutionModel(aif, 1.5, method, **params)
    device = devices.select_device("cuda")
    chunk = devices.batch_size(device, bytes_per_voxel(model), 2048, maximum=1500)
    _compare(model.fit(tissue), fit_on_device(model, tissue, device=device, chunk_size=chunk),
             CUDA_TOLERANCE)


def _close(cuda_output, cpu_output):
    cuda_output, cpu_output = np.asarray(cuda_output), np.asarray(cpu_output)
    assert np.all(np.isfinite(cuda_output))
    assert np.abs(cuda_output - cpu_output).max() <= MODEL_TOLERANCE * np.abs(cpu_output).max()


@CUDA
def test_phae_on_cuda_equals_the_cpu():
    from bids_perfusion.nn import phae

    aif, tissue, _truth = brain_curves(3000, n_frames=60, dt=1.5, seed=7)
    outputs = []
    for name in ("cpu", "cuda"):
        model, _card = phae.load_model(device=name)
        outputs.append(phae.estimate_maps(model, tissue, aif, np.arange(60) * 1.5,
                                          batch_size=1024, device=name)["mtt"])
    _close(outputs[1], outputs[0])


@CUDA
def test_stunet_on_cuda_equals_the_cpu():
    from bids_perfusion.nn import cbv_models

    rng = np.random.default_rng(0)
    series = (100 + rng.normal(0, 2, (40, 40, 3, 50))).astype(np.float32)
    series[..., 15:25] *= 0.7
    brain = np.zeros((40, 40, 3), bool)
    brain[8:32, 8:32] = True
    outputs = []
    for name in ("cpu", "cuda"):
        model, preprocessing, _card = cbv_models.load_model(device=name)
        outputs.append(cbv_models.predict_standardised(model, preprocessing, series, brain,
                                                       batch_size=16, device=name)[1])
    _close(outputs[1], outputs[0])


@CUDA
def test_superres_on_cuda_equals_the_cpu():
    from bids_perfusion.nn import superres, superres_inference

    rng = np.random.default_rng(1)
    series = (100 + 20 * rng.random((16, 16, 2, 6))).astype(np.float32)
    outputs = []
    for name in ("cpu", "cuda"):
        model, card = superres.load_model(device=name)
        outputs.append(superres_inference.super_resolve(
            model, series, 2.0, 2, card["configuration"]["degradation"]["baseline_frames"],
            device=name, max_queries=4096))
    _close(outputs[1], outputs[0])


@CUDA
def test_deepasl_on_cuda_equals_the_cpu():
    from bids_perfusion.nn import deepasl

    rng = np.random.default_rng(2)
    delta_m = rng.normal(10, 3, (64, 64, 6))
    model, _card = deepasl.load_model("deepasl")
    outputs = [deepasl.denoise(model, delta_m, 20.0, name, 4) for name in ("cpu", "cuda")]
    _close(outputs[1], outputs[0])
