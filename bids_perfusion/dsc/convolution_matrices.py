"""The discrete convolution operators that DSC deconvolution inverts.

Indicator-dilution theory writes the tissue curve as the arterial input convolved with
the flow-scaled residue function ``k(t) = CBF · R(t)`` (Ostergaard et al., MRM
1996;36:715). Sampled with the left-rectangle rule on frames ``t_i = i · Δt`` this is

    C_tis[i] = Δt · Σ_{j ≤ i} C_aif[i − j] · k[j],   i.e.   C_tis = A k,

the same discretisation as :func:`bids_perfusion.dsc.kinetics.convolve`. The frame
interval Δt is part of every matrix here: leaving it out makes CBF scale with 1/Δt.
"""

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg


def causal_convolution_matrix(aif: ArrayLike, dt: float) -> NDArray[np.float64]:
    """Lower-triangular Toeplitz matrix ``A[i, j] = Δt · C_aif[i − j]`` for ``j ≤ i``, else 0.

    ``C_tis = A k`` is the left-rectangle discretisation of ``C_tis = C_aif ⊛ k``
    (Ostergaard et al., MRM 1996;36:715, with the rectangle rule).
    """
    aif = np.asarray(aif, dtype=np.float64)
    return linalg.toeplitz(dt * aif, np.zeros_like(aif))


def circulant_spectrum(aif: ArrayLike, dt: float) -> NDArray[np.complex128]:
    """Eigenvalues of the block-circulant convolution matrix, one per ``rfft`` frequency.

    Wu et al. (MRM 2003;50:164) zero-pad the T-frame AIF to ``L = 2T`` samples and build
    the circulant ``D[i, j] = Δt · a[(i − j) mod L]``. A circulant matrix is diagonalised
    by the discrete Fourier transform, ``D = F⁻¹ diag(λ) F`` with
    ``λ_f = Δt · Σ_j a[j] e^{−2πi f j / L}`` (Hansen, Nagy and O'Leary, *Deblurring Images*,
    SIAM 2006, ch. 4), so its singular values are ``|λ_f|`` and its singular vectors are
    Fourier modes. Truncating the SVD of D at a threshold is therefore the same as zeroing
    the frequencies with ``|λ_f| < threshold · max|λ|`` (the solvers of
    :mod:`~bids_perfusion.dsc.truncated_svd` keep only those modes).

    Returns the ``L // 2 + 1`` eigenvalues of the non-negative frequencies (the others are
    their complex conjugates).
    """
    aif = np.asarray(aif, dtype=np.float64)
    return dt * np.fft.rfft(aif, n=circulant_length(aif.shape[-1]))


def circulant_length(n_frames: int) -> int:
    """Length ``L = 2T`` of the zero-padded series; ``L ≥ 2T`` avoids time aliasing (Wu 2003)."""
    return 2 * n_frames
