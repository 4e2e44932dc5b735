"""The reference image of a run, the image that is co-registered to the T1w.

DSC: the mean of the pre-bolus baseline frames (after the approach to steady state),
before the contrast agent darkens the vessels and the grey matter, so that its contrast is
the same whatever the bolus timing; the window is that of ΔR2*
(:func:`bids_perfusion.dsc.timing.baseline_window`, Rosen et al., MRM 1990;14:249). ASL:
the M0 image the quantification uses (the mean control image when there is no M0 scan).
"""

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bids_perfusion.dsc.timing import baseline_window


def dsc_reference(series: ArrayLike) -> NDArray[np.float64]:
    """Mean of the baseline frames of a 4-D DSC series (X, Y, Z, T).

    The baseline window is found on the mean curve of the voxels brighter than the mean
    image's average (the head: the background does not dilute the bolus drop).
    Raises ValueError when the series is not 4-D or has too few baseline frames.
    """
    series = np.asarray(series, dtype=np.float64)
    if series.ndim != 4:
        raise ValueError(f"a DSC series is 4-D (X, Y, Z, T), got shape {series.shape}")
    mean_image = series.mean(axis=-1)
    head = mean_image > mean_image.mean()
    start, stop = baseline_window(series[head].mean(axis=0))
    return series[..., start:stop].mean(axis=-1)
