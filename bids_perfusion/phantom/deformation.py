"""Smooth random non-linear deformation of template space, and ventricle-size variation.

A :class:`Warp` maps a point ``p`` of template space (MNI mm) to the template point that
the phantom samples in its place,

    W(p) = V(p + u(p)),

where ``u`` is a displacement field of Gaussian-smoothed white noise (:func:`random_displacement`)
and ``V`` a radial scaling about the centroid of the lateral ventricles
(:func:`ventricle_scaling`). Sampling the templates at ``W(p)`` instead of ``p`` makes
every subject's brain a different, smoothly deformed copy of the MNI152 brain with
ventricles enlarged or shrunk by a known factor.

Invertibility: ``p -> p + u(p)`` is a bijection when the Lipschitz constant of ``u`` is
below 1, since then ``p = q - u(p)`` is a contraction for every ``q`` (Banach fixed-point
theorem), and its Jacobian ``I + ∇u`` has a positive determinant because ``det(I + t∇u)``
cannot vanish for t in [0, 1]. :func:`random_displacement` bounds the Frobenius norm of
``∇u`` (an upper bound of its spectral norm) by :data:`MAX_GRADIENT`. ``V`` is invertible
with a positive Jacobian for every scale in :func:`ventricle_scaling`'s range (see there).
The displacement lives on a lattice of template space, not on the phantom grid, so a
subject's anatomy does not depend on the matrix it is sampled on.
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Spacing of the displacement lattice, mm.
LATTICE_MM = 4.0
#: Bound on the Frobenius norm of the displacement gradient ∇u (< 1: invertible).
MAX_GRADIENT = 0.5
#: Lateral ventricles of the template (MNI mm), measured once on nilearn's MNI152 2009
#: masks: the connected component of CSF (brain mask, GM + WM < 0.5) more than 15 mm
#: from the mask's edge that spans both lateral ventricles, 17.6 mL, has its centroid at
#: (0, −14.8, 14.5) mm and standard deviations (16.5, 23.6, 7.4) mm along x, y, z. The
#: radii of the scaling's Gaussian weight are 1.5 times these.
VENTRICLE_CENTRE_MM = (0.0, -14.8, 14.5)
VENTRICLE_RADII_MM = (24.8, 35.4, 11.1)


@dataclass(frozen=True)
class Warp:
    """``W(p) = V(p + u(p))`` on template space; ``displacement`` is ``u`` on a lattice of
    ``spacing_mm`` starting at ``origin_mm``, shape (3, nx, ny, nz) in mm."""

    displacement: np.ndarray
    origin_mm: np.ndarray
    spacing_mm: float
    ventricle_centre_mm: np.ndarray
    ventricle_radii_mm: np.ndarray
    ventricle_scale: float

    def displace(self, points):
        """``p + u(p)`` for points (3, N) in mm (trilinear interpolation of the lattice)."""
        ijk = (points - self.origin_mm[:, None]) / self.spacing_mm
        return points + np.stack([ndimage.map_coordinates(c, ijk, order=1, mode="nearest")
                                  for c in self.displacement])

    def __call__(self, points):
        """``W(p)`` for points (3, N) in template mm."""
        return ventricle_scaling(self.displace(points), self.ventricle_centre_mm,
                                 self.ventricle_radii_mm, self.ventricle_scale)

    def inverse(self, points, tolerance_mm=1e-9, max_iterations=200):
        """``W⁻¹(q)`` for points (3, N): the fixed point of ``p ← p + q − W(p)``, a
        contraction while the Jacobian of W stays close to the identity (``‖∇u‖ ≤``
        :data:`MAX_GRADIENT`, ventricle scales within the population's range), iterated
        until no point moves by more than ``tolerance_mm``."""
        points = np.asarray(points, dtype=float)
        estimate = points.copy()
        for _ in range(max_iterations):
            step = points - self(estimate)
            estimate += step
            if np.abs(step).max() < tolerance_mm:
                return estimate
        raise ValueError("the deformation could not be inverted: it is not a contraction")

    def lattice_points(self):
        """Template coordinates (3, nx, ny, nz) of the lattice nodes, mm."""
        shape = self.displacement.shape[1:]
        return (np.indices(shape, dtype=float) * self.spacing_mm
                + self.origin_mm[:, None, None, None])

    def jacobian_determinant(self):
        """det ∂W/∂p at the lattice nodes (central differences), shape (nx, ny, nz)."""
        mapped = self(self.lattice_points().reshape(3, -1)).reshape(
            3, *self.displacement.shape[1:])
        jacobian = np.stack([np.stack(np.gradient(mapped[i], self.spacing_mm), axis=0)
                             for i in range(3)])
        return np.linalg.det(np.moveaxis(jacobian, (0, 1), (-2, -1)))


def random_displacement(rng, shape, spacing_mm, rms_mm, fwhm_mm):
    """Displacement field (3, *shape), mm: white noise smoothed by a Gaussian of
    ``fwhm_mm``, scaled to an RMS displacement of ``rms_mm``, then, if the largest
    Frobenius norm of its gradient exceeds :data:`MAX_GRADIENT`, scaled down to it.

    Returns the field and the factor of that last scaling (1 when none was needed).
    """
    sigma = fwhm_mm / np.sqrt(8.0 * np.log(2.0)) / spacing_mm
    field = np.stack([ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
                      for _ in range(3)])
    field *= rms_mm / np.sqrt(np.mean(np.sum(field**2, axis=0)))
    norm = np.sqrt(sum(np.sum(np.stack(np.gradient(c, spacing_mm)) ** 2, axis=0)
                       for c in field))
    factor = min(1.0, MAX_GRADIENT / float(norm.max()))
    return field * factor, factor


def ventricle_scaling(points, centre, radii, scale):
    """Radial map ``V(p) = c + (p − c)(1 − a w(p))`` with ``a = 1 − 1/k`` and the Gaussian
    weight ``w = exp(−s²/2)``, ``s² = Σ_i ((p_i − c_i)/R_i)²``.

    Sampled at V(p), structures near the centroid ``c`` appear scaled by ``k`` (volume
    ``k³``); far from it (s ≫ 1) V is the identity. Its Jacobian determinant, by the
    matrix determinant lemma, is ``(1 − a w)² (1 − a w (1 − s²))``, positive for every
    ``k > 0`` when a > 0 (dilation) and, since ``min e^(−s²/2)(1 − s²) = −2e^(−3/2)``,
    for ``a > −e^(3/2)/2`` (k > 0.31) when the ventricles shrink.
    """
    offset = points - np.asarray(centre, dtype=float)[:, None]
    s2 = np.sum((offset / np.asarray(radii, dtype=float)[:, None]) ** 2, axis=0)
    a = 1.0 - 1.0 / scale
    return points - a * np.exp(-0.5 * s2) * offset


def template_lattice(spacing_mm=LATTICE_MM):
    """Origin (3,) and shape of a lattice of ``spacing_mm`` covering the template volume."""
    from bids_perfusion.phantom.anatomy import _templates

    stack, affine = _templates()
    corners = affine[:3, :3] @ (np.array(stack.shape[1:]) - 1.0) + affine[:3, 3]
    low, high = np.minimum(affine[:3, 3], corners), np.maximum(affine[:3, 3], corners)
    shape = tuple(int(n) for n in np.ceil((high - low) / spacing_mm) + 1)
    return low, shape


def random_warp(rng, rms_mm, fwhm_mm, ventricle_volume_factor):
    """A :class:`Warp` with a random displacement of RMS ``rms_mm`` and smoothness
    ``fwhm_mm``, and lateral ventricles of ``ventricle_volume_factor`` times the template's
    volume (linear scale its cube root). Returns the warp and the gradient-bound factor."""
    origin, shape = template_lattice()
    displacement, factor = random_displacement(rng, shape, LATTICE_MM, rms_mm, fwhm_mm)
    warp = Warp(displacement, origin, LATTICE_MM, np.array(VENTRICLE_CENTRE_MM),
                np.array(VENTRICLE_RADII_MM), float(np.cbrt(ventricle_volume_factor)))
    return warp, factor
