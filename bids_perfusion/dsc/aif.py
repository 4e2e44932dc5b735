"""Arterial input function (AIF): automatic selection on ΔR2* curves, or the mean over a mask.

Automatic selection follows the cluster-analysis approach of Mouridsen et al. (MRM
2006;55:524-531) with the recursive two-cluster refinement of Peruzzo et al. (Comput
Methods Programs Biomed 2011;104:e148-e157):

1. Candidates are the voxels of the search mask with a finite, positive curve.
2. Saturation check (when the echo time is known): at the peak, the baseline-normalised
   signal ``S/S0 = exp(-TE ΔR2*_peak)`` must stay ``saturation_snr`` noise standard
   deviations above zero, the relative noise ``σ/S0 = TE σ(ΔR2*)`` being estimated from the
   baseline frames of the voxel; otherwise the magnitude signal sits on its Rician noise
   floor at the peak and the measured ΔR2* is clipped (Calamante, Prog NMR Spectrosc
   2013;74:1; Kjolby et al., MRM 2009;61:1300).
3. Early arrival: the time to peak may not exceed that of the mean curve of the mask.
4. High area: the area under the curve is in the top ``auc_fraction`` (Mouridsen: 10 %).
5. Smoothness: the ``roughness_fraction`` roughest curves are removed (Mouridsen: 25 %),
   with roughness ``∫ C''(t)² dt / max(C)²``.
6. Partial volume: a voxel that mixes artery and tissue has a lower peak for its area, so
   the effective width ``W = ∫C dt / max(C)`` grows (the tissue curve is dispersed and
   delayed; Peruzzo et al. 2011; Bleeker et al., MRM 2011;65:448). Voxels whose width
   exceeds the ``width_quantile`` of the remaining candidates are removed.
7. Clustering: Ward hierarchical clustering of the area-normalised curves into two groups,
   keeping the group whose mean curve has the highest ``peak / (first moment - arrival)``
   (highest peak, as Peruzzo et al., and earliest first moment, as Mouridsen et al.),
   repeated while the group holds more than ``n_voxels`` voxels, the kept group at least
   ``n_voxels``, and the split is not explained by noise: the mean over frames of
   ``(m1(t) - m2(t))² / (se1(t)² + se2(t)²)``, m and se the mean normalised curve of each
   group and its standard error, must reach ``min_separation``. Splitting a group of
   equivalent arterial curves further only selects noise (narrow, high curves) and
   biases the AIF.
8. The ``n_voxels`` curves of the final group closest to its mean normalised curve form
   the AIF, the mean of their ΔR2* curves (choosing the highest peaks instead would bias
   the peak upwards by the noise).

The result is in ΔR2* (s^-1); convert it to concentration with the blood relaxivity
(:func:`bids_perfusion.dsc.relaxivity.blood_concentration`).
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.cluster import hierarchy

from bids_perfusion.dsc.relaxivity import floating


@dataclass(frozen=True)
class AIFSelection:
    """An arterial input function and the voxels it comes from.

    ``curve`` (T,): mean ΔR2* (s^-1) of the selected voxels; ``mask`` (x, y, z) bool: the
    selected voxels; ``counts``: number of voxels left after each selection step, in order
    (empty for a given mask); ``peak`` (s^-1), ``area`` (s^-1 s, trapezoidal over the frame
    times when known, else the sum over frames) and ``time_to_peak`` (s, or frame index
    without frame times) of ``curve``.
    """

    curve: np.ndarray
    mask: np.ndarray
    counts: dict
    peak: float
    area: float
    time_to_peak: float


def _check_series(
    delta_r2star: ArrayLike, mask: ArrayLike, volume: bool = True,
) -> tuple[NDArray[np.floating], NDArray[np.bool_]]:
    """The series (float32 kept: no float64 copy of the volume) and the mask, checked.

    ``volume``: a 4-D (x, y, z, t) series; otherwise any ``(..., t)`` array of curves.
    """
    data = floating(delta_r2star)
    if data.ndim != 4 and (volume or data.ndim < 2):
        raise ValueError(f"ΔR2* must be a 4-D (x, y, z, t) array (got shape {data.shape})")
    mask = np.asarray(mask)
    if mask.shape != data.shape[:-1]:
        raise ValueError(f"mask of shape {mask.shape} does not match the series' spatial "
                         f"shape {data.shape[:-1]}; resample the mask onto the DSC grid")
    mask = mask.astype(bool)
    if not mask.any():
        raise ValueError("the mask is empty: give a mask with at least one voxel")
    return data, mask


def _selection(data: NDArray[np.floating], selected: NDArray[np.bool_],
               times: NDArray[np.float64] | None,
               counts: dict[str, int]) -> AIFSelection:
    curve = data[selected].astype(np.float64, copy=False).mean(axis=0)
    area = float(np.trapezoid(curve, times)) if times is not None else float(curve.sum())
    index = int(np.argmax(curve))
    return AIFSelection(curve=curve, mask=selected, counts=counts, peak=float(curve[index]),
                        area=area,
                        time_to_peak=float(times[index]) if times is not None else float(index))


def aif_from_mask(delta_r2star: ArrayLike, mask: ArrayLike,
                  frame_times: ArrayLike | None = None) -> AIFSelection:
    """AIF as the mean ΔR2* curve over the voxels of a given (e.g. manual) mask.

    ``AIF(t) = mean over v in mask of ΔR2*_v(t)``; voxels with non-finite values (signal 0
    or NaN) are left out of the mean and of the returned mask. ``delta_r2star`` is the
    4-D series, or the curves ``(..., T)`` of some voxels (e.g. the brain's, from
    :func:`~bids_perfusion.dsc.signal.brain_delta_r2star`) with ``mask`` of shape
    ``delta_r2star.shape[:-1]``. ``frame_times`` (s) only
    sets the units of ``area`` and ``time_to_peak``. Raises ValueError when the mask is
    empty, does not match the spatial shape of the series, or covers only non-finite
    curves.
    """
    data, mask = _check_series(delta_r2star, mask, volume=False)
    finite = mask.copy()
    finite[mask] = np.all(np.isfinite(data[mask]), axis=-1)
    if not finite.any():
        raise ValueError("every voxel of the AIF mask has non-finite ΔR2* values "
                         "(signal 0 or NaN); check the mask and the series")
    times = None if frame_times is None else _check_times(frame_times, data.shape[-1])
    return _selection(data, finite, times, {})


def _check_times(frame_times: ArrayLike, n_frames: int) -> NDArray[np.float64]:
    times = np.asarray(frame_times, dtype=float)
    if times.shape != (n_frames,):
        raise ValueError(f"frame_times has shape {times.shape}; expected ({n_frames},), one "
                         "time per frame")
    if np.any(np.diff(times) <= 0):
        raise ValueError("frame_times must be strictly increasing (seconds)")
    return times


def _arrival(curve: NDArray[np.float64], times: NDArray[np.float64]) -> float:
    """Bolus arrival of a curve: the last time before its peak below 10 % of the peak."""
    peak = int(np.argmax(curve))
    below = np.flatnonzero(curve[: peak + 1] < 0.1 * curve[peak])
    return times[below[-1]] if below.size else times[0]


class _Candidates:
    """Candidate voxels: flat indices, curves, peaks and areas, filtered step by step."""

    def __init__(self, index: NDArray[np.intp], curves: NDArray[np.float64],
                 peak: NDArray[np.float64], area: NDArray[np.float64]):
        self.index, self.curves, self.peak, self.area = index, curves, peak, area
        self.counts: dict[str, int] = {}

    def keep(self, keep: NDArray[np.bool_], step: str) -> None:
        self.index, self.curves = self.index[keep], self.curves[keep]
        self.peak, self.area = self.peak[keep], self.area[keep]
        self.counts[step] = int(self.index.size)


def _baseline_noise(curves: NDArray[np.float64], frames: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Robust standard deviation of ΔR2* over the baseline frames: 1.4826 MAD."""
    base = curves[:, frames]
    return 1.4826 * np.median(np.abs(base - np.median(base, axis=1, keepdims=True)), axis=1)


