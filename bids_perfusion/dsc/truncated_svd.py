"""Truncated-SVD deconvolution: standard (sSVD), block-circulant (cSVD) and oscillation-index
(oSVD) variants, vectorised over voxels.

Every solver is built once per AIF (the SVD or the spectrum of the convolution matrix is
computed in float64 at construction) and then maps a ``(V, T)`` block of tissue curves to
the flow-scaled residues ``k`` in one matrix product or one FFT pair, in the dtype of the
data. The parameters have no defaults here: their literature values live in
:mod:`bids_perfusion.dsc.deconvolution`.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bids_perfusion.dsc.convolution_matrices import (
    causal_convolution_matrix,
    circulant_length,
    circulant_spectrum,
)


def oscillation_index(residue: ArrayLike) -> NDArray[np.float64]:
    """Oscillation index of residue functions along the last axis (Wu et al., MRM 2003;50:164).

    ``OI = 1 / (N · max_k |f[k]|) · Σ_{k=2}^{N−1} |f[k] − 2 f[k−1] + f[k−2]|``

    with N the number of samples of ``f`` (the padded length L for block-circulant
    solutions). A residue that is identically zero has OI = 0.
    """
    residue = np.asarray(residue)
    total = np.abs(np.diff(residue, n=2, axis=-1)).sum(axis=-1)
    peak = residue.shape[-1] * np.abs(residue).max(axis=-1)
    return np.divide(total, peak, out=np.zeros_like(total), where=peak > 0)


class StandardSVD:
    """sSVD: truncated pseudo-inverse of the causal matrix (Ostergaard et al., MRM 1996;36:715).

    With ``A = U diag(s) Vᵀ`` (see
    :func:`~bids_perfusion.dsc.convolution_matrices.causal_convolution_matrix`),
    ``k = V diag(w) Uᵀ C_tis`` with ``w_i = 1 / s_i`` if ``s_i ≥ threshold · s_max`` else 0.
    The truncated pseudo-inverse is formed once, so a block of voxels costs one product.
    """

    def __init__(self, aif: ArrayLike, dt: float, threshold: float):
        u, s, vt = np.linalg.svd(causal_convolution_matrix(aif, dt))
        keep = s >= threshold * s[0]
        self.threshold = threshold
        self.n_lags = s.size
        self._right_inverse = (u[:, keep] / s[keep]) @ vt[keep]  # k = C_tis @ this

    def solve(self, concentration: NDArray[Any]) -> tuple[NDArray[Any], NDArray[np.float64]]:
        """``(V, T)`` tissue curves -> ``(V, T)`` residues ``k`` and the threshold per voxel."""
        residue = concentration @ self._right_inverse.astype(concentration.dtype)
        return residue, np.full(len(concentration), self.threshold)


class _CirculantSolver:
    """Spectral solution of ``C_pad = D k`` with D the block-circulant matrix (Wu 2003)."""

    def __init__(self, aif: ArrayLike, dt: float):
        self.n_lags = circulant_length(np.shape(aif)[-1])
        self._spectrum = circulant_spectrum(aif, dt)
        self._magnitude = np.abs(self._spectrum) / np.abs(self._spectrum).max()

    def _inverse_filter(self, threshold: float,
                        dtype: np.dtype[Any]) -> NDArray[np.complexfloating]:
        """``1 / λ_f`` where ``|λ_f| ≥ threshold · max|λ|``, else 0: the truncated SVD of D."""
        keep = self._magnitude >= threshold
        inverse = np.divide(1.0, self._spectrum, out=np.zeros_like(self._spectrum), where=keep)
        return inverse.astype(np.result_type(dtype, np.complex64))

    def _transform(self, concentration: NDArray[Any]) -> NDArray[np.complexfloating]:
        """Spectrum of the tissue curves zero-padded to L samples."""
        return np.fft.rfft(concentration, n=self.n_lags, axis=-1)

    def _residue(self, tissue_spectrum: NDArray[np.complexfloating],
                 inverse_filter: NDArray[np.complexfloating]) -> NDArray[Any]:
        """``k = F⁻¹(inverse_filter · F(C_pad))``, L samples per voxel."""
        return np.fft.irfft(tissue_spectrum * inverse_filter, n=self.n_lags, axis=-1)


class CirculantSVD(_CirculantSolver):
    """cSVD: truncated SVD of the block-circulant matrix, one threshold for all voxels.

    ``k = V diag(w) Uᵀ C_pad`` with ``D = U diag(s) Vᵀ`` the circulant of the AIF padded
    to ``L = 2T`` and ``w_i = 1 / s_i`` for ``s_i ≥ threshold · s_max``, else 0 (Wu et al.,
    MRM 2003;50:164). Insensitive to a delay of the tissue curve relative to the AIF: a
    delay circularly shifts ``k`` without changing its peak. ``k`` has L samples; lags
    past T stand for a tissue curve that leads the AIF.
    """

    def __init__(self, aif: ArrayLike, dt: float, threshold: float):
        super().__init__(aif, dt)
        self.threshold = threshold

    def solve(self, concentration: NDArray[Any]) -> tuple[NDArray[Any], NDArray[np.float64]]:
        """``(V, T)`` tissue curves -> ``(V, 2T)`` residues ``k`` and the threshold per voxel."""
        inverse = self._inverse_filter(self.threshold, concentration.dtype)
        residue = self._residue(self._transform(concentration), inverse)
        return residue, np.full(len(concentration), self.threshold)


class OscillationIndexSVD(_CirculantSolver):
    """oSVD: cSVD with the threshold chosen per voxel by the oscillation index (Wu 2003).

    For each voxel, the smallest threshold of ``threshold_grid`` whose cSVD residue has
    :func:`oscillation_index` ``< oi_threshold``; the largest grid threshold if none does.
    The sweep runs over the grid in increasing order with all undecided voxels at once:
    the tissue spectrum is computed once, each grid step costs one inverse FFT of the
    voxels still undecided, and voxels leave the sweep as soon as they are decided.
    """

    def __init__(self, aif: ArrayLike, dt: float, oi_threshold: float,
                 threshold_grid: Sequence[float]):
        super().__init__(aif, dt)
        self.oi_threshold = oi_threshold
        self.threshold_grid = np.sort(np.asarray(threshold_grid, dtype=np.float64))

    def solve(self, concentration: NDArray[Any]) -> tuple[NDArray[Any], NDArray[np.float64]]:
        """``(V, T)`` tissue curves -> ``(V, 2T)`` residues ``k`` and the chosen thresholds."""
        tissue_spectrum = self._transform(concentration)
        residue = np.empty((len(concentration), self.n_lags), dtype=concentration.dtype)
        chosen = np.full(len(concentration), self.threshold_grid[-1])
        undecided = np.arange(len(concentration))
        for threshold in self.threshold_grid[:-1]:
            inverse = self._inverse_filter(threshold, concentration.dtype)
            candidate = self._residue(tissue_spectrum[undecided], inverse)
            accepted = oscillation_index(candidate) < self.oi_threshold
            residue[undecided[accepted]] = candidate[accepted]
            chosen[undecided[accepted]] = threshold
            undecided = undecided[~accepted]
        inverse = self._inverse_filter(self.threshold_grid[-1], concentration.dtype)
        residue[undecided] = self._residue(tissue_spectrum[undecided], inverse)
        return residue, chosen
