"""Rigid realignment of the frames of a series to a reference volume.

Each frame ``F`` is registered to the reference ``R`` by Gauss-Newton least squares on

    E(T, s, a) = Σ_x [s F(T(x)) + a − R(x)]²,

over the rigid transform ``T`` (:mod:`bids_perfusion.motion.rigid`) and a linear intensity
model ``(s, a)`` that absorbs global changes of the signal (the approach to steady state,
the signal drop of a bolus, label/control contrast). The Jacobian is that of the
reference, ``∂E/∂δ ≈ ∇R(x) · ∂(D_δ x)/∂δ`` for a small rigid update ``D_δ`` composed on
the right of ``T``, so that it is computed once per reference (the approach of SPM's
realignment, Friston et al., Hum Brain Mapp 1995;3:165, with the compositional update
of Baker and Matthews, IJCV 2004;56:221). On the moving DSC phantom the intensity model
alone keeps the error within 0.12 mm and 0.17 degrees through the bolus; robust
(Tukey biweight) weights made it worse, and are not used.

The search runs coarse to fine (:data:`SCHEDULE`: Gaussian smoothing and sub-sampled
reference voxels at the coarse level), each frame starting from the solution of the
frame before. As the Jacobian of the rigid part is fixed, its block of the normal
equations ``JᵀJ`` is computed once per level; each iteration adds only the two columns of
the intensity model. Each frame is then resampled once, from the acquired frame, with the
final transform (:func:`resample_frame`), the frames shared among threads
(:func:`~bids_perfusion.voxels.for_each_block`: scipy.ndimage releases the GIL).
"""

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from bids_perfusion.motion.rigid import (
    framewise_displacement,
    rigid_matrix,
    rigid_parameters,
)
from bids_perfusion.voxels import block_workers, for_each_block


@dataclass(frozen=True)
class Level:
    """One level of the coarse-to-fine search: Gaussian smoothing of reference and frame
    (standard deviation, mm), the step between the reference voxels used (voxels), and
    the largest number of Gauss-Newton iterations."""

    sigma_mm: float
    step: int
    iterations: int


#: The search of :func:`realign_series`: 4 mm smoothing on every second voxel, then 1 mm
#: on every voxel; a Gauss-Newton step that moves no point of a 50 mm sphere by more
#: than :data:`TOLERANCE_MM` ends a level.
SCHEDULE = (Level(4.0, 2, 8), Level(1.0, 1, 6))
TOLERANCE_MM = 0.01
#: Reference voxels above this fraction of the 99th percentile of the reference (then
#: dilated by two voxels) are the head, the voxels the search compares.
HEAD_FRACTION = 0.1


@dataclass(frozen=True)
class Realignment:
    """The motion of a series relative to its reference.

    Attributes
    ----------
    parameters : ndarray, shape (T, 6)
        ``trans_x, trans_y, trans_z`` (mm), ``rot_x, rot_y, rot_z`` (rad) per frame
        (:data:`~bids_perfusion.motion.rigid.PARAMETER_NAMES`), about ``centre``.
    matrices : ndarray, shape (T, 4, 4)
        The world transforms from the reference to each frame.
    centre : ndarray, shape (3,)
        Centre of rotation, mm.
    """

    parameters: NDArray[np.float64]
    matrices: NDArray[np.float64]
    centre: NDArray[np.float64]

    @property
    def framewise_displacement(self) -> NDArray[np.float64]:
        """FD of each frame, mm (:func:`~bids_perfusion.motion.rigid.framewise_displacement`)."""
        return framewise_displacement(self.parameters)

    def outliers(self, threshold: float) -> NDArray[np.bool_]:
        """Frames whose framewise displacement exceeds ``threshold`` (mm)."""
        if not threshold > 0:
            raise ValueError(f"the framewise-displacement threshold must be positive, got "
                             f"{threshold}")
        return self.framewise_displacement > threshold


def grid_centre(shape: Sequence[int], affine: ArrayLike) -> NDArray[np.float64]:
    """World coordinates (mm) of the centre of a grid of ``shape`` with ``affine``."""
    affine = np.asarray(affine, dtype=float)
    return affine[:3, :3] @ ((np.asarray(shape[:3], dtype=float) - 1.0) / 2.0) + affine[:3, 3]


def _sigma_voxels(sigma_mm: float, affine: NDArray[np.float64]) -> NDArray[np.float64]:
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    return sigma_mm / zooms


def _smooth(volume: NDArray[np.float64], sigma_mm: float,
            affine: NDArray[np.float64]) -> NDArray[np.float64]:
    if sigma_mm <= 0:
        return volume
    return ndimage.gaussian_filter(volume, _sigma_voxels(sigma_mm, affine), mode="nearest")


