"""``--dsc-superres`` through the command line: a tiny phantom is super-resolved before
quantification, by interpolation (maps checked against the native ones) and by a tiny
neural-ODE + LIIF model trained here (files and sidecars checked)."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import load, tumour_derivatives

from bids_perfusion.cli import train
from bids_perfusion.cli.run import main
from bids_perfusion.errors import EXIT_SKIPPED
from bids_perfusion.phantom import PhantomConfig, write_dataset
from bids_perfusion.records import sha256

pytestmark = pytest.mark.slow
TR = 1.5
_NATIVE_CBV = "sub-01_ce-gadolinium_desc-areaRatio_cbv.nii.gz"


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("superres_pipeline")
    config = PhantomConfig(grades=("HGG", "LGG"), matrix=(32, 32, 6), fov_mm=220.0,
                           slab_mm=66.0).with_(dsc={"n_frames": 40, "tr": TR}, asl=None)
    return tmp, write_dataset(tmp / "bids", config)


def _run(tmp, root, name, *options):
    out = tmp / name
    status = main([str(root), str(out), "participant", "--skip-bids-validation",
                   "-w", str(tmp / f"work_{name}"), "--nprocs", "1", "--device", "cpu",
                   "--derivatives", str(tumour_derivatives(root, tmp / "masks")),
                   "--participant-label", "01", *options])
    return status, out / "sub-01" / "perf"


def _files(perf, entities):
    stem = f"sub-01_ce-gadolinium_{entities}"
    return perf / f"{stem}.nii.gz", json.loads((perf / f"{stem}.json").read_text())


def test_linear_superres_maps_match_the_native_maps(phantom):
    tmp, root = phantom
    status, perf = _run(tmp, root, "linear", "--dsc-superres", "linear",
                        "--superres-scale", "2", "2")
    assert status == 0
    series, sidecar = _files(perf, "res-linear_desc-superres_dsc")
    assert nib.load(series).shape == (64, 64, 6, 79)
    assert sidecar["RepetitionTime"] == pytest.approx(TR / 2)
    assert sidecar["SuperResolution"]["InPlaneScale"] == 2
    assert sidecar["SuperResolution"]["VoxelSize"][:2] == pytest.approx([220 / 64] * 2)
    assert "super-resolved by bilinear" in _files(perf, "res-linear_desc-osvd_cbf")[1][
        "Resolution"]
    brain = load(_files(perf, "res-linear_desc-brain_mask")[0]) > 0
    native_brain = load(_files(perf, "desc-brain_mask")[0]) > 0
    assert brain.sum() == pytest.approx(4 * native_brain.sum(), rel=0.05)
    # interpolation keeps the area under the curves: the brain's area-ratio CBV within
    # 15 % of the native one (the interpolated AIF peak is lower; measured +11 %). CBF is
    # not compared: oSVD's underestimate depends on the frame interval (measured here:
    # native 20, interpolated 31, truth 37 mL/100 g/min)
    native, _ = _files(perf, "desc-areaRatio_cbv")
    high, _ = _files(perf, "res-linear_desc-areaRatio_cbv")
    ratio = np.median(load(high)[brain]) / np.median(load(native)[native_brain])
    assert ratio == pytest.approx(1, abs=0.15)
    assert "super-resolved before quantification" in (
        perf.parents[1] / "logs" / "CITATION.md").read_text()


@pytest.fixture(scope="module")
def weights(phantom):
    """A tiny model trained in about 20 s on one thread: its frames at the acquired times
    reproduce the acquired ones with an NMSE of about 0.0075 (bilinear: 0.0027)."""
    tmp, root = phantom
    torch.set_num_threads(1)
    assert train.main(["superres", str(root), str(tmp / "model"), "--epochs", "30",
                       "--device", "cpu", "--lr", "0.003", "--latent-width", "8",
                       "--encoder-blocks", "1",
                       "--ode-hidden", "8", "--ode-method", "euler", "--ode-step", "0.5",
                       "--mlp-hidden", "32", "32", "--patch-size", "6",
                       "--queries-per-item", "64", "--items-per-run", "64",
                       "--batch-size", "16", "--val-fraction", "0.5", "--test-fraction",
                       "0", "--quiet"]) == 0
    return tmp / "model" / "superres.safetensors"


def test_node_liif_superres_is_refused_when_it_does_not_reproduce_the_acquired_frames(
        phantom, weights):
    """The tiny model does not fit well enough for a check at NMSE ≤ 0.001: the
    super-resolved run is refused with the error and the fix, the native run is
    written."""
    tmp, root = phantom
    status, perf = _run(tmp, root, "refused", "--dsc-superres", "node-liif",
                        "--superres-weights", str(weights), "--superres-max-nmse", "0.001")
    assert status == EXIT_SKIPPED
    assert not list(perf.glob("*res-nodeliif*")) and (perf / _NATIVE_CBV).exists()
    log = next((perf.parents[1] / "logs").glob("bids-perfusion-*.log")).read_text()
    assert "does not reproduce the acquired frames (NMSE" in log
    assert "--superres-max-nmse" in log


def test_node_liif_superres_writes_the_series_and_res_maps(phantom, weights):
    """The same model at the default check: the series and the maps on its grid."""
    tmp, root = phantom
    status, perf = _run(tmp, root, "nodeliif", "--dsc-superres", "node-liif",
                        "--superres-weights", str(weights), "--superres-scale", "1.5", "2")
    assert status == 0
    series, sidecar = _files(perf, "res-nodeliif_desc-superres_dsc")
    assert nib.load(series).shape == (48, 48, 6, 79)
    record = sidecar["SuperResolution"]
    assert record["ModelWeightsSHA256"] == sha256(weights)
    assert record["TemporalFactor"] == 2 and record["AcquiredShape"] == [32, 32, 6, 40]
    assert record["OutsideTrainingRanges"] == []  # a card without training ranges
    cbf, cbf_sidecar = _files(perf, "res-nodeliif_desc-osvd_cbf")
    assert nib.load(cbf).shape == (48, 48, 6)
    assert "neural ODE" in cbf_sidecar["Resolution"]
    assert 0.001 < record["AcquiredFramesNMSE"][0] < 0.02
    assert (perf / _NATIVE_CBV).exists()  # the native maps too
    report = (perf.parents[1] / "sub-01.html").read_text()
    assert "res-nodeliif_desc-superres_dsc.svg" in report and "Super-resolution" in report
