"""Glioma of the phantom: an ellipsoid with necrotic core, enhancing rim and oedema.

The tumour is centred in deep white matter of a random hemisphere; its compartments are
nested ellipsoidal shells (normalised radius r): necrosis r < n, enhancing (or solid)
tumour n <= r < 1, oedema 1 <= r < e, with n and e set by the grade
(:data:`bids_perfusion.phantom.config.GRADE_MODELS`). Fractions are averaged over
sub-voxel samples, so boundaries carry partial volume.
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bids_perfusion.phantom.anatomy import SUPERSAMPLING

COMPARTMENTS = ("enhancing", "necrosis", "oedema")


@dataclass(frozen=True)
class Tumour:
    """Geometry and perfusion of one glioma (world coordinates in mm)."""

    grade: str
    centre_mm: tuple
    radius_mm: float
    axes: tuple
    hemisphere: str
    rcbv: float
    rcbf: float
    k2: float

    def describe(self):
        """Tumour descriptors for participants.tsv (columns :data:`DESCRIPTORS`)."""
        values = (self.grade, self.hemisphere, round(self.radius_mm, 2),
                  *(round(c, 2) for c in self.centre_mm), round(self.rcbv, 3),
                  round(self.rcbf, 3), round(self.k2, 5))
        return dict(zip(DESCRIPTORS, values, strict=True))


#: participants.tsv columns of :meth:`Tumour.describe`.
DESCRIPTORS = ("grade", "tumor_hemisphere", "tumor_radius_mm", "tumor_center_x_mm",
               "tumor_center_y_mm", "tumor_center_z_mm", "tumor_rcbv", "tumor_rcbf",
               "tumor_k2")
#: The same columns for a subject without tumour: BIDS ``n/a`` (missing), so that the
#: group level leaves the subject out of grading.
ABSENT = dict.fromkeys(DESCRIPTORS, "n/a")


def placement_region(grid, brain_fraction, hemisphere):
    """Depth below the brain's edge (mm) and the voxels where a tumour centre may lie:
    the central half of the slices, more than 5 mm into ``hemisphere`` (RAS x)."""
    depth = ndimage.distance_transform_edt(brain_fraction > 0.5, sampling=grid.zooms)
    ijk = np.indices(grid.shape)
    central = np.abs(ijk[2] - (grid.shape[2] - 1) / 2.0) <= grid.shape[2] / 4.0
    world_x = grid.affine[0, 0] * ijk[0] + grid.affine[0, 3]
    side = world_x < -5.0 if hemisphere == "left" else world_x > 5.0
    return depth, central & side


def draw_tumour(rng, grade, model, grid, wm_fraction, brain_fraction):
    """Draw a tumour of ``grade`` whose centre lies in white matter, well inside the brain
    (at least the oedema radius from its edge where possible) and in the central slices."""
    radius = rng.uniform(*model.radius_mm)
    axes = tuple(rng.uniform(0.85, 1.15, 3))
    hemisphere = "left" if rng.random() < 0.5 else "right"
    depth, region = placement_region(grid, brain_fraction, hemisphere)
    for margin in (model.oedema * radius, radius, 0.0):
        candidates = np.argwhere((wm_fraction > 0.5) & (depth > margin) & region)
        if len(candidates):
            break
    if not len(candidates):
        raise ValueError("Phantom grid too small to hold a tumour: enlarge 'matrix'.")
    voxel = candidates[rng.integers(len(candidates))]
    centre = grid.affine[:3, :3] @ voxel + grid.affine[:3, 3]
    return Tumour(grade, tuple(float(c) for c in centre), float(radius), axes, hemisphere,
                  *draw_perfusion(rng, model))


def draw_perfusion(rng, model):
    """rCBV, rCBF and k2 of the enhancing tumour, drawn uniformly from ``model``'s ranges
    (rCBF as rCBV times a draw of ``rcbf_over_rcbv``)."""
    rcbv = rng.uniform(*model.rcbv)
    rcbf = rcbv * rng.uniform(*model.rcbf_over_rcbv)
    k2 = rng.uniform(*model.k2)
    return float(rcbv), float(rcbf), float(k2)


def tumour_fractions(tumour, model, grid):
    """Fractions of (enhancing, necrosis, oedema) in each voxel, shape (3, x, y, z)."""
    steps = [(np.arange(n) + 0.5) / n - 0.5 for n in SUPERSAMPLING]
    offsets = np.stack(np.meshgrid(*steps, indexing="ij")).reshape(3, -1).T
    scale = tumour.radius_mm * np.asarray(tumour.axes)[:, None]
    counts = np.zeros((3, int(np.prod(grid.shape))))
    for offset in offsets:
        world = grid.sub_voxel_world(offset)
        r = np.linalg.norm((world - np.asarray(tumour.centre_mm)[:, None]) / scale, axis=0)
        counts[0] += (r >= model.necrosis) & (r < 1.0)
        counts[1] += r < model.necrosis
        counts[2] += (r >= 1.0) & (r < model.oedema)
    return (counts / len(offsets)).reshape(3, *grid.shape)
