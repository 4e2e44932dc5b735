"""The M0 reference of ASL quantification: equilibrium magnetisation of tissue, per voxel.

CBF is proportional to ΔM / M0 (:mod:`bids_perfusion.asl.consensus`), so M0 must be the
fully relaxed tissue signal in the units of ΔM. BIDS ``M0Type`` says where it comes from:

``Separate``
    the mean of the volumes of a separate ``*_m0scan`` image;
``Included``
    the mean of the ``m0scan`` volumes listed in ``aslcontext.tsv``;
``Estimate``
    one value for every voxel, ``M0Estimate`` of the sidecar;
``Absent``
    the mean of the control volumes, refused under background suppression (the static
    tissue signal is then suppressed and no longer M0; Alsop et al., MRM 2015;73:102).

A measured M0 (all but ``Estimate``) is corrected for incomplete T1 recovery at its
repetition time TR (the saturation-recovery signal of a 90° readout)::

    M0 = s · mean(M0 volumes) / (1 - e^(-TR/T1_tissue))

with T1_tissue the T1 of grey matter (:data:`T1_GREY_MATTER`), as in ExploreASL
(Mutsaerts et al., NeuroImage 2020;219:117031), and s the user's ``--m0-scale`` (the
relative scale of the M0 and ASL images when, say, they were reconstructed with
different gains or averages; ASLPrep's ``--m0_scale``). The factor is below 1.001 once TR
exceeds 7 T1 (9.3 s at 3 T); it is always applied and recorded, so that every CBF sidecar
states what M0 was.

Two safeguards act on the M0 image before the division (:func:`low_m0`,
:func:`smooth_m0`): brain voxels whose M0 is a small fraction of the brain's median are
excluded (CBF = ΔM / M0 there amplifies noise without bound: M0 at 1 % of the median
multiplies the noise of ΔM by 100), and M0 may be smoothed, as ExploreASL and ASLPrep do,
to lower its noise.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from bids_perfusion import constants

#: T1 of grey matter, s, by field strength in tesla, for the T1-recovery correction of
#: M0. 3 T: Wansapura et al., JMRI 1999;9:531 (``constants.T1_TISSUE_3T``); 1.5 T:
#: Stanisz et al., MRM 2005;54:507.
T1_GREY_MATTER = constants.T1_GREY_MATTER

#: FWHM of a Gaussian in units of its standard deviation, 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def recovery_fraction(repetition_time: float | None, t1: float) -> float:
    """Saturation recovery ``1 - e^(-TR/T1)`` of a 90° readout after TR seconds."""
    if repetition_time is None or not np.isfinite(repetition_time):
        return 1.0
    return float(1.0 - np.exp(-float(repetition_time) / float(t1)))


@dataclass(frozen=True)
class M0Reference:
    """M0 image (3-D) and how it was made, as sidecar entries."""

    image: np.ndarray
    metadata: dict


def m0_reference(m0_type: str, *, m0_volumes: ArrayLike | None = None,
                 control_volumes: ArrayLike | None = None, estimate: float | None = None,
                 shape: tuple[int, ...] | None = None, repetition_time: float | None = None,
                 t1_tissue: float = T1_GREY_MATTER[3.0], scale: float = 1.0,
                 correct_recovery: bool = True, source: str | None = None) -> M0Reference:
    """The M0 reference of one run.

    Parameters
    ----------
    m0_type : {"Separate", "Included", "Estimate", "Absent"}
    m0_volumes : array (x, y, z[, n])
        M0 volumes (Separate, Included); averaged over the last axis when 4-D.
    control_volumes : array (x, y, z, n)
        Control volumes (Absent).
    estimate : float
        ``M0Estimate`` (Estimate).
    shape : tuple
        Spatial shape of the series (Estimate).
    repetition_time : float
        TR of the M0 (or control) volumes, s.
    t1_tissue : float
        T1 used by the recovery correction, s.
    scale : float
        ``--m0-scale``: M0 is multiplied by it.
    correct_recovery : bool
        Apply ``1 / (1 - e^(-TR/T1))`` to a measured M0.
    source : str
        File the M0 came from, recorded in the metadata.
    """
    if m0_type in ("Separate", "Included"):
        volumes = np.asarray(m0_volumes, dtype=np.float64)
        n = volumes.shape[3] if volumes.ndim == 4 else 1
        image = volumes.mean(axis=3) if volumes.ndim == 4 else volumes
        description = (f"mean of {n} M0 volume(s) "
                       f"({'separate m0scan' if m0_type == 'Separate' else 'in the series'})")
    elif m0_type == "Absent":
        volumes = np.asarray(control_volumes, dtype=np.float64)
        n = volumes.shape[3]
        image = volumes.mean(axis=3)
        description = f"mean of {n} control volume(s) (no M0 scan, no background suppression)"
    elif m0_type == "Estimate":
        if estimate is None or shape is None:
            raise ValueError("M0 type Estimate needs the estimate and the shape of the series")
        n = 0
        image = np.full(tuple(shape[:3]), float(estimate))
        description = "M0Estimate of the sidecar, the same in every voxel"
    else:
        raise ValueError(f"unknown M0 type {m0_type!r}")
    measured = m0_type != "Estimate"
    fraction = (recovery_fraction(repetition_time, t1_tissue)
                if measured and correct_recovery else 1.0)
    image = float(scale) * image / fraction
    metadata = {
        "M0Type": m0_type,
        "M0Source": source,
        "M0Description": description,
        "M0Volumes": n,
        "M0Scale": float(scale),
        "M0RepetitionTime": repetition_time if measured else None,
        "M0T1RecoveryCorrection": bool(measured and correct_recovery),
        "M0T1Tissue": float(t1_tissue) if measured and correct_recovery else None,
        "M0RecoveryFactor": 1.0 / fraction,
        "M0Equation": ("M0 = M0Scale * mean(volumes) / (1 - exp(-M0RepetitionTime / "
                       "M0T1Tissue))" if measured and correct_recovery
                       else "M0 = M0Scale * " + ("M0Estimate" if not measured
                                                 else "mean(volumes)")),
    }
    if not measured and estimate is not None:
        metadata["M0Estimate"] = float(estimate)
    return M0Reference(image, metadata)


def low_m0(m0_image: ArrayLike, brain: ArrayLike, fraction: float = constants.M0_MIN_FRACTION,
           exclude: ArrayLike | None = None) -> tuple[NDArray[np.bool_], float]:
    """Brain voxels whose M0 is below ``fraction`` of the median M0 of the brain.

    ``threshold = fraction · median{M0(v) : v in brain, v not in exclude}``; the voxels
    of ``brain`` (boolean 3-D) outside ``exclude`` with ``M0 < threshold`` (0 and negative
    M0 included) are returned with the threshold, as ``(mask, threshold)``. ``exclude``
    (boolean 3-D, e.g. non-finite voxels) is left out of the median and of the mask.
    Raises ``ValueError`` when the median M0 of the brain is not positive.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"the M0 fraction must be in [0, 1), got {fraction}")
    image = np.asarray(m0_image, dtype=np.float64)
    kept = np.asarray(brain, dtype=bool)
    if exclude is not None:
        kept = kept & ~np.asarray(exclude, dtype=bool)
    median = float(np.median(image[kept])) if kept.any() else np.nan
    if not median > 0:
        raise ValueError("the median M0 of the brain is 0 or negative; CBF = ΔM / M0 cannot "
                         "be computed. Check the M0 scan (and --m0-scale) and the brain "
                         "mask, or give M0Type Estimate with M0Estimate.")
    threshold = fraction * median
    return kept & ~(image >= threshold), threshold


