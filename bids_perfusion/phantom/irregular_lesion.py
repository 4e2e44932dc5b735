"""Irregular gliomas of the population phantom: radially perturbed spheres.

A lesion of mean radius ``R`` centred at ``c`` has the star-shaped surface
``r = R (1 + δ(n))`` in the direction ``n = (p − c) / |p − c|``, with

    δ(n) = Σ_{1 ≤ |α| ≤ 3} c_α n^α − δ̄,

a random combination (Gaussian ``c_α``) of the 19 monomials ``n_x^i n_y^j n_z^k`` of
degree 1 to 3, which on the unit sphere span the spherical harmonics of degree ≤ 3, so
that δ is a smooth, band-limited random function of direction. δ is centred (mean δ̄
over the sphere removed, so ``R`` is the mean radius), scaled to an RMS of ``roughness``
over the sphere and floored at :data:`MIN_RADIUS_FACTOR` − 1. The compartments are
nested copies of that surface, in the normalised radius ``ρ = |p − c| / (R (1 + δ(n)))``:
necrosis ρ < ``necrosis``, enhancing (or solid) tumour ``necrosis`` ≤ ρ < 1, oedema
1 ≤ ρ < ``oedema``, as for the ellipsoidal glioma of :mod:`bids_perfusion.phantom.lesion`.
Fractions are averaged over the same sub-voxel samples.
"""

from dataclasses import dataclass

import numpy as np

from bids_perfusion.phantom.anatomy import SUPERSAMPLING

#: Exponents (i, j, k) of the monomials n_x^i n_y^j n_z^k of the radial perturbation.
EXPONENTS = tuple((i, j, k) for i in range(4) for j in range(4) for k in range(4)
                  if 1 <= i + j + k <= 3)
#: Smallest radius of the surface as a fraction of the mean radius.
MIN_RADIUS_FACTOR = 0.4
#: Directions on which δ is centred and scaled (a Fibonacci lattice of the sphere).
SPHERE_POINTS = 1024


@dataclass(frozen=True)
class IrregularLesion:
    """One lesion: centre (world mm), mean radius (mm), necrosis and oedema radii as
    fractions / multiples of the surface, and the coefficients of δ (:data:`EXPONENTS`)."""

    centre_mm: tuple
    radius_mm: float
    necrosis: float
    oedema: float
    roughness: float
    coefficients: tuple
    offset: float

    def radius_factor(self, directions):
        """``1 + δ(n)`` for unit vectors (3, N), floored at :data:`MIN_RADIUS_FACTOR`."""
        delta = np.asarray(self.coefficients) @ monomials(directions) - self.offset
        return np.maximum(1.0 + delta, MIN_RADIUS_FACTOR)

    def extent_mm(self):
        """An upper bound of the distance from the centre to the oedema's outer surface.

        δ is a polynomial of degree 3 on the sphere, so its angular gradient is at most
        3 max|δ| (Bernstein's inequality for spherical harmonics); every direction lies
        within 0.11 rad of a point of :func:`sphere_points`, so ``max δ`` exceeds the
        largest sampled value by at most 0.33 max|δ| (0.35 here, for margin).
        """
        delta = self.radius_factor(sphere_points()) - 1.0
        return self.radius_mm * self.oedema * (1.0 + delta.max() + 0.35 * np.abs(delta).max())


def monomials(directions):
    """The monomials of :data:`EXPONENTS` at unit vectors (3, N), shape (19, N)."""
    x, y, z = ([np.ones_like(d), d, d * d, d * d * d] for d in np.asarray(directions))
    return np.stack([x[i] * y[j] * z[k] for i, j, k in EXPONENTS])


def sphere_points(n=SPHERE_POINTS):
    """``n`` nearly uniform unit vectors (3, n): the Fibonacci lattice of the sphere."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = np.pi * (1.0 + np.sqrt(5.0)) * k
    rho = np.sqrt(1.0 - z**2)
    return np.stack([rho * np.cos(phi), rho * np.sin(phi), z])


def draw_shape(rng, roughness):
    """Coefficients and offset of δ with zero mean and RMS ``roughness`` on the sphere."""
    coefficients = rng.standard_normal(len(EXPONENTS))
    delta = coefficients @ monomials(sphere_points())
    scale = roughness / (delta - delta.mean()).std()
    return tuple(float(c) for c in coefficients * scale), float(delta.mean() * scale)


def lesion_fractions(lesions, grid):
    """Fractions of (enhancing, necrosis, oedema) in each voxel, shape (3, x, y, z).

    Only voxels within a lesion's :meth:`~IrregularLesion.extent_mm` (plus a voxel
    diagonal) are sampled. Where lesions overlap, the three fractions are scaled so that
    their sum stays at most 1.
    """
    steps = [(np.arange(n) + 0.5) / n - 0.5 for n in SUPERSAMPLING]
    offsets = np.stack(np.meshgrid(*steps, indexing="ij")).reshape(3, -1).T
    centres = grid.sub_voxel_world(np.zeros(3))
    diagonal = float(np.linalg.norm(grid.zooms))
    counts = np.zeros((3, centres.shape[1]))
    for lesion in lesions:
        centre = np.asarray(lesion.centre_mm)[:, None]
        near = np.flatnonzero(np.linalg.norm(centres - centre, axis=0)
                              <= lesion.extent_mm() + diagonal)
        for offset in offsets:
            d = centres[:, near] + (grid.affine[:3, :3] @ offset)[:, None] - centre
            r = np.linalg.norm(d, axis=0)
            rho = r / (lesion.radius_mm
                       * lesion.radius_factor(d / np.maximum(r, 1e-9)))
            counts[0, near] += (rho >= lesion.necrosis) & (rho < 1.0)
            counts[1, near] += rho < lesion.necrosis
            counts[2, near] += (rho >= 1.0) & (rho < lesion.oedema)
    fractions = counts / len(offsets)
    fractions /= np.maximum(fractions.sum(axis=0), 1.0)
    return fractions.reshape(3, *grid.shape)
