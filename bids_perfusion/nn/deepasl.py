r"""DeepASL: denoising of the mean ASL difference image ΔM by deep residual learning with a
kinetic-model loss, and its Dilated Conv baseline.

After Ulas, Tetteh, Kaczmarz, Preibisch and Menze, "DeepASL: Kinetic model incorporated
loss for denoising arterial spin labeled MRI via deep residual learning", MICCAI 2018,
LNCS 11070, pp. 30-38 (§2.2).

**Residual FCN** (:class:`ResidualFCN`): eight 3×3 convolutions of 48 filters, each
followed by PReLU (He et al., ICCV 2015; one learnt slope per channel), then one 3×3
convolution to a single channel without activation; no batch normalisation. It maps a
noisy ΔM slice :math:`ΔM_n` (the mean of a subset of control/label subtractions) to the
noise residual :math:`\tilde N = R(ΔM_n)`; the denoised image is
:math:`ΔM_n - \tilde N`.

**Loss** (Eq. 2), averaged over the brain voxels of the batch::

    L = λ ‖N − Ñ‖² + (1 − λ) ‖f_t − f(ΔM_n − Ñ; ξ)‖²,   N = ΔM_n − ΔM_c

with :math:`ΔM_c` the mean of all subtractions, :math:`f_t = f(ΔM_c)` the reference CBF
and f the single-delay CBF model of the ISMRM consensus (Eq. 1 of the paper; Alsop et al.,
MRM 2015;73:102), written in torch so that gradients flow: :func:`kinetic_cbf`, equal
to :func:`bids_perfusion.asl.consensus.single_delay_cbf`. ξ holds the run's constants:
delay of the slice (PLD or TI, plus its slice time for 2-D readouts), τ (PCASL) or TI1
(PASL), T1 of blood, labelling efficiency α, M0 and the partition coefficient.
λ = 1 is the plain residual (MSE) loss.

**Units.** Each run's ΔM is divided by ``s = median brain M0 / 100`` (ΔM in percent of
M0) before it enters a network, so one model serves any receiver gain; the residual term
is in those units, the CBF term in mL/100 g/min (the paper does not normalise either).

**Dilated Conv** (:class:`DilatedConv`), the baseline of the paper (its ref. 9: Kim,
Choi and Park, Radiology 2018;287:658): a first 3×3 convolution, then two parallel
pathways, a local one of four plain 3×3 convolutions and a global one of four 3×3
convolutions dilated by 2, 4, 8 and 16, concatenated, a 3×3 convolution of twice the
width and a 3×3 convolution to one channel; ReLU after every convolution but the last.
The width, 64 filters, is the one the DeepASL authors used for this baseline in their
public code (repository cagdasulas/ASL_CNN); Kim et al. describe the two pathways and the
dilation rates. As for the residual FCN, its output is the noise residual, and it is
trained with the mean squared error (:func:`deepasl_loss` with λ = 1), as the paper
trained it.
"""

import dataclasses

import numpy as np
import torch
from torch import nn

from bids_perfusion import constants

#: Names of the models in weights files, model cards and ``bids-perfusion-train``.
MODEL_NAMES = ("deepasl", "dilatedconv")
#: ΔM enters the networks in percent of the median brain M0 (module docstring).
PERCENT = 100.0


@dataclasses.dataclass(frozen=True)
class DeepASLConfig:
    """Architecture of the residual FCN (paper: depth 8, width 48, kernel 3)."""

    depth: int = 8
    width: int = 48
    kernel: int = 3

    def __post_init__(self):
        if self.depth < 1 or self.width < 1 or self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError("depth and width must be positive, kernel odd and positive")

    def as_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DilatedConvConfig:
    """Architecture of the Dilated Conv baseline: ``width`` filters per convolution
    (twice that in the one after the concatenation), ``dilations`` of the global pathway;
    the local pathway has as many plain convolutions."""

    width: int = 64
    dilations: tuple = (2, 4, 8, 16)
    kernel: int = 3

    def __post_init__(self):
        if self.width < 1 or not self.dilations or min(self.dilations) < 1:
            raise ValueError("width and dilations must be positive")

    def as_dict(self):
        return {**dataclasses.asdict(self), "dilations": list(self.dilations)}