@dataclass(frozen=True)
class _LevelReference:
    """The reference at one level: its points (world mm), values, the Jacobian ``J`` of
    the rigid parameters, and the blocks ``JᵀJ`` and ``Jᵀ1`` of the normal equations."""

    level: Level
    points: NDArray[np.float64]
    values: NDArray[np.float64]
    jacobian: NDArray[np.float64]
    gram: NDArray[np.float64]
    column_sums: NDArray[np.float64]


def _prepare_reference(reference: NDArray[np.float64], affine: NDArray[np.float64],
                       centre: NDArray[np.float64],
                       schedule: Sequence[Level]) -> list[_LevelReference]:
    """Points, values and Jacobian ``[∇R, (x − c) × ∇R]`` of the reference per level."""
    head = reference > HEAD_FRACTION * np.percentile(reference, 99)
    head = ndimage.binary_dilation(head, iterations=2)
    if head.sum() < 100:
        raise ValueError("the reference image has fewer than 100 voxels of signal; it "
                         "cannot be registered to")
    inverse_linear = np.linalg.inv(affine[:3, :3])
    levels = []
    for level in schedule:
        smooth = _smooth(reference, level.sigma_mm, affine)
        gradient = np.stack(list(np.gradient(smooth)), axis=-1)  # per voxel axis
        keep = np.zeros_like(head)
        keep[::level.step, ::level.step, ::level.step] = True
        keep &= head
        ijk = np.argwhere(keep).astype(float)
        points = ijk @ affine[:3, :3].T + affine[:3, 3]
        grad_world = gradient[keep] @ inverse_linear  # (∂R/∂voxel) (∂voxel/∂x)
        arm = points - centre
        jacobian = np.concatenate([grad_world, np.cross(arm, grad_world)], axis=1)
        levels.append(_LevelReference(level, points, smooth[keep], jacobian,
                                      jacobian.T @ jacobian, jacobian.sum(axis=0)))
    return levels


def _register(frame: NDArray[np.float64], frame_affine: NDArray[np.float64],
              levels: list[_LevelReference], centre: NDArray[np.float64],
              start: NDArray[np.float64]) -> NDArray[np.float64]:
    """The world transform from the reference to ``frame``, starting from ``start``."""
    matrix = start.copy()
    to_voxel = np.linalg.inv(frame_affine)
    for prepared in levels:
        smooth = _smooth(frame, prepared.level.sigma_mm, frame_affine)
        scale, offset = 1.0, 0.0
        for _ in range(prepared.level.iterations):
            voxel = to_voxel @ matrix
            coordinates = prepared.points @ voxel[:3, :3].T + voxel[:3, 3]
            sampled = ndimage.map_coordinates(smooth, coordinates.T, order=1, mode="nearest")
            residual = scale * sampled + offset - prepared.values
            step = np.linalg.lstsq(*_normal_equations(prepared, sampled, residual),
                                   rcond=None)[0]
            matrix = matrix @ rigid_matrix(step[:6], centre)
            scale, offset = scale + step[6], offset + step[7]
            if np.abs(step[:3]).sum() + 50.0 * np.abs(step[3:6]).sum() < TOLERANCE_MM:
                break
    return matrix


