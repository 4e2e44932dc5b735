r"""Physics-informed autoencoder (PHAE) for DSC-MRI deconvolution.

After "Physics-Informed autoencoder for DSC-MRI perfusion post-processing: application to
glioma grading" (arXiv:2510.13886, 2025): a 1-D convolutional **encoder** reads a
voxel's tissue concentration curve C(t) and the subject's arterial input function
C_a(t) as two channels and returns the mean transit time; a **physics decoder** with no
trainable parameters turns MTT back into a tissue curve, and the mean absolute error
between that reconstruction and the measured curve trains the encoder. No reference
maps are needed (self-supervised).

Encoder (paper §2.2.1): four blocks of Conv1d (kernel 3, stride 1, padding 1), BatchNorm1d
and LeakyReLU (negative slope 0.02) with 32, 64, 128 and 256 filters; average pooling
over time; a linear layer; MTT = softplus(z) s, which keeps it positive. The linear
bias starts at softplus⁻¹(``mtt_init``) so training starts from a plausible MTT.

Perfusion parameters (paper eqs. 2-3), with Δt the frame interval:

.. math::

    \mathrm{CBV} = \frac{\int_0^{t_e} C(t)\,dt}{\int_0^{t_e} C_a(t)\,dt},\qquad
    \mathrm{CBF} = \frac{\mathrm{CBV}}{\mathrm{MTT}}

(area ratio, Rempp et al., Radiology 1994;193:637; central volume theorem, Stewart,
J Physiol 1894;15:1), both integrals by the trapezoid rule up to ``t_e`` (the end of the
first pass, or the last frame). CBF here is in s⁻¹ in the curves' units; see
:func:`estimate_maps` for the pipeline's units.

Decoder (paper eqs. 4-6): a Lorentzian residue function of MTT alone,

.. math::

    r(t) = \frac{1}{1 + (t/\tau)^2},\quad \tau = \frac{2\,\mathrm{MTT}}{\pi},\qquad
    \int_0^\infty r(t)\,dt = \tau\,\frac{\pi}{2} = \mathrm{MTT},\quad r(0) = 1,

sampled at the mid-points ``t_i = (i + ½)Δt`` of the frames and rescaled so that its
discrete integral over the window is exactly MTT,
``R_i = MTT · r(t_i) / (Δt Σ_j r(t_j))``. The rescaling corrects the truncation of the
slowly decaying 1/t² tail (a few per cent for MTT of several seconds in a 90 s
window), so that the area of the reconstruction equals CBV times the area of the AIF, as
it must. Then the tissue response function and the reconstruction are

.. math::

    \mathrm{TRF}(t) = \mathrm{CBF}\cdot R(t),\qquad
    \hat C(t_n) = \Delta t \sum_{j=0}^{n} C_a(t_j)\,\mathrm{TRF}(t_{n-j})

(causal discrete convolution, the same rule as :func:`bids_perfusion.dsc.kinetics.convolve`,
with Δt in it), and the loss is ``mean |Ĉ − C|``. ``residue="exponential"`` uses
``r(t) = exp(−t/MTT)`` instead, with the same normalisation (the paper found no
difference between the two). The decoder always runs in float32, also under autocast.

Normalisation (paper §2.1.3): the tissue curves of one subject are divided by the
subject's largest value and the AIF by its peak, so both lie in [0, 1]. The "largest
value" is the ``tissue_quantile`` quantile (default 0.999) of the voxels' peak values, so
that a handful of arterial or noise voxels do not set the scale. MTT (s) does not
depend on these scales. CBV computed on normalised curves is the physical one times
``s_a / s_t``; :func:`estimate_maps` computes CBV on the curves in mM, so no scale
survives: CBV = 100 (kH/ρ) ∫C/∫C_a mL/100 g exactly as
:func:`bids_perfusion.dsc.maps.cbv_area_ratio`, and CBF = 60 CBV/MTT mL/100 g/min.

The encoder sees time as frames, so its MTT is learned at the frame interval of the
training data (``dt`` of :class:`PHAEConfig`); :func:`estimate_maps` resamples curves
acquired at another interval onto that grid (linear interpolation) before encoding.
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
    pool_size: output length of the average pooling (1: global average, as the paper);
    residue: 'lorentzian' (paper) or 'exponential'; dt: frame interval of the training
    curves, s; mtt_init: MTT (s) the untrained encoder returns; tissue_quantile: quantile
    of voxel peaks that scales a subject's tissue curves to [0, 1].
    """

    channels: tuple = (32, 64, 128, 256)
    kernel_size: int = 3
    negative_slope: float = 0.02
    pool_size: int = 1
    residue: str = "lorentzian"
    dt: float = 1.5
    mtt_init: float = 4.0
    tissue_quantile: float = 0.999

    def __post_init__(self):
        if self.residue not in RESIDUES:
            raise ValueError(f"residue must be one of {RESIDUES}, got {self.residue!r}")
        if not (self.dt > 0 and self.mtt_init > 0 and 0 < self.tissue_quantile <= 1):
            raise ValueError("dt and mtt_init must be positive, tissue_quantile in (0, 1]")

    def as_dict(self):
        return {**dataclasses.asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, values):
        values = dict(values)
        values["channels"] = tuple(values.get("channels", cls.channels))
        return cls(**{k: v for k, v in values.items()
                      if k in {f.name for f in dataclasses.fields(cls)}})


