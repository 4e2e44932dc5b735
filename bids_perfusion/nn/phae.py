r"""Physics-informed autoencoder (PHAE) for DSC-MRI deconvolution.

After "Physics-Informed autoencoder for DSC-MRI perfusion post-processing: application to
glioma grading" (arXiv:2510.13886, 2025): a 1-D convolutional **encoder** reads a
voxel's tissue concentration curve C(t) and the subject's arterial input function
C_a(t) as two channels and returns the mean transit time; a **physics decoder** with no
trainable parameters turns it back into a tissue curve, and the mean absolute error
between that reconstruction and the measured curve trains the encoder. No reference
maps are needed (self-supervised).

Encoder (paper §2.2.1): four blocks of Conv1d (kernel 3, stride 1, padding 1), BatchNorm1d
and LeakyReLU (negative slope 0.02) with 32, 64, 128 and 256 filters; average pooling
over time (to ``pool_size`` segments); a linear layer with two outputs,
``MTT = softplus(z₀)`` s (positive) and the **arrival delay**
``δ = δ_min + (δ_max − δ_min)·sigmoid(z₁)`` s of the tissue after the AIF. The delay is
not in the paper. The biases start at MTT = ``mtt_init`` and δ = 0.

Decoder: a Lorentzian residue function of MTT (paper eqs. 4-6), here delayed by δ,

.. math::

    r(t) = \frac{1}{1 + (t/\tau)^2},\quad \tau = \frac{2\,\mathrm{MTT}}{\pi},\qquad
    \int_0^\infty r = \mathrm{MTT},\qquad
    R_i = \frac{1}{\Delta t}\int_{i\Delta t}^{(i+1)\Delta t} r(t - \delta)\,dt

(r = 0 before δ), integrated over each frame in closed form with the primitive
``F(s) = τ atan(s/τ)`` (``MTT (1 − e^{−s/MTT})`` for ``residue="exponential"``), so
that R is smooth in δ and its gradient reaches the encoder, and rescaled so that
``Δt Σ_i R_i = MTT`` on the window. The reconstruction is the causal discrete convolution
(the rule of :func:`bids_perfusion.dsc.kinetics.convolve`, Δt included)

.. math::

    g(t_n) = \Delta t \sum_{j=0}^{n} a(t_j)\,R(t_{n-j}),\qquad
    \hat C = \hat k\,g,\quad \hat k = \frac{\sum_n C(t_n)}{\sum_n g(t_n)}

with ``a`` the normalised AIF. The amplitude ``k̂`` (= CBF in normalised units) makes the
areas of Ĉ and C equal on the window: without truncation ``Σ g = MTT Σ a/Δt`` and
``k̂ = (∫C/∫C_a)/MTT = CBV/MTT``, the paper's amplitude; on the finite window it stays
exact for a curve the decoder can make, where the paper's area ratio loses the tail of
late curves and would bias MTT. As in the paper, a wrong MTT then gives a wrong peak
height for the area, so the loss reads MTT from the height as well as from the width.
The decoder runs in float32.

Inputs (:func:`encoder_inputs`; not the paper's per-subject scaling): the curves are
resampled onto the model's frame interval ``dt``, cut to a window of ``window`` frames
that starts ``lead`` s before the AIF peak (edge values pad it where the acquisition is
shorter), and each curve is divided by its own largest absolute value on the window:
the AIF by its peak, **every tissue curve by its own peak**. The encoder therefore sees
dimensionless shapes: its MTT and δ do not depend on the dose, the AIF amplitude, the
tissue or blood relaxivity or their ratio, and the window does not depend on the
number of frames or on the bolus arrival time.

Perfusion parameters (paper eqs. 2-3), computed at inference on the curves in mM by
:func:`estimate_maps`:

.. math::

    \mathrm{CBV} = 100\,\frac{k_H}{\rho}\,\frac{\int_0^{t_e} C\,dt}{\int_0^{t_e} C_a\,dt},
    \qquad \mathrm{CBF} = 60\,\frac{\mathrm{CBV}}{\mathrm{MTT}}

(area ratio, Rempp et al., Radiology 1994;193:637; central volume theorem, Stewart,
J Physiol 1894;15:1). Because MTT is scale-free, the rescaling is exact by construction:
multiplying the AIF by k divides CBV and CBF by k, multiplying the tissue curves by k
multiplies them by k (to float rounding; bit for bit when k is a power of two).
"""

