"""DSC-MRI deconvolution: the flow-scaled residue function, CBF and Tmax from concentration curves.

Indicator-dilution theory (Ostergaard et al., MRM 1996;36:715) relates the tissue
concentration to the arterial input function (AIF) by ``C_tis = C_aif ⊛ k`` with
``k(t) = CBF · R(t)`` the flow-scaled residue function. Discretised with the
left-rectangle rule on frames ``t_i = i · Δt``:

    C_tis[i] = Δt · Σ_{j ≤ i} C_aif[i − j] · k[j]        (C_tis = Δt · A(C_aif) k)

:class:`DeconvolutionModel` inverts this for every voxel at once with one of

- ``ssvd``: truncated SVD of the causal matrix (Ostergaard et al. 1996);
- ``csvd``: truncated SVD of the block-circulant matrix (Wu et al., MRM 2003;50:164);
- ``osvd``: cSVD with a per-voxel threshold set by the oscillation index (Wu et al. 2003);
- ``tikhonov``: standard-form Tikhonov, λ fixed or per voxel by GCV or the L-curve
  (Calamante et al., MRM 2003;50:1237).

Units: ``k`` is in s⁻¹ (mL blood per mL tissue per s) when AIF and tissue concentrations
share a scale; :attr:`DeconvolutionFit.cbf` is ``6000 · max_t k`` in mL/100 mL/min, the
OSIPI convention (6000 = ``constants.PER_SECOND_TO_PER_100G_MIN`` = 100 mL × 60 s/min).
No haematocrit or density factor is applied here: multiply by
``constants.KH / constants.RHO_BRAIN`` downstream for mL/100 g/min.

The literature defaults of every method live in the parameter classes below and nowhere
else; ``dataclasses.asdict(model.params)`` gives the values used, for output sidecars.
"""

import dataclasses
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from threadpoolctl import threadpool_limits

from bids_perfusion.constants import PER_SECOND_TO_PER_100G_MIN
from bids_perfusion.dsc.tikhonov import Tikhonov
from bids_perfusion.dsc.truncated_svd import CirculantSVD, OscillationIndexSVD, StandardSVD
from bids_perfusion.voxels import block_workers, for_each_block, scatter, voxel_mask


def _check_relative(name: str, values: ArrayLike) -> None:
    values = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if values.size == 0 or not np.all((values > 0) & (values <= 1)):
        raise ValueError(f"{name} must be in (0, 1], relative to the largest singular value")


@dataclasses.dataclass(frozen=True)
class StandardSVDParameters:
    """sSVD: relative truncation threshold 0.2 (Ostergaard et al., MRM 1996;36:715)."""

    threshold: float = 0.2

    def __post_init__(self) -> None:
        _check_relative("threshold", self.threshold)


@dataclasses.dataclass(frozen=True)
class CirculantSVDParameters:
    """cSVD: relative truncation threshold 0.1 (Wu et al., MRM 2003;50:164)."""

    threshold: float = 0.1

    def __post_init__(self) -> None:
        _check_relative("threshold", self.threshold)


@dataclasses.dataclass(frozen=True)
class OscillationIndexSVDParameters:
    """oSVD: OI threshold 0.035 (Wu et al., MRM 2003;50:164).

    ``threshold_grid`` holds the candidate relative thresholds, 0.05 to 0.95 in steps of
    0.05: the sweep of the DSC_mri MATLAB toolbox (Castellaro and Peruzzo, University of
    Padova); Wu et al. fix the OI threshold, not the grid.
    """

    oi_threshold: float = 0.035
    threshold_grid: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))

    def __post_init__(self) -> None:
        if not self.oi_threshold > 0:
            raise ValueError(f"oi_threshold must be > 0, got {self.oi_threshold}")
        _check_relative("threshold_grid", self.threshold_grid)


