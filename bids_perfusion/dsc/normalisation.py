"""Normalisation of perfusion maps to normal-appearing white matter (NAWM).

Relative maps divide each voxel by the median of the map in NAWM,
``rCBV = CBV / median_NAWM(CBV)`` (Wetzel et al., Radiology 2002;224:797; Boxerman et
al., AJNR 2006;27:859), which removes the unknown scale of the arterial input function
and makes values comparable across subjects and sessions.
"""

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

#: Margin kept between the tumour and the automatic NAWM, voxels.
TUMOUR_MARGIN = 2


def automatic_nawm_mask(cbv, brain, exclude=None, smoothing=0.7):
    """NAWM segmented from the CBV map of the series itself.

    Brain CBV has three modes: CSF (about 0), white matter (about 2-3 mL/100 g) and grey
    matter (about 4-6 mL/100 g), with a tail of vessels and tumour. The map is smoothed
    within the brain (Gaussian of ``smoothing`` voxels, normalised by the smoothed mask,
    against noise); CSF (below a quarter of the brain median) and the top 5 % are set
    aside, and Otsu's threshold (IEEE Trans Syst Man Cybern 1979;9:62) splits the rest
    into white matter (below) and grey matter. White matter is eroded by one voxel to drop
    partial volume. ``exclude`` (the tumour, when known) is removed with a margin of
    :data:`TUMOUR_MARGIN` voxels together with its hemisphere, so that the mask is
    contralateral, as in clinical practice.

    Raises ``ValueError`` when fewer than 10 voxels remain.
    """
    cbv = np.asarray(cbv, dtype=float)
    brain = np.asarray(brain, dtype=bool)
    if brain.sum() < 30:
        raise ValueError(f"the brain mask holds {int(brain.sum())} voxels; too few to segment "
                         "white matter automatically: give a NAWM mask with --derivatives")
    inside = np.where(brain & np.isfinite(cbv), cbv, 0.0)
    weight = ndimage.gaussian_filter(brain.astype(float), smoothing)
    smooth = ndimage.gaussian_filter(inside, smoothing) / np.maximum(weight, 1e-6)
    values = smooth[brain]
    tissue = brain & (smooth > 0.25 * np.median(values)) & (smooth < np.percentile(values, 95))
    wm = tissue & (smooth <= threshold_otsu(smooth[tissue]))
    wm = ndimage.binary_erosion(wm, structure=ndimage.generate_binary_structure(3, 1))
    if exclude is not None and np.any(exclude):
        exclude = np.asarray(exclude, dtype=bool)
        wm &= ~ndimage.binary_dilation(exclude, iterations=TUMOUR_MARGIN)
        wm &= ~_hemisphere_of(exclude, brain)
    if wm.sum() < 10:
        raise ValueError("automatic NAWM segmentation left fewer than 10 voxels; give a NAWM "
                         "mask with --derivatives")
    return wm


def _hemisphere_of(lesion, brain):
    """Voxels on the lesion's side of the brain's mid-sagittal plane (first array axis)."""
    centre = np.argwhere(brain)[:, 0].mean()
    side = np.argwhere(lesion)[:, 0].mean() >= centre
    x = np.arange(brain.shape[0])[:, None, None]
    return np.broadcast_to((x >= centre) if side else (x < centre), brain.shape)


def relative_map(values, reference_mask):
    """``(values / m, m)`` with ``m = median(values[reference_mask])``.

    ValueError if the reference is empty or its median is not positive.
    """
    reference = np.asarray(values, dtype=float)[np.asarray(reference_mask, dtype=bool)]
    reference = reference[np.isfinite(reference)]
    if reference.size == 0:
        raise ValueError("the NAWM reference mask is empty on this map")
    median = float(np.median(reference))
    if not median > 0:
        raise ValueError(f"the median in NAWM is {median:g}; a relative map needs a positive "
                         "reference (check the NAWM mask)")
    return np.asarray(values, dtype=float) / median, median
