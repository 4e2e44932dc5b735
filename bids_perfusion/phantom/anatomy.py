"""Anatomy of the phantom: tissue fractions from the MNI152 templates shipped with nilearn.

Grey and white matter probabilities and the brain mask of the ICBM 2009a template
(Fonov et al., NeuroImage 2011;54:313) are read from nilearn's package data (no
download) and averaged over sub-voxel samples of the phantom grid, so that every voxel
holds partial-volume fractions. CSF is the remainder of the brain mask.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

#: Sub-voxel samples per axis used to compute partial-volume fractions.
SUPERSAMPLING = (3, 3, 5)


@dataclass(frozen=True)
class Grid:
    """A voxel grid: ``shape`` (x, y, z) and the voxel-to-world (RAS mm) ``affine``."""

    shape: tuple
    affine: np.ndarray

    @property
    def zooms(self):
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    def sub_voxel_world(self, offsets):
        """World coordinates (3, N) of the points at voxel ``index + offsets``."""
        idx = np.indices(self.shape, dtype=float).reshape(3, -1) + np.asarray(offsets)[:, None]
        return self.affine[:3, :3] @ idx + self.affine[:3, 3:4]


@lru_cache(maxsize=1)
def _templates():
    from nilearn.datasets import (
        load_mni152_brain_mask,
        load_mni152_gm_template,
        load_mni152_wm_template,
    )

    gm = load_mni152_gm_template(resolution=1)
    wm = load_mni152_wm_template(resolution=1)
    brain = load_mni152_brain_mask(resolution=1)
    # C order: the templates are stored in Fortran order, and map_coordinates samples a
    # C-ordered volume about twice as fast (fewer cache misses along the grid's z)
    stack = np.ascontiguousarray(
        np.stack([np.asarray(im.dataobj, dtype=np.float32) for im in (gm, wm, brain)]))
    return stack, np.asarray(gm.affine)


def brain_centre():
    """Centre of the template's brain mask bounding box, MNI mm."""
    return _brain_centre().copy()


@lru_cache(maxsize=1)
def _brain_centre():  # once per process: a search of the whole 1 mm mask
    stack, affine = _templates()
    ijk = np.argwhere(stack[2] > 0.5)
    centre = (ijk.min(axis=0) + ijk.max(axis=0)) / 2.0
    return affine[:3, :3] @ centre + affine[:3, 3]


def make_grid(matrix, fov_mm, slab_mm):
    """Axial grid of ``matrix`` voxels covering ``fov_mm`` in plane and ``slab_mm`` in z,
    centred on the brain, in RAS+ orientation."""
    nx, ny, nz = matrix
    zooms = np.array([fov_mm / nx, fov_mm / ny, slab_mm / nz])
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = brain_centre() - zooms * (np.array(matrix) - 1) / 2.0
    return Grid(tuple(int(n) for n in matrix), affine)


def random_rigid(rng, max_rotation_deg=3.0, max_shift_mm=3.0, max_scale=0.03):
    """A small random similarity transform (4x4) about the brain centre."""
    angles = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg, 3))
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    linear = rz @ ry @ rx * (1.0 + rng.uniform(-max_scale, max_scale))
    centre = brain_centre()
    transform = np.eye(4)
    transform[:3, :3] = linear
    transform[:3, 3] = centre - linear @ centre + rng.uniform(-max_shift_mm, max_shift_mm, 3)
    return transform


def tissue_fractions(grid, template_from_world=None, warp=None):
    """Partial-volume fractions of GM, WM and CSF on ``grid``, shape (3, x, y, z).

    ``template_from_world`` maps grid world coordinates into template space (identity by
    default); ``warp`` (a :class:`bids_perfusion.phantom.deformation.Warp`, None for none)
    then moves each template point to the one sampled in its place. GM + WM is capped at
    the brain fraction; CSF is the rest of the brain.
    """
    stack, tpl_affine = _templates()
    if template_from_world is None:
        template_from_world = np.eye(4)
    voxel_from_template = np.linalg.inv(tpl_affine)
    to_template = voxel_from_template @ template_from_world
    sums = np.zeros((3, int(np.prod(grid.shape))))
    steps = [(np.arange(n) + 0.5) / n - 0.5 for n in SUPERSAMPLING]
    for offsets in np.stack(np.meshgrid(*steps, indexing="ij")).reshape(3, -1).T:
        world = grid.sub_voxel_world(offsets)
        if warp is None:
            ijk = to_template[:3, :3] @ world + to_template[:3, 3:4]
        else:
            mm = warp(template_from_world[:3, :3] @ world + template_from_world[:3, 3:4])
            ijk = voxel_from_template[:3, :3] @ mm + voxel_from_template[:3, 3:4]
        for channel in range(3):
            sums[channel] += ndimage.map_coordinates(stack[channel], ijk, order=1, cval=0.0)
    gm, wm, brain = (sums / np.prod(SUPERSAMPLING)).reshape(3, *grid.shape)
    brain = np.clip(brain, 0.0, 1.0)
    parenchyma = gm + wm
    excess = np.where(parenchyma > brain, brain / np.maximum(parenchyma, 1e-12), 1.0)
    gm, wm = gm * excess, wm * excess
    csf = np.clip(brain - gm - wm, 0.0, None)
    return np.stack([gm, wm, csf])