@dataclasses.dataclass(frozen=True)
class TikhonovParameters:
    """Tikhonov (Calamante et al., MRM 2003;50:1237); λ by GCV by default.

    GCV is the default because the L-curve under-regularises noisy curves (Hanke, BIT
    1996;36:287): on the phantom at SNR 10 it picks λ ≈ 0.006 s_max in white matter and
    CBF 12 times the truth, where GCV (λ ≈ 0.4 s_max) agrees with oSVD.

    λ is relative to the largest singular value. ``lam`` (used by ``criterion="fixed"``)
    is 0.2, where the filter factor halves the component at ``0.2 · s_max``: the smooth
    counterpart of the sSVD threshold (Tikhonov with λ = s_k behaves like SVD truncated at
    s_k: Hansen, *Rank-Deficient and Discrete Ill-Posed Problems*, SIAM 1998).
    ``lambda_grid`` (``"gcv"``, ``"lcurve"``) spans 1e-3 to 1 with 10 points per decade.
    """

    criterion: str = "gcv"
    lam: float = 0.2
    lambda_grid: tuple[float, ...] = tuple(10.0 ** (i / 10) for i in range(-30, 1))

    def __post_init__(self) -> None:
        if self.criterion not in ("fixed", "gcv", "lcurve"):
            raise ValueError(f"criterion must be fixed, gcv or lcurve, got {self.criterion!r}")
        _check_relative("lam", self.lam)
        _check_relative("lambda_grid", self.lambda_grid)


#: The parameters of one method.
MethodParameters = (StandardSVDParameters | CirculantSVDParameters
                    | OscillationIndexSVDParameters | TikhonovParameters)

#: method name -> (parameter class, solver class)
METHODS = {
    "ssvd": (StandardSVDParameters, StandardSVD),
    "csvd": (CirculantSVDParameters, CirculantSVD),
    "osvd": (OscillationIndexSVDParameters, OscillationIndexSVD),
    "tikhonov": (TikhonovParameters, Tikhonov),
}


def _method_parameters(method: str, params: Mapping[str, Any]) -> MethodParameters:
    if method not in METHODS:
        raise ValueError(f"unknown deconvolution method {method!r}; choose from {sorted(METHODS)}")
    parameter_class = METHODS[method][0]
    known = {field.name for field in dataclasses.fields(parameter_class)}
    if unknown := sorted(set(params) - known):
        raise ValueError(f"method {method!r} takes parameters {sorted(known)}, not {unknown}")
    return parameter_class(**params)


def _validated_aif(aif: ArrayLike) -> NDArray[np.float64]:
    aif = np.asarray(aif, dtype=np.float64)
    if aif.ndim != 1 or aif.size < 2:
        raise ValueError(f"the AIF must be one curve of at least 2 frames, got shape {aif.shape}")
    if not np.all(np.isfinite(aif)):
        raise ValueError("the AIF contains NaN or infinite values")
    if not np.any(aif):
        raise ValueError("the AIF is all zeros: check the arterial mask and the bolus timing")
    return aif


def _validated_dt(dt: float) -> float:
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be the frame interval in seconds (> 0), got {dt}")
    return float(dt)


