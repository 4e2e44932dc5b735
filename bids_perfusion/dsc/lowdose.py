r"""Simulated low-dose DSC series from a full-dose acquisition.

**The paper's model (``model="linear"``).** The stU-Net paper (Veron Vialard et al.,
"Going beyond voxel-wise deconvolution in perfusion MRI: learning and leveraging
spatio-temporal regularities with the stU-Net", 2021, hal-03128610, section 2, Eq. 1)
writes the signal of a voxel as ``S(t) = S(0) + κ C(t) + ε(t)`` with white noise ε. A
local average ``S̄`` removes the noise (``ε̄ ≈ 0``) but keeps the contrast term, which
varies slowly with respect to the sampling interval Δt (``C̄ ≈ C``), so that
``S̄(t) - S(0) ≈ κ C(t)``; the signal at a dose reduced by the factor d, with the noise of
the original acquisition, is

    S_d(t) = S(0) + d κ C(t) + ε(t) ≈ S(t) - (1 - d) [S̄(t) - S(0)].       (Eq. 1)

**The exact form for the gradient-echo signal (``model="exponential"``, the default).**
Eq. 1 is the first-order expansion of ``S = S(0) exp(-TE ΔR2*)`` in ΔR2*: it scales the
signal *drop* by d, whereas the dose scales the concentration and so ΔR2* (ΔR2* = r C,
linear in C in tissue; see below for blood). Where the signal drops a lot the two differ:
for an arterial curve with S/S(0) = 0.26 at the peak, Eq. 1 at d = 0.25 gives
S_d/S(0) = 1 - 0.25 × 0.74 = 0.815, a ΔR2* of -ln(0.815)/TE = 0.15× the full-dose one
instead of 0.25×. Scaling ΔR2* instead, ``S̄_d = S(0) exp(-TE d ΔR2*) = S(0) (S̄/S(0))^d``,
and keeping the noise of the acquisition, ``S - S̄``, gives

    S_d(t) = S(0) (S̄(t) / S(0))^d + [S(t) - S̄(t)],

exact for the noise-free mono-exponential signal whatever the drop, and equal to Eq. 1 to
first order in TE ΔR2* (``(1 - x)^d ≈ 1 - d x``). Both models assume ΔR2* ∝ C; with the
quadratic blood relaxivity (``blood_relaxivity="quadratic"``) the arterial ΔR2* scales
between d and d² (not modelled). Voxels whose S(0) is not positive (outside the head)
are returned unchanged by the exponential model; ``S̄/S(0)`` is floored at 10⁻³.

**The local average (``average``).** The paper's assumption is temporal: the dynamics of C
are slow with respect to Δt. ``"temporal"`` (default) is a Savitzky–Golay smoother of order
2 along time (:func:`scipy.signal.savgol_filter`, ``mode="interp"``: the first and last
half windows are the values of the polynomial fitted to the first and last full windows,
so the ends are neither padded nor replicated). It fits a parabola in each window, so a
peak whose curvature is resolved by the window keeps its height, where a box average of
the same width flattens it. The width is ``frames_for_tr(tr)``: the odd frame count
closest to :data:`TEMPORAL_WINDOW_S` seconds, at least 5 (with order 2, 3 frames are an
exact fit, i.e. no averaging). ``"spatial"`` is the former default, a box of
``spatial_size`` voxels along x, y and z (``scipy.ndimage.uniform_filter``, edges
replicated); it averages more samples but mixes neighbouring tissues (arterial contrast
into tissue and tissue into arteries), which leaves brain-average signals unchanged but
not arterial or tumour voxels.

``S(0)`` is the mean of ``S̄`` over the given baseline (pre-bolus) frames.

**The noise.** Both models keep ``S - S̄``, i.e. the noise ε minus its local average; the
simulated noise is ``ε - (1 - g) H ε`` with ``H`` the smoother and ``g = ∂S_d/∂S̄`` (d for
Eq. 1, d (S̄/S(0))^(d-1) for the exponential form, d at the baseline). For a smoother that
is a projection (Savitzky–Golay) or a box, ``Σ h² = h0`` (the centre weight), so its
variance is ``σ² [1 - 2(1 - d) h0 + (1 - d)² h0] = σ² [1 - h0 (1 - d²)]``. With the
spatial 3×3×3 box h0 = 1/27 and the loss is negligible (1.4 % of the SD at d = ½); with a
5-frame temporal window h0 = 17/35 and the simulated series would be 20 % (d = ½) to 26 %
(d = ¼) less noisy than a true low-dose acquisition, which has the full σ. With
``restore_noise`` (default) independent Gaussian noise of variance ``σ̂² h0 (1 - d²)`` is
added (σ̂ per voxel from the baseline residuals, seeded: the output is reproducible), so
that the simulated series has the acquisition's noise SD, as the paper's Eq. 1 intends.
"""

