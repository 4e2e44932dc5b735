"""Lateral ventricles of the template, dilated or shrunk to a given volume.

The ventricles are found once per process on nilearn's MNI152 2009 masks, at
:data:`STEP` mm: CSF (brain mask, GM + WM < 0.5) more than :data:`DEPTH_MM` from the
mask's edge, and of its connected components the one whose centroid is nearest
:data:`EXPECTED_CENTRE_MM` (about 17.6 mL: both lateral ventricles and the third).

Their volume changes through a flow along the gradient of the smoothed mask
``φ = G_σ * M`` (σ = :data:`SIGMA_MM`): the sampling map is ``F^n`` with

    F(p) = p + β ∇φ(p),    n = :data:`STEPS`,

so that, for β > 0, points just outside the ventricles sample the inside (the ventricles
grow along their own normals, the tissue around them is pushed away) and for β < 0 they
shrink; the rest of the brain does not move (∇φ vanishes a few σ away). Each step's
Jacobian ``I + β H(φ)`` (H the Hessian) has Frobenius norm of ``β H`` at most
:data:`bids_perfusion.phantom.deformation.MAX_GRADIENT` when ``|β| ≤ β_max``, so every
step, and their composition, is invertible with a positive determinant. The volume the
subject's ventricles then have,

    v(β) = ∫ M(F^n(p)) dp / ∫ M(p) dp

(M sampled trilinearly), is measured, and :func:`beta_for_volume` solves v(β) = target
by interpolation in a table of v at :data:`TABLE_SIZE` values of β (v grows with β);
the volume the whole deformation of a subject gives is measured again and recorded.
"""

from functools import lru_cache

import numpy as np
from scipy import ndimage

from bids_perfusion.phantom.deformation import MAX_GRADIENT

#: Depth (mm from the brain mask's edge) beyond which template CSF counts as ventricular.
DEPTH_MM = 15.0
#: Where the lateral ventricles' centroid lies in MNI space, to pick their component.
EXPECTED_CENTRE_MM = (0.0, -15.0, 15.0)
#: Sampling step of the mask and of the flow field, mm (template voxels are 1 mm).
STEP = 2
#: Smoothing of the mask whose gradient drives the flow, mm (Gaussian SD).
SIGMA_MM = 4.0
#: Number of flow steps.
STEPS = 4
#: Values of β, evenly spaced over [−β_max, β_max], at which v(β) is tabulated.
TABLE_SIZE = 17


def _template_mm(ijk_sub):
    """Template mm (3, N) of indices (3, N) of the :data:`STEP`-subsampled template."""
    from bids_perfusion.phantom.anatomy import _templates

    _, affine = _templates()
    return affine[:3, :3] @ (STEP * ijk_sub) + affine[:3, 3:4]


def _sub_index(points):
    """Indices of the :data:`STEP`-subsampled template at template mm (3, N)."""
    from bids_perfusion.phantom.anatomy import _templates

    _, affine = _templates()
    inverse = np.linalg.inv(affine)
    return (inverse[:3, :3] @ points + inverse[:3, 3:4]) / STEP


@lru_cache(maxsize=1)
def ventricle_mask():
    """The ventricle mask (float, on every :data:`STEP`-th template voxel)."""
    from bids_perfusion.phantom.anatomy import _templates

    stack, _ = _templates()
    sub = stack[:, ::STEP, ::STEP, ::STEP]
    brain = sub[2] > 0.5
    depth = ndimage.distance_transform_edt(brain, sampling=STEP)
    labels, count = ndimage.label(brain & (sub[0] + sub[1] < 0.5) & (depth > DEPTH_MM))
    centres = np.array(ndimage.center_of_mass(labels > 0, labels, range(1, count + 1)))
    distance = np.linalg.norm(_template_mm(centres.T).T - np.array(EXPECTED_CENTRE_MM), axis=1)
    return (labels == 1 + int(np.argmin(distance))).astype(float)