# --- physics -----------------------------------------------------------------------------


def residue_function(mtt, n_frames, dt, kind="lorentzian"):
    r"""Residue functions ``R`` (B, T) for the MTTs ``mtt`` (B,), normalised so that
    ``Δt Σ_i R_i = MTT`` exactly (see the module docstring for the equations).

    ``lorentzian``: ``r(t) = 1 / (1 + (π t / (2 MTT))²)``, whose integral over [0, ∞) is
    MTT and r(0) = 1; ``exponential``: ``r(t) = exp(−t/MTT)``. Both are sampled at the
    frame mid-points ``(i + ½)Δt`` and rescaled on the finite window.
    """
    mtt = torch.as_tensor(mtt)
    t = (torch.arange(n_frames, device=mtt.device, dtype=mtt.dtype) + 0.5) * dt
    x = t / mtt[..., None]
    r = 1.0 / (1.0 + (0.5 * math.pi * x) ** 2) if kind == "lorentzian" else torch.exp(-x)
    return mtt[..., None] * r / (dt * r.sum(dim=-1, keepdim=True))


def causal_convolve(aif, trf, dt):
    r"""``Δt Σ_{j≤n} a_j k_{n−j}`` on the last axis, by FFT with zero padding to 2T.

    The same discrete rule as :func:`bids_perfusion.dsc.kinetics.convolve`; ``aif`` and
    ``trf`` broadcast over leading axes; the result keeps the first T samples.
    """
    n = aif.shape[-1]
    size = 1 << (2 * n - 1).bit_length()
    spectrum = torch.fft.rfft(aif, size) * torch.fft.rfft(trf, size)
    return dt * torch.fft.irfft(spectrum, size)[..., :n]


def trapezoid_weights(n_frames, end=None, device=None, dtype=torch.float32):
    """Trapezoid-rule weights (B, T) or (T,) over frames ``[0, end)`` (unit spacing).

    ``end`` is None (all frames), an int, or a tensor (B,) of per-sample ends; frames at
    or after the end get weight 0, the first and last kept frames weight ½.
    """
    index = torch.arange(n_frames, device=device)
    if end is None:
        end = torch.tensor(n_frames, device=device)
    end = torch.as_tensor(end, device=device)
    last = (end - 1)[..., None] if end.ndim else end - 1
    weights = (index < (end[..., None] if end.ndim else end)).to(dtype)
    half = (index == 0) | (index == last)
    return torch.where(half, 0.5 * weights, weights)


def integral_ratio(tissue, aif, end=None):
    """``∫C / ∫C_a`` over frames ``[0, end)`` by the trapezoid rule (Δt cancels).

    ``tissue`` (B, T), ``aif`` (B, T) or (T,); ``end`` as in :func:`trapezoid_weights`.
    """
    weights = trapezoid_weights(tissue.shape[-1], end, tissue.device, tissue.dtype)
    return (tissue * weights).sum(-1) / (aif * weights).sum(-1)


# --- model -------------------------------------------------------------------------------