import functools
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage
from scipy import signal as sps

from bids_perfusion.dsc import timing

#: Signal models: ``exponential`` (default, exact for S = S(0) exp(-TE ΔR2*)) and
#: ``linear`` (the stU-Net paper's Eq. 1).
MODELS = ("exponential", "linear")
#: Local averages: ``temporal`` (Savitzky–Golay along time, default) or ``spatial`` (box).
AVERAGES = ("temporal", "spatial")
#: Width in seconds of the temporal local average. The first pass of a bolus has a full
#: width at half maximum of several seconds in arteries and longer in tissue (the
#: phantom's AIF, a gamma variate of α = 3 and β = 1.5 s, has 6.2 s before dispersion;
#: clinical AIFs are of the same order, Calamante, Prog Nucl Magn Reson Spectrosc
#: 2013;74:1-32): an order-2 Savitzky–Golay window of about the FWHM keeps the peak (the
#: parabola fits its top) while averaging 5 frames at a clinical TR of 1.5 s.
TEMPORAL_WINDOW_S = 7.5
#: Order of the Savitzky–Golay polynomial (orders 2 and 3 give the same central weights).
SAVGOL_ORDER = 2
#: Default width in voxels of the spatial box (``average="spatial"``).
SPATIAL_SIZE = 3


def frames_for_tr(tr: float, seconds: float = TEMPORAL_WINDOW_S) -> int:
    """Odd number of frames closest to ``seconds`` at the frame interval ``tr`` (s), at
    least ``SAVGOL_ORDER + 3`` = 5 (a window of order + 1 frames fits exactly, no average).
    """
    if not tr > 0:
        raise ValueError(f"the repetition time must be positive seconds (got {tr})")
    frames = 2 * int(np.floor(seconds / tr / 2.0)) + 1
    if abs(frames + 2 - seconds / tr) < abs(frames - seconds / tr):
        frames += 2
    return max(frames, SAVGOL_ORDER + 3)


@functools.lru_cache(maxsize=16)
def savgol_matrix(n_frames: int, frames: int) -> NDArray[np.float64]:
    """``M`` (n_frames × n_frames) with ``S̄ = M S``: the Savitzky–Golay smoother of order
    2 over ``frames`` frames with ``mode="interp"`` as a matrix (its columns are the
    smoothed unit impulses), so that smoothing many curves is one matrix product
    ``curves @ M.T``; read-only (cached)."""
    matrix = sps.savgol_filter(np.eye(n_frames), frames, SAVGOL_ORDER, axis=0, mode="interp")
    matrix.flags.writeable = False
    return matrix


def local_average(values: NDArray[np.floating], *, average: str = "temporal", frames: int = 5,
                  spatial_size: int = SPATIAL_SIZE) -> NDArray[np.floating]:
    """``S̄`` of a float (..., T) array of curves: Savitzky–Golay of order 2 over
    ``frames`` frames along time (edge-aware, ``mode="interp"``, as the matrix product of
    :func:`savgol_matrix`), or of an (x, y, z, T) series: a box of ``spatial_size`` voxels
    along x, y, z (edges replicated). Float32 stays float32."""
    if average == "temporal":
        if frames < SAVGOL_ORDER + 3 or frames % 2 == 0:
            raise ValueError(f"the temporal local mean needs an odd window of at least "
                             f"{SAVGOL_ORDER + 3} frames (got {frames})")
        if frames > values.shape[-1]:
            raise ValueError(f"the temporal window ({frames} frames) is longer than the "
                             f"series ({values.shape[-1]} frames)")
        matrix = savgol_matrix(values.shape[-1], frames).astype(values.dtype)
        return values @ matrix.T
    if average == "spatial":
        if spatial_size < 2:
            raise ValueError("the spatial local mean needs spatial_size > 1")
        return ndimage.uniform_filter(values, size=(spatial_size,) * 3 + (1,),
                                      mode="nearest")
    raise ValueError(f"average must be one of {AVERAGES} (got {average!r})")