import copy
import dataclasses
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import nn

from bids_perfusion.voxels import scatter, voxel_mask

#: Name of the model in weights files, model cards and ``bids-perfusion-train``.
MODEL_NAME = "phae"
RESIDUES = ("lorentzian", "exponential")


@dataclasses.dataclass(frozen=True)
class PHAEConfig:
    """Architecture and data conventions of a PHAE, stored in its model card.

    channels, kernel_size, negative_slope: the encoder blocks (paper: 32-256, 3, 0.02);
    pool_size: number of time segments of the average pooling (1: global average, as the
    paper; more keep where, on the window, the features lie); residue: 'lorentzian'
    (paper) or 'exponential'; dt: frame interval of the encoder's window, s; window:
    frames of the window; lead: s of the window before the AIF peak; mtt_init: MTT (s) the
    untrained encoder returns; delay_range: (δ_min, δ_max) s of the arrival delay.
    """

    channels: tuple = (32, 64, 128, 256)
    kernel_size: int = 3
    negative_slope: float = 0.02
    pool_size: int = 8
    residue: str = "lorentzian"
    dt: float = 1.0
    window: int = 64
    lead: float = 12.0
    mtt_init: float = 4.0
    delay_range: tuple = (-2.0, 8.0)

    def __post_init__(self):
        if self.residue not in RESIDUES:
            raise ValueError(f"residue must be one of {RESIDUES}, got {self.residue!r}")
        if not (self.dt > 0 and self.mtt_init > 0 and self.lead >= 0):
            raise ValueError("dt and mtt_init must be positive, lead not negative")
        if not self.window >= self.pool_size >= 1:
            raise ValueError(f"window ({self.window}) must be at least pool_size "
                             f"({self.pool_size}) >= 1")
        low, high = self.delay_range
        if not low < 0 < high:
            raise ValueError(f"delay_range must hold 0 inside, got {self.delay_range}")

    def as_dict(self):
        return {**dataclasses.asdict(self), "channels": list(self.channels),
                "delay_range": list(self.delay_range)}

    @classmethod
    def from_dict(cls, values):
        """The configuration of a model card; ValueError for a card of the first PHAE
        design (no ``window``: per-subject scaling, no delay), whose weights do not fit."""
        from bids_perfusion.nn.weights import config_from_dict

        if "window" not in values:
            raise ValueError("these PHAE weights predate the delay-aware, scale-invariant "
                             "design (their card has no 'window'); retrain them with "
                             "bids-perfusion-train phae (docs/phae.md)")
        return config_from_dict(cls, values)


# --- physics -----------------------------------------------------------------------------


def _primitive(s, mtt, kind):
    """``∫_0^s r`` for s >= 0: ``τ atan(s/τ)``, τ = 2 MTT/π, or ``MTT (1 − e^{−s/MTT})``."""
    if kind == "lorentzian":
        tau = 2.0 * mtt / math.pi
        return tau * torch.atan(s / tau)
    return mtt * -torch.expm1(-s / mtt)


