"""Timing of a DSC series: steady state, baseline window, bolus arrival and time to peak.

A gradient-echo DSC series starts brighter than its steady state (the longitudinal
magnetisation approaches ``M_ss`` over the first frames, faster for short T1), then holds
a flat baseline until the bolus arrives and the signal drops. The baseline signal ``S0``
of every voxel is the mean over the frames in between, so those frames must be found from
the data: :func:`steady_state_frames` and :func:`baseline_window` work on the mean brain
curve; :func:`bolus_arrival_time` and :func:`time_to_peak` on the concentration curve of
every voxel, vectorised.

The noise level of the mean curve, which sets the tolerances, comes from its residual
from a Savitzky-Golay smoother (:func:`estimate_noise_sd`) unless the caller knows it.
"""

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import signal

from bids_perfusion.dsc.relaxivity import floating
from bids_perfusion.voxels import for_each_block

#: Cubic Savitzky-Golay smoother used to estimate the noise of a curve: window, order.
_SMOOTHER = (5, 3)
#: Voxels per block in :func:`bolus_arrival_time`; bounds the working memory.
_CHUNK = 8192


def _validated_curve(mean_signal: ArrayLike) -> NDArray[np.float64]:
    curve = np.asarray(mean_signal, dtype=np.float64)
    if curve.ndim != 1:
        raise ValueError(f"the mean signal must be one curve (T,), got shape {curve.shape}")
    if curve.size < _SMOOTHER[0]:
        raise ValueError(f"the mean signal has {curve.size} frames; at least {_SMOOTHER[0]} "
                         "are needed to find the baseline")
    if not np.all(np.isfinite(curve)):
        raise ValueError("the mean signal contains NaN or infinite values")
    return curve