def simulate_low_dose(signal: ArrayLike, dose: float, *, baseline: slice | NDArray[Any],
                      model: str = "exponential", average: str = "temporal", frames: int = 5,
                      spatial_size: int = SPATIAL_SIZE, restore_noise: bool = True,
                      seed: int = 0, mask: ArrayLike | None = None) -> NDArray[Any]:
    """Low-dose DSC series: ``S_d = S(0) (S̄/S(0))^d + (S - S̄)`` (``model="exponential"``)
    or ``S_d = S - (1 - d)[S̄ - S(0)]`` (``model="linear"``, the stU-Net paper's Eq. 1).

    Parameters
    ----------
    signal : (x, y, z, T) array, the full-dose series; steady-state (approach to
        equilibrium) frames should be discarded first, since both models attribute every
        deviation from S(0) to contrast agent.
    dose : dose factor d in (0, 1]; d = 1 returns an identical copy of ``signal``.
    baseline : frames before the bolus (slice, indices or bool array over T) whose mean of
        ``S̄`` is ``S(0)``.
    model : ``"exponential"`` or ``"linear"`` (see the module docstring).
    average : ``"temporal"`` (Savitzky–Golay over ``frames`` frames, see
        :func:`frames_for_tr`) or ``"spatial"`` (box of ``spatial_size`` voxels).
    restore_noise : with the temporal average, add the noise variance that the
        simulation removes, ``σ² h0 (1 - d²)`` (see the module docstring), as Gaussian
        noise drawn with ``seed``; the spatial average removes a negligible
        ``σ² (1 - d²) / spatial_size³`` and is left as it is.
    mask : optional (x, y, z) boolean array, the voxels simulated (the brain); the others
        are returned unchanged. Default: every voxel.

    Computed in the precision of ``signal`` (float32 stays float32) and returned in its
    dtype (float64 for integer input).
    """
    data = np.asarray(signal)
    if data.ndim != 4:
        raise ValueError(f"the DSC series must be 4-D (x, y, z, t) (got shape {data.shape})")
    if not 0.0 < dose <= 1.0:
        raise ValueError(f"dose must be in (0, 1] (got {dose}); 0.5 simulates half dose")
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS} (got {model!r})")
    frames_mask = np.zeros(data.shape[-1], dtype=bool)
    frames_mask[baseline] = True
    if not frames_mask.any():
        raise ValueError("baseline selects no frame; give the pre-bolus frames")
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES} (got {average!r})")
    out_dtype = data.dtype if np.issubdtype(data.dtype, np.floating) else np.float64
    if dose == 1.0:
        return data.astype(out_dtype, copy=True)
    selected = (np.ones(data.shape[:3], dtype=bool) if mask is None
                else np.asarray(mask, dtype=bool).reshape(data.shape[:3]))
    if average == "temporal":
        values = data[selected].astype(out_dtype, copy=False)  # (voxels, T)
        if not np.all(np.isfinite(values)):
            raise ValueError("the DSC series holds NaN or infinite values")
        local = local_average(values, frames=frames)
    else:  # the box needs the neighbours of every voxel
        if not np.all(np.isfinite(data)):
            raise ValueError("the DSC series holds NaN or infinite values")
        whole = data.astype(out_dtype, copy=False)
        local = local_average(whole, average="spatial", spatial_size=spatial_size)[selected]
        values = whole[selected]
    s0 = local[:, frames_mask].mean(axis=-1, keepdims=True)
    residual = values - local
    if model == "linear":
        simulated = values - (1.0 - dose) * (local - s0)
    else:
        positive = s0 > 0
        safe_s0 = np.where(positive, s0, 1.0)
        ratio = np.maximum(local / safe_s0, 1e-3)
        simulated = np.where(positive, safe_s0 * ratio ** dose + residual, values)
    if restore_noise and average == "temporal":
        simulated += _restored_noise(residual, frames_mask, frames, dose, seed)
    out = data.astype(out_dtype, copy=True)
    out[selected] = simulated
    return out


