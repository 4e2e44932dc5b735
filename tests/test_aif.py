"""Automatic and mask-based AIF against the phantom's ground truth."""

from pathlib import Path

import numpy as np
import pytest
from helpers import SMALL, raw, read_tsv, truth

from bids_perfusion.dsc import relaxivity
from bids_perfusion.dsc.aif import aif_from_mask, select_aif
from bids_perfusion.phantom import PhantomConfig, write_dataset
from bids_perfusion.phantom.bids import TRUTH

N_SUBJECTS = 6
TE = 0.03
#: Frames kept: from the end of the approach to steady state on; baseline before frame 12.
FIRST = 5
BASELINE = slice(0, 12 - FIRST)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    config = PhantomConfig.cohort(N_SUBJECTS, **SMALL).with_(asl=None)
    return write_dataset(tmp_path_factory.mktemp("aif_cohort") / "bids", config)


@pytest.fixture(scope="module")
def saturated(tmp_path_factory):
    """A dose so high (20 mM peak) that the signal of pure arterial voxels reaches the
    Rician noise floor at the peak: S/S0 = exp(-0.03 * 7.6 * 20) = 1 % < 3 noise SD."""
    config = PhantomConfig(grades=("HGG",), **SMALL).with_(asl=None, dsc={"aif_peak_mM": 20.0})
    return write_dataset(tmp_path_factory.mktemp("aif_saturated") / "bids", config)


def _series(root, subject):
    signal = raw(root, subject, "ce-gadolinium_dsc")[..., FIRST:]
    s0 = signal[..., BASELINE].mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta_r2star = relaxivity.signal_to_delta_r2star(signal, s0, TE)
    times = 1.5 * np.arange(FIRST, FIRST + signal.shape[-1])
    return delta_r2star, times


def _truth_aif(root, subject):
    rows = read_tsv(Path(root) / TRUTH / f"sub-{subject}" / "perf"
                    / f"sub-{subject}_desc-truth_aif.tsv")
    return np.array([float(r["delta_r2star"]) for r in rows])[FIRST:]


def _select(root, subject, **kwargs):
    delta_r2star, times = _series(root, subject)
    brain = truth(root, subject, "label-brain_mask") > 0
    return select_aif(delta_r2star, brain, times, echo_time=TE, **kwargs), times


def test_automatic_aif_picks_arterial_voxels(cohort):
    """Issue target: in >= 90 % of subjects every selected voxel is in the truth arterial
    mask (probseg > 0). At SNR 50 on this grid they are in fact all pure blood voxels."""
    correct = 0
    for i in range(1, N_SUBJECTS + 1):
        subject = f"{i:02d}"
        selection, _ = _select(cohort, subject)
        arteries = truth(cohort, subject, "label-arteries_probseg")
        assert selection.mask.sum() == 20
        correct += bool(np.all(arteries[selection.mask] > 0))
        assert np.mean(arteries[selection.mask] == 1.0) >= 0.9
    assert correct / N_SUBJECTS >= 0.9


def test_automatic_aif_matches_truth_curve(cohort):
    """Peak and area of the selected AIF within 5 % of the truth ΔR2* AIF (measured on 12
    subjects: at most 2.8 % and 2.5 %); the peak is at the true time to peak."""
    for i in range(1, N_SUBJECTS + 1):
        subject = f"{i:02d}"
        selection, times = _select(cohort, subject)
        expected = _truth_aif(cohort, subject)
        assert selection.peak == pytest.approx(expected.max(), rel=0.05)
        assert selection.area == pytest.approx(np.trapezoid(expected, times), rel=0.05)
        assert selection.time_to_peak == times[np.argmax(expected)]
        np.testing.assert_allclose(selection.curve, expected, atol=0.08 * expected.max())


def test_saturation_check_rejects_saturated_arteries(cohort, saturated):
    """Voxels whose peak signal falls to the noise floor are rejected; at standard dose
    (peak S/S0 = 25 %, 11 noise SD) no voxel is."""
    selection, _ = _select(saturated, "01")
    arteries = truth(saturated, "01", "label-arteries_probseg")
    removed = selection.counts["valid"] - selection.counts["unsaturated"]
    assert removed >= np.sum(arteries == 1.0)
    assert not np.any(arteries[selection.mask] == 1.0)
    assert np.all(arteries[selection.mask] > 0)  # partial-volume arterial voxels remain
    unchecked, _ = _select(saturated, "01", saturation_snr=0.0)
    assert unchecked.counts["unsaturated"] == unchecked.counts["valid"]
    normal, _ = _select(cohort, "01")
    assert normal.counts["unsaturated"] == normal.counts["valid"]


def test_aif_from_mask_is_the_mean_over_the_mask(cohort):
    delta_r2star, times = _series(cohort, "01")
    pure = truth(cohort, "01", "label-arteries_probseg") == 1.0
    selection = aif_from_mask(delta_r2star, pure, times)
    np.testing.assert_allclose(selection.curve, delta_r2star[pure].mean(axis=0))
    assert np.array_equal(selection.mask, pure)
    expected = _truth_aif(cohort, "01")
    assert selection.peak == pytest.approx(expected.max(), rel=0.03)
    assert selection.area == pytest.approx(np.trapezoid(expected, times), rel=0.03)


def test_bad_masks_and_times_are_rejected(cohort):
    delta_r2star, times = _series(cohort, "01")
    empty = np.zeros(delta_r2star.shape[:3], dtype=bool)
    with pytest.raises(ValueError, match="empty"):
        aif_from_mask(delta_r2star, empty)
    with pytest.raises(ValueError, match="does not match"):
        aif_from_mask(delta_r2star, empty[:-1])
    with pytest.raises(ValueError, match="empty"):
        select_aif(delta_r2star, empty, times)
    brain = truth(cohort, "01", "label-brain_mask") > 0
    with pytest.raises(ValueError, match="does not match"):
        select_aif(delta_r2star, brain[..., :-1], times)
    with pytest.raises(ValueError, match="one time per frame"):
        select_aif(delta_r2star, brain, times[:-1])
    with pytest.raises(ValueError, match="4-D"):
        select_aif(delta_r2star[..., 0], brain, times)
    nan = np.full_like(delta_r2star, np.nan)
    with pytest.raises(ValueError, match="non-finite"):
        aif_from_mask(nan, brain)
    with pytest.raises(ValueError, match="no voxel"):
        select_aif(nan, brain, times)