def _conv(n_in, n_out, kernel, dilation=1):
    """A 'same'-padded 2-D convolution (zero padding)."""
    return nn.Conv2d(n_in, n_out, kernel, padding=dilation * (kernel // 2), dilation=dilation)


def _receptive_field(convs):
    """Receptive field, pixels, of a chain of stride-1 convolutions: 1 + Σ (k − 1) d."""
    return 1 + sum((c.kernel_size[0] - 1) * c.dilation[0] for c in convs)


class ResidualFCN(nn.Module):
    """The DeepASL network: ``forward(x)`` maps ΔM_n (B, 1, H, W) to the residual Ñ."""

    def __init__(self, config=None):
        super().__init__()
        self.config = config = config or DeepASLConfig()
        layers, n_in = [], 1
        for _ in range(config.depth):
            layers += [_conv(n_in, config.width, config.kernel), nn.PReLU(config.width)]
            n_in = config.width
        layers.append(_conv(n_in, 1, config.kernel))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)

    def convolutions(self):
        return [m for m in self.layers if isinstance(m, nn.Conv2d)]

    def receptive_field(self):
        return _receptive_field(self.convolutions())


class DilatedConv(nn.Module):
    """The Dilated Conv baseline (module docstring): ``forward(x)`` gives the residual."""

    def __init__(self, config=None):
        super().__init__()
        self.config = config = config or DilatedConvConfig()
        k, w = config.kernel, config.width
        self.first = _conv(1, w, k)
        self.local = nn.ModuleList(_conv(w, w, k) for _ in config.dilations)
        self.dilated = nn.ModuleList(_conv(w, w, k, d) for d in config.dilations)
        self.merge = _conv(2 * w, 2 * w, k)
        self.last = _conv(2 * w, 1, k)

    def forward(self, x):
        x = torch.relu(self.first(x))
        local, dilated = x, x
        for conv in self.local:
            local = torch.relu(conv(local))
        for conv in self.dilated:
            dilated = torch.relu(conv(dilated))
        return self.last(torch.relu(self.merge(torch.cat([local, dilated], dim=1))))

    def receptive_field(self):
        """Through the longer (dilated) pathway."""
        paths = [[self.first, *self.local, self.merge, self.last],
                 [self.first, *self.dilated, self.merge, self.last]]
        return max(_receptive_field(p) for p in paths)


def build(model_name, configuration=None):
    """The module of ``model_name`` ('deepasl', 'deepasl-multidelay': the same residual
    FCN, or 'dilatedconv') from a card's configuration (a dict; defaults when None)."""
    from bids_perfusion.nn.weights import config_from_dict

    classes = {"deepasl": (ResidualFCN, DeepASLConfig),
               "deepasl-multidelay": (ResidualFCN, DeepASLConfig),
               "dilatedconv": (DilatedConv, DilatedConvConfig)}
    if model_name not in classes:
        raise ValueError(f"unknown ASL denoising model {model_name!r}; use one of "
                         f"{MODEL_NAMES}")
    module, config = classes[model_name]
    return module(config_from_dict(config, configuration or {}))


def parameter_count(model):
    """Trainable parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def kinetic_cbf(delta_m, m0, delay, t1_blood, efficiency, duration, pasl,
                partition=constants.BLOOD_BRAIN_PARTITION):
    """Single-delay CBF (mL/100 g/min) of the ISMRM consensus, in torch (Eq. 1 of DeepASL).

    PCASL/CASL: ``6000 λ ΔM e^(PLD/T1b) / (2 α T1b M0 (1 − e^(−τ/T1b)))``;
    PASL: ``6000 λ ΔM e^(TI/T1b) / (2 α TI1 M0)``. ``duration`` is τ (PCASL) or TI1
    (PASL), chosen per element by the boolean ``pasl``; every argument broadcasts
    (per-sample constants as (B, 1, 1, 1) tensors). 0 where M0 is not positive, as
    :func:`bids_perfusion.asl.consensus.single_delay_cbf`.
    """
    def tensor(value):
        return torch.as_tensor(value, dtype=delta_m.dtype, device=delta_m.device)

    delay, t1_blood, efficiency, duration, partition = map(
        tensor, (delay, t1_blood, efficiency, duration, partition))
    pasl = torch.as_tensor(pasl, device=delta_m.device, dtype=torch.bool)
    bolus = torch.where(pasl, duration, t1_blood * (1.0 - torch.exp(-duration / t1_blood)))
    factor = (constants.PER_SECOND_TO_PER_100G_MIN * partition * torch.exp(delay / t1_blood)
              / (2.0 * efficiency * bolus))
    m0 = torch.as_tensor(m0, dtype=delta_m.dtype, device=delta_m.device)
    positive = m0 > 0
    ratio = delta_m / torch.where(positive, m0, torch.ones_like(m0))
    return torch.where(positive, factor * ratio, torch.zeros_like(ratio))


def deepasl_loss(model, batch, weight):
    """Eq. 2 with λ = ``weight`` over the brain voxels (``batch['mask']``) of a batch.

    ``batch``: ``noisy`` ΔM_n, ``residual`` N and ``m0`` (B, 1, H, W, in the network's
    units), ``cbf`` f_t (mL/100 g/min), ``mask``, and the per-sample constants ``delay``,
    ``t1_blood``, ``efficiency``, ``duration``, ``partition``, ``pasl`` (B, 1, 1, 1).
    """
    predicted = model(batch["noisy"])
    mask = batch["mask"]
    count = mask.sum().clamp_min(1.0)
    loss = weight * (mask * (batch["residual"] - predicted) ** 2).sum() / count
    if weight < 1:
        cbf = kinetic_cbf(batch["noisy"] - predicted, batch["m0"], batch["delay"],
                          batch["t1_blood"], batch["efficiency"], batch["duration"],
                          batch["pasl"], batch["partition"])
        loss = loss + (1 - weight) * (mask * (batch["cbf"] - cbf) ** 2).sum() / count
    return loss


def intensity_scale(m0, brain):
    """``s``: ΔM / s is ΔM in percent of the median M0 of the brain (M0 > 0)."""
    values = np.asarray(m0)[np.asarray(brain, bool) & (np.asarray(m0) > 0)]
    if values.size == 0:
        raise ValueError("no brain voxel with a positive M0: ΔM cannot be normalised")
    return float(np.median(values)) / PERCENT


@torch.no_grad()
def denoise(model, delta_m, scale, device="cpu", batch_slices=8):
    """Denoised ΔM of a 3-D volume (x, y, z), slice by slice (axial slices, 2-D model);
    of each volume of a 4-D one (x, y, z, delays), the delays alone (multi-delay DeepASL,
    :mod:`bids_perfusion.nn.deepasl_multidelay`).

    ``scale``: :func:`intensity_scale`; the model sees ``delta_m / scale`` and the result
    is returned in the units of ``delta_m``: ``ΔM_n − s Ñ``. Non-finite values (voxels
    the pipeline excludes) enter as 0, so that they do not spread to their neighbours.
    """
    if np.ndim(delta_m) == 4:  # one volume per delay, each denoised alone
        return np.stack([denoise(model, delta_m[..., k], scale, device, batch_slices)
                         for k in range(np.shape(delta_m)[-1])], axis=-1)
    model = model.to(device).eval()
    volume = np.nan_to_num(np.asarray(delta_m, dtype=np.float32), nan=0.0, posinf=0.0,
                           neginf=0.0)
    slices = torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume, 2, 0)))[:, None]
    out = []
    for start in range(0, slices.shape[0], batch_slices):
        batch = slices[start:start + batch_slices].to(device) / scale
        out.append(((batch - model(batch)) * scale).cpu())
    return np.moveaxis(torch.cat(out)[:, 0].numpy(), 0, 2).astype(np.float64)


def weights_for_run(method, weights, multi_delay):
    """``(model name, weights path)`` that denoise a run with ``--asl-denoise method``:
    single-delay runs need weights of ``method``, multi-delay runs weights of
    ``deepasl-multidelay`` (``method`` deepasl only); ``weights`` (a path) when given and
    of the right model, else the bundled ones. WeightsError, saying what the run needs,
    when the given weights are for the other kind of run or ``method`` has no multi-delay
    model."""
    from bids_perfusion.nn.deepasl_multidelay import MODEL_NAME
    from bids_perfusion.nn.weights import WeightsError, bundled_weights, read_card

    if multi_delay and method != "deepasl":
        raise WeightsError(f"--asl-denoise {method} has no multi-delay model; use "
                           "--asl-denoise deepasl for multi-delay runs")
    wanted = MODEL_NAME if multi_delay else method
    if weights is None:
        return wanted, bundled_weights(wanted)
    model = read_card(weights).get("model")
    if model != wanted:
        kind = ("multi-delay" if model == MODEL_NAME else "single-delay")
        raise WeightsError(
            f"{weights} holds {kind} weights ({model!r}); a run with "
            + ("several delays needs multi-delay weights, trained with 'bids-perfusion-"
               f"train {MODEL_NAME}'" if multi_delay else
               f"one delay needs weights trained with 'bids-perfusion-train {method}'"))
    return wanted, weights


def load_model(method, path=None):
    """The denoiser ``method`` ('deepasl', 'deepasl-multidelay' or 'dilatedconv') with its
    weights (``path``, or
    the bundled ones) and its model card, in eval mode; the card must name ``method``
    (:class:`~bids_perfusion.nn.weights.WeightsError` otherwise)."""
    from bids_perfusion.nn.weights import bundled_weights, load_weights

    state, card = load_weights(path or bundled_weights(method), expected_model=method)
    model = build(method, card["configuration"])
    model.load_state_dict(state)
    return model.eval(), card