def select_aif(delta_r2star: ArrayLike, mask: ArrayLike, frame_times: ArrayLike, *,
               n_voxels: int = 20, echo_time: float | None = None,
               baseline: slice | NDArray[Any] | None = None, saturation_snr: float = 3.0,
               auc_fraction: float = 0.10, roughness_fraction: float = 0.25,
               width_quantile: float = 0.5, min_separation: float = 20.0) -> AIFSelection:
    """Automatic AIF selection on ΔR2* curves within a search (brain) mask.

    Implements the steps listed in the module docstring (Mouridsen et al., MRM
    2006;55:524; Peruzzo et al., Comput Methods Programs Biomed 2011;104:e148):
    saturation, early-arrival, area, roughness and partial-volume (width) filters, then
    recursive Ward clustering of area-normalised curves (unit area, as Mouridsen et al.)
    keeping the early, high-peaked group while the split is significant, and finally the
    ``n_voxels`` curves of that group closest to its mean shape.

    Parameters
    ----------
    delta_r2star : (x, y, z, T) array, s^-1.
    mask : (x, y, z) bool array, the search region (usually the brain mask).
    frame_times : (T,) strictly increasing times in seconds.
    n_voxels : number of voxels averaged into the AIF; also the smallest group the
        recursive clustering may keep.
    echo_time : TE in seconds; enables the saturation check (skipped when None).
    baseline : frames (slice, indices or bool array over T) before the bolus, used for the
        noise estimate of the saturation check; default every frame before the arrival of
        the mask's mean curve (last time before its peak below 10 % of the peak).
    saturation_snr : minimum signal at the peak, in noise standard deviations.
    auc_fraction : fraction of candidates with the largest areas that is kept.
    roughness_fraction : fraction of the roughest remaining curves that is removed.
    width_quantile : quantile of the effective width ``∫C dt / max C`` above which curves
        are removed as partial-volume contaminated.
    min_separation : smallest mean squared z-score between the two groups' mean
        normalised curves for a split to be followed (step 7).

    Returns
    -------
    AIFSelection, with ``counts`` the number of candidate voxels after each step
    (mask, valid, unsaturated when checked, early, area, smooth, narrow, clustered,
    selected) and the number of clustering rounds (cluster_rounds).
    """
    data, mask = _check_series(delta_r2star, mask)
    times = _check_times(frame_times, data.shape[-1])
    if n_voxels < 1:
        raise ValueError(f"n_voxels must be at least 1 (got {n_voxels})")
    for name, value in (("auc_fraction", auc_fraction), ("width_quantile", width_quantile)):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{name} must be in (0, 1] (got {value})")
    if not 0.0 <= roughness_fraction < 1.0:
        raise ValueError(f"roughness_fraction must be in [0, 1) (got {roughness_fraction})")

    index = np.flatnonzero(mask.reshape(-1))
    curves = data.reshape(-1, data.shape[-1])[index].astype(np.float64, copy=False)
    valid = np.all(np.isfinite(curves), axis=1)
    clean = np.where(valid[:, None], curves, 0.0)
    c = _Candidates(index, clean, clean.max(axis=1), np.trapezoid(clean, times, axis=1))
    c.counts["mask"] = int(index.size)
    c.keep(valid & (c.peak > 0) & (c.area > 0), "valid")
    if c.index.size == 0:
        raise ValueError("no voxel of the search mask has a finite ΔR2* curve with a "
                         "positive bolus; check the mask and the ΔR2* conversion")
    mean_curve = clean[valid].mean(axis=0)
    arrival = _arrival(mean_curve, times)

    if echo_time is not None:
        frames = np.zeros(times.size, dtype=bool)
        if baseline is None:
            frames[times < arrival] = True
        else:
            frames[baseline] = True
        if frames.sum() < 2:
            raise ValueError("the saturation check needs at least 2 baseline frames before "
                             "the bolus; pass baseline= or discard fewer frames")
        # S_peak / S0 = exp(-TE peak) against the relative noise sigma / S0 = TE sigma_R.
        relative_noise = echo_time * _baseline_noise(c.curves, frames)
        c.keep(np.exp(-echo_time * c.peak) > saturation_snr * relative_noise, "unsaturated")

    c.keep(times[np.argmax(c.curves, axis=1)] <= times[np.argmax(mean_curve)], "early")
    if c.index.size:
        c.keep(c.area >= np.quantile(c.area, 1.0 - auc_fraction), "area")
    if c.index.size and times.size >= 3:
        second = np.diff(c.curves, n=2, axis=1) / (np.diff(times)[1:] ** 2)
        roughness = np.trapezoid(second**2, times[1:-1], axis=1) / c.peak**2
        c.keep(roughness <= np.quantile(roughness, 1.0 - roughness_fraction), "smooth")
    if c.index.size:
        width = c.area / c.peak
        c.keep(width <= np.quantile(width, width_quantile), "narrow")
    if c.index.size == 0:
        raise ValueError("no AIF candidate survived the selection; the search mask may "
                         "hold no artery, or every arterial voxel is saturated")
    counts, index, curves, area = c.counts, c.index, c.curves, c.area

    shapes = curves / area[:, None]
    group = np.arange(index.size)
    rounds = 0
    while group.size > n_voxels:
        labels = hierarchy.fcluster(hierarchy.linkage(shapes[group], method="ward"), 2,
                                    criterion="maxclust")
        best, best_score, means, errors = None, -np.inf, [], []
        for label in np.unique(labels):
            members = group[labels == label]
            mean = curves[members].mean(axis=0)
            positive = np.clip(mean, 0.0, None)
            moment = np.trapezoid(times * positive, times) / np.trapezoid(positive, times)
            score = mean.max() / max(moment - arrival, np.min(np.diff(times)))
            if score > best_score:
                best, best_score = members, score
            means.append(shapes[members].mean(axis=0))
            errors.append(shapes[members].var(axis=0, ddof=1) / members.size
                          if members.size > 1 else 0.0)
        variance = np.maximum(errors[0] + errors[1], np.finfo(float).tiny)
        separation = float(np.mean((means[0] - means[1]) ** 2 / variance))
        assert best is not None  # two clusters, each scored
        if best.size < n_voxels or separation < min_separation:
            break
        group = best
        rounds += 1
    counts["clustered"] = int(group.size)
    counts["cluster_rounds"] = rounds

    distance = np.sum((shapes[group] - shapes[group].mean(axis=0)) ** 2, axis=1)
    chosen = group[np.argsort(distance, kind="stable")[:n_voxels]]
    counts["selected"] = int(chosen.size)
    selected = np.zeros(mask.size, dtype=bool)
    selected[index[chosen]] = True
    return _selection(data, selected.reshape(mask.shape), times, counts)
