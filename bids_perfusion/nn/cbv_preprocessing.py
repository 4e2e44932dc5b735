r"""Preprocessing of DSC series and CBV maps for the strip models, and its inverse.

As in the stU-Net paper (Veron Vialard et al. 2021, hal-03128610, §4.2, "Data and
pre-processing"):

1. **Crop** to a square prism tightly fitted on the brain: the in-plane bounding box of
   the brain mask over all slices, widened on its shorter side to a square of side
   ``a`` (centred; zero padding where it leaves the image).
2. **Resample** every slice to ``size × size`` (paper: 256; here configurable, 64 for
   the bundled weights) by linear interpolation (``scipy.ndimage.zoom``, order 1); the
   brain mask by nearest neighbour.
3. **Standardise** with brain statistics and **clip** to ``[−c, c]`` (c = 5):

   .. math::

       \tilde S(x, t) = \mathrm{clip}\Big(\frac{S(x, t) − μ_5}{σ_5}\Big),\qquad
       \tilde y(x) = \mathrm{clip}\Big(\frac{\mathrm{CBV}(x) − μ}{σ}\Big),

   with μ₅, σ₅ the mean and standard deviation of the DSC signal over the brain voxels
   of the first five frames (all frames are normalised "according to the signal
   statistics of the first five frames only") and μ, σ those of the CBV map over the
   brain voxels.

   The CBV target ``"standardised"`` is ỹ above (the paper's). Its clip hides the
   tumours that matter: in a high-grade glioma of the phantom, CBV lies 5–7 brain SDs
   above the brain mean, and a model trained on ỹ cannot give a tumour/NAWM ratio above
   what ỹ = 5 allows. The target ``"logRelative"`` (this project's) is the logarithm of
   CBV relative to its brain median m, a robust reference,

   .. math::

       \tilde y_{\log}(x) = \ln\frac{\max(\mathrm{CBV}(x),\, m e^{−c})}{m},
       \qquad \tilde y_{\log} ≤ c,

   exact for m e^{−c} ≤ CBV ≤ m e^{c} (c = 5: a factor 148 either side of the median), so
   ratios of CBV, the tumour/NAWM rCBV read in the clinic, are differences of the target,
   and an L2 loss weighs a 10 % error in a tumour as much as one in white matter.

The inverse (:func:`to_native`) resamples a ``size × size`` map back to the square of
side ``a`` and places it in the native grid. CBV units: the network predicts ỹ, in
which μ and σ of the unseen target are lost; :func:`calibrate_units` restores them by
the least-squares affine fit of a CBV map in physical units (the run's own area-ratio
CBV) onto the prediction, ``CBV ≈ α + β ŷ`` over the brain. Noise in that map is
independent of ŷ, so it does not bias the slope β (errors in the dependent variable
only add variance), which makes the fit usable at low dose. The offset α changes every
ratio of the map; the ``"logRelative"`` target needs none: exp(ŷ) is CBV relative to the
brain median, and :func:`calibrate_scale` fits its scale alone (through the origin),
which leaves every ratio as the model predicted it.
"""

import dataclasses

import numpy as np
from scipy import ndimage

from bids_perfusion.constants import CBV_TARGETS as TARGETS


@dataclasses.dataclass(frozen=True)
class PreprocessingConfig:
    """Data conventions of a strip model, stored in its model card.

    size: in-plane size of the resampled slices (paper: 256); baseline_frames: frames of
    the DSC statistics (paper: 5); clip: c of the clipping to [−c, c] (paper: 5);
    strip_width: rows of a strip; train_stride / test_stride: rows between strips
    (paper: 8 and 1); target: representation of the CBV target, one of :data:`TARGETS`
    (paper: ``"standardised"``, the default, which model cards without the key use).
    """

    size: int = 64
    baseline_frames: int = 5
    clip: float = 5.0
    strip_width: int = 16
    train_stride: int = 8
    test_stride: int = 1
    target: str = "standardised"

    def __post_init__(self):
        if not 1 <= self.strip_width <= self.size:
            raise ValueError(f"strip_width must be in [1, size={self.size}]")
        if self.baseline_frames < 1 or self.clip <= 0:
            raise ValueError("baseline_frames must be at least 1 and clip positive")
        if not (1 <= self.train_stride <= self.strip_width
                and 1 <= self.test_stride <= self.strip_width):
            raise ValueError("strides must be in [1, strip_width]")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS} (got {self.target!r})")

    def as_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SquareCrop:
    """The square ``[x0, x0 + side) × [y0, y0 + side)`` of a grid of ``shape`` (X, Y)."""

    x0: int
    y0: int
    side: int
    shape: tuple

    def crop(self, array):
        """The square of ``array`` (X, Y, ...), zero-padded where it leaves the grid."""
        array = np.asarray(array)
        out = np.zeros((self.side, self.side, *array.shape[2:]), dtype=array.dtype)
        xs, ys = self._overlap()
        out[xs[1], ys[1]] = array[xs[0], ys[0]]
        return out

    def uncrop(self, square):
        """A native grid (X, Y, ...) holding ``square`` (side, side, ...), zero elsewhere."""
        square = np.asarray(square)
        out = np.zeros(tuple(self.shape) + square.shape[2:], dtype=square.dtype)
        xs, ys = self._overlap()
        out[xs[0], ys[0]] = square[xs[1], ys[1]]
        return out

    def _overlap(self):
        def axis(start, n):
            lo, hi = max(start, 0), min(start + self.side, n)
            return slice(lo, hi), slice(lo - start, hi - start)

        return axis(self.x0, self.shape[0]), axis(self.y0, self.shape[1])


