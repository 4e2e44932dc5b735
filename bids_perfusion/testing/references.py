"""Per-voxel reference implementations used to check the vectorised cores.

Each function is a plain loop over voxels with numpy.linalg (or scipy.optimize), written
from the papers without the vectorised code's shortcuts, so that an agreement between
the two is evidence and not a tautology. The tests compare the cores against them
(``tests/test_deconvolution.py``) and the benchmarks time them as the "naive per-voxel
tool" (``benchmarks/bench_deconvolution.py``).

DSC deconvolution, :func:`deconvolve` against
:class:`bids_perfusion.dsc.deconvolution.DeconvolutionModel`: explicit matrices instead
of FFTs (Ostergaard et al., MRM 1996;36:715 for the causal matrix; Wu et al., MRM
2003;50:164 for the block-circulant one and the oscillation index), normal equations
instead of SVD filter factors for Tikhonov, and the L-curve curvature from second
derivatives instead of Hansen's closed form (Hansen, Rank-Deficient and Discrete
Ill-Posed Problems, SIAM 1998).
"""

import dataclasses

import numpy as np

from bids_perfusion.dsc.deconvolution import METHODS


def causal_matrix(aif, dt):
    """``A[i, j] = dt · aif[i − j]`` for ``j ≤ i`` (left-rectangle rule), by explicit loops."""
    n = len(aif)
    a = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1):
            a[i, j] = dt * aif[i - j]
    return a


def circulant_matrix(aif, dt):
    """``D[i, j] = dt · a[(i − j) mod 2T]``, a the AIF zero-padded to 2T (Wu et al. 2003)."""
    padded = np.concatenate([aif, np.zeros(len(aif))])
    n = len(padded)
    return np.array([[dt * padded[(i - j) % n] for j in range(n)] for i in range(n)])


def _truncated_svd_solution(svd, tissue, threshold):
    u, s, vt = svd
    keep = s >= threshold * s[0]
    return vt[keep].T @ ((u[:, keep].T @ tissue) / s[keep])


def _oscillation_index(f):
    """``OI = Σ |f[i+1] − 2 f[i] + f[i−1]| / (N · max |f|)`` of one residue (Wu et al. 2003)."""
    n = len(f)
    return np.sum(np.abs(f[2:] - 2 * f[1:-1] + f[:-2])) / (n * np.max(np.abs(f)))


def _osvd_solution(svd, tissue, oi_threshold, threshold_grid):
    """Wu et al. 2003: the smallest threshold whose residue has OI < oi_threshold."""
    for threshold in sorted(threshold_grid):
        k = _truncated_svd_solution(svd, tissue, threshold)
        if _oscillation_index(k) < oi_threshold:
            break
    return k, threshold


def tikhonov_path(a, lam):
    """Per-λ matrices: M⁻¹ = (AᵀA + λ²I)⁻¹ and the trace of the influence matrix."""
    inverse = np.linalg.inv(a.T @ a + lam**2 * np.eye(a.shape[1]))
    return inverse, np.trace(a @ inverse @ a.T)


def lcurve_curvature(a, tissue, lam, inverse):
    """Curvature of ``(log ||A k − c||, log ||k||)`` from the analytic λ-derivatives of k.

    ``M k = Aᵀc`` with ``M = AᵀA + λ²I`` gives ``k' = −2λ M⁻¹ k`` and
    ``k'' = −M⁻¹ (2k + 4λ k')``; then ``κ = (x'y'' − x''y') / (x'² + y'²)^{3/2}``.
    """
    k = inverse @ (a.T @ tissue)
    dk = -2 * lam * inverse @ k
    ddk = -inverse @ (2 * k + 4 * lam * dk)
    r = a @ k - tissue
    rho, drho, ddrho = r @ r, 2 * r @ a @ dk, 2 * (a @ dk) @ (a @ dk) + 2 * r @ a @ ddk
    eta, deta, ddeta = k @ k, 2 * k @ dk, 2 * dk @ dk + 2 * k @ ddk
    dx, ddx = drho / (2 * rho), (ddrho * rho - drho**2) / (2 * rho**2)
    dy, ddy = deta / (2 * eta), (ddeta * eta - deta**2) / (2 * eta**2)
    return (dx * ddy - ddx * dy) / (dx**2 + dy**2) ** 1.5


def _tikhonov_solution(a, paths, tissue, criterion):
    scores = []
    for lam, (inverse, trace) in paths:
        k = inverse @ (a.T @ tissue)
        if criterion == "gcv":
            scores.append(np.sum((a @ k - tissue) ** 2) / (len(tissue) - trace) ** 2)
        else:  # the L-curve corner: maximum curvature, minimised as −κ
            scores.append(-lcurve_curvature(a, tissue, lam, inverse))
    best = int(np.argmin(scores)) if criterion != "fixed" else 0
    return paths[best][1][0] @ (a.T @ tissue), best


def deconvolve(aif, dt, tissue, method, **params):
    """Deconvolve ``tissue`` (V, T) one voxel at a time; returns ``(residue, regularisation)``.

    ``method`` and ``params`` are those of
    :class:`~bids_perfusion.dsc.deconvolution.DeconvolutionModel`, with the same defaults.
    Per-AIF work (matrices, SVDs, Tikhonov inverses) is done once, as any reasonable
    per-voxel tool would; the loop over voxels is the point of comparison.
    """
    p = dataclasses.asdict(METHODS[method][0](**params))
    aif, tissue = np.asarray(aif, float), np.asarray(tissue, float)
    n = tissue.shape[1]
    if method == "tikhonov":
        a = causal_matrix(aif, dt)
        relative = [p["lam"]] if p["criterion"] == "fixed" else p["lambda_grid"]
        s_max = np.linalg.norm(a, 2)
        paths = [(lam * s_max, tikhonov_path(a, lam * s_max)) for lam in relative]
        results = [_tikhonov_solution(a, paths, c, p["criterion"]) for c in tissue]
        return np.array([k for k, _ in results]), np.array([relative[i] for _, i in results])
    matrix = causal_matrix(aif, dt) if method == "ssvd" else circulant_matrix(aif, dt)
    svd = np.linalg.svd(matrix)
    padded = np.pad(tissue, ((0, 0), (0, matrix.shape[0] - n)))
    if method == "osvd":
        results = [
            _osvd_solution(svd, c, p["oi_threshold"], p["threshold_grid"]) for c in padded
        ]
        return np.array([k for k, _ in results]), np.array([thr for _, thr in results])
    residue = np.array([_truncated_svd_solution(svd, c, p["threshold"]) for c in padded])
    return residue, np.full(len(tissue), p["threshold"])