class DeconvolutionModel:
    """Deconvolution of tissue curves by one AIF (dipy-style: ``model.fit(data, mask) -> fit``).

    Parameters
    ----------
    aif : array (T,)
        Arterial concentration, same scale as the tissue concentration.
    dt : float
        Frame interval in seconds.
    method : {"osvd", "ssvd", "csvd", "tikhonov"}
    chunk_size : int
        Voxels per block; bounds the working memory at a few ``chunk_size × 2T`` arrays
        per thread. The blocks run on the CPUs the process may use
        (:func:`~bids_perfusion.voxels.block_workers`), each with one BLAS thread
        (docs/performance.md).
    **params
        Fields of the method's parameter class (e.g. ``threshold=0.15`` for sSVD,
        ``criterion="gcv"`` for Tikhonov); omitted ones take the literature defaults.
    """

    def __init__(self, aif: ArrayLike, dt: float, method: str = "osvd", *,
                 chunk_size: int = 2048, **params: Any):
        self.aif = _validated_aif(aif)
        self.dt = _validated_dt(dt)
        self.method = method
        self.params = _method_parameters(method, params)
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive number of voxels, got {chunk_size}")
        self.chunk_size = int(chunk_size)
        solver_class = METHODS[method][1]
        self._solver = solver_class(self.aif, self.dt, **dataclasses.asdict(self.params))

    def fit(self, concentration: ArrayLike, mask: ArrayLike | None = None) -> "DeconvolutionFit":
        """Deconvolve ``concentration`` of shape ``(..., T)``; returns a :class:`DeconvolutionFit`.

        ``mask`` (boolean, ``concentration.shape[:-1]``) restricts the fit to its voxels;
        the maps of the fit keep the full voxel shape, 0 outside the mask. Float32 data
        are processed in float32 (the matrices are computed in float64); other dtypes in
        float64.
        """
        flat, shape, voxels = self._validated_curves(concentration, mask)
        residue = np.empty((len(flat), self._solver.n_lags), dtype=flat.dtype)
        regularisation = np.empty(len(flat))

        def solve(block: slice) -> None:
            residue[block], regularisation[block] = self._solver.solve(flat[block])

        workers = block_workers()
        if workers > 1 and len(flat) > self.chunk_size:
            # One BLAS thread per block: the blocks' products and elementwise work then
            # run side by side, where BLAS's own threads would leave the rest serial.
            with threadpool_limits(limits=1, user_api="blas"):
                for_each_block(solve, len(flat), self.chunk_size, workers)
        else:
            for_each_block(solve, len(flat), self.chunk_size, 1)
        return DeconvolutionFit(
            self,
            residue.reshape(*shape, residue.shape[-1]),
            regularisation.reshape(shape),
            voxels,
        )

    def _validated_curves(
        self, concentration: ArrayLike, mask: ArrayLike | None
    ) -> tuple[NDArray[np.floating], tuple[int, ...], NDArray[np.bool_] | None]:
        """The input checks of :meth:`fit` (also those of the torch path,
        :func:`~bids_perfusion.dsc.deconvolution_torch.fit_on_device`): the curves to
        solve as ``(V, T)`` (float32 kept, others float64; inside ``mask`` when given),
        the voxel shape of the maps and the mask's voxels (None without a mask)."""
        data = np.asarray(concentration)
        if data.ndim == 0 or data.shape[-1] != self.aif.size:
            raise ValueError(
                f"concentration must have the AIF's {self.aif.size} frames on its last axis, "
                f"got shape {data.shape}"
            )
        voxels = None if mask is None else voxel_mask(mask, data.shape[:-1])
        data = _validated_concentration(data if voxels is None else data[voxels])
        return data.reshape(-1, data.shape[-1]), data.shape[:-1], voxels


def _validated_concentration(data: NDArray[Any]) -> NDArray[np.floating]:
    if data.dtype != np.float32:
        data = data.astype(np.float64)
    if not np.all(np.isfinite(data)):
        bad = np.count_nonzero(~np.all(np.isfinite(data), axis=-1))
        raise ValueError(
            f"concentration has NaN or infinite values in {bad} voxel(s); "
            "mask them out or replace them before deconvolution"
        )
    return data


class DeconvolutionFit:
    """Result of :meth:`DeconvolutionModel.fit`; maps are computed on first access.

    Every attribute has the voxel shape of the data given to the fit; with a mask, 0
    outside it.

    Attributes
    ----------
    residue : array (..., N)
        ``k(t) = CBF · R(t)`` in s⁻¹ at lags ``j · Δt``; N = T for ``ssvd`` and
        ``tikhonov``, N = 2T for the block-circulant ``csvd`` and ``osvd``.
    regularisation : array (...)
        Relative SVD threshold (SVD methods) or λ / s_max (Tikhonov) used per voxel.
    """

    def __init__(self, model: DeconvolutionModel, residue: NDArray[np.floating],
                 regularisation: NDArray[np.float64],
                 mask: NDArray[np.bool_] | None = None):
        self.model = model
        self.mask = mask
        self._residue = residue  # of the fitted voxels: (V, N) with a mask
        self._regularisation = regularisation

    @cached_property
    def residue(self) -> NDArray[np.floating]:
        return scatter(self._residue, self.mask)

    @cached_property
    def regularisation(self) -> NDArray[np.float64]:
        return scatter(self._regularisation, self.mask)

    @cached_property
    def cbf(self) -> NDArray[np.floating]:
        """``CBF = 6000 · max_t k(t)``: mL/100 mL/min, no kH or density factor (OSIPI rule)."""
        return scatter(PER_SECOND_TO_PER_100G_MIN * self._residue.max(axis=-1), self.mask)

    @cached_property
    def tmax(self) -> NDArray[np.float64]:
        """Time of the maximum of ``k``, s.

        For the block-circulant methods, a peak at a lag ``j ≥ T`` is read as ``(j − 2T) · Δt``
        (tissue curve leading the AIF), so Tmax is signed.
        """
        lag = np.argmax(self._residue, axis=-1)
        n_frames = self.model.aif.size
        lag = np.where(lag >= n_frames, lag - self._residue.shape[-1], lag)
        return scatter(lag * self.model.dt, self.mask)
