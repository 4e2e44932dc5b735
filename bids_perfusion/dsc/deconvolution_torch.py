"""The classical deconvolutions (sSVD, cSVD, oSVD, Tikhonov) on a torch device (a GPU).

:class:`~bids_perfusion.dsc.deconvolution.DeconvolutionModel` solves
``C_tis = Δt · A(C_aif) k`` on the CPU with numpy. Once its regularisation is chosen, each
solver is linear in the tissue curve, ``k = C_tis M`` for a ``(T, N)`` matrix M, so on a
device the voxel work is matrix products of ``(V, T)`` blocks of curves:

- ``ssvd``: ``M = (V diag(w) Uᵀ)ᵀ``, the truncated pseudo-inverse of the causal matrix
  ``A = U diag(s) Vᵀ``, ``w_i = 1/s_i`` for ``s_i ≥ threshold · s_max`` (Ostergaard et al.,
  MRM 1996;36:715);
- ``csvd``: ``M_τ``, the first T rows of the transposed truncated pseudo-inverse of the
  block-circulant matrix D of the AIF padded to ``L = 2T`` (Wu et al., MRM 2003;50:164):
  ``k`` has L lags;
- ``osvd``: the cSVD candidates of every threshold τ_g of the grid at once,
  ``K = C_tis [M_τ1 … M_τG]`` (V, G, L), the :func:`oscillation_index` of each, and per
  voxel the smallest τ_g whose OI < ``oi_threshold`` (the largest τ if none): the choice
  of :class:`~bids_perfusion.dsc.truncated_svd.OscillationIndexSVD`;
- ``tikhonov``: ``β = C_tis U``, λ per voxel from ``β²`` (GCV ``G(λ) = ρ(λ)/(T − Σ f_i)²``
  or the L-curve curvature, both sums of ``β_i²`` weighted by functions of ``(s_i, λ)``:
  products ``β² W``), then ``k = (β ⊙ f_λ/s) Vᵀ`` (Calamante et al., MRM 2003;50:1237).

The matrices come from the numpy solvers themselves, in float64: ``M`` is the numpy
solver's answer to the T unit curves (``solver.solve(I_T)``, exact by linearity), and
Tikhonov's SVD, filters and criteria are those of
:class:`~bids_perfusion.dsc.tikhonov.Tikhonov`, so both paths share one construction.
The products run in the dtype of the data (float32 for the pipeline, at torch's default
float32 matmul precision: no TF32),
the Tikhonov criteria in float64 as on the CPU. Differences from the numpy path are
rounding (the FFT pair of the CPU against a product here): relative differences of k of
order 1e-6 in float32; a voxel whose OI (oSVD) or criterion (Tikhonov) lies within
rounding of a tie may take the neighbouring threshold or λ (docs/gpu.md gives the
tolerance measured).
"""

import dataclasses

import numpy as np
import torch
from numpy.typing import ArrayLike

from bids_perfusion.dsc.convolution_matrices import circulant_length
from bids_perfusion.dsc.deconvolution import (
    METHODS,
    DeconvolutionFit,
    DeconvolutionModel,
    OscillationIndexSVDParameters,
    TikhonovParameters,
)
from bids_perfusion.dsc.tikhonov import Tikhonov, curvature
from bids_perfusion.dsc.truncated_svd import CirculantSVD, StandardSVD


def oscillation_index(residue: torch.Tensor) -> torch.Tensor:
    """:func:`bids_perfusion.dsc.truncated_svd.oscillation_index` on a tensor:
    ``OI = 1 / (N · max_k |f[k]|) · Σ_{k=2}^{N−1} |f[k] − 2 f[k−1] + f[k−2]|`` along the
    last axis; 0 for a residue that is identically zero."""
    total = torch.diff(residue, n=2, dim=-1).abs().sum(dim=-1)
    peak = residue.shape[-1] * residue.abs().amax(dim=-1)
    return torch.where(peak > 0, total / torch.where(peak > 0, peak, 1), 0)


def _unit_response(solver: StandardSVD | CirculantSVD, n_frames: int) -> np.ndarray:
    """``M`` (T, N) float64 with ``solver.solve(C) = C @ M``: the residues of the T unit
    curves (the solver is linear once its threshold is fixed)."""
    return solver.solve(np.eye(n_frames))[0]


