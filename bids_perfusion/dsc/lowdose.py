"""Simulated low-dose DSC series from a full-dose acquisition.

The stU-Net paper (Veron Vialard et al. 2021, hal-03128610, section 2, Eq. 1) models the
signal of a voxel as ``S(t) = S(0) + κ C(t) + ε(t)`` with white noise ε. A local average
``S̄`` removes the noise (``ε̄ ≈ 0``) but keeps the slowly varying contrast term
(``C̄ ≈ C``), so that ``S̄(t) - S(0) ≈ κ C(t)`` and the signal at a dose reduced by the
factor d, with the noise of the original acquisition, is

    S_d(t) = S(0) + d κ C(t) + ε(t) ≈ S(t) - (1 - d) [S̄(t) - S(0)].       (Eq. 1)

Here ``S̄`` is a moving average (``scipy.ndimage.uniform_filter``, edges replicated) over a
box of ``spatial_size`` voxels along each spatial axis and ``temporal_size`` frames, and
``S(0)`` is the mean of ``S̄`` over the given baseline (pre-bolus) frames, so that the
bracket is zero on average before the bolus. The seed justifies the average by the slow
dynamics of C relative to the frame interval, i.e. a temporal window; a spatial window
averages more samples (less noise in the bracket) at the price of mixing neighbouring
tissues, which leaves brain-average signals unchanged.

The linear model is a first-order expansion of the gradient-echo signal
``S = S0 exp(-TE ΔR2*)``; where the signal drops by more than a few tens of percent
(arteries, high-CBV tumour) Eq. 1 overestimates the low-dose signal.
"""

import numpy as np
from scipy import ndimage

from bids_perfusion.dsc import timing


def simulate_low_dose(signal, dose, *, baseline, spatial_size=3, temporal_size=1):
    """Low-dose DSC series by the stU-Net paper's Eq. 1: ``S_d = S - (1 - d) [S̄(t) - S(0)]``.

    Parameters
    ----------
    signal : (x, y, z, T) array, the full-dose series; steady-state (approach to
        equilibrium) frames should be discarded first, since Eq. 1 attributes every
        deviation from S(0) to contrast agent.
    dose : dose factor d in (0, 1]; d = 1 returns an identical copy of ``signal``.
    baseline : frames before the bolus (slice, indices or bool array over T) whose mean of
        ``S̄`` is ``S(0)``.
    spatial_size : width in voxels of the local-mean box along x, y and z (1: none).
    temporal_size : width in frames of the local-mean box along time (1: none).

    Returns an array of the dtype of ``signal`` (float64 for integer input).
    """
    data = np.asarray(signal)
    if data.ndim != 4:
        raise ValueError(f"the DSC series must be 4-D (x, y, z, t) (got shape {data.shape})")
    if not 0.0 < dose <= 1.0:
        raise ValueError(f"dose must be in (0, 1] (got {dose}); 0.5 simulates half dose")
    if spatial_size < 1 or temporal_size < 1:
        raise ValueError("spatial_size and temporal_size must be at least 1 (no averaging)")
    if spatial_size == 1 and temporal_size == 1:
        raise ValueError("Eq. 1 needs a local mean: set spatial_size or temporal_size > 1")
    frames = np.zeros(data.shape[-1], dtype=bool)
    frames[baseline] = True
    if not frames.any():
        raise ValueError("baseline selects no frame; give the pre-bolus frames")
    out_dtype = data.dtype if np.issubdtype(data.dtype, np.floating) else np.float64
    if dose == 1.0:
        return data.astype(out_dtype, copy=True)
    values = data.astype(float)
    if not np.all(np.isfinite(values)):
        raise ValueError("the DSC series holds NaN or infinite values")
    local = ndimage.uniform_filter(values, size=(spatial_size,) * 3 + (temporal_size,),
                                   mode="nearest")
    s0 = local[..., frames].mean(axis=-1, keepdims=True)
    return (values - (1.0 - dose) * (local - s0)).astype(out_dtype)


def baseline_of_run(first_echo, brain):
    """``(start, stop)``: the first frame after the approach to steady state and the end of
    the baseline, found on the mean brain curve (:func:`bids_perfusion.dsc.timing.
    baseline_window`)."""
    first_echo = np.asarray(first_echo)
    return timing.baseline_window(first_echo[np.asarray(brain, dtype=bool)].mean(axis=0))


def simulate_low_dose_run(signal, dose, window):
    """:func:`simulate_low_dose` of a whole acquired series (x, y, z, T), float64.

    ``window`` = ``(start, stop)`` of :func:`baseline_of_run`: frames before ``start``
    (approach to steady state) are copied unchanged, since they are discarded downstream
    and Eq. 1 would read their extra signal as contrast agent; S(0) is the mean over
    ``[start, stop)``.
    """
    start, stop = window
    simulated = np.asarray(signal, dtype=np.float64).copy()
    simulated[..., start:] = simulate_low_dose(simulated[..., start:], dose,
                                               baseline=slice(0, stop - start))
    return simulated
