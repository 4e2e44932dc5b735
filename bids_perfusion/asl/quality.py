"""Which ASL series and voxels can be quantified: refusals and exclusions, before CBF.

A series that holds no signal (every value NaN, every value 0, one value everywhere) or
whose control and label volumes are identical gives CBF = 0 everywhere, which looks like
a result; it is refused. Voxels with a non-finite value in any volume of the series or in
M0 cannot be quantified; while they are a minority of the brain
(:data:`MAX_NONFINITE_FRACTION`) they are excluded from CBF and from ROI statistics and
counted, beyond it the run is refused. The functions raise ``ValueError`` with the problem
and the fix; the interfaces prefix the file name.
"""

from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Largest fraction of the brain mask whose voxels may hold non-finite values (series or
#: M0) before the run is refused. Up to half the brain, the remaining voxels still cover
#: every lobe of a usual field of view and the ROI statistics describe the ROI; beyond,
#: the acquisition or the conversion failed and the brain statistics would describe
#: whatever part of the brain is left.
MAX_NONFINITE_FRACTION = 0.5


def check_series(series: NDArray[Any]) -> NDArray[np.bool_]:
    """Refuse a series without signal; return the voxels (3-D) with a non-finite value.

    ``series`` is the 4-D ASL series (x, y, z, volumes). Raises ``ValueError`` when every
    value is non-finite, every finite value is 0, or every finite value is the same.
    """
    series = np.asarray(series)
    finite = np.isfinite(series)
    if not finite.any():
        raise ValueError("every value of the ASL series is NaN or infinite; the conversion "
                         "from DICOM failed. Convert the series again (e.g. dcm2niix).")
    values = series[finite]
    if not values.any():
        raise ValueError("every value of the ASL series is 0; there is no signal to "
                         "quantify. Check the conversion from DICOM and the file given.")
    if values.min() == values.max():
        raise ValueError(f"every value of the ASL series is {values.min():g}; there is no "
                         "image. Check the conversion from DICOM and the file given.")
    return ~finite.all(axis=-1) if series.ndim == 4 else ~finite


def check_differences(differences: NDArray[Any]) -> None:
    """Refuse a ΔM (control - label) that is 0 in every finite voxel and volume."""
    values = np.asarray(differences)
    values = values[np.isfinite(values)]
    if values.size and not values.any():
        raise ValueError("the control and label volumes are identical (ΔM = 0 everywhere), "
                         "so CBF would be 0; check the aslcontext.tsv volume types and that "
                         "the series holds the labelled volumes.")


def check_m0(m0_image: NDArray[Any]) -> NDArray[np.bool_]:
    """Refuse an M0 image without signal; return its non-finite voxels (3-D).

    Raises ``ValueError`` when M0 is non-finite everywhere, or 0 or negative wherever it is
    finite: CBF ∝ ΔM / M0 would be infinite or meaningless.
    """
    image = np.asarray(m0_image)
    finite = np.isfinite(image)
    if not finite.any():
        raise ValueError("every value of the M0 image is NaN or infinite; convert the M0 "
                         "scan again, or give M0Type Estimate with M0Estimate.")
    if not (image[finite] > 0).any():
        raise ValueError("the M0 image is 0 or negative everywhere; CBF = ΔM / M0 cannot "
                         "be computed. Check the M0 scan (and --m0-scale), or give M0Type "
                         "Estimate with M0Estimate.")
    return ~finite


def check_nonfinite_fraction(nonfinite: NDArray[np.bool_], brain: NDArray[np.bool_],
                             limit: float = MAX_NONFINITE_FRACTION) -> int:
    """Refuse when more than ``limit`` of the brain voxels are non-finite; return the count.

    ``nonfinite`` and ``brain`` are boolean 3-D arrays.
    """
    count = int(np.count_nonzero(nonfinite & brain))
    total = int(np.count_nonzero(brain))
    if count > limit * total:
        raise ValueError(
            f"{count} of the {total} brain voxels ({100 * count / total:.0f} %) hold NaN or "
            f"infinite values, more than {100 * limit:g} %; fix the conversion from DICOM "
            "or give a brain mask (--derivatives) that leaves them out.")
    return count
