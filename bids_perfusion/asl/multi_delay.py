"""CBF and arterial transit time from multi-delay (multi-PLD / multi-TI) ASL, all voxels at once.

Each voxel's mean ΔM/M0 at delays t_1..t_K is fitted with the general kinetic model of
:mod:`bids_perfusion.asl.kinetics` (Buxton et al., MRM 1998;40:383), unknowns CBF f and
ATT Δt, by weighted least squares::

    min_{f, Δt}  Σ_k n_k (y_k - ΔM(t_k; f, Δt) / M0)²

(n_k: number of ΔM estimates averaged at delay k). Two steps, both vectorised over voxels:

1. Initialisation by the weighted delay of Dai et al. (MRM 2012;67:1252)::

       WD = Σ_k w_k y_k / Σ_k y_k,    w_k = PLD_k (PCASL) or TI_k (PASL)

   which depends on Δt only when T1' = T1b (CBF cancels). Δt is read from the model's
   WD(Δt) curve, tabulated once per set of delays; f is then the linear least-squares
   value for that Δt, ``f = Σ n g y / Σ n g²`` with g = ΔM(t; 1, Δt)/M0.
2. Levenberg-Marquardt refinement on (f, Δt): a 2×2 damped normal equation per voxel,
   solved in closed form for all voxels together, with Δt kept in [0, t_max]
   (t_max the latest signal time). Derivatives are central differences of the model.

For ATT shorter than every PLD the PCASL signal does not depend on ATT (T1' = T1b): ATT
is then undetermined, and the fit returns the initial value; CBF is still exact.

The tissue T1 of T1' = 1/(1/T1 + f/λ) is one value or one per voxel (a map of the grey- and
white-matter fractions, :func:`bids_perfusion.asl.tissue.tissue_t1`); the weighted-delay
table of the initialisation then uses the median T1 of the voxels (a starting point
only), and the Levenberg-Marquardt steps each voxel's own.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bids_perfusion import constants
from bids_perfusion.asl import kinetics
from bids_perfusion.voxels import scatter, voxel_mask

#: Spacing of the ATT table of the weighted-delay initialisation, s.
ATT_TABLE_STEP = 0.002


@dataclass(frozen=True)
class MultiDelayFit:
    """Fitted maps of the voxel shape of the data, 0 outside the mask of the fit: CBF
    (mL/100 g/min), ATT (s), and the root-mean-square residual of ΔM/M0; the number of
    Levenberg-Marquardt iterations."""

    cbf: np.ndarray
    att: np.ndarray
    rms_residual: np.ndarray
    iterations: int


@dataclass(frozen=True)
class MultiDelayModel:
    """The general kinetic model of one acquisition, ready to fit voxels.

    Parameters
    ----------
    label_type : {"PCASL", "CASL", "PASL"}
    delays : array (K,) or (..., K)
        PLD (PCASL/CASL) or TI (PASL) of each averaged ΔM, s; per voxel when the delays
        vary across voxels (slice timing of 2-D readouts), broadcast against the data of
        :meth:`fit`.
    t1_blood, efficiency : float
    labeling_duration : float or array (K,)
        τ, PCASL/CASL.
    bolus_duration : float
        TI1, PASL.
    weights : array (K,)
        Number of ΔM estimates averaged at each delay (1 when omitted).
    t1_tissue : float, array or None
        T1 of tissue for T1' = 1/(1/T1 + f/λ), s: one value, or one per voxel (an array of
        the voxel shape of the data of :meth:`fit`); None for T1' = T1b (the consensus
        model).
    partition : float
    max_iterations : int
    """

    label_type: str
    delays: ArrayLike
    t1_blood: float
    efficiency: float
    labeling_duration: float | NDArray[np.float64] | None = None
    bolus_duration: float | None = None
    weights: ArrayLike | None = None
    t1_tissue: float | NDArray[np.float64] | None = None
    partition: float = constants.BLOOD_BRAIN_PARTITION
    max_iterations: int = 30

    def __post_init__(self) -> None:
        needed = "bolus_duration" if self.label_type == "PASL" else "labeling_duration"
        if getattr(self, needed) is None:
            raise ValueError(f"{self.label_type} needs {needed}")

    @property
    def signal_times(self) -> NDArray[np.float64]:
        """Time from the start of labelling to the readout, t = τ + PLD or TI."""
        delays = np.asarray(self.delays, dtype=float)
        if self.label_type == "PASL":
            return delays
        return delays + np.asarray(self.labeling_duration, dtype=float)

    @property
    def att_max(self) -> float:
        return float(np.max(self.signal_times))

    def predict(self, cbf: ArrayLike, att: ArrayLike,
                delays: ArrayLike | None = None) -> NDArray[np.float64]:
        """ΔM/M0 at every delay: arrays ``cbf``, ``att`` of shape (N,) give (N, K)."""
        delays = np.asarray(self.delays if delays is None else delays, dtype=float)
        cbf = np.asarray(cbf, dtype=float)[..., None]
        att = np.asarray(att, dtype=float)[..., None]
        t1_tissue = self.t1_tissue
        if self._voxelwise_t1:
            t1_tissue = np.asarray(t1_tissue, dtype=float)[..., None]
        if self.label_type == "PASL":
            assert self.bolus_duration is not None  # __post_init__
            return kinetics.pasl_delta_m(delays, cbf, att, 1.0, self.bolus_duration,
                                         self.t1_blood, self.efficiency, self.partition,
                                         t1_tissue)
        assert self.labeling_duration is not None  # __post_init__
        return kinetics.pcasl_delta_m(delays, cbf, att, 1.0, self.labeling_duration,
                                      self.t1_blood, self.efficiency, self.partition,
                                      t1_tissue)

    @property
    def _voxelwise_t1(self) -> bool:
        return self.t1_tissue is not None and np.ndim(self.t1_tissue) > 0

    def _rows(self, rows: NDArray[np.intp]) -> "MultiDelayModel":
        """The model of the voxels ``rows`` (per-voxel tissue T1 taken along)."""
        if not self._voxelwise_t1:
            return self
        return dataclasses.replace(self, t1_tissue=np.asarray(self.t1_tissue)[rows])

    # --- initialisation -------------------------------------------------------------
    def weighted_delay(self, ratio: NDArray[np.float64],
                       delays: ArrayLike | None = None) -> NDArray[np.float64]:
        """Dai et al. (2012): ``WD = Σ w_k y_k / Σ y_k``; NaN where Σ y_k <= 0.

        ``w_k``: ``delays`` (K,) or (N, K), the model's when omitted."""
        delays = np.broadcast_to(np.asarray(self.delays if delays is None else delays,
                                            dtype=float), ratio.shape)
        total = ratio.sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total > 0, (delays * ratio).sum(axis=-1) / total, np.nan)

    def att_table(self, delays: ArrayLike,
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(att, wd)``: the model's weighted delay as a non-decreasing function of ATT,
        for one row of ``delays``, tabulated every :data:`ATT_TABLE_STEP` s up to
        :attr:`att_max`; of each WD plateau (where WD no longer depends on ATT) only the
        first ATT is kept, so that ``wd`` increases strictly."""
        grid = np.arange(0.0, self.att_max + ATT_TABLE_STEP, ATT_TABLE_STEP)
        reference_cbf = np.full(grid.shape, 60.0)
        model = self
        if self._voxelwise_t1:
            model = dataclasses.replace(
                self, t1_tissue=float(np.median(np.asarray(self.t1_tissue, dtype=float))))
        table = self.weighted_delay(model.predict(reference_cbf, grid, delays), delays)
        valid = np.isfinite(table)
        grid, table = grid[valid], np.maximum.accumulate(table[valid])
        keep = np.concatenate([[True], np.diff(table) > 0])
        return grid[keep], table[keep]

    def att_from_weighted_delay(self, wd: NDArray[np.float64],
                                delays: ArrayLike) -> NDArray[np.float64]:
        """ATT whose model WD equals ``wd``, for one row of ``delays`` (table lookup)."""
        grid, table = self.att_table(delays)
        att = np.interp(wd, table, grid)
        return np.where(np.isfinite(wd), att, 0.5 * self.att_max)

    def initial_guess(self, ratio: NDArray[np.float64],
                      ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(CBF, ATT) from the weighted delay and the linear least-squares CBF."""
        wd = self.weighted_delay(ratio)
        delays = np.asarray(self.delays, dtype=float)
        if delays.ndim == 1:
            att = self.att_from_weighted_delay(wd, delays)
        else:
            rows, inverse = np.unique(delays, axis=0, return_inverse=True)
            inverse = np.ravel(inverse)
            att = np.empty(len(ratio))
            for index, row in enumerate(rows):
                selected = inverse == index
                att[selected] = self.att_from_weighted_delay(wd[selected], row)
        g = self.predict(np.ones(len(ratio)), att)
        w = self._weights(ratio.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            num, den = (w * g * ratio).sum(-1), (w * g * g).sum(-1)
            cbf = np.where(den > 0, num / den, 0.0)
        return cbf, att

    def _weights(self, shape: tuple[int, ...]) -> NDArray[np.float64]:
        if self.weights is None:
            return np.ones(shape)
        return np.broadcast_to(np.asarray(self.weights, dtype=float), shape)

    # --- fit --------------------------------------------------------------------------
    def fit(self, ratio: ArrayLike, mask: ArrayLike | None = None) -> MultiDelayFit:
        """Fit ΔM/M0 ``ratio`` of shape (..., K), the voxels of ``mask`` only when given.

        Per-voxel ``delays`` (slice timing) broadcast against ``ratio``: shape (N, K) for
        ratio (N, K), or e.g. (Z, K) for a volume (X, Y, Z, K). The maps of the
        :class:`MultiDelayFit` have the voxel shape of ``ratio``, 0 outside the mask.
        """
        y = np.asarray(ratio, dtype=float)
        n_delays = np.shape(self.delays)[-1]
        if y.ndim == 0 or y.shape[-1] != n_delays:
            raise ValueError(f"ratio must be (..., delays) with {n_delays} delays on its last "
                             f"axis, got shape {y.shape}")
        delays = np.asarray(self.delays, dtype=float)
        if delays.ndim > 1:
            delays = np.broadcast_to(delays, y.shape)
        t1_map = np.asarray(self.t1_tissue, dtype=float) if self._voxelwise_t1 else None
        if t1_map is not None and t1_map.shape != y.shape[:-1]:
            raise ValueError(f"t1_tissue of shape {t1_map.shape} does not match the voxels "
                             f"of the data {y.shape[:-1]}")
        t1_tissue = self.t1_tissue
        if mask is None:
            voxels = None
            y_fit = y.reshape(-1, n_delays)
            delays_fit = delays.reshape(-1, n_delays) if delays.ndim > 1 else delays
            if t1_map is not None:
                t1_tissue = t1_map.ravel()
        else:
            voxels = voxel_mask(mask, y.shape[:-1])
            y_fit = y[voxels]
            delays_fit = delays[voxels] if delays.ndim > 1 else delays
            if t1_map is not None:
                t1_tissue = t1_map[voxels]
        cbf, att, rms, iterations = dataclasses.replace(
            self, delays=delays_fit, t1_tissue=t1_tissue)._fit_voxels(y_fit)
        if voxels is None:
            cbf, att, rms = (values.reshape(y.shape[:-1]) for values in (cbf, att, rms))
        else:
            cbf, att, rms = (scatter(values, voxels) for values in (cbf, att, rms))
        return MultiDelayFit(cbf=cbf, att=att, rms_residual=rms, iterations=iterations)

    def _fit_voxels(
        self, y: NDArray[np.float64],
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], int]:
        """Initial guess and Levenberg-Marquardt of ``y`` (N, K), delays (K,) or (N, K)."""
        w = self._weights(y.shape)
        f, att = self.initial_guess(y)
        delays = np.asarray(self.delays, dtype=float)
        per_voxel = delays.ndim == 2
        att_max = self.att_max
        current = (w * (y - self.predict(f, att)) ** 2).sum(-1)
        damping = np.full(len(y), 1e-3)
        # Voxels still moving; the others are left out of the next iterations.
        active = np.flatnonzero(current > 1e-24 * np.maximum((w * y * y).sum(-1), 1e-30))
        iterations = 0
        h_att = 1e-4
        while active.size and iterations < self.max_iterations:
            iterations += 1
            yi, wi, fi, ai = y[active], w[active], f[active], att[active]
            di = delays[active] if per_voxel else delays
            rows = self._rows(active)
            model = rows.predict(fi, ai, di)
            r = yi - model
            if self.t1_tissue is None:
                j_f = rows.predict(np.ones_like(fi), ai, di)
            else:
                h_f = 1e-3 * (np.abs(fi) + 1.0)
                j_f = (rows.predict(fi + h_f, ai, di) - rows.predict(fi - h_f, ai, di)) / (
                    2 * h_f[:, None])
            lo, hi = np.maximum(ai - h_att, 0.0), np.minimum(ai + h_att, att_max)
            j_a = (rows.predict(fi, hi, di) - rows.predict(fi, lo, di)) / np.maximum(
                hi - lo, 1e-12)[:, None]
            a, b, c = ((wi * j_f * j_f).sum(-1), (wi * j_f * j_a).sum(-1),
                       (wi * j_a * j_a).sum(-1))
            g_f, g_a = (wi * j_f * r).sum(-1), (wi * j_a * r).sum(-1)
            di_ = damping[active]
            a_d, c_d = a * (1 + di_) + 1e-30, c * (1 + di_) + 1e-30
            det = a_d * c_d - b * b
            step_f = (c_d * g_f - b * g_a) / det
            step_a = (a_d * g_a - b * g_f) / det
            new_f, new_att = fi + step_f, np.clip(ai + step_a, 0.0, att_max)
            trial = (wi * (yi - rows.predict(new_f, new_att, di)) ** 2).sum(-1)
            better = trial < current[active]
            small = (np.abs(new_att - ai) < 1e-6) & (np.abs(new_f - fi) < 1e-6 * (np.abs(fi)
                                                                                 + 1e-3))
            f[active] = np.where(better, new_f, fi)
            att[active] = np.where(better, new_att, ai)
            current[active] = np.where(better, trial, current[active])
            damping[active] = np.where(better, di_ / 10.0, di_ * 10.0)
            done = (better & small) | (damping[active] > 1e8) | (current[active] <= 1e-24 * (
                (wi * yi * yi).sum(-1) + 1e-30))
            active = active[~done]
        rms = np.sqrt(current / np.maximum(w.sum(-1), 1e-12))
        return f, att, rms, iterations
