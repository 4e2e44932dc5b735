"""Voxelwise group statistics of maps in a common space."""

import numpy as np
from numpy.typing import ArrayLike, NDArray


def group_mean_sd(maps: ArrayLike, valid: ArrayLike
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Voxelwise mean, sample SD and count of subjects' maps (S, ...) over the subjects
    where ``valid`` (S, ..., boolean: inside the subject's brain mask, finite) holds.

    ``mean = Σ x_s / n`` and ``SD = sqrt(Σ (x_s - mean)² / (n - 1))`` over the ``n`` valid
    subjects of each voxel (the unbiased sample variance, Bessel's correction); the mean is
    0 where ``n = 0`` and the SD 0 where ``n < 2``.
    """
    maps = np.asarray(maps, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if maps.shape != valid.shape or maps.ndim < 2:
        raise ValueError(f"maps {maps.shape} and valid {valid.shape} must share one shape "
                         "(subjects first)")
    valid = valid & np.isfinite(maps)
    values = np.where(valid, maps, 0.0)
    count = valid.sum(axis=0)
    mean = values.sum(axis=0) / np.maximum(count, 1)
    squares = (np.where(valid, maps - mean, 0.0) ** 2).sum(axis=0)
    sd = np.sqrt(squares / np.maximum(count - 1, 1))
    sd[count < 2] = 0.0
    return mean, sd, count
