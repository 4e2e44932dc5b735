"""From the echo series of a DSC run to ΔR2*(t) of its brain voxels."""

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bids_perfusion.dsc import relaxivity, timing
from bids_perfusion.voxels import for_each_block

#: Brain voxels per block of the conversion to ΔR2*.
_BLOCK = 8192


def series_to_delta_r2star(series: Sequence[NDArray[Any]], echo_times: Sequence[float],
                           brain: ArrayLike) -> tuple[NDArray[np.float32], int, int]:
    """ΔR2* (x, y, z, T') from the baseline window on, with the window's frames.

    ``series``: list of 4-D arrays, one per echo (ascending TE, s). The approach to steady
    state and the baseline window come from the mean brain curve of the first echo
    (:func:`timing.baseline_window`), the window reaching back into the end of the
    transient where that lowers the mean squared error of S0 for the median voxel noise;
    S0 is each voxel's mean over the baseline frames. One echo: ``ΔR2* = −ln(S/S0)/TE``; two or
    more: the first two give the T1-insensitive
    ``ΔR2* = ln[(S1/S1,0)/(S2/S2,0)]/(TE2 − TE1)`` (:mod:`relaxivity`). Voxels outside
    ``brain`` or non-finite (zero baseline) are 0. Raises ValueError when no brain voxel
    changes over time (no bolus) or the baseline is too short (:func:`timing.baseline_window`).

    Only the brain voxels are computed (:func:`brain_delta_r2star`), in float32 for float32
    series, then placed in the volume.

    Returns ``(delta_r2star, start, stop)``: the float32 curves of frames ``start`` on,
    and the baseline window ``[start, stop)`` in frames of the acquired series.
    """
    brain = np.asarray(brain, dtype=bool)
    curves, start, stop = brain_delta_r2star(series, echo_times, brain)
    delta = np.zeros((*brain.shape, curves.shape[-1]), dtype=np.float32)
    delta[brain] = curves
    return delta, start, stop


def brain_delta_r2star(series: Sequence[NDArray[Any]], echo_times: Sequence[float],
                       brain: ArrayLike) -> tuple[NDArray[np.float32], int, int]:
    """ΔR2* ``(V, T')`` of the V brain voxels (C order), as :func:`series_to_delta_r2star`.

    The mean brain curve is accumulated in float64 without a float64 copy of the
    curves; the baseline window is found once the median relative noise of the voxels
    over a first window is known (:func:`timing.baseline_window` with
    ``voxel_noise_sd``); the signal of each echo is read once, and converted in blocks
    of voxels (:func:`~bids_perfusion.voxels.for_each_block`).
    """
    brain = np.asarray(brain, dtype=bool)
    first_echo = series[0][brain]
    if not (first_echo != first_echo[:, :1]).any():  # every curve constant over time
        raise ValueError("the signal of every brain voxel is constant over time: there is "
                         "no bolus passage (is this the DSC series, with contrast "
                         "injected during the acquisition?)")
    mean_signal = first_echo.mean(axis=0, dtype=np.float64)
    start, stop = timing.baseline_window(mean_signal)
    baseline = first_echo[:, start:stop]
    level = np.abs(baseline.mean(axis=1))
    lit = level > 0  # brain voxels of zero baseline (signal voids) carry no noise level
    relative_sd = np.median(baseline[lit].std(axis=1, ddof=1) / level[lit])
    start, stop = timing.baseline_window(
        mean_signal, voxel_noise_sd=relative_sd * np.median(baseline))
    echoes = [first_echo] + [data[brain] for data in series[1:2]]
    s0 = [curves[:, start:stop].mean(axis=-1, keepdims=True) for curves in echoes]
    kept = [curves[:, start:] for curves in echoes]
    delta = np.empty(kept[0].shape, dtype=np.float32)

    def convert(block: slice) -> None:
        if len(series) == 1:
            values = relaxivity.signal_to_delta_r2star(kept[0][block], s0[0][block],
                                                       echo_times[0])
        else:
            values = relaxivity.dual_echo_delta_r2star(kept[0][block], s0[0][block],
                                                       kept[1][block], s0[1][block],
                                                       echo_times[0], echo_times[1])
        values[~np.isfinite(values)] = 0.0
        delta[block] = values

    for_each_block(convert, len(delta), _BLOCK)
    return delta, int(start), int(stop)
