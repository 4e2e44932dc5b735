"""Reliability of the ASL pipeline and of the data checks inside nodes (issue 11).

Series without signal and an M0 without signal are refused with a message that names the
file, the problem and the fix; voxels with NaN or with a tiny M0 are excluded from CBF and
from the ROI statistics, counted in the CBF sidecar and the ROI table; timing fields of
the ASL and M0 sidecars in milliseconds are refused; the DSC node checks raise
:class:`InputDataError` naming the series file.
"""

import json
import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import load, read_tsv, small_config, truth
from scipy import ndimage

from bids_perfusion.asl import context, m0
from bids_perfusion.asl.metadata import ASLRunMetadata
from bids_perfusion.cli.run import main
from bids_perfusion.dsc.metadata import MetadataError
from bids_perfusion.errors import InputDataError
from bids_perfusion.interfaces.masks import BrainMask
from bids_perfusion.interfaces.signal import SignalToDeltaR2Star
from bids_perfusion.phantom import write_dataset
from bids_perfusion.stats.roi import roi_statistics

PERF = Path("sub-01") / "perf"
SERIES = PERF / "sub-01_asl.nii.gz"
M0SCAN = PERF / "sub-01_m0scan.nii.gz"
FAST = ["--skip-bids-validation", "--nprocs", "1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """One noise-free single-PLD PCASL subject with a separate M0 scan."""
    config = small_config(grades=("HGG",), dsc=None, asl={"snr": float("inf")})
    return write_dataset(tmp_path_factory.mktemp("hardening") / "bids", config)


def _copy(dataset, tmp_path):
    root = tmp_path / "bids"
    shutil.copytree(dataset, root)
    return root


def _edit(path, function):
    image = nib.load(path)
    data = function(np.asarray(image.dataobj, dtype=np.float32))
    nib.Nifti1Image(data.astype(np.float32), image.affine).to_filename(path)


def _run(root, tmp_path, caplog, *extra):
    """Run the participant level; return the status and what was logged (crash files too)."""
    out, work = tmp_path / "out", tmp_path / "work"
    with caplog.at_level(logging.ERROR):
        status = main([str(root), str(out), "participant", "-w", str(work), *FAST, *extra])
    logged = caplog.text + "".join(p.read_text() for p in work.rglob("crash*"))
    return status, logged, out / PERF


def _refused(status, logged, out, path, *phrases):
    """The run failed with an InputDataError whose message names ``path`` and says why."""
    assert status == 1
    lines = [line for line in logged.splitlines() if line.startswith("InputDataError")
             or "errors.InputDataError:" in line]
    assert lines, logged[-2000:]
    message = lines[-1].split("InputDataError: ", 1)[-1]
    assert message.startswith(str(path)), message
    for phrase in phrases:
        assert phrase in message, message
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


# --- ASL series and M0 without signal: refused -----------------------------------------------

@pytest.mark.parametrize("fill, phrases", [
    (np.nan, ("NaN or infinite", "Convert the series again")),
    (0.0, ("every value of the ASL series is 0", "Check the conversion")),
    (250.0, ("every value of the ASL series is 250", "Check the conversion")),
], ids=["all-NaN", "all-zero", "constant"])
def test_series_without_signal_is_refused(dataset, tmp_path, caplog, fill, phrases):
    root = _copy(dataset, tmp_path)
    _edit(root / SERIES, lambda d: np.full_like(d, fill))
    status, logged, out = _run(root, tmp_path, caplog)
    _refused(status, logged, out, root / SERIES, *phrases)


def test_all_zero_m0_is_refused_naming_the_m0_file(dataset, tmp_path, caplog):
    root = _copy(dataset, tmp_path)
    _edit(root / M0SCAN, np.zeros_like)
    status, logged, out = _run(root, tmp_path, caplog)
    _refused(status, logged, out, root / M0SCAN, "M0 image is 0 or negative everywhere",
             "Check the M0 scan")
    assert "mean baseline image" not in logged  # the DSC wording of the brain mask


# --- NaN in part of the series: excluded, counted, kept out of ROI statistics ---------------

def _interior_voxels(root, step):
    """Brain voxels of the truth mask, 3 voxels away from its surface, every ``step``-th."""
    brain = truth(root, "01", "label-brain_mask") > 0
    inner = ndimage.binary_erosion(brain, iterations=3)
    return tuple(index[::step] for index in np.nonzero(inner))


def test_partly_nan_series_excludes_and_counts_the_voxels(dataset, tmp_path, caplog):
    root = _copy(dataset, tmp_path)
    voxels = _interior_voxels(root, 50)
    n_nan = len(voxels[0])
    assert n_nan > 20

    def poison(data):
        data[(*voxels, 3)] = np.nan  # one volume of each voxel
        return data

    _edit(root / SERIES, poison)
    status, _, perf = _run(root, tmp_path, caplog)
    assert status == 0
    sidecar = json.loads((perf / "sub-01_desc-consensus_cbf.json").read_text())
    counts = sidecar["ExcludedVoxels"]
    assert counts["NonFiniteSeries"] == n_nan
    excluded = load(perf / "sub-01_desc-excluded_mask.nii.gz") > 0
    assert excluded[voxels].all() and excluded.sum() == counts["Total"]
    brain = load(perf / "sub-01_desc-brain_mask.nii.gz") > 0
    cbf = load(perf / "sub-01_desc-consensus_cbf.nii.gz")
    kept = cbf[brain & ~excluded]
    row, = read_tsv(perf / "sub-01_desc-roi_roistats.tsv")
    assert int(row["n_excluded"]) == counts["Total"]
    assert int(row["n_voxels"]) == kept.size == brain.sum() - counts["Total"]
    assert float(row["mean"]) == pytest.approx(kept.mean(), rel=1e-5)
    assert float(row["median"]) == pytest.approx(np.median(kept), rel=1e-5)


def test_mostly_nan_series_is_refused(dataset, tmp_path, caplog):
    root = _copy(dataset, tmp_path)
    _edit(root / SERIES, lambda d: np.where(np.arange(d.shape[0])[:, None, None, None] < 30,
                                            np.nan, d))
    status, logged, out = _run(root, tmp_path, caplog)
    _refused(status, logged, out, root / SERIES, "hold NaN or infinite values, more than 50 %",
             "fix the conversion")


# --- Tiny M0 in the brain: excluded, absurd CBF gone ----------------------------------------

def test_low_m0_voxels_are_excluded_from_cbf_and_roi_statistics(dataset, tmp_path, caplog):
    root = _copy(dataset, tmp_path)
    voxels = _interior_voxels(root, 300)
    assert len(voxels[0]) >= 5

    def darken(data):
        data[voxels] *= 0.01  # every M0 volume of each voxel
        return data

    _edit(root / M0SCAN, darken)
    status, _, perf = _run(root, tmp_path, caplog)
    assert status == 0
    brain = load(perf / "sub-01_desc-brain_mask.nii.gz") > 0
    cbf = load(perf / "sub-01_desc-consensus_cbf.nii.gz")
    assert brain[voxels].all()
    assert (cbf[voxels] == 0).all()  # before the fix: 100 times the true CBF
    excluded = load(perf / "sub-01_desc-excluded_mask.nii.gz") > 0
    assert excluded[voxels].all()
    assert np.abs(cbf[brain & ~excluded]).max() < 500
    sidecar = json.loads((perf / "sub-01_desc-consensus_cbf.json").read_text())
    assert sidecar["M0MinFraction"] == 0.2 and sidecar["M0SmoothingFWHM"] == 0.0
    reference = load(perf / "sub-01_desc-reference_m0scan.nii.gz")
    assert sidecar["M0Threshold"] == pytest.approx(0.2 * np.median(reference[brain]),
                                                   rel=1e-4)
    assert sidecar["ExcludedVoxels"]["LowM0"] >= len(voxels[0])
    row, = read_tsv(perf / "sub-01_desc-roi_roistats.tsv")
    assert int(row["n_excluded"]) == excluded[brain].sum()
    assert float(row["sd"]) == pytest.approx(cbf[brain & ~excluded].std(ddof=1), rel=1e-4)


def test_low_m0_and_smoothing_core():
    rng = np.random.default_rng(0)
    image = rng.normal(1000.0, 50.0, (20, 20, 10))
    brain = np.zeros(image.shape, bool)
    brain[2:18, 2:18, 2:8] = True
    image[5, 5, 5], image[6, 6, 6] = 5.0, -3.0
    low, threshold = m0.low_m0(image, brain, 0.2)
    assert threshold == pytest.approx(0.2 * np.median(image[brain]))
    assert set(zip(*np.nonzero(low), strict=True)) == {(5, 5, 5), (6, 6, 6)}
    support = brain & ~low
    smooth = m0.smooth_m0(image, support, 8.0, (2.0, 2.0, 4.0))
    flat = m0.smooth_m0(np.where(support, 1000.0, 0.0), support, 8.0, (2.0, 2.0, 4.0))
    np.testing.assert_allclose(flat[support], 1000.0)  # no darkening at the edge
    assert smooth[5, 5, 5] == image[5, 5, 5]  # outside the support: unchanged
    assert smooth[support].std() < 0.3 * image[support].std()


def test_roi_statistics_leave_excluded_voxels_out():
    values = np.arange(10.0)
    rows = roi_statistics({"cbf": values}, {"brain": values < 8}, excluded=values < 3)
    assert rows[0]["n_voxels"] == 5 and rows[0]["n_excluded"] == 3
    assert rows[0]["mean"] == pytest.approx(5.0)


# --- Timing fields of the ASL and M0 sidecars ------------------------------------------------

def _metadata(root, sidecar=None, m0_sidecar=None):
    series = root / SERIES
    ctx = series.with_name("sub-01_aslcontext.tsv")
    m0_file = root / M0SCAN
    return ASLRunMetadata.from_sidecar(
        series, sidecar or json.loads(series.with_name("sub-01_asl.json").read_text()), ctx,
        context.read_aslcontext(ctx), nib.load(series).shape, m0_file,
        m0_sidecar or json.loads(m0_file.with_name("sub-01_m0scan.json").read_text()),
        nib.load(m0_file).shape)


@pytest.mark.parametrize("sidecar, field, value, fix", [
    ("m0scan", "RepetitionTimePreparation", 2000, "write 2."),
    ("m0scan", "RepetitionTime", 2000, "write 2."),
    ("asl", "RepetitionTime", 4500, "write 4.5."),
    ("asl", "SliceTiming", [40.0 * i for i in range(12)], "write 0.44."),
    ("asl", "BolusCutOffDelayTime", [800, 1600], "write 1.6."),
    ("m0scan", "RepetitionTimePreparation", [10.0, 3000], "write 3."),
])
def test_timing_fields_in_milliseconds_are_refused(dataset, sidecar, field, value, fix):
    asl = json.loads((dataset / PERF / "sub-01_asl.json").read_text())
    m0_meta = json.loads((dataset / PERF / "sub-01_m0scan.json").read_text())
    if sidecar == "m0scan":
        m0_meta[field] = value
    elif field == "SliceTiming":
        asl.update(MRAcquisitionType="2D", SliceTiming=value)
    elif field == "BolusCutOffDelayTime":
        asl.update(ArterialSpinLabelingType="PASL", BolusCutOffFlag=True,
                   BolusCutOffTechnique="Q2TIPS", BolusCutOffDelayTime=value)
    else:
        asl[field] = value
    with pytest.raises(MetadataError) as error:
        _metadata(dataset, asl, m0_meta)
    message = str(error.value)
    assert message.startswith(f"{dataset / PERF}/sub-01_{sidecar}.json: field '{field}'")
    assert fix in message


# --- DSC checks inside nodes: InputDataError naming the series and the fix ------------------

def _dsc_series(path, data):
    nib.Nifti1Image(data.astype(np.float32), np.diag([2.0, 2.0, 4.0, 1.0])).to_filename(path)
    return str(path)


def _bolus(n_frames=40, arrival=12):
    t = np.arange(n_frames, dtype=float)
    shape = np.where(t >= arrival, ((t - arrival) / 4.0) ** 2 * np.exp(-(t - arrival) / 2.0),
                     0.0)
    return 1000.0 * np.exp(-0.3 * shape)


@pytest.mark.parametrize("case, phrases", [
    ("NaN in the baseline", ("brain voxel(s) hold NaN or infinite values",
                             "give a brain mask with --derivatives")),
    ("constant series", ("constant over time", "cannot be quantified as acquired")),
    ("too few baseline frames", ("too few baseline frames",
                                 "cannot be quantified as acquired")),
])
def test_dsc_node_checks_name_the_series_and_the_fix(tmp_path, monkeypatch, case, phrases):
    monkeypatch.chdir(tmp_path)
    curve = _bolus(arrival=0 if case == "too few baseline frames" else 12)
    data = np.broadcast_to(curve, (6, 6, 4, curve.size)).copy()
    if case == "NaN in the baseline":
        data[2, 2, 2, 3] = np.nan
    elif case == "constant series":
        data[:] = 1000.0
    mask = tmp_path / "mask.nii.gz"
    nib.Nifti1Image(np.ones((6, 6, 4), np.uint8), np.eye(4)).to_filename(mask)
    work = _dsc_series(tmp_path / "work_copy.nii.gz", data)
    source = "/data/sub-01/perf/sub-01_ce-gadolinium_dsc.nii.gz"
    node = SignalToDeltaR2Star(in_files=[work], echo_times=[0.03], repetition_time=1.5,
                               brain_mask=str(mask), source_files=[source])
    with pytest.raises(InputDataError) as error:
        node.run()
    message = str(error.value)
    assert message.startswith(f"{source}: ") and "\n" not in message
    for phrase in phrases:
        assert phrase in message


def test_dsc_brain_mask_of_a_constant_series_names_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    series = _dsc_series(tmp_path / "sub-01_dsc.nii.gz", np.full((6, 6, 4, 30), 7.0))
    with pytest.raises(InputDataError) as error:
        BrainMask(in_file=series).run()
    message = str(error.value)
    assert message.startswith(f"{series}: ") and "constant" in message
    assert "give a brain mask with --derivatives" in message
