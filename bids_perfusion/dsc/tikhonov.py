"""Standard-form Tikhonov deconvolution with a fixed, GCV or L-curve regularisation parameter,
vectorised over voxels.

With the SVD of the causal convolution matrix ``A = U diag(s) Vᵀ`` and ``β = Uᵀ C_tis``,
the Tikhonov solution ``k_λ = argmin ||A k − C_tis||² + λ² ||k||²`` is

    k_λ = V diag(f_i / s_i) β,   f_i = s_i² / (s_i² + λ²)   (the filter factors)

(Calamante et al., MRM 2003;50:1237; Hansen, *Rank-Deficient and Discrete Ill-Posed
Problems*, SIAM 1998). Both selection criteria are sums of ``β_i²`` weighted by functions
of ``(s_i, λ)``, so for a grid of λ they are one matrix product ``β² @ W`` for all voxels
at once; λ is then picked per voxel. The parameters have no defaults here: their
literature values live in :mod:`bids_perfusion.dsc.deconvolution`.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bids_perfusion.dsc.convolution_matrices import causal_convolution_matrix


class Tikhonov:
    """Tikhonov deconvolution; λ = ``relative λ · s_max`` from a grid of relative values.

    ``criterion`` is ``"fixed"`` (the single value ``lam``), ``"gcv"`` (minimum of
    :meth:`gcv` over ``lambda_grid``) or ``"lcurve"`` (maximum of :meth:`lcurve_curvature`
    over ``lambda_grid``).
    """

    def __init__(self, aif: ArrayLike, dt: float, criterion: str, lam: float,
                 lambda_grid: Sequence[float]):
        self._u, s, self._vt = np.linalg.svd(causal_convolution_matrix(aif, dt))
        relative = [lam] if criterion == "fixed" else lambda_grid
        self.relative_lambdas = np.asarray(relative, dtype=np.float64)
        self._lambdas = self.relative_lambdas[:, None] * s[0]  # (L, 1)
        self._s2 = s**2
        self.n_lags = s.size
        self._shrink = self._s2 + self._lambdas**2  # s² + λ², (L, T)
        self._solution_filter = s / self._shrink  # f / s, finite where s = 0
        self._select = {"fixed": self._fixed, "gcv": self._gcv, "lcurve": self._lcurve}[criterion]

    def solve(self, concentration: NDArray[Any]) -> tuple[NDArray[Any], NDArray[np.float64]]:
        """``(V, T)`` tissue curves -> ``(V, T)`` residues ``k`` and the relative λ per voxel."""
        beta = concentration @ self._u.astype(concentration.dtype)
        index = self._select(beta.astype(np.float64) ** 2)
        filters = self._solution_filter[index].astype(concentration.dtype)
        residue = (beta * filters) @ self._vt.astype(concentration.dtype)
        return residue, self.relative_lambdas[index]

    def residual_norm2(self, beta2: NDArray[np.float64]) -> NDArray[np.float64]:
        """``ρ(λ) = ||A k_λ − C_tis||² = Σ_i (1 − f_i)² β_i²``, shape ``(V, L)``."""
        return beta2 @ ((self._lambdas**2 / self._shrink) ** 2).T

    def solution_norm2(self, beta2: NDArray[np.float64]) -> NDArray[np.float64]:
        """``η(λ) = ||k_λ||² = Σ_i f_i² β_i² / s_i²``, shape ``(V, L)``."""
        return beta2 @ (self._s2 / self._shrink**2).T

    def gcv(self, beta2: NDArray[np.float64]) -> NDArray[np.float64]:
        """Generalised cross-validation ``G(λ) = ρ(λ) / (T − Σ_i f_i)²``.

        Golub, Heath and Wahba, Technometrics 1979;21:215. A is square, so ``β`` carries
        all of ``C_tis`` and ``ρ`` has no out-of-range term. Shape ``(V, L)``.
        """
        dof = self._s2.size - (self._s2 / self._shrink).sum(axis=-1)
        return self.residual_norm2(beta2) / dof**2

    def lcurve_curvature(self, beta2: NDArray[np.float64]) -> NDArray[np.float64]:
        """Curvature of the L-curve ``(log ||A k_λ − C_tis||, log ||k_λ||)`` at each λ, ``(V, L)``.

        With ``ρ = ||A k_λ − C_tis||²``, ``η = ||k_λ||²`` and
        ``η' = dη/dλ = −(4/λ) Σ_i (1 − f_i) f_i² β_i² / s_i²`` (so that ``ρ' = −λ² η'``),
        the second derivatives cancel and the curvature is

        ``κ = 2 (η ρ / |η'|) (λ² η' ρ + 2 λ η ρ + λ⁴ η η') / (λ⁴ η² + ρ²)^{3/2}``

        (derived as in Hansen, "The L-curve and its use in the numerical treatment of
        inverse problems", in *Computational Inverse Problems in Electrocardiology*, WIT
        Press 2000; the factor 2 is for norms rather than squared norms). The corner of
        the L is the maximum of κ. Voxels with a zero curve get ``−inf``.
        """
        rho = self.residual_norm2(beta2)
        eta = self.solution_norm2(beta2)
        deta = self.solution_norm2_derivative(beta2)
        with np.errstate(divide="ignore", invalid="ignore"):
            kappa = curvature(self._lambdas.T, rho, eta, deta)
        return np.where(np.isfinite(kappa), kappa, -np.inf)

    def solution_norm2_derivative(self, beta2: NDArray[np.float64]) -> NDArray[np.float64]:
        """``η' = dη/dλ = −(4/λ) Σ_i (1 − f_i) f_i² β_i² / s_i²``, shape ``(V, L)``."""
        return beta2 @ (-4.0 * self._lambdas * self._s2 / self._shrink**3).T

    def _fixed(self, beta2: NDArray[np.float64]) -> NDArray[np.intp]:
        return np.zeros(len(beta2), dtype=np.intp)

    def _gcv(self, beta2: NDArray[np.float64]) -> NDArray[np.intp]:
        return np.argmin(self.gcv(beta2), axis=-1)

    def _lcurve(self, beta2: NDArray[np.float64]) -> NDArray[np.intp]:
        return np.argmax(self.lcurve_curvature(beta2), axis=-1)


def curvature(lam: Any, rho: Any, eta: Any, deta: Any) -> Any:
    """``κ`` of :meth:`Tikhonov.lcurve_curvature` from ``λ``, ``ρ``, ``η`` and ``η'``.

    Arithmetic only, so numpy arrays and torch tensors alike
    (:mod:`bids_perfusion.dsc.deconvolution_torch`); a zero curve gives a non-finite κ.
    """
    return (
        2.0
        * (eta * rho / abs(deta))
        * (lam**2 * deta * rho + 2.0 * lam * eta * rho + lam**4 * eta * deta)
        / (lam**4 * eta**2 + rho**2) ** 1.5
    )
