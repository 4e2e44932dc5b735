r"""Training data of the super-resolution model (:mod:`bids_perfusion.nn.superres`):
low-resolution DSC made from a high-resolution series, and sampled training items.

As in Lee et al. (ISMRM 2024, abstract 0658), the inputs are the high-resolution series
(x, y, z, T) under-sampled 2 × 2 in plane and 4 × in time:

- **in plane**, by k-space truncation (default; what a scanner acquiring a smaller matrix
  over the same field of view measures): the centred 2-D DFT of each slice, X = F{x}, is
  cropped to its central h × w coefficients (h = H/s, w = W/s) and transformed back,
  x_LR = |F⁻¹{crop(X)}| · (h·w)/(H·W), the factor keeping the mean intensity (the DC
  coefficient is the sum of the H·W voxels, F⁻¹ divides by h·w), with the linear phase
  that shifts the samples by (s − 1)/2 HR voxels, so that LR voxel i lies at the centre of
  HR voxels s·i … s·i + s − 1 as its coordinates say; or by averaging s × s
  blocks (``method="block"``). The in-plane size is first cropped to a multiple of s so
  that both grids cover the same field of view;
- **in time**, by keeping every s_t-th frame: LR frame k is HR frame s_t·k.

Intensities are divided by a per-series scale, the mean of the baseline frames of the
low-resolution series over its bright voxels (:func:`baseline_scale`; computed from the
LR series so that inference can do the same), recorded in the card so that outputs return
to scanner units.

A training item (:func:`sample_items`) is a random slice, a random pair of consecutive LR
frames (k, k + 1), a random t ∈ {0, 1/s_t, …, 1} (only the times of HR frames, so that the
target exists), a random p × p LR patch of both frames and ``queries`` HR pixels of the
matching (p·s) × (p·s) patch of HR frame s_t·(k + t): their coordinates in [−1, 1]²
relative to the patch (pixel centres, as in :mod:`~bids_perfusion.nn.superres`), their cells
(2/(p·s), 2/(p·s)) and their intensities.
"""

import dataclasses

import numpy as np

from bids_perfusion.constants import SUPERRES_DEGRADATIONS as DEGRADATIONS


def crop_to_multiple(series, factor):
    """The series with its first two axes cropped (at the end) to multiples of ``factor``."""
    rows, cols = (n - n % factor for n in series.shape[:2])
    if rows == 0 or cols == 0:
        raise ValueError(f"in-plane size {series.shape[:2]} is smaller than the factor "
                         f"{factor}")
    return series[:rows, :cols]