@lru_cache(maxsize=1)
def volume_lattice():
    """Template mm (3, N) of the subsampled voxels from which the flow can reach the
    mask (within n β_max max|∇φ| + :data:`STEP` mm of it): the points whose samples
    can fall inside it, over which volumes are summed."""
    gradient, beta_max = flow_field()
    reach = STEPS * beta_max * float(np.sqrt((gradient**2).sum(axis=0)).max()) + STEP
    distance = ndimage.distance_transform_edt(ventricle_mask() == 0, sampling=STEP)
    return _template_mm(np.argwhere(distance <= reach).T)


@lru_cache(maxsize=1)
def flow_field():
    """``∇φ`` (3, *mask shape), mm⁻¹, and ``β_max`` (mm²), the largest |β| for which
    ``‖β H(φ)‖_F ≤ MAX_GRADIENT`` everywhere."""
    phi = ndimage.gaussian_filter(ventricle_mask(), SIGMA_MM / STEP)
    gradient = np.stack(np.gradient(phi, float(STEP)))
    hessian = np.sqrt(sum(np.sum(np.stack(np.gradient(g, float(STEP))) ** 2, axis=0)
                          for g in gradient))
    return gradient, MAX_GRADIENT / float(hessian.max())


@lru_cache(maxsize=1)
def flow_box():
    """Corners (low, high), template mm, of the box outside which ``β|∇φ|`` is below
    10⁻⁹ β_max max|∇φ|, padded by the reach of the flow."""
    gradient, beta_max = flow_field()
    norm = np.sqrt((gradient**2).sum(axis=0))
    mm = _template_mm(np.argwhere(norm > 1e-9 * norm.max()).T)
    pad = STEPS * beta_max * float(norm.max()) + STEP
    return mm.min(axis=1) - pad, mm.max(axis=1) + pad


def dilate(points, beta):
    """``F^n(p)`` for template points (3, N), mm. Points outside :func:`flow_box` (where
    the flow moves them by less than 10⁻⁹ mm) are returned as they are."""
    gradient, _ = flow_field()
    low, high = flow_box()
    moving = np.all((points >= low[:, None]) & (points <= high[:, None]), axis=0)
    moved = points[:, moving]
    for _ in range(STEPS):
        ijk = _sub_index(moved)
        moved = moved + beta * np.stack([ndimage.map_coordinates(g, ijk, order=1)
                                         for g in gradient])
    points = points.copy()
    points[:, moving] = moved
    return points


def volume_factor(beta=0.0, warp=None):
    """v(β): the ventricles' volume after :func:`dilate` by ``beta`` (or after a whole
    ``warp``, when given), relative to the template's."""
    mask, lattice = ventricle_mask(), volume_lattice()
    moved = dilate(lattice, beta) if warp is None else warp(lattice)
    # both sums count STEP-mm cells: their ratio is the ratio of volumes
    return float(ndimage.map_coordinates(mask, _sub_index(moved), order=1).sum() / mask.sum())


@lru_cache(maxsize=1)
def volume_table():
    """β (:data:`TABLE_SIZE`,) evenly spaced in [−β_max, β_max] and v(β) at each."""
    _, beta_max = flow_field()
    betas = np.linspace(-beta_max, beta_max, TABLE_SIZE)
    return betas, np.array([volume_factor(beta) for beta in betas])


def beta_for_volume(target):
    """The β with v(β) = ``target``, interpolated linearly in :func:`volume_table`
    (ValueError when the target lies outside what the flow reaches)."""
    betas, volumes = volume_table()
    if not volumes[0] <= target <= volumes[-1] or np.any(np.diff(volumes) <= 0):
        raise ValueError(f"ventricle volume factor {target} is outside what the flow "
                         f"reaches ({volumes[0]:.2f}-{volumes[-1]:.2f})")
    return float(np.interp(target, volumes, betas))
