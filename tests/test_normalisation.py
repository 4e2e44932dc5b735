"""Automatic NAWM and relative maps, on the phantom's series."""

import nibabel as nib
import numpy as np
import pytest
from helpers import raw, small_config, truth

from bids_perfusion.dsc import aif, maps, relaxivity, timing
from bids_perfusion.dsc.normalisation import automatic_nawm_mask, relative_map, world_x
from bids_perfusion.dsc.signal import series_to_delta_r2star
from bids_perfusion.phantom import write_dataset


@pytest.fixture(scope="module")
def snr10(tmp_path_factory):
    """DSC only, at SNR 10, on the small grid."""
    config = small_config(dsc={"snr": 10.0}, asl=None)
    return write_dataset(tmp_path_factory.mktemp("snr10") / "bids", config)


def _run(root, subject):
    """Baseline image, area-ratio CBV (AIF: mean over the truth arteries), masks, affine."""
    path = root / f"sub-{subject}" / "perf" / f"sub-{subject}_ce-gadolinium_dsc.nii.gz"
    series = raw(root, subject, "ce-gadolinium_dsc")
    brain = truth(root, subject, "label-brain_mask") > 0
    delta, start, stop = series_to_delta_r2star([series], [0.03], brain)
    selection = aif.aif_from_mask(delta, truth(root, subject, "label-arteries_mask") > 0)
    tissue = relaxivity.tissue_concentration(delta[brain])
    end = timing.bolus_end(tissue.mean(axis=0))
    times = 1.5 * np.arange(delta.shape[-1])
    cbv = np.zeros(brain.shape)
    cbv[brain] = maps.cbv_area_ratio(tissue[:, :end],
                                     relaxivity.blood_concentration(selection.curve)[:end],
                                     times[:end])
    return {"baseline": series[..., start:stop].mean(axis=-1), "cbv": cbv, "brain": brain,
            "tumour": truth(root, subject, "label-tumor_mask") > 0,
            "affine": nib.load(path).affine}


@pytest.mark.parametrize("subject", ["01", "02"])
def test_automatic_nawm_is_contralateral_white_matter(noisy, subject):
    """At SNR 50: over 75 % WM by volume, no tumour, all on the side opposite the tumour."""
    root, _ = noisy
    run = _run(root, subject)
    nawm = automatic_nawm_mask(run["brain"], run["affine"], baseline=run["baseline"],
                               exclude=run["tumour"])
    assert nawm.sum() > 100
    assert truth(root, subject, "label-WM_probseg")[nawm].mean() > 0.75
    assert not (nawm & run["tumour"]).any()
    x = world_x(nawm.shape, run["affine"])
    centre = x[run["brain"]].mean()
    side = np.sign(x[run["tumour"]].mean() - centre)
    assert np.all(np.sign(x[nawm] - centre) == -side)
    relative, median = relative_map(run["cbv"], nawm)
    assert np.median(relative[nawm]) == pytest.approx(1.0)
    assert median == pytest.approx(np.median(run["cbv"][nawm]))


@pytest.mark.parametrize("subject", ["01", "02"])
def test_nawm_reference_is_unbiased_at_low_snr(snr10, subject):
    """At SNR 10 the NAWM median CBV is within 6 % of its median over the truth NAWM.

    Otsu on the CBV map itself (the rule before issue 12) kept the voxels whose noise
    pulled CBV low: its median was 11 % (sub-01) and 8 % (sub-02) low here.
    """
    run = _run(snr10, subject)
    nawm = automatic_nawm_mask(run["brain"], run["affine"], baseline=run["baseline"],
                               exclude=run["tumour"])
    reference = np.median(run["cbv"][truth(snr10, subject, "label-NAWM_mask") > 0])
    assert np.median(run["cbv"][nawm]) == pytest.approx(reference, rel=0.06)


def _reorient(volume, order, flips):
    """The array with axes permuted by ``order`` then flipped where ``flips`` is True."""
    out = np.transpose(volume, order)
    for axis, flip in enumerate(flips):
        if flip:
            out = np.flip(out, axis=axis)
    return out


def _reoriented_affine(affine, shape, order, flips):
    """The affine of :func:`_reorient`'s output: same world position for every voxel."""
    columns = np.eye(4)[:, [*order, 3]]  # new index -> old index
    for axis, flip in enumerate(flips):
        if flip:
            step = np.eye(4)
            step[axis, axis] = -1.0
            step[axis, 3] = shape[order[axis]] - 1
            columns = columns @ step
    return affine @ columns


@pytest.mark.parametrize(("order", "flips"), [((1, 0, 2), (False, False, False)),
                                              ((0, 1, 2), (True, False, False)),
                                              ((2, 1, 0), (False, True, True))])
def test_contralateral_side_follows_the_affine(noisy, order, flips):
    """Permuted and flipped arrays with their affine give the same anatomical mask.

    Before issue 12 the hemisphere was split along array axis 0: after a transpose it
    kept the tumour's side, after a flip of axis 0 the same.
    """
    root, _ = noisy
    run = _run(root, "01")
    expected = automatic_nawm_mask(run["brain"], run["affine"], baseline=run["baseline"],
                                   exclude=run["tumour"])
    affine = _reoriented_affine(run["affine"], run["brain"].shape, order, flips)
    moved = automatic_nawm_mask(_reorient(run["brain"], order, flips), affine,
                                baseline=_reorient(run["baseline"], order, flips),
                                exclude=_reorient(run["tumour"], order, flips))
    assert np.array_equal(moved, _reorient(expected, order, flips))
    x = world_x(moved.shape, affine)
    brain = _reorient(run["brain"], order, flips)
    tumour = _reorient(run["tumour"], order, flips)
    centre = x[brain].mean()
    assert np.all(np.sign(x[moved] - centre) == -np.sign(x[tumour].mean() - centre))


def test_given_white_matter_segmentation_is_used(noisy):
    """With a WM segmentation the mask is its eroded, contralateral part: pure truth WM."""
    root, _ = noisy
    run = _run(root, "01")
    wm = truth(root, "01", "label-WM_mask") > 0
    nawm = automatic_nawm_mask(run["brain"], run["affine"], white_matter=wm,
                               exclude=run["tumour"])
    assert nawm.sum() > 100 and np.all(wm[nawm])
    assert truth(root, "01", "label-WM_probseg")[nawm].mean() > 0.9


def test_nawm_needs_a_source():
    with pytest.raises(ValueError, match="segmentation or the baseline"):
        automatic_nawm_mask(np.ones((5, 5, 5), bool), np.eye(4))


def test_empty_reference_is_refused():
    with pytest.raises(ValueError, match="empty"):
        relative_map(np.ones((3, 3, 3)), np.zeros((3, 3, 3), bool))