def kspace_truncate(image, factor):
    """One image (H, W, ...), H and W multiples of ``factor``, reduced in plane by keeping
    the central (H/s) × (W/s) of its centred 2-D k-space (module docstring)."""
    rows, cols = image.shape[:2]
    small = (rows // factor, cols // factor)
    spectrum = np.fft.fftshift(np.fft.fft2(image, axes=(0, 1)), axes=(0, 1))
    top, left = rows // 2 - small[0] // 2, cols // 2 - small[1] // 2
    cropped = spectrum[top:top + small[0], left:left + small[1]]
    # shift by (s - 1)/2 voxels: LR voxel i is sampled at the centre of its s HR voxels
    shift = (factor - 1) / 2
    for axis, (size, first) in enumerate(((rows, top), (cols, left))):
        frequency = np.arange(first, first + small[axis]) - size // 2
        phase = np.exp(2j * np.pi * frequency * shift / size)
        shape = [1] * image.ndim
        shape[axis] = -1
        cropped = cropped * phase.reshape(shape)
    low = np.fft.ifft2(np.fft.ifftshift(cropped, axes=(0, 1)), axes=(0, 1))
    return np.abs(low) * (small[0] * small[1] / (rows * cols))


def block_average(image, factor):
    """One image (H, W, ...), H and W multiples of ``factor``, averaged over s × s blocks."""
    rows, cols = image.shape[:2]
    blocks = image.reshape(rows // factor, factor, cols // factor, factor, *image.shape[2:])
    return blocks.mean(axis=(1, 3))


def degrade_space(series, factor, method="kspace"):
    """A series (H, W, z, T), H and W multiples of ``factor``, reduced in plane by
    ``factor`` with ``method`` ('kspace' or 'block'), slice by slice (bounded memory)."""
    if method not in DEGRADATIONS:
        raise ValueError(f"method must be one of {DEGRADATIONS}, got {method!r}")
    reduce = kspace_truncate if method == "kspace" else block_average
    return np.stack([reduce(series[:, :, z], factor) for z in range(series.shape[2])],
                    axis=2).astype(np.float32)


def subsample_time(series, factor):
    """Every ``factor``-th frame of a series (..., T), starting with the first."""
    return series[..., ::factor]


def baseline_scale(series, baseline_frames=3, bright_fraction=0.1):
    """Intensity scale of a series (x, y, z, T): the mean of its first
    ``baseline_frames`` frames over the voxels whose baseline is above ``bright_fraction``
    of the brightest (the head, not the background)."""
    baseline = series[..., :baseline_frames].mean(axis=-1)
    bright = baseline > bright_fraction * baseline.max()
    if not bright.any():
        raise ValueError("the series is zero over its baseline frames")
    return float(baseline[bright].mean())


@dataclasses.dataclass(frozen=True)
class Degradation:
    """How low-resolution inputs are made: in-plane ``space`` factor with ``method``,
    temporal ``time`` factor, and the LR frames whose mean scales the intensities."""

    space: int = 2
    time: int = 4
    method: str = "kspace"
    baseline_frames: int = 3

    def __post_init__(self):
        if self.space < 1 or self.time < 1 or self.baseline_frames < 1:
            raise ValueError("space, time and baseline_frames must be positive")
        if self.method not in DEGRADATIONS:
            raise ValueError(f"method must be one of {DEGRADATIONS}, got {self.method!r}")


@dataclasses.dataclass(frozen=True)
class SeriesPair:
    """A high-resolution series cropped to the factor, its low-resolution inputs, both
    divided by ``scale`` (multiply by it to return to scanner units)."""

    high: np.ndarray
    low: np.ndarray
    scale: float
    degradation: Degradation


def make_pair(series, degradation):
    """The :class:`SeriesPair` of a high-resolution series (H, W, z, T)."""
    high = crop_to_multiple(np.asarray(series, dtype=np.float32), degradation.space)
    low = subsample_time(degrade_space(high, degradation.space, degradation.method),
                         degradation.time)
    if low.shape[-1] < 2:
        raise ValueError(f"{series.shape[-1]} frames give fewer than two low-resolution "
                         f"frames at a temporal factor of {degradation.time}")
    scale = baseline_scale(low, degradation.baseline_frames)
    return SeriesPair(high / scale, low / scale, scale, degradation)


def sample_items(pair, n_items, patch, queries, rng):
    """``n_items`` training items of a :class:`SeriesPair` (module docstring), as a dict of
    float32 arrays: ``frame0``, ``frame1`` (n, p, p), ``t`` (n,), ``coords``, ``cells``
    (n, Q, 2) and ``values`` (n, Q). ``rng``: a ``numpy.random.Generator``."""
    space, time = pair.degradation.space, pair.degradation.time
    rows, cols, slices, frames = pair.low.shape
    if patch > min(rows, cols):
        raise ValueError(f"patch {patch} is larger than the low-resolution slices "
                         f"({rows} × {cols})")
    side = patch * space
    if queries > side * side:
        raise ValueError(f"{queries} queries exceed the {side * side} pixels of a patch")
    # LR pairs (k, k+1) whose HR frames exist: s_t·(k + 1) < T
    pairs = min(frames - 1, (pair.high.shape[-1] - 1) // time)
    centres = -1 + (2 * np.arange(side) + 1) / side
    items = {key: [] for key in ("frame0", "frame1", "t", "coords", "cells", "values")}
    for _ in range(n_items):
        z, k = rng.integers(slices), rng.integers(pairs)
        step = rng.integers(time + 1)
        top, left = rng.integers(rows - patch + 1), rng.integers(cols - patch + 1)
        low = pair.low[top:top + patch, left:left + patch, z]
        target = pair.high[top * space:top * space + side, left * space:left * space + side,
                           z, time * k + step]
        chosen = rng.choice(side * side, size=queries, replace=False)
        i, j = np.divmod(chosen, side)
        items["frame0"].append(low[..., k])
        items["frame1"].append(low[..., k + 1])
        items["t"].append(step / time)
        items["coords"].append(np.stack([centres[i], centres[j]], axis=-1))
        items["cells"].append(np.full((queries, 2), 2 / side))
        items["values"].append(target[i, j])
    return {key: np.asarray(value, dtype=np.float32) for key, value in items.items()}
