"""Smooth random non-linear deformation of template space.

A :class:`Warp` maps a point ``p`` of template space (MNI mm) to the template point that
the phantom samples in its place, ``W(p) = p + d(p)``, with ``d`` a displacement given
on a lattice of :data:`LATTICE_MM` and interpolated trilinearly. :func:`random_warp`
builds ``d`` at the lattice nodes as

    d(p) = V(p + u(p)) − p,

where ``u`` is Gaussian-smoothed white noise (:func:`random_displacement`) and ``V`` an
optional further map (the ventricle dilation of :mod:`bids_perfusion.phantom.ventricles`).
Sampling the templates at ``W(p)`` instead of ``p`` makes every subject's brain a
different, smoothly deformed copy of the MNI152 brain.

Invertibility: ``p -> p + u(p)`` is a bijection when the Lipschitz constant of ``u`` is
below 1, since then ``p = q - u(p)`` is a contraction for every ``q`` (Banach fixed-point
theorem), and its Jacobian ``I + ∇u`` has a positive determinant because ``det(I + t∇u)``
cannot vanish for t in [0, 1]. :func:`random_displacement` bounds the Frobenius norm of
``∇u`` (an upper bound of its spectral norm) by :data:`MAX_GRADIENT`; ``V`` obeys the
same bound, and a composition of such maps keeps a positive Jacobian determinant, which
:meth:`Warp.jacobian_determinant` measures on the lattice. The lattice lives in template
space, not on the phantom grid, so a subject's anatomy does not depend on the matrix it
is sampled on.
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Spacing of the displacement lattice, mm.
LATTICE_MM = 4.0
#: Bound on the Frobenius norm of the displacement gradient ∇u (< 1: invertible).
MAX_GRADIENT = 0.5


@dataclass(frozen=True)
class Warp:
    """``W(p) = p + d(p)`` on template space; ``displacement`` is ``d`` on a lattice of
    ``spacing_mm`` starting at ``origin_mm``, shape (3, nx, ny, nz) in mm."""

    displacement: np.ndarray
    origin_mm: np.ndarray
    spacing_mm: float

    def __call__(self, points):
        """``W(p)`` for points (3, N) in template mm (trilinear interpolation of d)."""
        ijk = (points - self.origin_mm[:, None]) / self.spacing_mm
        return points + np.stack([ndimage.map_coordinates(c, ijk, order=1, mode="nearest")
                                  for c in self.displacement])

    def inverse(self, points, tolerance_mm=1e-9, max_iterations=200):
        """``W⁻¹(q)`` for points (3, N): the fixed point of ``p ← p + q − W(p)``, a
        contraction while the Jacobian of W stays close to the identity, iterated until
        no point moves by more than ``tolerance_mm``."""
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
        """det(I + ∇d) at the lattice nodes (central differences), shape (nx, ny, nz)."""
        jacobian = np.stack([np.stack(np.gradient(c, self.spacing_mm)) for c in
                             self.displacement]) + np.eye(3)[:, :, None, None, None]
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
    factor = min(1.0, MAX_GRADIENT / float(gradient_norm(field, spacing_mm).max()))
    return field * factor, factor


def gradient_norm(field, spacing_mm):
    """Frobenius norm of the gradient of a vector field (3, nx, ny, nz), per node."""
    return np.sqrt(sum(np.sum(np.stack(np.gradient(c, spacing_mm)) ** 2, axis=0)
                       for c in field))


def template_lattice(spacing_mm=LATTICE_MM):
    """Origin (3,) and shape of a lattice of ``spacing_mm`` covering the template volume."""
    from bids_perfusion.phantom.anatomy import _templates

    stack, affine = _templates()
    corners = affine[:3, :3] @ (np.array(stack.shape[1:]) - 1.0) + affine[:3, 3]
    low, high = np.minimum(affine[:3, 3], corners), np.maximum(affine[:3, 3], corners)
    shape = tuple(int(n) for n in np.ceil((high - low) / spacing_mm) + 1)
    return low, shape


def random_warp(rng, rms_mm, fwhm_mm, then=None):
    """A :class:`Warp` on the template lattice: a random displacement of RMS ``rms_mm``
    and smoothness ``fwhm_mm``, followed by the map ``then`` ((3, N) -> (3, N) mm; none
    when None). Returns the warp and the gradient-bound factor of
    :func:`random_displacement`."""
    origin, shape = template_lattice()
    displacement, factor = random_displacement(rng, shape, LATTICE_MM, rms_mm, fwhm_mm)
    nodes = (np.indices(shape, dtype=float) * LATTICE_MM
             + origin[:, None, None, None]).reshape(3, -1)
    moved = nodes + displacement.reshape(3, -1)
    if then is not None:
        moved = then(moved)
    return Warp((moved - nodes).reshape(3, *shape), origin, LATTICE_MM), factor