class PHAE(nn.Module):
    """Encoder (trainable) and physics decoder (fixed); see the module docstring.

    ``forward(tissue, aif, end=None)`` takes normalised curves (B, T) and returns a dict:
    ``mtt`` (B,) s, ``cbv`` (B,) and ``cbf`` (B,) s⁻¹ in normalised units,
    ``residue`` (B, T) and ``reconstruction`` (B, T).
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
        self.head = nn.Linear(width * self.config.pool_size, 1)
        with torch.no_grad():  # softplus(bias) = mtt_init when the features are 0
            self.head.bias.fill_(math.log(math.expm1(self.config.mtt_init)))

    def encode(self, tissue, aif):
        """MTT (B,) in seconds from tissue and AIF curves (B, T) or AIF (T,)."""
        aif = aif.expand_as(tissue)
        features = self.pool(self.features(torch.stack([tissue, aif], dim=1)))
        return F.softplus(self.head(features.flatten(1))[:, 0].float())

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

    def decode(self, mtt, cbf, aif):
        """``Ĉ = Δt · C_a ⊛ (CBF · R_MTT)`` in float32 (autocast off)."""
        with torch.autocast(mtt.device.type, enabled=False):
            n = aif.shape[-1]
            residue = residue_function(mtt.float(), n, self.config.dt, self.config.residue)
            trf = cbf.float()[:, None] * residue
            return causal_convolve(aif.float(), trf, self.config.dt), residue

    def forward(self, tissue, aif, end=None):
        mtt = self.encode(tissue, aif)
        with torch.autocast(tissue.device.type, enabled=False):
            cbv = integral_ratio(tissue.float(), aif.float(), end)
            cbf = cbv / mtt
            reconstruction, residue = self.decode(mtt, cbf, aif)
        return {"mtt": mtt, "cbv": cbv, "cbf": cbf, "residue": residue,
                "reconstruction": reconstruction}


def loss(model, batch):
    """Mean absolute error between the reconstruction and the measured curve (paper §2.2.3).

    ``batch`` holds ``tissue`` (B, T), ``aif`` (B, T) and optionally ``end`` (B,).
    """
    out = model(batch["tissue"], batch["aif"], batch.get("end"))
    return F.l1_loss(out["reconstruction"], batch["tissue"].float())


# --- normalisation and inference ---------------------------------------------------------


def normalisation_scales(tissue, aif, quantile=0.999):
    """Per-subject scales ``(s_t, s_a)``: tissue and AIF divided by them lie in [0, 1].

    ``s_t`` is the ``quantile`` of the voxels' peak tissue values (1.0: the maximum, as
    the paper), ``s_a`` the AIF's peak. Both are positive or ValueError.
    """
    peaks = np.max(np.asarray(tissue, dtype=np.float64), axis=-1)
    s_t = float(np.quantile(peaks, quantile)) if peaks.size else 0.0
    s_a = float(np.max(aif))
    if not (s_t > 0 and s_a > 0 and np.isfinite(s_t) and np.isfinite(s_a)):
        raise ValueError(f"cannot normalise: tissue scale {s_t}, AIF peak {s_a}; the curves "
                         "must be concentration (or ΔR2*) with a positive bolus peak")
    return s_t, s_a


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
    out = np.stack([np.interp(grid, times, row) for row in flat]) if flat.size else \
        np.zeros((0, grid.size))
    return out.reshape(*curves.shape[:-1], grid.size).astype(curves.dtype)


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
    load_weights`); WeightsError explains a missing, corrupt or mismatched file.
    """
    from bids_perfusion.nn.weights import load_weights

    state, card = load_weights(path or bundled_weights(), expected_model=MODEL_NAME)
    return build_model(card["configuration"], state, device), card


def bundled_weights():
    """Path of the weights shipped with the package (trained on phantom data)."""
    from bids_perfusion.nn.weights import bundled_weights

    return bundled_weights("phae")


@torch.inference_mode()
def predict_mtt(model, tissue, aif, batch_size=8192, device=None):
    """MTT (N,) s of normalised tissue curves (N, T) and one normalised AIF (T,), by the
    BatchNorm-folded copy of ``model`` (:meth:`PHAE.fused`)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.fused().to(device)
    aif_t = torch.as_tensor(np.asarray(aif, dtype=np.float32), device=device)
    out = np.empty(len(tissue), dtype=np.float32)
    for start in range(0, len(tissue), batch_size):
        block = torch.as_tensor(np.asarray(tissue[start:start + batch_size], dtype=np.float32),
                                device=device)
        out[start:start + batch_size] = model.encode(block, aif_t).cpu().numpy()
    return out


def estimate_maps(model, tissue, aif, frame_times, *, cbv_end=None, kh=None, rho=None,
                  scaled=True, batch_size=8192, device=None):
    """PHAE maps of tissue curves (N, T) in mM and one AIF (T,) in mM, pipeline units.

    Returns a dict of float32 arrays (N,): ``mtt`` (s, from the encoder), ``cbv``
    (mL/100 g: ``100 (kH/ρ) ∫C/∫C_a`` over frames ``[0, cbv_end)``, the pipeline's
    area ratio, :func:`bids_perfusion.dsc.maps.cbv_area_ratio`) and ``cbf``
    (mL/100 g/min: ``60 · CBV / MTT``), plus ``seconds``, the time spent. ``scaled=False``
    drops kH/ρ (mL/100 mL). Curves at another frame interval than the model's are
    resampled for the encoder only.
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
    s_t, s_a = normalisation_scales(tissue, aif, model.config.tissue_quantile)
    mtt = predict_mtt(model, resample(tissue / s_t, times, model.config.dt),
                      resample(aif / s_a, times, model.config.dt), batch_size, device)
    with np.errstate(divide="ignore", invalid="ignore"):
        cbf = np.where(mtt > 0, 60.0 * cbv / mtt, 0.0).astype(np.float32)
    return {"mtt": mtt, "cbv": cbv, "cbf": cbf, "seconds": time.perf_counter() - started}


@dataclasses.dataclass(frozen=True)
class PHAEFit:
    """Result of :meth:`PHAEModel.fit`: float32 maps of the voxel shape of the data, 0
    outside the mask of the fit: ``mtt`` (s), ``cbv`` (mL/100 g), ``cbf`` (mL/100 g/min),
    as in :func:`estimate_maps`; ``seconds``, the time spent."""

    mtt: np.ndarray
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
                 scaled: bool = True, batch_size: int = 8192,
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

        return PHAEFit(mtt=volume(maps["mtt"]), cbv=volume(maps["cbv"]),
                       cbf=volume(maps["cbf"]), seconds=maps["seconds"])