def estimate_noise_sd(curve: ArrayLike) -> float:
    """Robust noise standard deviation of one curve, from a Savitzky-Golay residual.

    ``r = S − SG(S)`` is the residual from a cubic Savitzky-Golay smoother over 5 frames
    (Savitzky and Golay, Anal Chem 1964;36:1627), which follows a smooth bolus curve
    closely. For white noise of SD σ, ``var r = σ² (1 − w₀)`` with ``w₀`` the smoother's
    central weight. σ starts from ``1.4826 · median|r|`` and is refined by 3σ clipping
    (three passes; RMS of the kept residuals over 0.9866, the RMS of a unit normal
    truncated at ±3), so the frames of a sharp bolus or of the steady-state transient
    drop out. On a 60-frame phantom curve it reads about 1.2 times the true σ (residual
    curvature), which errs on the conservative side for the tests that use it.
    """
    curve = _validated_curve(curve)
    window, order = _SMOOTHER
    residual = np.abs(curve - signal.savgol_filter(curve, window, order, mode="interp"))
    sd = 1.4826 * np.median(residual)
    for _ in range(3):
        kept = residual[residual <= 3.0 * sd]
        sd = np.sqrt(np.mean(kept**2)) / 0.9866 if kept.size else sd
    central_weight = signal.savgol_coeffs(window, order)[window // 2]
    return float(sd / np.sqrt(1.0 - central_weight))


def _tolerance(curve: NDArray[np.float64], n_sd: float, rel_tol: float, sd: float | None) -> float:
    sd = estimate_noise_sd(curve) if sd is None else float(sd)
    if not sd >= 0:
        raise ValueError(f"noise_sd must be >= 0, got {sd}")
    return max(n_sd * sd, rel_tol * abs(float(np.median(curve))))


def _plateau_level(curve: NDArray[np.float64]) -> float:
    """Signal level of the flattest 3 frames between the transient and the bolus drop.

    The pre-bolus part is every frame before the first one, ahead of the minimum (the bolus
    peak), that falls below half-way between the pre-minimum median and the minimum.
    """
    bottom = int(np.argmin(curve))
    before = curve[:bottom]
    if before.size < 3:
        raise ValueError(f"too few baseline frames: the signal is lowest at frame {bottom}; "
                         "a DSC series needs a pre-bolus baseline of at least 3 frames")
    half = curve[bottom] + 0.5 * (np.median(before) - curve[bottom])
    below = np.flatnonzero(before < half)
    pre = before[: below[0]] if below.size else before
    if pre.size < 3:
        raise ValueError(f"too few baseline frames: the signal drops after {pre.size} frame(s); "
                         "a DSC series needs a pre-bolus baseline of at least 3 frames")
    windows = np.lib.stride_tricks.sliding_window_view(pre, 3)
    flattest = windows[np.argmin(np.ptp(windows, axis=-1))]
    return float(np.median(flattest))


def steady_state_frames(mean_signal: ArrayLike, n_sd: float = 3.0, rel_tol: float = 1e-4,
                        noise_sd: float | None = None) -> int:
    """Number of leading frames to discard before the signal reaches its steady state.

    The leading frames whose mean brain signal exceeds the baseline level ``L`` by more
    than ``max(n_sd · σ, rel_tol · L)`` are the approach to the steady state of a spoiled
    gradient echo, ``S_n ∝ M_ss + (M₀ − M_ss)(E₁ cos α)^n`` (Haacke et al., *Magnetic
    Resonance Imaging: Physical Principles and Sequence Design*, 1999, ch. 18). ``L`` is the
    median of the flattest three pre-bolus frames, σ the noise SD of ``mean_signal``
    (:func:`estimate_noise_sd` unless given). The relative floor matters for noise-free data: an
    excess of 1e-4 biases ΔR2* by only 1e-4 / TE ≈ 0.003 s⁻¹ at TE = 30 ms.

    Returns the count of consecutive frames from the first that are above ``L + tolerance``
    (0 when the series starts in steady state).
    """
    curve = _validated_curve(mean_signal)
    level = _plateau_level(curve)
    tolerance = _tolerance(curve, n_sd, rel_tol, noise_sd)
    settled = np.flatnonzero(curve <= level + tolerance)
    return int(settled[0]) if settled.size else curve.size


def baseline_window(mean_signal: ArrayLike, n_discard: int | None = None, n_sd: float = 3.0,
                    rel_tol: float = 1e-4, min_frames: int = 3, noise_sd: float | None = None,
                    voxel_noise_sd: float | None = None) -> tuple[int, int]:
    """Frames ``[start, stop)`` of the pre-bolus baseline of the mean brain curve.

    ``start`` is ``n_discard`` (:func:`steady_state_frames` when None), or, when the noise
    SD of a single voxel's signal ``voxel_noise_sd`` is given (in the units of
    ``mean_signal``), the earlier frame ``k`` that minimises the mean squared error of a
    voxel's ``S0`` averaged over ``[k, stop)``: ``e(k)² + σ_v²/(stop − k)``, with ``e(k)``
    the mean excess of the mean curve over ``L`` in that window (the bias left by the
    steady-state transient) and ``σ_v²/(stop − k)`` the variance of the average. At SNR 50
    a transient frame 0.1 % above ``L`` is worth keeping: its bias is far below the noise
    it averages out. ``stop`` is the
    first frame of the run of frames below ``L − max(n_sd · σ, rel_tol · L)`` that leads
    into the signal minimum (the bolus peak), with L the baseline level (median of the
    flattest three pre-bolus frames) and σ the noise SD of the curve
    (:func:`estimate_noise_sd` unless given). Searching back from the minimum keeps
    earlier low frames that return to the plateau in the baseline: noise excursions, and
    a slowly rising signal drift, whose first frames lie below a plateau measured next to
    the bolus (a drift of 0.5 % is a hundred times the noise of a brain-mean curve). The
    per-voxel baseline ``S0`` is the mean over the window (Rosen et al., MRM 1990;14:249).

    Raises ValueError when fewer than ``min_frames`` baseline frames remain.
    """
    curve = _validated_curve(mean_signal)
    start = steady_state_frames(curve, n_sd, rel_tol, noise_sd) if n_discard is None \
        else int(n_discard)
    if not 0 <= start < curve.size:
        raise ValueError(f"n_discard must be in [0, {curve.size}), got {n_discard}")
    level = _plateau_level(curve)
    low = curve < level - _tolerance(curve, n_sd, rel_tol, noise_sd)
    # The bolus arrives with the run of low frames that leads into the signal minimum:
    # earlier low frames followed by a return to the plateau (a rising signal drift, a
    # noise excursion) are baseline.
    bottom = start + int(np.argmin(curve[start:]))
    plateau = np.flatnonzero(~low[start:bottom])
    if not low[bottom]:  # no frame drops: no bolus in the curve
        stop = curve.size
    else:
        stop = start + int(plateau[-1]) + 1 if plateau.size else start
    if voxel_noise_sd is not None and n_discard is None and stop > start:
        start = _least_squared_error_start(curve - level, start, stop, voxel_noise_sd)
    if stop - start < min_frames:
        raise ValueError(
            f"too few baseline frames: {stop - start} between the end of the steady-state "
            f"transient (frame {start}) and the bolus arrival (frame {stop}); at least "
            f"{min_frames} are needed: acquire more pre-bolus frames before the "
            "injection (from Python, n_discard sets the transient)")
    return start, stop


def _least_squared_error_start(excess: NDArray[np.float64], start: int, stop: int,
                               voxel_noise_sd: float) -> int:
    """The ``k ≤ start`` minimising ``mean(excess[k:stop])² + σ_v²/(stop − k)``."""
    if not voxel_noise_sd >= 0:
        raise ValueError(f"voxel_noise_sd must be >= 0, got {voxel_noise_sd}")
    candidates = np.arange(start + 1)
    bias = np.array([excess[k:stop].mean() for k in candidates])
    error = bias**2 + float(voxel_noise_sd) ** 2 / (stop - candidates)
    return int(candidates[np.argmin(error)])


def bolus_end(mean_curve: ArrayLike, fraction: float = 0.01) -> int:
    """End (exclusive frame index) of the bolus passage of the mean brain curve.

    ``mean_curve`` is a baseline-subtracted mean ΔR2* or concentration curve. The end is one
    past the first frame after the peak where the curve falls below ``fraction`` of its
    peak: the first pass and the recirculation are over, and later frames add noise to
    area integrals (:func:`~bids_perfusion.dsc.maps.cbv_area_ratio`) but no signal. When
    the curve never falls that low (a persistent blood-pool plateau) the end is the last
    frame, ``len(mean_curve)``. This is the usual truncation of the CBV integral to the
    bolus passage (integration limits: Ostergaard, JMRI 2005;22:710).
    """
    curve = np.asarray(mean_curve, dtype=np.float64)
    if curve.ndim != 1 or curve.size < 2 or not np.all(np.isfinite(curve)):
        raise ValueError(f"mean_curve must be one finite curve (T,), got shape {curve.shape}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    peak = int(np.argmax(curve))
    if not curve[peak] > 0:
        raise ValueError("mean_curve has no positive peak: pass ΔR2* or concentration, "
                         "not the signal")
    below = np.flatnonzero(curve[peak:] < fraction * curve[peak])
    return int(peak + below[0] + 1) if below.size else curve.size


def _validated_timing_input(
    concentration: ArrayLike, frame_times: ArrayLike,
) -> tuple[NDArray[np.floating], NDArray[np.float64]]:
    data = floating(concentration)
    times = np.asarray(frame_times, dtype=np.float64)
    if times.ndim != 1 or times.size < 3:
        raise ValueError(f"frame_times must be one axis of at least 3 times, got {times.shape}")
    if not (np.all(np.isfinite(times)) and np.all(np.diff(times) > 0)):
        raise ValueError("frame_times must be finite and strictly increasing (seconds)")
    if data.ndim == 0 or data.shape[-1] != times.size:
        raise ValueError(f"concentration must have the {times.size} frames of frame_times on "
                         f"its last axis, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError("concentration contains NaN or infinite values; mask those voxels")
    return data, times


def bolus_arrival_time(concentration: ArrayLike, frame_times: ArrayLike,
                       upslope_fraction: float = 0.5, resolution: int = 10) -> NDArray[np.float64]:
    """Bolus arrival time (s) per voxel: a constant-then-quadratic fit to the upslope.

    Piecewise continuous regression (Cheong et al., Phys Med Biol 2003;48:N83) with the
    model ``C(t) = 0`` for ``t ≤ BAT`` and ``C(t) = b (t − BAT)²`` after, fitted by least
    squares to the frames from the first one up to the first frame where the curve reaches
    ``upslope_fraction`` of its peak. The onset of a bolus that passed a gamma-variate input,
    dispersion and a residue function is convex, which a straight upslope (Cheong's
    linear model) misplaces by about one frame late; the quadratic follows it.

    For each candidate ``BAT`` on a grid of ``resolution`` steps per frame interval, the
    best ``b`` is closed-form and the residual sum of squares is
    ``Σ C² − (Σ (t − BAT)² C)² / Σ (t − BAT)⁴`` (sums over frames after BAT in the fit
    range); BAT minimises it with ``b > 0`` (the earliest candidate on ties). Both sums
    are polynomials in BAT whose coefficients are cumulative sums over the frames
    (:func:`_quadratic_onset`), so the candidates of one frame interval are evaluated for
    all voxels at once. The concentration must be zero on average before arrival
    (baseline subtracted) and start after the steady-state frames. Float32 curves are
    read in blocks of ``_CHUNK`` voxels (on the CPUs this process may use,
    :func:`~bids_perfusion.voxels.for_each_block`) and the sums taken in float64.

    Returns an array of shape ``concentration.shape[:-1]``: NaN where the curve has no
    positive peak after its first frame.
    """
    data, times = _validated_timing_input(concentration, frame_times)
    if not 0 < upslope_fraction <= 1:
        raise ValueError(f"upslope_fraction must be in (0, 1], got {upslope_fraction}")
    if int(resolution) < 1:
        raise ValueError(f"resolution must be a positive number of steps, got {resolution}")
    flat = data.reshape(-1, times.size)
    shifted = times - times[0]  # shift-invariant; smaller powers for the cumulative sums
    out = np.empty(len(flat))

    def onset(block: slice) -> None:
        out[block] = _quadratic_onset(flat[block].astype(np.float64), shifted,
                                      upslope_fraction, int(resolution))

    for_each_block(onset, len(flat), _CHUNK)
    return out.reshape(data.shape[:-1]) + times[0]


def _quadratic_onset(curves: NDArray[np.float64], t: NDArray[np.float64], fraction: float,
                     resolution: int) -> NDArray[np.float64]:
    """BAT of each curve ``(V, T)`` on the candidate grid (see :func:`bolus_arrival_time`).

    With ``j`` the first frame after a candidate ``B`` and ``s`` the voxel's fit end,
    ``Σ_{j≤i<s} (t_i − B)² C_i = M₂ − 2B M₁ + B² M₀`` and
    ``Σ_{j≤i<s} (t_i − B)⁴ = Σ_m binom(4, m) (−B)^(4−m) P_m``, where
    ``M_m = Σ_{j≤i<s} C_i t_i^m`` and ``P_m = Σ_{j≤i<s} t_i^m`` come from cumulative sums.
    For one ``j`` the candidates in ``[t_{j−1}, t_j)`` share ``M`` and ``P``, so they are
    evaluated together, one row each, over all voxels. Voxels are sorted by ``s`` so that
    those with ``s > j`` (the only ones a candidate can fit) are a leading block, and
    ``P``, which depends on ``s`` only, is computed once per distinct ``s``.
    """
    peak = curves.max(axis=-1)
    stop = np.argmax(curves >= fraction * peak[:, None], axis=-1) + 1  # exclusive
    order = np.argsort(-stop, kind="stable")
    stop = stop[order]
    # moments[j, m, v] = Σ_{i<j} C_i t_i^m of voxel v (sorted); powers[j, m] = Σ_{i<j} t_i^m;
    # frames from the last fit end on are never summed.
    span = int(stop[0])
    sorted_curves = np.ascontiguousarray(curves[order, :span].T)  # (span, V)
    weighted = sorted_curves[:, None, :] * (t[:span, None] ** np.arange(3))[:, :, None]
    moments = np.concatenate([np.zeros((1, *weighted.shape[1:])), np.cumsum(weighted, axis=0)])
    at_stop = np.stack([moments[stop, m, np.arange(len(stop))] for m in range(3)])  # (3, V)
    powers = np.concatenate([np.zeros((1, 5)), np.cumsum(t[:, None] ** np.arange(5), axis=0)])
    ends, run_lengths = np.unique(stop[::-1], return_counts=True)  # ascending fit ends
    ends, run_lengths = ends[::-1], run_lengths[::-1]  # the runs of the sorted voxels
    candidates = np.arange(t[0], t[span - 1], np.min(np.diff(t)) / resolution)
    first = np.searchsorted(t, candidates, side="right")  # first frame after each candidate
    best_gain = np.zeros(len(stop))
    arrival = np.full(len(stop), np.nan)
    for j in np.unique(first):
        fitted = int(np.count_nonzero(stop > j))  # voxels whose fit range holds frame j
        runs = int(np.count_nonzero(ends > j))
        bat = candidates[first == j][:, None]  # one row per candidate
        moment = at_stop[:, :fitted] - moments[j, :, :fitted]  # M_m over frames j .. s − 1
        cross = (2 * bat) * moment[1]
        np.subtract(moment[2], cross, out=cross)
        cross += bat**2 * moment[0]  # M₂ − 2B M₁ + B² M₀
        # P_m over frames j .. s − 1 depends on the fit end only: one column per end.
        sums = powers[ends[:runs]].T - powers[j][:, None]
        quartic = (sums[4] - 4 * bat * sums[3] + 6 * bat**2 * sums[2] - 4 * bat**3 * sums[1]
                   + bat**4 * sums[0])
        quartic[~(quartic > 0)] = np.inf  # no fit: gain 0, as for cross ≤ 0 below
        gain = np.square(np.maximum(cross, 0.0, out=cross), out=cross)
        gain /= np.repeat(quartic, run_lengths[:runs], axis=1)
        top = gain.max(axis=0)
        best = np.argmax(gain == top, axis=0)  # the earliest best candidate, as argmax
        better = top > best_gain[:fitted]
        best_gain[:fitted][better] = top[better]
        arrival[:fitted][better] = bat[best[better], 0]
    result = np.empty(len(stop))
    result[order] = np.where(peak[order] > 0, arrival, np.nan)
    return result


def time_to_peak(concentration: ArrayLike, frame_times: ArrayLike,
                 refine: bool = True) -> NDArray[np.float64]:
    """Time to peak (s) per voxel: ``TTP = t[argmax C]``, refined between frames.

    With ``refine`` the peak is the vertex of the parabola through the maximum frame and
    its two neighbours, ``t* = t₁ − ½ [(t₁−t₀)²(y₁−y₂) − (t₁−t₂)²(y₁−y₀)] /
    [(t₁−t₀)(y₁−y₂) − (t₁−t₂)(y₁−y₀)]`` (three-point parabolic interpolation, as in
    Press et al., *Numerical Recipes*, 3rd ed., §10.3), kept within the neighbouring
    frames; a maximum on the first or last frame is not refined. Times are measured on the
    same clock as ``frame_times``.
    """
    data, times = _validated_timing_input(concentration, frame_times)
    peak = np.argmax(data, axis=-1)
    ttp = times[peak]
    if not refine:
        return ttp
    inner = np.clip(peak, 1, times.size - 2)
    y0, y1, y2 = (np.take_along_axis(data, (inner + k)[..., None], axis=-1)[..., 0]
                  .astype(np.float64) for k in (-1, 0, 1))
    t0, t1, t2 = times[inner - 1], times[inner], times[inner + 1]
    numerator = (t1 - t0) ** 2 * (y1 - y2) - (t1 - t2) ** 2 * (y1 - y0)
    denominator = (t1 - t0) * (y1 - y2) - (t1 - t2) * (y1 - y0)
    interior = (peak == inner) & (denominator > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = np.clip(t1 - 0.5 * numerator / denominator, t0, t2)
    return np.where(interior, vertex, ttp)