class DeviceSolver:
    """The solver of a :class:`DeconvolutionModel` as tensors on ``device`` (module
    docstring); :meth:`solve` maps a ``(V, T)`` tensor of curves on the device to the
    residues ``(V, N)`` and the regularisation per voxel ``(V,)`` (float64)."""

    def __init__(self, model: DeconvolutionModel, device: str | torch.device,
                 dtype: torch.dtype = torch.float32):
        self.method = model.method
        self.device = torch.device(device)
        self.dtype = dtype
        params = dataclasses.asdict(model.params)
        n_frames = model.aif.size
        solver_class = METHODS[model.method][1]
        if model.method in ("ssvd", "csvd"):
            solver = solver_class(model.aif, model.dt, **params)
            self._matrix = self._tensor(_unit_response(solver, n_frames), dtype)
            self._threshold = float(params["threshold"])
            self.n_lags = solver.n_lags
        elif model.method == "osvd":
            grid = np.sort(np.asarray(params["threshold_grid"], dtype=np.float64))
            stack = np.stack([_unit_response(CirculantSVD(model.aif, model.dt, float(t)),
                                             n_frames) for t in grid])  # (G, T, L)
            self._grid = self._tensor(grid, torch.float64)
            self.n_lags = stack.shape[-1]
            self._matrix = self._tensor(stack.transpose(1, 0, 2).reshape(n_frames, -1), dtype)
            self._oi_threshold = float(params["oi_threshold"])
        else:
            # the Tikhonov object's own SVD and filter factors, and its criteria (linear
            # in β²) as matrices: their values on the unit vectors
            solver = Tikhonov(model.aif, model.dt, **params)
            identity = np.eye(n_frames)
            self.n_lags = solver.n_lags
            self._criterion = params["criterion"]
            self._relative = self._tensor(solver.relative_lambdas, torch.float64)
            self._u = self._tensor(solver._u, dtype)
            self._vt = self._tensor(solver._vt, dtype)
            self._filters = self._tensor(solver._solution_filter, dtype)  # f/s, (L, T)
            self._lambdas = self._tensor(solver._lambdas.T, torch.float64)  # (1, L)
            self._gcv = self._tensor(solver.gcv(identity), torch.float64)  # (T, L)
            self._rho = self._tensor(solver.residual_norm2(identity), torch.float64)
            self._eta = self._tensor(solver.solution_norm2(identity), torch.float64)
            self._deta = self._tensor(solver.solution_norm2_derivative(identity),
                                      torch.float64)

    def _tensor(self, array: ArrayLike, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype, device=self.device)

    def solve(self, block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(V, T)`` curves on the device -> residues ``(V, N)`` and the regularisation."""
        count = len(block)
        if self.method in ("ssvd", "csvd"):
            return block @ self._matrix, torch.full((count,), self._threshold,
                                                    dtype=torch.float64, device=self.device)
        if self.method == "osvd":
            candidates = (block @ self._matrix).reshape(count, -1, self.n_lags)  # (V, G, L)
            accepted = oscillation_index(candidates) < self._oi_threshold
            accepted[:, -1] = True
            first = accepted.to(torch.uint8).argmax(dim=1)  # the smallest accepted τ
            residue = candidates[torch.arange(count, device=self.device), first]
            return residue, self._grid[first]
        beta = block @ self._u
        beta2 = beta.to(torch.float64) ** 2
        if self._criterion == "fixed":
            index = torch.zeros(count, dtype=torch.long, device=self.device)
        elif self._criterion == "gcv":
            index = (beta2 @ self._gcv).argmin(dim=-1)
        else:
            kappa = curvature(self._lambdas, beta2 @ self._rho, beta2 @ self._eta,
                              beta2 @ self._deta)
            kappa = torch.where(torch.isfinite(kappa), kappa, -torch.inf)
            index = kappa.argmax(dim=-1)
        return (beta * self._filters[index]) @ self._vt, self._relative[index]


def bytes_per_voxel(model: DeconvolutionModel, itemsize: int = 4) -> int:
    """Device memory one voxel of a block needs in :func:`fit_on_device`, for values of
    ``itemsize`` bytes: its cSVD candidates and their OI differences (oSVD, G·L values
    each), its λ criteria in float64 (Tikhonov) and its curve and residue."""
    lags = circulant_length(model.aif.size)
    params = model.params
    if isinstance(params, OscillationIndexSVDParameters):
        return 4 * len(params.threshold_grid) * lags * itemsize
    if isinstance(params, TikhonovParameters):
        grid = 1 if params.criterion == "fixed" else len(params.lambda_grid)
        return 4 * grid * 8 + 4 * lags * itemsize
    return 4 * lags * itemsize


def fit_on_device(model: DeconvolutionModel, concentration: ArrayLike,
                  mask: ArrayLike | None = None, *, device: str | torch.device,
                  chunk_size: int = 2048
                  ) -> DeconvolutionFit:
    """:meth:`DeconvolutionModel.fit` with the voxel work on a torch ``device``.

    Same inputs, checks and result (a :class:`DeconvolutionFit` of numpy arrays) as the
    numpy path; ``chunk_size`` voxels go to the device at a time, so its memory stays
    bounded (:func:`bytes_per_voxel` per voxel). Float32 data are solved in
    float32, others in float64.
    """
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive number of voxels, got {chunk_size}")
    flat, shape, voxels = model._validated_curves(concentration, mask)
    dtype = torch.float32 if flat.dtype == np.float32 else torch.float64
    solver = DeviceSolver(model, device, dtype)
    residue = np.empty((len(flat), solver.n_lags), dtype=flat.dtype)
    regularisation = np.empty(len(flat))
    with torch.inference_mode():
        for start in range(0, len(flat), int(chunk_size)):
            block = slice(start, start + int(chunk_size))
            curves = torch.from_numpy(np.ascontiguousarray(flat[block])).to(solver.device)
            k, chosen = solver.solve(curves)
            residue[block] = k.cpu().numpy()
            regularisation[block] = chosen.cpu().numpy()
    return DeconvolutionFit(
        model,
        residue.reshape(*shape, residue.shape[-1]),
        regularisation.reshape(shape),
        voxels,
    )
