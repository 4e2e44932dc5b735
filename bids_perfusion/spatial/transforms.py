"""Composing transforms so that a map is resampled once, and ITK's conventions for them.

A map reaches an output space through a chain of point mappings, from the output grid
back to the run's native grid: the template point ``x`` to the T1w point ``y = φ(x)``
(the normalisation, :func:`~bids_perfusion.spatial.registration.normalise`), then to the
run point ``z = C y`` (the co-registration ``C``,
:func:`~bids_perfusion.spatial.registration.rigid_coregistration`). The chain is composed
on points (:func:`source_points`) and the native map is interpolated once at ``z``
(:func:`resample`): two successive resamplings would blur the map twice.

Interpolation follows the kind of image (:data:`INTERPOLATION`): trilinear for continuous
maps (it neither overshoots nor creates negative CBF near edges, as cubic splines do) and
nearest neighbour for masks and labels, which stay binary.

Files follow ITK's conventions, which ANTs, nitransforms and fMRIPrep read: points in LPS
(x and y negated from RAS), a transform maps points of the *fixed* image (the space the
data are resampled into) to the *moving* one (where they come from); an affine is
``AffineTransform_double_3_3`` text with 9 matrix and 3 translation parameters about the
centre 0; a dense transform is a displacement field on the fixed grid, a 5-D NIfTI
(X, Y, Z, 1, 3) of LPS displacement vectors in mm (intent ``NIFTI_INTENT_DISPVECT``).
"""

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from bids_perfusion.spatial.registration import grid_points

#: Spline order of the interpolation of each kind of image.
INTERPOLATION = {"map": 1, "mask": 0}
#: RAS <-> LPS: negate x and y.
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: ITK's name of a 3-D affine transform in its text format.
ITK_AFFINE = "AffineTransform_double_3_3"