def residue_function(mtt, n_frames, dt, kind="lorentzian", delay=None):
    r"""Residue functions ``R`` (B, T) for the MTTs ``mtt`` (B,) and arrival delays
    ``delay`` (B,) s (default 0): ``r(t − δ)`` averaged over each frame
    ``[iΔt, (i+1)Δt)`` in closed form, rescaled so that ``Δt Σ_i R_i = MTT`` exactly
    (module docstring). ``lorentzian``: ``r(t) = 1 / (1 + (π t / (2 MTT))²)``;
    ``exponential``: ``r(t) = exp(−t/MTT)``; both integrate to MTT over [0, ∞).
    """
    mtt = torch.as_tensor(mtt)
    delay = torch.zeros_like(mtt) if delay is None else torch.as_tensor(delay).to(mtt)
    edges = torch.arange(n_frames + 1, device=mtt.device, dtype=mtt.dtype) * dt
    shifted = (edges - delay[..., None]).clamp(min=0.0)
    area = _primitive(shifted, mtt[..., None], kind).diff(dim=-1)
    return mtt[..., None] * area / (dt * area.sum(dim=-1, keepdim=True))


def causal_convolve(aif, trf, dt):
    r"""``Δt Σ_{j≤n} a_j k_{n−j}`` on the last axis, by FFT with zero padding to 2T.

    The same discrete rule as :func:`bids_perfusion.dsc.kinetics.convolve`; ``aif`` and
    ``trf`` broadcast over leading axes; the result keeps the first T samples.
    """
    n = aif.shape[-1]
    size = 1 << (2 * n - 1).bit_length()
    spectrum = torch.fft.rfft(aif, size) * torch.fft.rfft(trf, size)
    return dt * torch.fft.irfft(spectrum, size)[..., :n]


def area_amplitude(curve, shape):
    """``k̂ = Σ C / Σ g`` per row (B,): the scale that gives ``shape`` (B, T), a positive
    unit-flow curve, the area of ``curve`` (B, T)."""
    return curve.sum(-1) / shape.sum(-1).clamp(min=1e-12)


# --- model -------------------------------------------------------------------------------


