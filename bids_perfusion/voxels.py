"""The voxels of a mask and back: the bookkeeping behind ``Model.fit(data, mask)``.

The numeric cores fit curves voxel by voxel; their models take a volume ``data`` of shape
``(..., T)`` and an optional boolean ``mask`` of shape ``data.shape[:-1]``, fit the voxels
of the mask only (``data[mask]``, shape ``(V, T)``, C order) and return maps of the full
voxel shape, 0 outside the mask, as the pipeline writes them.
"""

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


def for_each_block(function: Callable[[slice], None], n_voxels: int, block_size: int,
                   workers: int | None = None) -> None:
    """Call ``function(block)`` for the consecutive slices of ``block_size`` of ``n_voxels``.

    The blocks run on ``workers`` threads (default :func:`block_workers`), which share the
    work because numpy releases the GIL inside its loops and BLAS calls; each block must
    write only its own rows of any shared output. One worker, or one block, runs them in
    order on the calling thread.
    """
    blocks = [slice(start, min(start + block_size, n_voxels))
              for start in range(0, n_voxels, block_size)]
    workers = block_workers() if workers is None else int(workers)
    if workers <= 1 or len(blocks) <= 1:
        for block in blocks:
            function(block)
        return
    with ThreadPoolExecutor(min(workers, len(blocks))) as pool:
        for _ in pool.map(function, blocks):  # re-raises the first error of a block
            pass


def block_workers() -> int:
    """Threads for :func:`for_each_block`: the CPUs this process may use, at most
    ``OMP_NUM_THREADS`` when that is set (the same limit as numpy's BLAS)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(cpus or 1, int(limit) if limit.isdigit() and int(limit) > 0 else cpus or 1))
