"""Region-of-interest summaries of parametric maps, as rows of a tidy table."""

import warnings

import numpy as np

#: Columns of :func:`roi_statistics` rows, in order.
COLUMNS = ("roi", "measure", "n_voxels", "n_excluded", "mean", "sd", "median", "q1", "q3")


def roi_statistics(maps, masks, excluded=None):
    """One row per (ROI, measure): voxel counts, mean, SD (ddof 1), median and quartiles.

    ``maps`` maps a measure name to an array, ``masks`` an ROI name to a boolean array of
    the same shape. ``excluded`` (boolean, same shape) marks voxels that could not be
    quantified (an excluded voxel's value in a written map is 0, not a measurement): they
    are left out of every ROI and counted in ``n_excluded``. Non-finite voxels are left out
    too; ``n_voxels`` counts the voxels summarised. An ROI with no such voxel gives NaN
    statistics and ``n_voxels`` 0, so that the table keeps one row per pair.
    """
    rows = []
    excluded = None if excluded is None else np.asarray(excluded, dtype=bool)
    for roi, mask in masks.items():
        mask = np.asarray(mask, dtype=bool)
        n_excluded = 0
        if excluded is not None:
            if excluded.shape != mask.shape:
                raise ValueError(f"ROI '{roi}' has shape {mask.shape}, the excluded voxels "
                                 f"{excluded.shape}")
            n_excluded = int(np.count_nonzero(mask & excluded))
            mask = mask & ~excluded
        for measure, values in maps.items():
            values = np.asarray(values, dtype=float)
            if values.shape != mask.shape:
                raise ValueError(f"ROI '{roi}' has shape {mask.shape}, map '{measure}' "
                                 f"{values.shape}")
            inside = values[mask]
            inside = inside[np.isfinite(inside)]
            if inside.size == 0:
                stats = (np.nan,) * 5
            else:
                q1, median, q3 = np.percentile(inside, [25, 50, 75])
                sd = inside.std(ddof=1) if inside.size > 1 else np.nan
                stats = (inside.mean(), sd, median, q1, q3)
            rows.append(dict(zip(COLUMNS, (roi, measure, int(inside.size), n_excluded,
                                           *stats), strict=True)))
    return rows


def roi_mean_curves(curves, masks):
    """Mean time curve of each ROI: ``{roi: mean over its voxels of curves[mask]}``.

    ``curves`` is a 4-D array (x, y, z, t), such as ΔR2*(t); ``masks`` maps an ROI name to
    a 3-D boolean array. At each time the mean is over the ROI's voxels whose value is
    finite, in float64; an ROI without voxels, or whose curves are nowhere finite, is left
    out of the result.
    """
    curves = np.asarray(curves)
    means = {}
    for roi, mask in masks.items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != curves.shape[:3]:
            raise ValueError(f"ROI '{roi}' has shape {mask.shape}, the curves "
                             f"{curves.shape[:3]}")
        inside = np.asarray(curves[mask], dtype=float)
        inside = np.where(np.isfinite(inside), inside, np.nan)
        if inside.size and np.isfinite(inside).any():
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN frame: NaN
                means[roi] = np.nanmean(inside, axis=0)
    return means
