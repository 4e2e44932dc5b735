"""Motion correction of DSC and ASL series: the reference each is realigned to.

DSC (:func:`realign_dsc`): the signal drops by tens of per cent while the bolus passes,
so the reference is the mean of the pre-bolus baseline frames (:func:`pre_bolus_frames`
of the mean curve of the head),
itself made sharper by a first realignment of those frames to their mean; the linear
intensity model of :func:`~bids_perfusion.motion.realign.realign_series` absorbs the
drop. Every echo is moved by the transforms estimated on the first (brightest) echo.

ASL (:func:`realign_asl`): every control, label and M0 volume is registered to the M0
image that CBF is divided by (the separate M0 scan, or the mean of the series' M0
volumes), so that ΔM and M0 are aligned; without M0 volumes, to the mean control volume
(made sharper as the DSC baseline). Control and label volumes share that reference:
their difference, ΔM, is about 1 % of the signal (on the moving phantom, the error of
the recovered motion is below 0.1 mm and 0.1 degree). Both volumes of a pair are then
resampled with one transform, the mean of their two (:func:`paired`), so that the
static tissue cancels in their difference as it did in the acquisition.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bids_perfusion.dsc import timing
from bids_perfusion.motion.realign import (
    HEAD_FRACTION,
    Realignment,
    apply_realignment,
    realign_and_resample,
    realign_series,
)

#: Volume types of an ASL series that hold an image of the head (and can be realigned).
ASL_STRUCTURAL = ("control", "label", "m0scan")


@dataclass(frozen=True)
class CorrectedSeries:
    """A motion-corrected series: its :class:`Realignment` and its corrected arrays
    (one per echo for DSC), float32, in the pose of the reference."""

    realignment: Realignment
    series: tuple[NDArray[np.float32], ...]
    reference_frames: tuple[int, ...]


def finite_filled(series: ArrayLike) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """``series`` (x, y, z[, T]) as float32 with its non-finite values set to 0, and the
    voxels (3-D) that hold a non-finite value in any volume. The realignment reads the
    filled series; the corrected series gets NaN back in those voxels
    (:func:`restore_nonfinite`), so that the checks after it exclude and count them."""
    series = np.asarray(series, dtype=np.float32)
    finite = np.isfinite(series)
    bad = ~finite.all(axis=-1) if series.ndim == 4 else ~finite
    return np.where(finite, series, np.float32(0.0)), bad


def restore_nonfinite(series: NDArray[np.float32], bad: NDArray[np.bool_]) -> NDArray[np.float32]:
    """``series`` with NaN in every volume of the ``bad`` voxels."""
    series[bad] = np.nan
    return series


def head_curve(series: ArrayLike) -> NDArray[np.float64]:
    """Mean signal over time of the voxels of the head (temporal mean above
    :data:`~bids_perfusion.motion.realign.HEAD_FRACTION` of its 99th percentile)."""
    series = np.asarray(series)
    mean = series.mean(axis=-1)
    head = mean > HEAD_FRACTION * np.percentile(mean, 99)
    return np.asarray(series[head].mean(axis=0, dtype=np.float64))


#: The bolus has arrived once the mean signal of the head has fallen by this fraction of
#: its full drop (from the median before the minimum to the minimum).
ARRIVAL_FRACTION = 0.1


def pre_bolus_frames(curve: ArrayLike) -> tuple[int, ...]:
    """The frames of the pre-bolus baseline of the mean head ``curve`` of a DSC series:
    after the approach to steady state (:func:`bids_perfusion.dsc.timing.
    steady_state_frames`), before the signal first falls by :data:`ARRIVAL_FRACTION` of
    its full drop. Unlike the baseline window of the quantification, it needs no noise
    estimate, which the motion of an uncorrected series would corrupt. Raises ValueError
    when the signal does not drop or no frame precedes the bolus."""
    curve = np.asarray(curve, dtype=float)
    bottom = int(np.argmin(curve))
    if bottom == 0:
        raise ValueError("the mean signal of the head does not drop: no bolus passage "
                         "to find the pre-bolus frames of the reference")
    level = float(np.median(curve[:bottom]))
    arrival = int(np.argmax(curve < level - ARRIVAL_FRACTION * (level - curve[bottom])))
    try:
        start = min(timing.steady_state_frames(curve), arrival - 1)
    except ValueError:  # too few frames to tell the transient from the baseline
        start = 0
    if arrival < 1:
        raise ValueError("the bolus arrives in the first frame: no pre-bolus frame to "
                         "realign to")
    return tuple(range(max(start, 0), arrival))


def sharpened_mean(series: ArrayLike, affine: ArrayLike,
                   frames: Sequence[int]) -> NDArray[np.float64]:
    """The mean of ``frames`` after realigning them to their plain mean (one pass)."""
    series = np.asarray(series)
    chosen = series[..., list(frames)]
    if len(frames) == 1:
        return np.asarray(chosen[..., 0], dtype=np.float64)
    first = realign_series(chosen, affine, chosen.mean(axis=-1))
    return np.asarray(apply_realignment(chosen, affine, first, order=1).mean(axis=-1),
                      dtype=np.float64)


def realign_dsc(echoes: Sequence[ArrayLike], affine: ArrayLike,
                order: int = 3) -> CorrectedSeries:
    """Realign a DSC run (``echoes``, each (x, y, z, T), ascending TE) to the mean of its
    pre-bolus frames (module docstring); every echo is resampled once with B-splines of
    ``order``. Non-finite values are read as 0 and are NaN again in the corrected series
    (:func:`finite_filled`). Raises ValueError when no baseline can be found."""
    filled = [finite_filled(echo) for echo in echoes]
    first = filled[0][0]
    if first.ndim != 4 or first.shape[-1] < 4:
        raise ValueError(f"a DSC series must be 4-D with several frames, got shape "
                         f"{first.shape}")
    frames = pre_bolus_frames(head_curve(first))
    reference = sharpened_mean(first, affine, frames)
    realignment, moved = realign_and_resample([echo for echo, _ in filled], affine,
                                              reference, order)
    corrected = tuple(restore_nonfinite(echo, bad)
                      for echo, (_, bad) in zip(moved, filled, strict=True))
    return CorrectedSeries(realignment, corrected, frames)


def realign_asl(series: ArrayLike, affine: ArrayLike, volume_types: Sequence[str],
                m0: ArrayLike | None = None, order: int = 3) -> CorrectedSeries:
    """Realign the volumes of an ASL series to its M0 image (module docstring).

    Non-finite values are read as 0 and are NaN again in the corrected series
    (:func:`finite_filled`). ``m0`` is the separate M0 scan (3-D, or 4-D averaged) on the
    grid of the series;
    without it, the mean of the series' ``m0scan`` volumes, else the mean control. Every
    volume is resampled once with B-splines of ``order``. Raises ValueError for a series
    with volumes that are not images of the head (``deltam``, ``cbf``, ``noRF``), without
    control volumes, or with an M0 scan on another grid.
    """
    series, bad = finite_filled(series)
    types = tuple(volume_types)
    if series.ndim != 4 or series.shape[-1] != len(types):
        raise ValueError(f"the ASL series of shape {series.shape} needs one volume type per "
                         f"volume ({len(types)} given)")
    if other := sorted(set(types) - set(ASL_STRUCTURAL)):
        raise ValueError(f"volumes of type {', '.join(other)} are not images of the head and "
                         "cannot be realigned; run without motion correction")
    controls = [i for i, kind in enumerate(types) if kind == "control"]
    if not controls:
        raise ValueError("the series has no control volume to realign to")
    included = [i for i, kind in enumerate(types) if kind == "m0scan"]
    if m0 is not None:
        reference = np.asarray(finite_filled(m0)[0], dtype=np.float64)
        reference = reference.mean(axis=-1) if reference.ndim == 4 else reference
        if reference.shape != series.shape[:3]:
            raise ValueError(f"the M0 scan of shape {reference.shape} is not on the grid of "
                             f"the series {series.shape[:3]}; resample it onto that grid")
        frames: tuple[int, ...] = ()
    elif included:
        reference = sharpened_mean(series, affine, included)
        frames = tuple(included)
    else:
        reference = sharpened_mean(series, affine, controls)
        frames = tuple(controls)
    realignment = realign_series(series, affine, reference)
    corrected = apply_realignment(series, affine, paired(realignment, types), order=order)
    return CorrectedSeries(realignment, (restore_nonfinite(corrected, bad),), frames)


def paired(realignment: Realignment, volume_types: Sequence[str]) -> Realignment:
    """``realignment`` with both volumes of each control/label pair given the mean of
    their two parameter vectors (the transforms the ASL series is resampled with).

    The label differs from its control by ΔM, about 1 % of the signal and shaped like
    grey matter, which no intensity model absorbs: registered alone, each volume of a
    pair moves by a slightly different amount, and resampling them differently leaves a
    difference of the static tissue, of the size of ΔM, in their subtraction (on the
    still, noise-free phantom, CBF errors up to 7 %). With one transform per pair, ΔM is
    resampled as acquired."""
    from bids_perfusion.asl.context import ASLContext
    from bids_perfusion.motion.rigid import rigid_matrix

    parameters = realignment.parameters.copy()
    matrices = realignment.matrices.copy()
    for control, label in ASLContext(tuple(volume_types)).pairs:
        mean = (parameters[control] + parameters[label]) / 2.0
        matrices[control] = matrices[label] = rigid_matrix(mean, realignment.centre)
        parameters[control] = parameters[label] = mean
    return Realignment(parameters, matrices, realignment.centre)


def kept_estimates(volume_types: Sequence[str], flagged: Sequence[int]) -> NDArray[np.bool_]:
    """Which ΔM estimates of an ASL series (in the order of
    :attr:`~bids_perfusion.asl.context.ASLContext.difference_volumes`: pairs, then
    ``deltam`` volumes) hold none of the ``flagged`` volumes (motion outliers)."""
    from bids_perfusion.asl.context import ASLContext

    context = ASLContext(tuple(volume_types))
    bad = set(int(i) for i in flagged)
    pairs = [not ({control, label} & bad) for control, label in context.pairs]
    return np.array(pairs + [i not in bad for i in context.indices("deltam")], dtype=bool)


def drop_estimates(differences: NDArray[np.float64], delays: Sequence[float],
                   durations: Sequence[float] | None, keep: NDArray[np.bool_],
                   ) -> tuple[NDArray[np.float64], list[float], list[float] | None]:
    """The ΔM estimates (``differences`` (..., n), with their ``delays`` and
    ``durations``) that ``keep`` (:func:`kept_estimates`) retains. Raises ValueError when
    a delay would lose every estimate (its mean ΔM would not exist)."""
    if keep.all():
        return differences, list(delays), None if durations is None else list(durations)
    lost = sorted(set(np.asarray(delays)[~keep].tolist())
                  - set(np.asarray(delays)[keep].tolist()))
    if lost:
        raise ValueError(f"every control/label pair of delay(s) {lost} s holds a motion "
                         "outlier, so no ΔM is left to average there")
    kept = [int(i) for i in np.flatnonzero(keep)]
    return (differences[..., kept], [float(delays[i]) for i in kept],
            None if durations is None else [float(durations[i]) for i in kept])