def _normal_equations(prepared: _LevelReference, sampled: NDArray[np.float64],
                      residual: NDArray[np.float64],
                      ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(DᵀD, −Dᵀr)`` of the design ``D = [J, F(T(x)), 1]`` of one Gauss-Newton step,
    from the precomputed ``JᵀJ`` and ``Jᵀ1`` of the level and the ``sampled`` frame."""
    jacobian = prepared.jacobian
    cross = sampled @ jacobian
    total = float(sampled.sum())
    gram = np.empty((8, 8))
    gram[:6, :6] = prepared.gram
    gram[:6, 6] = gram[6, :6] = cross
    gram[:6, 7] = gram[7, :6] = prepared.column_sums
    gram[6, 6] = float(sampled @ sampled)
    gram[6, 7] = gram[7, 6] = total
    gram[7, 7] = float(sampled.size)
    right = np.concatenate([residual @ jacobian, [residual @ sampled, residual.sum()]])
    return gram, -right


def realign_series(series: ArrayLike, affine: ArrayLike, reference: ArrayLike,
                   reference_affine: ArrayLike | None = None,
                   schedule: Sequence[Level] = SCHEDULE,
                   on_frame: Callable[[int, NDArray[np.float64]], None] | None = None,
                   ) -> Realignment:
    """The rigid motion of every frame of ``series`` (x, y, z, T) relative to
    ``reference`` (x, y, z), both with their voxel-to-world ``affine`` (the reference's
    defaults to the series'). Frames are registered in order, each from the solution of
    the frame before; ``on_frame(index, matrix)``, when given, is called as each frame's
    transform is found. Raises ValueError for data that cannot be registered."""
    series = np.asarray(series)
    affine = np.asarray(affine, dtype=float)
    reference = np.asarray(reference, dtype=np.float64)
    reference_affine = affine if reference_affine is None else np.asarray(
        reference_affine, dtype=float)
    if series.ndim != 4 or series.shape[-1] < 1:
        raise ValueError(f"the series must be 4-D (x, y, z, frames), got shape {series.shape}")
    if reference.ndim != 3:
        raise ValueError(f"the reference must be 3-D, got shape {reference.shape}")
    if min(series.shape[:3]) < 4:
        raise ValueError(f"the series is too small to be realigned ({series.shape[:3]} "
                         "voxels; at least 4 along each axis)")
    if not (np.all(np.isfinite(reference)) and np.all(np.isfinite(series))):
        raise ValueError("the series or its reference holds NaN or infinite values")
    centre = grid_centre(reference.shape, reference_affine)
    levels = _prepare_reference(reference, reference_affine, centre, schedule)
    matrices = np.empty((series.shape[-1], 4, 4))
    current = np.eye(4)
    for index in range(series.shape[-1]):
        current = _register(np.asarray(series[..., index], dtype=np.float64), affine, levels,
                            centre, current)
        matrices[index] = current
        if on_frame is not None:
            on_frame(index, current)
    parameters = np.stack([rigid_parameters(m, centre) for m in matrices])
    return Realignment(parameters, matrices, centre)


def resample_frame(frame: ArrayLike, affine: ArrayLike, matrix: ArrayLike,
                   reference_shape: Sequence[int], reference_affine: ArrayLike,
                   order: int = 3) -> NDArray[np.float32]:
    """``F(T(x))`` on the reference grid: the frame brought back to the reference pose by
    one interpolation of the acquired frame (B-spline of ``order``; values beyond the
    frame's edge repeat its edge)."""
    voxel = (np.linalg.inv(np.asarray(affine, dtype=float)) @ np.asarray(matrix, dtype=float)
             @ np.asarray(reference_affine, dtype=float))
    return ndimage.affine_transform(np.asarray(frame, dtype=np.float32), voxel[:3, :3],
                                    offset=voxel[:3, 3], output_shape=tuple(reference_shape[:3]),
                                    order=order, mode="nearest")


def apply_realignment(series: ArrayLike, affine: ArrayLike, realignment: Realignment,
                      reference_shape: Sequence[int] | None = None,
                      reference_affine: ArrayLike | None = None,
                      order: int = 3) -> NDArray[np.float32]:
    """Every frame of ``series`` resampled on the reference grid (:func:`resample_frame`),
    the frames shared among :func:`~bids_perfusion.voxels.block_workers` threads."""
    series = np.asarray(series)
    shape = tuple(series.shape[:3]) if reference_shape is None else tuple(reference_shape[:3])
    reference_affine = affine if reference_affine is None else reference_affine
    out = np.empty((*shape, series.shape[-1]), dtype=np.float32)

    def resample(frames: slice) -> None:
        for index in range(frames.start, frames.stop):
            out[..., index] = resample_frame(series[..., index], affine,
                                             realignment.matrices[index], shape,
                                             reference_affine, order)

    for_each_block(resample, series.shape[-1], 1)
    return out


def realign_and_resample(echoes: Sequence[NDArray[np.float32]], affine: ArrayLike,
                         reference: ArrayLike, order: int = 3,
                         ) -> tuple[Realignment, tuple[NDArray[np.float32], ...]]:
    """:func:`realign_series` of the first of ``echoes`` (each (x, y, z, T), on one grid)
    to ``reference``, and every echo moved by its transforms (:func:`resample_frame`):
    the same numbers as :func:`apply_realignment` after :func:`realign_series`, but each
    frame is resampled on a thread of its own as soon as its transform is found, so that
    on several CPUs the resampling overlaps the registration of the next frames."""
    affine = np.asarray(affine, dtype=float)
    shape = echoes[0].shape
    outputs = tuple(np.empty(shape, dtype=np.float32) for _ in echoes)

    def resample(index: int, matrix: NDArray[np.float64]) -> None:
        for echo, out in zip(echoes, outputs, strict=True):
            out[..., index] = resample_frame(echo[..., index], affine, matrix, shape,
                                             affine, order)

    workers = block_workers()
    if workers <= 1:
        realignment = realign_series(echoes[0], affine, reference, on_frame=resample)
        return realignment, outputs
    with ThreadPoolExecutor(workers) as pool:
        pending: list[Future[None]] = []
        realignment = realign_series(
            echoes[0], affine, reference,
            on_frame=lambda index, matrix: pending.append(
                pool.submit(resample, index, matrix.copy())))
        for future in pending:  # re-raises the first error of a frame
            future.result()
    return realignment, outputs
