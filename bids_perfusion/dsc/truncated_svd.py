"""Truncated-SVD deconvolution: standard (sSVD), block-circulant (cSVD) and oscillation-index
(oSVD) variants, vectorised over voxels.

Every solver is built once per AIF (the SVD or the spectrum of the convolution matrix is
computed in float64 at construction) and then maps a ``(V, T)`` block of tissue curves to
the flow-scaled residues ``k`` with matrix products, in the dtype of the data (float32
stays float32). The parameters have no defaults here: their literature values live in
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

#: Undecided voxels per product and oscillation index in the oSVD sweep: (2T, 2048)
#: float32 blocks stay in cache when :meth:`OscillationIndexSVD.solve` is given larger
#: blocks (2048 voxels, the model's default chunk, was the fastest on 2 CPUs).
_SWEEP_BLOCK = 2048


def oscillation_index(residue: ArrayLike, axis: int = -1) -> NDArray[np.float64]:
    """Oscillation index of residue functions along ``axis`` (Wu et al., MRM 2003;50:164).

    ``OI = 1 / (N · max_k |f[k]|) · Σ_{k=2}^{N−1} |f[k] − 2 f[k−1] + f[k−2]|``

    with N the number of samples of ``f`` (the padded length L for block-circulant
    solutions). A residue that is identically zero has OI = 0.
    """
    lags_first = np.moveaxis(np.asarray(residue), axis, 0)
    n = lags_first.shape[0]
    work = np.empty((max(2 * n - 3, 0), *lags_first.shape[1:]), dtype=lags_first.dtype)
    return _oscillation_index_lags_first(lags_first, work)


def _oscillation_index_lags_first(residue: NDArray[Any], work: NDArray[Any]) -> NDArray[Any]:
    """:func:`oscillation_index` along the first axis, with ``work`` (2N − 3, ...) as scratch.

    The second difference is taken as two first differences into ``work`` (no temporary
    arrays: the oSVD sweep calls this for every block at every threshold), its absolute
    value in place, and ``max |f|`` as the larger of ``max f`` and ``−min f`` (two
    reductions, no absolute copy of ``f``). With lags along the first axis, every step
    runs over contiguous rows. Bit for bit the same as the definition above.
    """
    n = residue.shape[0]
    first, second = work[:n - 1], work[n - 1:]
    np.subtract(residue[1:], residue[:-1], out=first)
    np.subtract(first[1:], first[:-1], out=second)
    total = np.add.reduce(np.abs(second, out=second), axis=0)
    peak = np.maximum(np.maximum.reduce(residue, axis=0), -np.minimum.reduce(residue, axis=0))
    peak *= n
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
    """Truncated SVD of the block-circulant matrix D as two matrix products (Wu 2003).

    D is diagonalised by the discrete Fourier transform (see
    :func:`~bids_perfusion.dsc.convolution_matrices.circulant_spectrum`): its singular
    values are ``|λ_f|`` and its singular vectors Fourier modes. With the modes sorted by
    ``|λ_f|`` in decreasing order, a truncation at ``threshold · max|λ|`` keeps the first
    ``n`` of them, and the truncated solution of ``C_pad = D k`` is

        Y = C P,    k = Y[:, :m] Q[:m]

    with ``P`` (T, M) the real and imaginary parts of ``e^{−2πi f t / L} / λ_f`` (the
    spectrum of the zero-padded curve divided by the eigenvalue, one column pair per
    mode, sorted) and ``Q`` (M, L) the matching rows of the inverse real DFT, ``m`` the
    columns of the first ``n`` modes (the imaginary parts of the zero and Nyquist
    frequencies carry nothing and have no column). Only the modes above the smallest
    threshold in use are kept in ``P``; each threshold is then a slice.
    """

    def __init__(self, aif: ArrayLike, dt: float, smallest_threshold: float):
        n_frames = np.shape(aif)[-1]
        self.n_lags = circulant_length(n_frames)
        spectrum = circulant_spectrum(aif, dt)
        magnitude = np.abs(spectrum) / np.abs(spectrum).max()
        modes = np.flatnonzero(magnitude >= smallest_threshold)
        modes = modes[np.argsort(-magnitude[modes], kind="stable")]
        spectra = np.fft.rfft(np.eye(n_frames), n=self.n_lags, axis=-1)[:, modes] / spectrum[modes]
        unit = np.eye(spectrum.size)[modes]
        real_rows = np.fft.irfft(unit, n=self.n_lags, axis=-1)
        imaginary_rows = np.fft.irfft(1j * unit, n=self.n_lags, axis=-1)
        forward: list[np.ndarray] = []
        inverse: list[np.ndarray] = []
        magnitudes: list[float] = []
        for i, mode in enumerate(modes):
            forward.append(spectra[:, i].real)
            inverse.append(real_rows[i])
            if 0 < mode < spectrum.size - 1:  # zero and Nyquist frequencies are real
                forward.append(spectra[:, i].imag)
                inverse.append(imaginary_rows[i])
            magnitudes += [magnitude[mode]] * (len(forward) - len(magnitudes))
        self._forward = np.stack(forward, axis=-1)  # P, (T, M)
        self._inverse = np.stack(inverse)  # Q, (M, L)
        self._column_magnitude = np.array(magnitudes)

    def _columns(self, threshold: float) -> int:
        """``m``: the columns of the modes with ``|λ_f| ≥ threshold · max|λ|``."""
        return int(np.count_nonzero(self._column_magnitude >= threshold))

    def _matrices(self, dtype: np.dtype[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
        """``P`` and ``Q`` in the dtype of the data (float32 stays float32)."""
        return self._forward.astype(dtype), self._inverse.astype(dtype)


class CirculantSVD(_CirculantSolver):
    """cSVD: truncated SVD of the block-circulant matrix, one threshold for all voxels.

    ``k = V diag(w) Uᵀ C_pad`` with ``D = U diag(s) Vᵀ`` the circulant of the AIF padded
    to ``L = 2T`` and ``w_i = 1 / s_i`` for ``s_i ≥ threshold · s_max``, else 0 (Wu et al.,
    MRM 2003;50:164). Insensitive to a delay of the tissue curve relative to the AIF: a
    delay circularly shifts ``k`` without changing its peak. ``k`` has L samples; lags
    past T stand for a tissue curve that leads the AIF.
    """

    def __init__(self, aif: ArrayLike, dt: float, threshold: float):
        super().__init__(aif, dt, threshold)
        self.threshold = threshold

    def solve(self, concentration: NDArray[Any]) -> tuple[NDArray[Any], NDArray[np.float64]]:
        """``(V, T)`` tissue curves -> ``(V, 2T)`` residues ``k`` and the threshold per voxel."""
        forward, inverse = self._matrices(concentration.dtype)
        residue = (concentration @ forward) @ inverse
        return residue, np.full(len(concentration), self.threshold)


class OscillationIndexSVD(_CirculantSolver):
    """oSVD: cSVD with the threshold chosen per voxel by the oscillation index (Wu 2003).

    For each voxel, the smallest threshold of ``threshold_grid`` whose cSVD residue has
    :func:`oscillation_index` ``< oi_threshold``; the largest grid threshold if none does.
    The sweep runs over the grid in increasing order with all undecided voxels at once:
    ``Y = C P`` is computed once, each grid step costs one product ``Y[:, :m] Q[:m]`` of
    the voxels still undecided (in blocks of ``_SWEEP_BLOCK``, which stay in cache), and
    voxels leave the sweep as soon as they are decided. A step that keeps the same modes
    as the previous one gives the same residues and is skipped; the sweep ends when every
    voxel is decided.
    """

    def __init__(self, aif: ArrayLike, dt: float, oi_threshold: float,
                 threshold_grid: Sequence[float]):
        self.oi_threshold = oi_threshold
        self.threshold_grid = np.sort(np.asarray(threshold_grid, dtype=np.float64))
        super().__init__(aif, dt, self.threshold_grid[0])

    def solve(self, concentration: NDArray[Any]) -> tuple[NDArray[Any], NDArray[np.float64]]:
        """``(V, T)`` tissue curves -> ``(V, 2T)`` residues ``k`` and the chosen thresholds."""
        forward, inverse = self._matrices(concentration.dtype)
        # Lags along the first axis, voxels along the second: the reductions of the
        # oscillation index then run over contiguous rows.
        projected = forward.T @ concentration.T  # Yᵀ of the voxels still undecided
        inverse = np.ascontiguousarray(inverse.T)  # Qᵀ, (L, M)
        residue = np.empty((len(concentration), self.n_lags), dtype=concentration.dtype)
        chosen = np.full(len(concentration), self.threshold_grid[-1])
        undecided = np.arange(len(concentration))
        # Scratch of one block, reused at every step: the candidate residues and the
        # differences of the oscillation index, instead of fresh (L, block) temporaries.
        block = min(_SWEEP_BLOCK, len(concentration))
        candidates = np.empty(self.n_lags * block, dtype=concentration.dtype)
        work = np.empty((2 * self.n_lags - 3) * block, dtype=concentration.dtype)
        previous = -1
        for threshold in self.threshold_grid[:-1]:
            columns = self._columns(threshold)
            if columns == previous:
                continue
            if undecided.size == 0:
                break
            previous = columns
            accepted = np.zeros(undecided.size, dtype=bool)
            for start in range(0, undecided.size, block):
                part = slice(start, start + block)
                size = min(block, undecided.size - start)
                candidate = candidates[:self.n_lags * size].reshape(self.n_lags, size)
                np.matmul(inverse[:, :columns], projected[:columns, part], out=candidate)
                index = _oscillation_index_lags_first(
                    candidate, work[:work.size // block * size].reshape(-1, size))
                accepted[part] = index < self.oi_threshold
                residue[undecided[part][accepted[part]]] = np.compress(
                    accepted[part], candidate, axis=1).T
            chosen[undecided[accepted]] = threshold
            undecided = undecided[~accepted]
            # Later steps keep at most these columns.
            projected = np.compress(~accepted, projected[:columns], axis=1)
        columns = self._columns(self.threshold_grid[-1])
        residue[undecided] = (inverse[:, :columns] @ projected[:columns]).T
        return residue, chosen