class PHAE(nn.Module):
    """Encoder (trainable) and physics decoder (fixed); see the module docstring.

    ``forward(tissue, aif)`` takes the encoder's inputs (B, W) and AIF (B, W) or (W,)
    (:func:`encoder_inputs`) and returns a dict: ``mtt`` (B,) s, ``delay`` (B,) s,
    ``amplitude`` (B,) (CBF in normalised units, s⁻¹), ``residue`` (B, W) and
    ``reconstruction`` (B, W).
    """

    def __init__(self, config=None):
        super().__init__()
        self.config = config or PHAEConfig()
        blocks, width = [], 2
        for channels in self.config.channels:
            blocks += [nn.Conv1d(width, channels, self.config.kernel_size, stride=1,
                                 padding=self.config.kernel_size // 2),
                       nn.BatchNorm1d(channels),
                       nn.LeakyReLU(self.config.negative_slope)]
            width = channels
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool1d(self.config.pool_size)
        self.head = nn.Linear(width * self.config.pool_size, 2)
        low, high = self.config.delay_range
        with torch.no_grad():  # softplus(b0) = mtt_init and delay 0 when the features are 0
            self.head.bias[0] = math.log(math.expm1(self.config.mtt_init))
            self.head.bias[1] = math.log(-low / high)

    def encode(self, tissue, aif):
        """``(mtt, delay)`` (B,) s of tissue curves (B, W) and AIF (B, W) or (W,)."""
        aif = aif.expand_as(tissue)
        features = self.pool(self.features(torch.stack([tissue, aif], dim=1)))
        z = self.head(features.flatten(1)).float()
        low, high = self.config.delay_range
        return F.softplus(z[:, 0]), low + (high - low) * torch.sigmoid(z[:, 1])

    def fused(self):
        """A copy for inference, every BatchNorm folded into its convolution.

        In eval mode BatchNorm is the affine map ``γ (x − μ)/√(σ² + ε) + β``, which
        :func:`torch.nn.utils.fusion.fuse_conv_bn_eval` merges into the preceding
        convolution's weights: the same MTT to float rounding, about twice as fast on CPU.
        """
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        fused = copy.deepcopy(self).eval()
        layers = list(fused.features)
        fused.features = nn.Sequential(*(
            layer for i in range(0, len(layers), 3)
            for layer in (fuse_conv_bn_eval(layers[i], layers[i + 1]), layers[i + 2])))
        return fused

    def decode(self, mtt, delay, aif):
        """``(g, R)``: the unit-flow curve ``g = Δt · a ⊛ R_{MTT,δ}`` (B, W) and the
        residue R (B, W), in float32 (autocast off)."""
        with torch.autocast(mtt.device.type, enabled=False):
            n = aif.shape[-1]
            residue = residue_function(mtt.float(), n, self.config.dt, self.config.residue,
                                       delay.float())
            return causal_convolve(aif.float(), residue, self.config.dt), residue

    def forward(self, tissue, aif):
        mtt, delay = self.encode(tissue, aif)
        with torch.autocast(tissue.device.type, enabled=False):
            shape, residue = self.decode(mtt, delay, aif)
            amplitude = area_amplitude(tissue.float(), shape)
        return {"mtt": mtt, "delay": delay, "amplitude": amplitude, "residue": residue,
                "reconstruction": amplitude[:, None] * shape}


#: Delay error (s) that weighs as much as a factor e in MTT in the supervised term.
DELAY_SCALE = 4.0


def loss(model, batch, truth_weight=0.0):
    """Mean absolute error between the reconstruction and the measured curve (paper §2.2.3),
    plus, beyond the paper, ``truth_weight`` times a supervised term on the rows whose
    truth is known (synthetic curves: finite ``mtt`` and ``delay`` in the batch),
    ``mean(|ln(MTT/MTT_true)| + |δ − δ_true| / DELAY_SCALE)`` times their fraction.

    ``batch`` holds ``tissue`` (B, W) and ``aif`` (B, W), as :func:`encoder_inputs` makes,
    and optionally ``mtt`` and ``delay`` (B,), NaN where unknown.
    """
    out = model(batch["tissue"], batch["aif"])
    value = F.l1_loss(out["reconstruction"], batch["tissue"].float())
    if truth_weight and "mtt" in batch:
        known = torch.isfinite(batch["mtt"])
        if known.any():
            error = (torch.log(out["mtt"][known] / batch["mtt"][known]).abs()
                     + (out["delay"][known] - batch["delay"][known]).abs() / DELAY_SCALE)
            value = value + truth_weight * error.sum() / known.numel()
    return value


# --- inputs and inference ----------------------------------------------------------------


def resample(curves, frame_times, dt):
    """Curves (..., T) sampled at ``frame_times`` linearly interpolated onto ``k·dt`` from
    the first time to the last; returned unchanged when already on that grid."""
    times = np.asarray(frame_times, dtype=np.float64)
    curves = np.asarray(curves)
    steps = np.diff(times)
    if np.allclose(steps, dt, rtol=1e-4, atol=1e-6):
        return curves
    grid = times[0] + np.arange(int(np.floor((times[-1] - times[0]) / dt + 1e-9)) + 1) * dt
    flat = curves.reshape(-1, curves.shape[-1])
    if not flat.size:
        return np.zeros((*curves.shape[:-1], grid.size), dtype=curves.dtype)
    # Linear interpolation of every row at once: the grid's neighbours and weights.
    right = np.clip(np.searchsorted(times, grid, side="right"), 1, times.size - 1)
    weight = np.clip((grid - times[right - 1]) / (times[right] - times[right - 1]), 0, 1)
    out = flat[:, right - 1] * (1 - weight) + flat[:, right] * weight
    return out.reshape(*curves.shape[:-1], grid.size).astype(curves.dtype)


def encoder_inputs(tissue, aif, frame_times, config):
    """The encoder's inputs ``(tissue (N, W), aif (W,))`` float32 of tissue curves (N, T)
    and one AIF (T,) sampled at ``frame_times`` (T,) s, in any units.

    Resampled onto ``config.dt``; the window of ``config.window`` frames starting
    ``config.lead`` s before the AIF peak, edge values where it leaves the acquisition;
    the AIF divided by its peak and every tissue curve by its own largest absolute value
    (1 for an all-zero curve). ValueError when the AIF has no positive peak.
    """
    aif = resample(np.asarray(aif, dtype=np.float64), frame_times, config.dt)
    tissue = resample(np.asarray(tissue, dtype=np.float32), frame_times, config.dt)
    start = int(np.argmax(aif)) - round(config.lead / config.dt)
    index = np.clip(np.arange(start, start + config.window), 0, aif.size - 1)
    aif, tissue = aif[index], tissue[:, index]
    peak = float(aif.max())
    if not (peak > 0 and np.isfinite(peak)):
        raise ValueError(f"cannot normalise the AIF: its peak is {peak}; it must be a "
                         "concentration (or ΔR2*) curve with a positive bolus")
    scale = np.abs(tissue).max(axis=1, keepdims=True)
    scale[~(scale > 0)] = 1.0
    return (tissue / scale).astype(np.float32), (aif / peak).astype(np.float32)


def build_model(config=None, state_dict=None, device="cpu"):
    """A PHAE in eval mode on ``device``, with ``state_dict`` loaded when given."""
    config = PHAEConfig.from_dict(config) if isinstance(config, dict) else config
    model = PHAE(config)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model.to(device).eval()


def load_model(path=None, device="cpu"):
    """The PHAE of a weights file (default: the bundled one) and its model card.

    The file is checked against its card's sha256 (:func:`bids_perfusion.nn.weights.
    load_weights`); WeightsError explains a missing, corrupt, mismatched or outdated file.
    """
    from bids_perfusion.nn.weights import WeightsError, load_weights

    path = path or bundled_weights()
    state, card = load_weights(path, expected_model=MODEL_NAME)
    try:
        return build_model(card["configuration"], state, device), card
    except ValueError as error:
        raise WeightsError(f"{path}: {error}") from None


def bundled_weights():
    """Path of the weights shipped with the package (trained on synthetic data)."""
    from bids_perfusion.nn.weights import bundled_weights

    return bundled_weights("phae")


#: Voxels per forward pass on the CPU: the encoder's activations of 128 curves stay in the
#: caches, and 16 384 voxels took 2.4–2.8 s against 4.7–4.9 s in passes of 8 192 (2
#: threads, idle 2-core machine, docs/performance.md); the outputs do not depend on it.
CPU_BATCH_SIZE = 128


@torch.inference_mode()
def predict(model, tissue, aif, batch_size=CPU_BATCH_SIZE, device=None):
    """``(mtt, delay)`` (N,) s of encoder inputs (N, W) and (W,) (:func:`encoder_inputs`),
    by the BatchNorm-folded copy of ``model`` (:meth:`PHAE.fused`)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.fused().to(device)
    aif_t = torch.as_tensor(np.asarray(aif, dtype=np.float32), device=device)
    mtt = np.empty(len(tissue), dtype=np.float32)
    delay = np.empty(len(tissue), dtype=np.float32)
    for start in range(0, len(tissue), batch_size):
        block = torch.as_tensor(np.asarray(tissue[start:start + batch_size], dtype=np.float32),
                                device=device)
        block_mtt, block_delay = model.encode(block, aif_t)
        mtt[start:start + batch_size] = block_mtt.cpu().numpy()
        delay[start:start + batch_size] = block_delay.cpu().numpy()
    return mtt, delay


def estimate_maps(model, tissue, aif, frame_times, *, cbv_end=None, kh=None, rho=None,
                  scaled=True, batch_size=CPU_BATCH_SIZE, device=None):
    """PHAE maps of tissue curves (N, T) in mM and one AIF (T,) in mM, pipeline units.

    Returns a dict of float32 arrays (N,): ``mtt`` and ``delay`` (s, from the encoder),
    ``cbv`` (mL/100 g: ``100 (kH/ρ) ∫C/∫C_a`` over frames ``[0, cbv_end)``, the
    pipeline's area ratio, :func:`bids_perfusion.dsc.maps.cbv_area_ratio`) and ``cbf``
    (mL/100 g/min: ``60 · CBV / MTT``), plus ``seconds``, the time spent. ``scaled=False``
    drops kH/ρ (mL/100 mL). The encoder reads :func:`encoder_inputs`.
    """
    from bids_perfusion.constants import KH, RHO_BRAIN
    from bids_perfusion.dsc import maps

    started = time.perf_counter()
    kh = KH if kh is None else kh
    rho = RHO_BRAIN if rho is None else rho
    tissue = np.asarray(tissue, dtype=np.float32)
    aif = np.asarray(aif, dtype=np.float64)
    times = np.asarray(frame_times, dtype=np.float64)
    end = times.size if cbv_end is None else int(cbv_end)
    cbv = maps.cbv_area_ratio(tissue[:, :end], aif[:end], times[:end], kh=kh, rho=rho,
                              scaled=scaled).astype(np.float32)
    inputs = encoder_inputs(tissue, aif, times, model.config)
    mtt, delay = predict(model, *inputs, batch_size=batch_size, device=device)
    with np.errstate(divide="ignore", invalid="ignore"):
        cbf = np.where(mtt > 0, 60.0 * cbv / mtt, 0.0).astype(np.float32)
    return {"mtt": mtt, "delay": delay, "cbv": cbv, "cbf": cbf,
            "seconds": time.perf_counter() - started}


@dataclasses.dataclass(frozen=True)
class PHAEFit:
    """Result of :meth:`PHAEModel.fit`: float32 maps of the voxel shape of the data, 0
    outside the mask of the fit: ``mtt`` (s), ``delay`` (s), ``cbv`` (mL/100 g), ``cbf``
    (mL/100 g/min), as in :func:`estimate_maps`; ``seconds``, the time spent."""

    mtt: np.ndarray
    delay: np.ndarray
    cbv: np.ndarray
    cbf: np.ndarray
    seconds: float


class PHAEModel:
    """A trained PHAE and one subject's AIF, dipy-style:
    ``PHAEModel(network, aif, frame_times).fit(concentration, mask) -> PHAEFit``.

    ``network``: a :class:`PHAE` (e.g. from :func:`load_model`); ``aif`` (T,) in mM;
    ``frame_times`` (T,) s; the keywords are those of :func:`estimate_maps`, which
    :meth:`fit` runs on the voxels of the mask.
    """

    def __init__(self, network: PHAE, aif: ArrayLike, frame_times: ArrayLike, *,
                 cbv_end: int | None = None, kh: float | None = None, rho: float | None = None,
                 scaled: bool = True, batch_size: int = CPU_BATCH_SIZE,
                 device: str | torch.device | None = None):
        self.network = network
        self.aif = aif
        self.frame_times = frame_times
        self.options = {"cbv_end": cbv_end, "kh": kh, "rho": rho, "scaled": scaled,
                        "batch_size": batch_size, "device": device}

    def fit(self, concentration: ArrayLike, mask: ArrayLike | None = None) -> PHAEFit:
        """Maps of tissue curves ``(..., T)`` in mM, the voxels of ``mask`` only when given."""
        data = np.asarray(concentration)
        voxels = None if mask is None else voxel_mask(mask, data.shape[:-1])
        tissue = data.reshape(-1, data.shape[-1]) if voxels is None else data[voxels]
        maps = estimate_maps(self.network, tissue, self.aif, self.frame_times, **self.options)

        def volume(values):
            return values.reshape(data.shape[:-1]) if voxels is None else scatter(values, voxels)

        return PHAEFit(mtt=volume(maps["mtt"]), delay=volume(maps["delay"]),
                       cbv=volume(maps["cbv"]),
                       cbf=volume(maps["cbf"]), seconds=maps["seconds"])
