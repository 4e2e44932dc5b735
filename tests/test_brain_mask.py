"""Brain mask from the DSC series against the phantom's truth brain mask."""

import numpy as np
import pytest
from helpers import raw, truth

from bids_perfusion.dsc.brain_mask import brain_mask


def _dice(a, b):
    return 2.0 * np.sum(a & b) / (a.sum() + b.sum())


@pytest.mark.parametrize("subject", ["01", "02"])
def test_brain_mask_matches_truth(noisy, subject):
    """Dice >= 0.9 against label-brain_mask at SNR 50 (measured about 0.97)."""
    root, _ = noisy
    series = raw(root, subject, "ce-gadolinium_dsc")
    mask = brain_mask(series[..., 5:12].mean(axis=-1))
    expected = truth(root, subject, "label-brain_mask") > 0
    assert mask.dtype == bool
    assert _dice(mask, expected) >= 0.9


def test_brain_mask_rejects_bad_images():
    with pytest.raises(ValueError, match="3-D"):
        brain_mask(np.ones((4, 4, 4, 2)))
    with pytest.raises(ValueError, match="constant"):
        brain_mask(np.ones((4, 4, 4)))
    image = np.ones((4, 4, 4))
    image[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        brain_mask(image)