def smooth_m0(m0_image: ArrayLike, support: ArrayLike, fwhm: float,
              voxel_size: Sequence[float]) -> NDArray[np.float64]:
    """M0 smoothed by a Gaussian of FWHM ``fwhm`` mm within ``support``.

    Normalised convolution: ``M0_s = G * (M0 · 1_S) / G * 1_S`` on the support S
    (boolean 3-D), M0 unchanged outside it, with G the Gaussian of standard deviation
    ``fwhm / (2 sqrt(2 ln 2)) / voxel_size`` voxels along each axis (``voxel_size`` in mm,
    from the affine). Voxels outside S (background, non-finite and low-M0 voxels) neither
    contribute nor receive signal, as in ExploreASL's NaN-excluding M0 smoothing
    (``xASL_im_ProcessM0Conventional``; Mutsaerts et al., NeuroImage 2020;219:117031) and
    unlike a plain filter, which would darken the edge of the brain. ``fwhm`` 0 returns
    M0 unchanged.
    """
    image = np.asarray(m0_image, dtype=np.float64)
    if fwhm < 0:
        raise ValueError(f"the M0 smoothing FWHM must be >= 0 mm, got {fwhm}")
    if fwhm == 0:
        return image.copy()
    support = np.asarray(support, dtype=bool)
    sigma = float(fwhm) / FWHM_PER_SIGMA / np.asarray(voxel_size, dtype=np.float64)
    weight = ndimage.gaussian_filter(support.astype(np.float64), sigma, mode="constant")
    total = ndimage.gaussian_filter(np.where(support, image, 0.0), sigma, mode="constant")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(support, total / weight, image)


@dataclass(frozen=True)
class PreparedM0:
    """The M0 that CBF divides by and the brain voxels left out (:func:`prepare_m0`)."""

    image: np.ndarray
    excluded: np.ndarray
    threshold: float
    counts: dict


def prepare_m0(m0_image: ArrayLike, brain: ArrayLike, bad_series: ArrayLike,
               bad_m0: ArrayLike, *, fraction: float = constants.M0_MIN_FRACTION,
               fwhm: float = 0.0,
               voxel_size: Sequence[float] = (1.0, 1.0, 1.0)) -> PreparedM0:
    """Exclude the brain voxels CBF cannot be computed in, then smooth M0 on the rest.

    Excluded: brain voxels with a non-finite value in the series (``bad_series``) or in
    M0 (``bad_m0``), and those with M0 below ``fraction`` of the brain median
    (:func:`low_m0`, the non-finite voxels left out of the median). M0 is then smoothed
    within the remaining brain (:func:`smooth_m0`). ``counts`` holds the excluded voxels
    by reason (``NonFiniteSeries``, ``NonFiniteM0`` when not already in the series,
    ``LowM0``) and their ``Total``.
    """
    brain = np.asarray(brain, dtype=bool)
    bad_series, bad_m0 = np.asarray(bad_series, dtype=bool), np.asarray(bad_m0, dtype=bool)
    low, threshold = low_m0(m0_image, brain, fraction, exclude=bad_series | bad_m0)
    excluded = (brain & (bad_series | bad_m0)) | low
    counts = {"NonFiniteSeries": int(np.count_nonzero(brain & bad_series)),
              "NonFiniteM0": int(np.count_nonzero(brain & bad_m0 & ~bad_series)),
              "LowM0": int(np.count_nonzero(low)),
              "Total": int(np.count_nonzero(excluded))}
    image = smooth_m0(m0_image, brain & ~excluded, fwhm, voxel_size)
    return PreparedM0(image, excluded, float(threshold), counts)

