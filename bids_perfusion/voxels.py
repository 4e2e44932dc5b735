"""The voxels of a mask and back: the bookkeeping behind ``Model.fit(data, mask)``.

The numeric cores fit curves voxel by voxel; their models take a volume ``data`` of shape
``(..., T)`` and an optional boolean ``mask`` of shape ``data.shape[:-1]``, fit the voxels
of the mask only (``data[mask]``, shape ``(V, T)``, C order) and return maps of the full
voxel shape, 0 outside the mask, as the pipeline writes them.
"""

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def voxel_mask(mask: ArrayLike, voxel_shape: tuple[int, ...]) -> NDArray[np.bool_]:
    """``mask`` as a boolean array, or ValueError if its shape is not ``voxel_shape``."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != tuple(voxel_shape):
        raise ValueError(f"mask shape {mask.shape} does not match the voxels of the data "
                         f"{tuple(voxel_shape)}")
    return mask


def scatter(values: NDArray[Any], mask: NDArray[np.bool_] | None,
            fill: float = 0.0) -> NDArray[Any]:
    """Values ``(V, ...)`` of the voxels of ``mask`` placed in an array of shape
    ``mask.shape + values.shape[1:]`` and dtype ``values.dtype``, ``fill`` elsewhere;
    ``values`` unchanged when ``mask`` is None (all voxels were fitted)."""
    if mask is None:
        return values
    volume = np.full(mask.shape + values.shape[1:], fill, dtype=values.dtype)
    volume[mask] = values
    return volume