def _restored_noise(residual: NDArray[np.floating], baseline: NDArray[np.bool_], frames: int,
                    dose: float, seed: int) -> NDArray[np.floating]:
    """Gaussian noise of variance ``σ̂² h0 (1 - d²)`` per curve (rows of ``residual``, in its
    dtype), with ``σ̂² = mean of (S - S̄)² / (1 - h0)`` (a Savitzky–Golay smoother is a
    projection, so the residual keeps ``1 - h0`` of the noise variance) over the baseline
    frames whose whole window is baseline (the others hold the smoother's bias at bolus
    arrival or its edge fit); the whole baseline if fewer than 2 such frames."""
    h0 = savgol_centre_weight(frames)
    inner = ndimage.binary_erosion(baseline, np.ones(frames, dtype=bool), border_value=0)
    if inner.sum() < 2:
        inner = baseline
    sigma2 = (residual[:, inner] ** 2).mean(axis=-1, keepdims=True) / (1.0 - h0)
    scale = np.sqrt(sigma2 * (h0 * (1.0 - dose ** 2)))
    dtype = residual.dtype if residual.dtype == np.float32 else np.float64
    noise = np.random.default_rng(seed).standard_normal(residual.shape, dtype=dtype)
    noise *= scale
    return noise


def savgol_centre_weight(frames: int) -> float:
    """``h0``: weight of the centre frame in the order-2 Savitzky–Golay smoother of
    ``frames`` frames (17/35 for 5 frames, 1/3 for 7); equal to the sum of the squared
    weights, since the smoother is a projection."""
    return float(sps.savgol_coeffs(frames, SAVGOL_ORDER)[frames // 2])


def baseline_of_run(first_echo: ArrayLike, brain: ArrayLike) -> tuple[int, int]:
    """``(start, stop)``: the first frame after the approach to steady state and the end of
    the baseline, found on the mean brain curve (:func:`bids_perfusion.dsc.timing.
    baseline_window`)."""
    first_echo = np.asarray(first_echo)
    return timing.baseline_window(first_echo[np.asarray(brain, dtype=bool)].mean(axis=0))


def simulation_metadata(dose: float, tr: float, *, model: str = "exponential",
                        average: str = "temporal",
                        spatial_size: int = SPATIAL_SIZE) -> dict[str, Any]:
    """Sidecar record of a simulated dose: dose, model and local average (with its width)."""
    record = {"SimulatedDose": dose, "LowDoseModel": model,
              "LowDoseModelEquation": ("S_d = S(0) (Sbar/S(0))^d + (S - Sbar)"
                                       if model == "exponential" else
                                       "S_d = S - (1 - d) (Sbar - S(0)) (stU-Net Eq. 1)"),
              "LowDoseLocalAverage": average}
    if average == "temporal":
        frames = frames_for_tr(tr)
        record.update(LowDoseSmoother="Savitzky-Golay", LowDoseSmootherOrder=SAVGOL_ORDER,
                      LowDoseSmootherFrames=frames,
                      LowDoseSmootherWidth=round(frames * tr, 6))
    else:
        record.update(LowDoseSmoother="box", LowDoseSmootherVoxels=spatial_size)
    return record


def simulate_low_dose_run(signal: ArrayLike, dose: float, window: tuple[int, int], *,
                          tr: float, model: str = "exponential", average: str = "temporal",
                          spatial_size: int = SPATIAL_SIZE,
                          mask: ArrayLike | None = None) -> NDArray[np.floating]:
    """:func:`simulate_low_dose` of a whole acquired series (x, y, z, T), in the float
    dtype of ``signal`` (float64 for integer input), of the voxels of ``mask`` (default:
    all; the others are copied unchanged).

    ``window`` = ``(start, stop)`` of :func:`baseline_of_run`: frames before ``start``
    (approach to steady state) are copied unchanged, since they are discarded downstream
    and both models would read their extra signal as contrast agent; S(0) is the mean
    over ``[start, stop)``. ``tr`` (s) sets the temporal window (:func:`frames_for_tr`).
    """
    start, stop = window
    data = np.asarray(signal)
    simulated = data.astype(data.dtype if np.issubdtype(data.dtype, np.floating)
                            else np.float64, copy=True)
    simulated[..., start:] = simulate_low_dose(
        simulated[..., start:], dose, baseline=slice(0, stop - start), model=model,
        average=average, frames=frames_for_tr(tr) if average == "temporal" else 5,
        spatial_size=spatial_size, mask=mask)
    return simulated
