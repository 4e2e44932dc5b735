"""Normalisation of perfusion maps to normal-appearing white matter (NAWM).

Relative maps divide each voxel by the median of the map in NAWM,
``rCBV = CBV / median_NAWM(CBV)`` (Wetzel et al., Radiology 2002;224:797; Boxerman et
al., AJNR 2006;27:859), which removes the unknown scale of the arterial input function
and makes values comparable across subjects and sessions.

The automatic NAWM is chosen without looking at the maps it normalises: a reference
picked by thresholding its own noisy values keeps the voxels whose noise pulled them low
and biases the median low (rCBV high), more so at low SNR. White matter comes from a
given tissue segmentation or from the contrast of the pre-contrast (baseline) image, and
left and right from the image's affine.
"""

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

#: Margin kept between the tumour and the automatic NAWM, voxels.
TUMOUR_MARGIN = 2
#: Width (SD, voxels) of the Gaussian that smooths the baseline image against noise.
BASELINE_SMOOTHING = 0.7
#: Fraction of the brain taken, darkest first, as white matter before erosion.
WHITE_MATTER_QUANTILE = 0.4
#: Half-width (mm) of the band about the mid-sagittal plane left out of the NAWM.
MIDLINE_MARGIN_MM = 5.0

_SIX_NEIGHBOURS = ndimage.generate_binary_structure(3, 1)


def white_matter_from_baseline(baseline: ArrayLike, brain: ArrayLike,
                               smoothing: float = BASELINE_SMOOTHING,
                               quantile: float = WHITE_MATTER_QUANTILE) -> NDArray[np.bool_]:
    """White matter from the contrast of the mean pre-contrast (baseline) image.

    In a gradient-echo DSC baseline (T2*-weighted, TR 1-1.5 s) CSF and oedema are
    brightest, grey matter next and white matter darkest (shorter T2* and lower proton
    density). The baseline image is smoothed within the brain (Gaussian of ``smoothing``
    voxels, divided by the smoothed mask so the brain edge is not darkened); white matter
    is the darkest ``quantile`` of the brain less its outer voxel layer, eroded by one
    voxel (6-neighbourhood) against partial volume with grey matter and CSF. The
    grey/white contrast of a DSC baseline is a few per cent, below the noise of a voxel
    at low SNR: the histogram is then unimodal and Otsu's thresholds (three classes)
    wander, a quantile does not. 0.4 is this project's choice, about white matter's
    share of the adult brain; measured on the phantom in docs/dsc-methods.md.

    The image is independent of the bolus, so the selection does not favour voxels
    whose perfusion values noise pulled low. On a receive-coil bias field the classes
    drift across the brain: give a white-matter segmentation (``WM`` with
    ``--derivatives``) where the baseline is not flat.
    """
    baseline = np.asarray(baseline, dtype=float)
    brain = np.asarray(brain, dtype=bool)
    inside = np.where(brain & np.isfinite(baseline), baseline, 0.0)
    weight = ndimage.gaussian_filter(brain.astype(float), smoothing)
    smooth = ndimage.gaussian_filter(inside, smoothing) / np.maximum(weight, 1e-6)
    core = ndimage.binary_erosion(brain, structure=_SIX_NEIGHBOURS)
    darkest = np.quantile(smooth[core], quantile)
    return ndimage.binary_erosion(core & (smooth <= darkest), structure=_SIX_NEIGHBOURS)


def automatic_nawm_mask(brain: ArrayLike, affine: ArrayLike, baseline: ArrayLike | None = None,
                        white_matter: ArrayLike | None = None,
                        exclude: ArrayLike | None = None) -> NDArray[np.bool_]:
    """Contralateral NAWM from a tissue segmentation or the baseline image contrast.

    White matter is ``white_matter`` (a given segmentation, eroded by one voxel) or
    :func:`white_matter_from_baseline` of ``baseline``. When ``exclude`` (the tumour) is
    given, the tumour dilated by :data:`TUMOUR_MARGIN` voxels is removed, and so is the
    tumour's hemisphere (:func:`hemisphere_of`, from the affine) together with a band of
    :data:`MIDLINE_MARGIN_MM` about the mid-sagittal plane, so that the mask is
    contralateral, as in clinical practice. Nothing here looks at a perfusion map.

    Raises ``ValueError`` when fewer than 10 voxels remain.
    """
    brain = np.asarray(brain, dtype=bool)
    if brain.sum() < 30:
        raise ValueError(f"the brain mask holds {int(brain.sum())} voxels; too few to segment "
                         "white matter automatically: give a NAWM mask with --derivatives")
    if white_matter is not None:
        wm = ndimage.binary_erosion(np.asarray(white_matter, dtype=bool) & brain,
                                    structure=_SIX_NEIGHBOURS)
    elif baseline is not None:
        wm = white_matter_from_baseline(baseline, brain)
    else:
        raise ValueError("automatic NAWM needs a white-matter segmentation or the baseline "
                         "image")
    if exclude is not None and np.any(exclude):
        exclude = np.asarray(exclude, dtype=bool)
        wm &= ~ndimage.binary_dilation(exclude, iterations=TUMOUR_MARGIN)
        wm &= ~hemisphere_of(exclude, brain, affine, margin_mm=MIDLINE_MARGIN_MM)
    if wm.sum() < 10:
        raise ValueError("automatic NAWM segmentation left fewer than 10 voxels; give a NAWM "
                         "mask with --derivatives")
    return wm


def world_x(shape: tuple[int, ...], affine: ArrayLike) -> NDArray[np.float64]:
    """World x (mm) of every voxel centre of a grid: ``x = A[0, :3] · (i, j, k) + A[0, 3]``.

    NIfTI world space is RAS+ (``+x`` towards the subject's right), whatever the storage
    order of the array axes.
    """
    affine = np.asarray(affine, dtype=float)
    i, j, k = np.indices(shape[:3], dtype=float)
    return affine[0, 0] * i + affine[0, 1] * j + affine[0, 2] * k + affine[0, 3]


def hemisphere_of(lesion: ArrayLike, brain: ArrayLike, affine: ArrayLike,
                  margin_mm: float = 0.0) -> NDArray[np.bool_]:
    """Voxels on the lesion's side of the mid-sagittal plane, from the affine.

    The plane is ``x = x̄_brain``, the mean world x of the brain voxels (RAS+, so the
    storage order and flips of the array axes do not matter); the lesion's side is the
    sign of its mean world x relative to it. With ``margin_mm`` the band
    ``|x − x̄_brain| < margin_mm`` is included too, so that its complement keeps clear of
    the midline.
    """
    x = world_x(np.shape(brain), affine)
    centre = x[np.asarray(brain, dtype=bool)].mean()
    offset = x - centre
    if x[np.asarray(lesion, dtype=bool)].mean() < centre:
        offset = -offset
    return offset > -margin_mm


def relative_map(values: ArrayLike,
                 reference_mask: ArrayLike) -> tuple[NDArray[np.float64], float]:
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