def brain_crop(brain):
    """The :class:`SquareCrop` tightly fitted on the brain mask (X, Y, Z) over all slices."""
    brain = np.asarray(brain, dtype=bool)
    if not brain.any():
        raise ValueError("the brain mask is empty")
    rows = np.flatnonzero(brain.any(axis=(1, 2)))
    cols = np.flatnonzero(brain.any(axis=(0, 2)))
    side = int(max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1)
    x0 = int(rows[0] + (rows[-1] - rows[0] + 1 - side) // 2)
    y0 = int(cols[0] + (cols[-1] - cols[0] + 1 - side) // 2)
    return SquareCrop(x0, y0, side, tuple(brain.shape[:2]))


def resize_slices(array, size, order=1):
    """Slices of ``array`` (a, a, ...) resampled to (size, size, ...) (``ndimage.zoom``)."""
    array = np.asarray(array)
    factors = (size / array.shape[0], size / array.shape[1]) + (1,) * (array.ndim - 2)
    return ndimage.zoom(array, factors, order=order, mode="nearest")


def brain_statistics(values, mask):
    """``(μ, σ)``: mean and standard deviation of ``values[mask]`` (σ > 0, else ValueError)."""
    inside = np.asarray(values, dtype=np.float64)[np.asarray(mask, dtype=bool)]
    mean, sd = float(inside.mean()), float(inside.std())
    if not sd > 0:
        raise ValueError("cannot standardise: no variation inside the brain mask")
    return mean, sd


def standardise(values, mask, clip):
    """``clip((v − μ)/σ, −clip, clip)`` with μ, σ over ``values[mask]``; returns (z, μ, σ)."""
    mean, sd = brain_statistics(values, mask)
    z = (np.asarray(values, dtype=np.float64) - mean) / sd
    return np.clip(z, -clip, clip).astype(np.float32), mean, sd


def log_relative(values, mask, clip):
    """``min(ln(max(v, m e^{−clip}) / m), clip)`` with m the median of ``values[mask]``
    (the ``"logRelative"`` target, module docstring); float32."""
    median = float(np.median(np.asarray(values, dtype=np.float64)[np.asarray(mask, bool)]))
    if not median > 0:
        raise ValueError("cannot take CBV relative to its brain median: the median is not "
                         "positive")
    floor = median * np.exp(-clip)
    relative = np.maximum(np.asarray(values, dtype=np.float64), floor) / median
    return np.minimum(np.log(relative), clip).astype(np.float32)


def encode_target(values, mask, config):
    """A CBV map (size, size, Z) in the representation ``config.target`` learnt by the
    models (module docstring, step 3)."""
    if config.target == "logRelative":
        return log_relative(values, mask, config.clip)
    return standardise(values, mask, config.clip)[0]


def decode_prediction(prediction, config):
    """The map that the units calibration scales: ŷ for ``"standardised"`` (calibrated
    by :func:`calibrate_units`), exp(ŷ), CBV relative to the brain median, for
    ``"logRelative"`` (calibrated by :func:`calibrate_scale`)."""
    prediction = np.asarray(prediction, dtype=np.float64)
    return np.exp(prediction) if config.target == "logRelative" else prediction


def standardised_prediction(prediction, mask, config):
    """A model's prediction (size, size, Z) in the paper's standardised, clipped space
    (ỹ, module docstring), where Table 1 of the paper scores it: clipped as it is for
    ``"standardised"``, exp(ŷ) standardised with its brain statistics otherwise (as
    any map in physical units)."""
    if config.target == "logRelative":
        return standardise(decode_prediction(prediction, config), mask, config.clip)[0]
    return np.clip(prediction, -config.clip, config.clip).astype(np.float32)


@dataclasses.dataclass
class PreparedRun:
    """A run in the models' space: ``dsc`` (size, size, Z, T) and ``mask`` (size, size, Z);
    ``cbv`` (size, size, Z) the standardised reference when given; ``crop`` the square."""

    dsc: np.ndarray
    mask: np.ndarray
    crop: SquareCrop
    cbv: np.ndarray | None = None


def prepare_mask(brain, config, crop=None):
    """The brain mask (X, Y, Z) cropped and resampled (nearest neighbour), and its crop."""
    crop = crop or brain_crop(brain)
    mask = resize_slices(crop.crop(np.asarray(brain, dtype=np.uint8)), config.size, order=0)
    return mask.astype(bool), crop


def prepare_map(values, brain, config, crop=None):
    """A map (X, Y, Z) cropped, resampled and standardised with its brain statistics
    (the paper's ỹ, whatever ``config.target``: the space of Table 1)."""
    mask, crop = prepare_mask(brain, config, crop)
    resized = resize_slices(crop.crop(np.asarray(values, dtype=np.float32)), config.size)
    return standardise(resized, mask, config.clip)[0]


def prepare_target(values, brain, config, crop=None):
    """A CBV map (X, Y, Z) cropped, resampled and encoded as ``config.target``."""
    mask, crop = prepare_mask(brain, config, crop)
    resized = resize_slices(crop.crop(np.asarray(values, dtype=np.float32)), config.size)
    return encode_target(resized, mask, config)


def prepare_run(series, brain, config, cbv=None):
    """:class:`PreparedRun` of a DSC series (X, Y, Z, T), its brain mask and optional CBV
    (encoded as ``config.target``).

    The DSC statistics are those of the brain voxels in the first ``baseline_frames``
    frames (module docstring, step 3).
    """
    series = np.asarray(series, dtype=np.float32)
    if series.ndim != 4 or series.shape[-1] <= config.baseline_frames:
        raise ValueError(f"the DSC series must be 4-D with more than {config.baseline_frames} "
                         f"frames (got shape {series.shape})")
    mask, crop = prepare_mask(brain, config)
    resized = resize_slices(crop.crop(series), config.size)
    mean, sd = brain_statistics(resized[..., :config.baseline_frames], mask)
    dsc = np.clip((resized - mean) / sd, -config.clip, config.clip).astype(np.float32)
    target = None if cbv is None else prepare_target(cbv, brain, config, crop)
    return PreparedRun(dsc, mask, crop, target)


def to_native(values, crop, order=1):
    """A (size, size, Z) map resampled back to the crop's square and placed on its grid."""
    return crop.uncrop(resize_slices(values, crop.side, order=order))


def calibrate_units(prediction, reference, brain, clip=5.0):
    """``(α, β)`` of the least-squares fit ``reference ≈ α + β · prediction`` over the brain.

    Voxels where the standardised ``reference`` lies outside ``[−clip, clip]`` (large
    vessels, noise spikes) are left out. See the module docstring.
    """
    x, y = _calibration_voxels(prediction, reference, brain, clip)
    beta = float(np.cov(x, y, bias=True)[0, 1] / x.var()) if x.var() > 0 else 0.0
    return float(y.mean() - beta * x.mean()), beta


def calibrate_scale(relative, reference, brain, clip=5.0):
    """``β`` of the least-squares fit through the origin ``reference ≈ β · relative``,
    ``β = Σ x y / Σ x²`` over the brain voxels of :func:`calibrate_units`: the units of a
    map relative to its brain median (exp(ŷ) of the ``"logRelative"`` target), with no
    offset, so that every ratio of the map is kept. Noise in the reference (the run's
    area-ratio CBV) is independent of ``relative`` and does not bias β."""
    x, y = _calibration_voxels(relative, reference, brain, clip)
    if not np.dot(x, x) > 0:
        raise ValueError("cannot calibrate: the relative CBV is 0 over the brain")
    return float(np.dot(x, y) / np.dot(x, x))


def _calibration_voxels(prediction, reference, brain, clip):
    """Prediction and reference over the brain voxels whose reference lies within
    ``clip`` SDs of its brain mean."""
    brain = np.asarray(brain, dtype=bool)
    reference = np.asarray(reference, dtype=np.float64)
    mean, sd = brain_statistics(reference, brain)
    keep = brain & (np.abs(reference - mean) <= clip * sd)
    return np.asarray(prediction, dtype=np.float64)[keep], reference[keep]