def apply_affine(matrix: ArrayLike, points: NDArray[np.float64]) -> NDArray[np.float64]:
    """``matrix`` (4×4) applied to world points (3, N)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    return matrix[:3, :3] @ points + matrix[:3, 3:4]


def sample_field(positions: NDArray[np.float64], field_affine: ArrayLike,
                 points: NDArray[np.float64]) -> NDArray[np.float64]:
    """The points (3, N) that a position field (X, Y, Z, 3 world points on the grid of
    ``field_affine``) gives at world ``points``, trilinearly interpolated; NaN where the
    field is NaN or ``points`` fall outside its grid."""
    voxels = apply_affine(np.linalg.inv(np.asarray(field_affine, dtype=np.float64)), points)
    defined = np.isfinite(positions).all(axis=-1).astype(np.float64)
    inside = ndimage.map_coordinates(defined, voxels, order=1, mode="constant", cval=0.0)
    filled = np.nan_to_num(positions)
    values = np.stack([ndimage.map_coordinates(filled[..., axis], voxels, order=1,
                                               mode="nearest") for axis in range(3)])
    values[:, inside < 1 - 1e-6] = np.nan
    return values


def source_points(target_shape: tuple[int, ...], target_affine: ArrayLike, *,
                  positions: NDArray[np.float64] | None = None,
                  positions_affine: ArrayLike | None = None,
                  to_source: ArrayLike | None = None) -> NDArray[np.float64]:
    """World points (3, N) of the source image read at every voxel of the target grid:
    the target's points through the position field ``positions`` (the normalisation,
    template to T1w) when given, then through the affine ``to_source`` (T1w to run)
    when given."""
    points = grid_points(target_shape, target_affine)
    if positions is not None:
        points = sample_field(positions, positions_affine
                              if positions_affine is not None else np.eye(4), points)
    if to_source is not None:
        points = apply_affine(to_source, points)
    return points


def resample(data: ArrayLike, data_affine: ArrayLike, points: NDArray[np.float64],
             target_shape: tuple[int, ...], kind: str = "map",
             outside: str = "constant") -> NDArray[np.float64]:
    """``data`` (3-D, on the grid of ``data_affine``) read at world ``points`` (3, N, from
    :func:`source_points`) and shaped ``target_shape``, with the interpolation of
    ``kind`` (:data:`INTERPOLATION`); 0 where a point is NaN. Outside the source grid:
    0 (``outside="constant"``), or the value of the nearest edge voxel
    (``outside="nearest"``, for an image that covers its voxels' whole extent).
    Non-finite values of ``data`` count as 0."""
    if kind not in INTERPOLATION:
        raise ValueError(f"kind must be one of {sorted(INTERPOLATION)}, got {kind!r}")
    data = np.nan_to_num(np.asarray(data, dtype=np.float64), nan=0.0, posinf=0.0,
                         neginf=0.0)
    if data.ndim != 3:
        raise ValueError(f"resample needs a 3-D image, got shape {data.shape}")
    voxels = apply_affine(np.linalg.inv(np.asarray(data_affine, dtype=np.float64)), points)
    undefined = ~np.isfinite(voxels).all(axis=0)
    voxels[:, undefined] = 0.0
    values = ndimage.map_coordinates(data, voxels, order=INTERPOLATION[kind],
                                     mode=outside, cval=0.0, prefilter=False)
    values[undefined] = 0.0
    return values.reshape(target_shape)


def template_grid(shape: tuple[int, ...], affine: ArrayLike, voxel_size_mm: float
                  ) -> tuple[tuple[int, ...], NDArray[np.float64]]:
    """``(shape, affine)`` of an isotropic grid of ``voxel_size_mm`` over the field of view
    of the grid ``(shape, affine)`` with the same origin (nilearn's resampling of its
    template to ``resolution``: 197 × 233 × 189 at 1 mm gives 99 × 117 × 95 at 2 mm)."""
    affine = np.asarray(affine, dtype=np.float64)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    new_shape = tuple(int(np.ceil(n * z / voxel_size_mm))
                      for n, z in zip(shape[:3], zooms, strict=True))
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] / zooms * voxel_size_mm
    return new_shape, new_affine


def itk_affine_text(matrix: ArrayLike) -> str:
    """ITK text of the affine ``matrix`` (4×4, RAS world of the fixed image to the moving
    one): ``M_LPS = F M F`` with ``F = diag(-1, -1, 1, 1)``."""
    itk = LPS @ np.asarray(matrix, dtype=np.float64) @ LPS
    parameters = " ".join(repr(float(v)) for v in (*itk[:3, :3].ravel(), *itk[:3, 3]))
    return ("#Insight Transform File V1.0\n#Transform 0\n"
            f"Transform: {ITK_AFFINE}\nParameters: {parameters}\nFixedParameters: 0 0 0\n")


def affine_from_itk_text(text: str) -> NDArray[np.float64]:
    """The RAS matrix of :func:`itk_affine_text`'s format (any centre of rotation).

    Raises ValueError for text that holds no 3-D affine ITK transform."""
    fields = dict(line.split(":", 1) for line in text.splitlines()
                  if ":" in line and not line.startswith("#"))
    if fields.get("Transform", "").strip() not in (ITK_AFFINE, "MatrixOffsetTransformBase"
                                                   "_double_3_3"):
        raise ValueError("not an ITK 3-D affine transform (Transform: "
                         f"{fields.get('Transform', 'missing').strip()})")
    values = np.array(fields["Parameters"].split(), dtype=np.float64)
    centre = np.array(fields.get("FixedParameters", "0 0 0").split(), dtype=np.float64)
    if values.size != 12 or centre.size != 3:
        raise ValueError("an ITK 3-D affine transform has 12 parameters and a 3-D centre")
    itk = np.eye(4)
    itk[:3, :3] = values[:9].reshape(3, 3)
    itk[:3, 3] = values[9:] + centre - itk[:3, :3] @ centre
    return LPS @ itk @ LPS


def itk_displacement_field(positions: NDArray[np.float64], grid_affine: ArrayLike
                           ) -> NDArray[np.float32]:
    """The ITK displacement field (X, Y, Z, 1, 3, LPS mm) of a position field
    (X, Y, Z, 3, RAS world points of the moving image at each voxel of the fixed grid
    ``grid_affine``): ``u = F (φ(x) - x)`` with ``F = diag(-1, -1, 1)``. NaN (no source
    point) stays NaN."""
    grid = grid_points(positions.shape[:3], grid_affine).T.reshape(positions.shape)
    displacement = (positions - grid) * np.array([-1.0, -1.0, 1.0])
    return displacement[:, :, :, None, :].astype(np.float32)


def positions_from_itk_field(field: ArrayLike, grid_affine: ArrayLike
                             ) -> NDArray[np.float64]:
    """The inverse of :func:`itk_displacement_field`."""
    field = np.asarray(field, dtype=np.float64)
    if field.ndim != 5 or field.shape[3:] != (1, 3):
        raise ValueError(f"an ITK 3-D displacement field has shape (X, Y, Z, 1, 3), got "
                         f"{field.shape}")
    grid = grid_points(field.shape[:3], grid_affine).T.reshape(*field.shape[:3], 3)
    return grid + field[:, :, :, 0, :] * np.array([-1.0, -1.0, 1.0])
