"""Automatic NAWM and relative maps, on the phantom's CBV with noise."""

import numpy as np
import pytest
from helpers import truth

from bids_perfusion.dsc.normalisation import automatic_nawm_mask, relative_map


@pytest.mark.parametrize("subject", ["01", "02"])
@pytest.mark.parametrize(("noise", "tolerance"), [(0.05, 0.10), (0.25, 0.20)])
def test_automatic_nawm_is_white_matter(noisy, subject, noise, tolerance):
    """Mostly WM by volume, contralateral, and its median CBV near truth NAWM's.

    Selecting voxels by their own noisy CBV biases the median low (by ~15 % at 25 %
    per-voxel noise); the relative maps inherit that scale.
    """
    root, _ = noisy
    rng = np.random.default_rng(0)
    cbv = truth(root, subject, "desc-truth_cbv")
    cbv = cbv * (1 + noise * rng.standard_normal(cbv.shape))
    brain = truth(root, subject, "label-brain_mask") > 0
    tumour = truth(root, subject, "label-tumor_mask") > 0
    nawm = automatic_nawm_mask(cbv, brain, exclude=tumour)
    assert nawm.sum() > 100
    assert truth(root, subject, "label-WM_probseg")[nawm].mean() > 0.6
    assert not (nawm & tumour).any()
    reference = np.median(cbv[truth(root, subject, "label-NAWM_mask") > 0])
    assert np.median(cbv[nawm]) == pytest.approx(reference, rel=tolerance)
    relative, median = relative_map(cbv, nawm)
    assert np.median(relative[nawm]) == pytest.approx(1.0)
    assert median == pytest.approx(np.median(cbv[nawm]))


def test_empty_reference_is_refused():
    with pytest.raises(ValueError, match="empty"):
        relative_map(np.ones((3, 3, 3)), np.zeros((3, 3, 3), bool))
