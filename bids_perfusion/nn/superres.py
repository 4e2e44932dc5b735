r"""Spatio-temporal super-resolution of DSC: a bi-directional neural ODE with a local
implicit image function.

After Lee, Choi, Park, Hwang, Chung and Choi (ISMRM 2024, abstract 0658: spatio-temporal
super-resolution of DSC-MRI with a bi-directional neural ODE and a local implicit image
function). Given two low-resolution frames I_LR0 and I_LR1 (h × w) acquired
at normalised times 0 and 1, the model predicts the high-resolution frame Î_HRt at any
t ∈ [0, 1] and any query coordinate x_q, in three stages:

1. **Oriented latent feature embedding.** A residual convolutional encoder E (in the
   spirit of the EDSR-baseline of LIIF: a 3×3 head, ``encoder_blocks`` residual blocks
   conv-ReLU-conv with a global skip, a 3×3 tail; Lim et al., CVPRW 2017) maps each frame
   to Z_t̃ = E(I_LRt̃) ∈ ℝ^{c×h×w}, t̃ ∈ {0, 1}; the direction is concatenated as a
   constant channel, Z̃_t̃ = [Z_t̃; d] with d = +1 for the forward start (t̃ = 0) and
   d = −1 for the backward start (t̃ = 1).
2. **Continuous temporal trajectory.** A bi-directional neural ODE (Chen et al.,
   NeurIPS 2018):

       Z_{0→t} = Z̃_0 + ∫_0^t f_θ(Z_τ, τ) dτ,      Z_{1→t} = Z̃_1 + ∫_1^t f_φ(Z_τ, τ) dτ,

   f_θ and f_φ small CNNs (3×3 conv on [Z; τ], tanh, 3×3 conv). Each item of a batch has
   its own t, so the flows are integrated on a common grid s ∈ [0, 1] with τ = τ₀ +
   s (t − τ₀) (τ₀ = 0 forward, 1 backward): dZ/ds = (t − τ₀) f(Z, τ₀ + s (t − τ₀)), the
   same integral. ``torchdiffeq.odeint`` (or ``odeint_adjoint``, ``adjoint=True``) solves
   it with a fixed-step method (``ode_method`` rk4 or euler, ``ode_step`` in s), so the
   result is deterministic; at t = τ₀ the flow returns its start exactly. A 1×1
   convolution fuses [Z_{0→t}; Z_{1→t}] to Z_t ∈ ℝ^{c×h×w}.
3. **Implicit spatial representation.** The local implicit image function (LIIF; Chen,
   Liu and Wang, CVPR 2021) decodes Z_t at any coordinate x_q ∈ [−1, 1]² (pixel centres
   of an n-pixel axis at −1 + (2i + 1)/n, the same field of view at every resolution):

       Î_HRt(x_q) = Σ_γ (S^γ / S) g_ψ(z^γ, x_q − v^γ, cell),   S = Σ_γ S^γ,

   over the four latent codes z^γ nearest to x_q (centres v^γ), S^γ the area of the
   rectangle between x_q and the code diagonally opposite to γ (local ensemble), z^γ the
   3×3 neighbourhood of the code unfolded into one vector (feature unfolding), x_q − v^γ
   and the query's cell size (cell decoding) in units of latent pixels; g_ψ an MLP with
   ReLU hidden layers (``mlp_hidden``).

**Ablation of the ODE** (``temporal="linear"``; the VideoINR-style continuous space-time
baseline of the comparison in the abstract: Chen et al., CVPR 2022, with its flow-based
warping replaced by interpolation of the features): the same encoder and decoder, with the
temporal feature obtained by linear interpolation of the two oriented embeddings,

    Z_t = fuse((1 − t) Z̃_0 + t Z̃_1),

``fuse`` a 1×1 convolution (c + 1 → c channels; the direction channel becomes 1 − 2t and
so tells the decoder the time). It has no flow fields: the trajectory between the frames
is a straight line in feature space.

Coordinates are (row, column) pairs; cells are the query pixel's (height, width) in the
same [−1, 1] units (2/H, 2/W for an H × W output). :func:`render_slice` evaluates a whole
slice at any size and any t in tiles of at most ``max_queries`` queries, so memory stays
bounded. The neighbours are gathered by index (``torch.gather``, deterministic on CUDA
under ``torch.use_deterministic_algorithms``, unlike the backward of ``grid_sample``).

Defaults are smaller than LIIF's EDSR-baseline (64 channels, 16 blocks, MLP 4 × 256) so
that the model trains on a CPU; the abstract gives no sizes.
"""

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from bids_perfusion.constants import SUPERRES_TEMPORAL

#: Name of the model in weights files, model cards and ``bids-perfusion-train``.
MODEL_NAME = "superres"

#: Fixed-step solvers of torchdiffeq offered for the flows (deterministic).
ODE_METHODS = ("rk4", "euler")

#: Queries decoded at once by default (on the CPU): the decoder's MLP then multiplies
#: matrices of 4 × 1024 rows (four neighbours per query) whose activations (2 MiB) stay
#: in a core's cache; 64 times as many ran at half the speed (docs/superres.md,
#: *Inference time*).
CPU_MAX_QUERIES = 1024

#: Temporal models: the bi-directional neural ODE, or linear interpolation of the
#: features (the ablation; module docstring).
TEMPORAL_MODELS = SUPERRES_TEMPORAL


@dataclasses.dataclass(frozen=True)
class SuperResConfig:
    """Architecture of the super-resolution model, stored in its model card.

    temporal: 'ode' (the bi-directional neural ODE) or 'linear' (linear interpolation of
    the features, the ablation; the ``ode_*`` and ``adjoint`` fields are then unused);
    width: channels c of the latent features; encoder_blocks: residual blocks of the
    encoder; ode_hidden: channels of the hidden layer of f_θ and f_φ; ode_method: the
    fixed-step solver (rk4 or euler); ode_step: its step on the normalised flow time s ∈
    [0, 1]; adjoint: solve with ``odeint_adjoint`` (memory O(1) in the steps);
    mlp_hidden: hidden widths of g_ψ.
    """

    width: int = 32
    encoder_blocks: int = 4
    ode_hidden: int = 32
    ode_method: str = "rk4"
    ode_step: float = 0.25
    adjoint: bool = False
    mlp_hidden: tuple = (128, 128, 128, 128)
    temporal: str = "ode"

    def __post_init__(self):
        if self.temporal not in TEMPORAL_MODELS:
            raise ValueError(f"temporal must be one of {TEMPORAL_MODELS}, got "
                             f"{self.temporal!r}")
        if self.width < 1 or self.encoder_blocks < 0 or self.ode_hidden < 1:
            raise ValueError("width and ode_hidden must be positive, encoder_blocks >= 0")
        if self.ode_method not in ODE_METHODS:
            raise ValueError(f"ode_method must be one of {ODE_METHODS}, got "
                             f"{self.ode_method!r}")
        if not 0 < self.ode_step <= 1:
            raise ValueError(f"ode_step must be in (0, 1], got {self.ode_step}")
        if not self.mlp_hidden or min(self.mlp_hidden) < 1:
            raise ValueError(f"mlp_hidden must be positive widths, got {self.mlp_hidden}")

    def as_dict(self):
        return {**dataclasses.asdict(self), "mlp_hidden": list(self.mlp_hidden)}


class ResidualBlock(nn.Module):
    """x + conv(ReLU(conv(x))), 3×3 convolutions (EDSR, without batch normalisation)."""

    def __init__(self, width):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class Encoder(nn.Module):
    """E: (B, 1, h, w) -> (B, c, h, w): head conv, residual blocks and a tail conv with a
    global skip from the head (EDSR-baseline without its upsampler, as LIIF uses it)."""

    def __init__(self, width, blocks):
        super().__init__()
        self.head = nn.Conv2d(1, width, 3, padding=1)
        self.body = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)],
                                  nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x):
        head = self.head(x)
        return head + self.body(head)


class FlowField(nn.Module):
    """f(Z, τ): dZ/dτ of one flow, a CNN on [Z; τ] (τ a constant channel)."""

    def __init__(self, channels, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels + 1, hidden, 3, padding=1), nn.Tanh(),
                                 nn.Conv2d(hidden, channels, 3, padding=1))

    def forward(self, z, tau):
        """``tau``: (B,) times of the batch items."""
        plane = tau.to(z.dtype)[:, None, None, None].expand(-1, 1, *z.shape[-2:])
        return self.net(torch.cat([z, plane], dim=1))


class RescaledFlow(nn.Module):
    """The flow of one item from τ₀ to its t on the normalised time s ∈ [0, 1]:
    dZ/ds = (t − τ₀) f(Z, τ₀ + s (t − τ₀)). A module so that ``odeint_adjoint`` finds
    the parameters of ``field``."""

    def __init__(self, field, start, target):
        super().__init__()
        self.field, self.start, self.span = field, start, target - start

    def forward(self, s, z):
        span = self.span.to(z.dtype)
        return span[:, None, None, None] * self.field(z, self.start + s * span)


class LocalImplicitDecoder(nn.Module):
    """g_ψ with local ensemble, feature unfolding and cell decoding (LIIF; module
    docstring). ``forward(features, coords, cells)``: (B, c, h, w), (B, Q, 2), (B, Q, 2)
    -> (B, Q)."""

    def __init__(self, width, hidden):
        super().__init__()
        layers, previous = [], 9 * width + 4
        for size in hidden:
            layers += [nn.Linear(previous, size), nn.ReLU(inplace=True)]
            previous = size
        self.mlp = nn.Sequential(*layers, nn.Linear(previous, 1))

    def project(self, features):
        """W_z z + b of every latent code, (B, c, h, w) -> (B, h·w, n₁): the part of the
        first layer W [z; x_q − v; cell] + b that depends on the code only, computed
        once per code (h·w of them) rather than once per query and neighbour (4 Q), and
        once per feature map however many tiles of queries read it."""
        channels = features.shape[1]
        unfolded = F.unfold(features, 3, padding=1)  # (B, 9c, h·w)
        first = self.mlp[0]
        return F.linear(unfolded.transpose(1, 2), first.weight[:, :9 * channels],
                        first.bias)

    def query(self, projected, size, coords, cells):
        """Î(x_q) from the projected codes of :meth:`project` (latent grid ``size`` =
        (h, w)) at ``coords`` and ``cells`` (B, Q, 2) -> (B, Q). The four neighbours of
        every query are evaluated as one matrix of 4·B·Q rows, gathered by index."""
        h, w = size
        batch, n_queries, _ = coords.shape
        sizes = coords.new_tensor([h, w])
        # continuous latent index of each query: pixel i has its centre at i
        low = torch.floor((coords + 1) / 2 * sizes - 0.5)
        index = low[:, :, None] + coords.new_tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
        index = torch.minimum(index.clamp(min=0), sizes - 1)  # (B, Q, 4, 2)
        centre = -1 + (2 * index + 1) / sizes
        relative = (coords[:, :, None] - centre) * sizes / 2  # in latent pixels
        flat = (index[..., 0] * w + index[..., 1]).long()
        flat = flat + h * w * torch.arange(batch, device=flat.device)[:, None, None]
        code = projected.reshape(batch * h * w, -1).index_select(0, flat.reshape(-1))
        queries = torch.cat([relative, (cells * sizes / 2)[:, :, None].expand_as(relative)],
                            dim=-1)
        first, rest = self.mlp[0], self.mlp[1:]
        channels = (first.in_features - 4) // 9
        hidden = torch.addmm(code, queries.reshape(-1, 4), first.weight[:, 9 * channels:].t())
        predictions = rest(hidden).view(batch, n_queries, 4)
        # the weight of a code is the area of the rectangle of its diagonal opposite
        areas = (relative[..., 0] * relative[..., 1]).abs() + 1e-9
        return (predictions * areas.flip(-1)).sum(-1) / areas.sum(-1)

    def forward(self, features, coords, cells):
        return self.query(self.project(features), features.shape[-2:], coords, cells)


def batch_times(t, like):
    """``t`` (a scalar or (B,)) as a (B,) tensor of the dtype and device of ``like``
    (B, …)."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return t.expand(like.shape[0]) if t.dim() == 0 else t


class SuperResolution(nn.Module):
    """The bi-directional neural ODE + LIIF model, or its ablation with linearly
    interpolated features (``config.temporal``; module docstring).

    ``forward(frame0, frame1, t, coords, cells)``: frames (B, h, w), t (B,) in [0, 1],
    coords and cells (B, Q, 2) -> intensities (B, Q) of the frame at time t.
    """

    def __init__(self, config=None):
        super().__init__()
        self.config = config = config or SuperResConfig()
        self.encoder = Encoder(config.width, config.encoder_blocks)
        if config.temporal == "ode":
            self.forward_field = FlowField(config.width + 1, config.ode_hidden)
            self.backward_field = FlowField(config.width + 1, config.ode_hidden)
            self.fusion = nn.Conv2d(2 * (config.width + 1), config.width, 1)
        else:
            self.fusion = nn.Conv2d(config.width + 1, config.width, 1)
        self.decoder = LocalImplicitDecoder(config.width, config.mlp_hidden)

    def embed(self, frame, direction):
        """Z̃ = [E(I); d]: (B, h, w) -> (B, c + 1, h, w)."""
        return self.orient(self.encoder(frame[:, None]), direction)

    @staticmethod
    def orient(encoded, direction):
        """[Z; d]: the encoded frames (B, c, h, w) with the direction as a constant
        channel."""
        return torch.cat([encoded, torch.full_like(encoded[:, :1], float(direction))], dim=1)

    def _flow(self, field, start, oriented, t):
        """The flow of ``field`` from ``oriented`` at τ₀ = ``start`` to each item's t.
        Items with t = τ₀ keep their start (dZ/ds = 0 · f = 0) and are not integrated."""
        t = batch_times(t, oriented)
        moving = t != start
        if bool(moving.all()):
            return self._solve(field, start, oriented, t)
        out = oriented.clone()
        if bool(moving.any()):
            out[moving] = self._solve(field, start, oriented[moving], t[moving])
        return out

    def _solve(self, field, start, oriented, t):
        import torchdiffeq

        config = self.config
        dynamics = RescaledFlow(field, start, t)
        grid = torch.tensor([0.0, 1.0], dtype=oriented.dtype, device=oriented.device)
        solve = torchdiffeq.odeint_adjoint if config.adjoint else torchdiffeq.odeint
        options = {"step_size": config.ode_step}
        return solve(dynamics, oriented, grid, method=config.ode_method, options=options)[-1]

    def forward_flow(self, oriented0, t):
        """Z_{0→t}: the forward flow f_θ from Z̃_0 over (0, t)."""
        return self._flow(self.forward_field, 0.0, oriented0, t)

    def backward_flow(self, oriented1, t):
        """Z_{1→t}: the backward flow f_φ from Z̃_1 over (1, t)."""
        return self._flow(self.backward_field, 1.0, oriented1, t)

    @staticmethod
    def interpolated_features(oriented0, oriented1, t):
        """(1 − t) Z̃_0 + t Z̃_1: the temporal feature of the ablation (no ODE)."""
        t = batch_times(t, oriented0)[:, None, None, None]
        return (1 - t) * oriented0 + t * oriented1

    def features(self, frame0, frame1, t):
        """Z_t: the fused latent features at time ``t`` (scalar or (B,)), (B, c, h, w)."""
        return self.temporal_features(self.embed(frame0, 1.0), self.embed(frame1, -1.0), t)

    def temporal_features(self, oriented0, oriented1, t):
        """Z_t from the oriented embeddings Z̃₀, Z̃₁ of the two frames (B, c + 1, h, w):
        the fused flows, or the fused interpolation of the ablation."""
        if self.config.temporal == "linear":
            return self.fusion(self.interpolated_features(oriented0, oriented1, t))
        forward = self.forward_flow(oriented0, t)
        backward = self.backward_flow(oriented1, t)
        return self.fusion(torch.cat([forward, backward], dim=1))

    def decode(self, features, coords, cells):
        """Î(x_q) of the features at the query coordinates: (B, Q)."""
        return self.decoder(features, coords, cells)

    def forward(self, frame0, frame1, t, coords, cells):
        return self.decode(self.features(frame0, frame1, t), coords, cells)


def grid_coordinates(height, width, device=None):
    """Pixel centres of an H × W grid over [−1, 1]², (H·W, 2) as (row, column), and the
    cell of its pixels, (2/H, 2/W)."""
    rows = -1 + (2 * torch.arange(height, device=device, dtype=torch.float32) + 1) / height
    cols = -1 + (2 * torch.arange(width, device=device, dtype=torch.float32) + 1) / width
    coords = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).reshape(-1, 2)
    return coords, torch.tensor([2 / height, 2 / width], device=device)


@torch.inference_mode()
def render_slice(model, frame0, frame1, t, size, max_queries=CPU_MAX_QUERIES):
    """The frame at time ``t`` ∈ [0, 1] between two low-resolution frames (h, w) of one
    slice, rendered at ``size`` = (H, W) (any integers: non-integer scales too).

    The features Z_t and their projection by the decoder's first layer are computed
    once; the H·W queries are decoded in tiles of at most
    ``max_queries``, so memory is bounded whatever the output size. Returns (H, W) on the
    frames' device.
    """
    if not 0 <= float(t) <= 1:
        raise ValueError(f"t must be in [0, 1], got {t}")
    features = model.features(frame0[None], frame1[None], float(t))
    projected = model.decoder.project(features)
    coords, cell = grid_coordinates(*size, device=frame0.device)
    out = [model.decoder.query(projected, features.shape[-2:], tile[None],
                               cell.expand_as(tile[None]))[0]
           for tile in coords.split(max_queries)]
    return torch.cat(out).reshape(size)


def load_model(path=None, device="cpu"):
    """The model of a weights file (default: the bundled one, trained on phantom data) in
    evaluation mode, and its model card.

    The file is checked against its card's sha256 (:func:`bids_perfusion.nn.weights.
    load_weights`); the architecture, the temporal model included, is the card's
    configuration.
    """
    from bids_perfusion.nn.weights import bundled_weights, config_from_dict, load_weights

    state, card = load_weights(path or bundled_weights(MODEL_NAME), expected_model=MODEL_NAME)
    model = SuperResolution(config_from_dict(SuperResConfig, card["configuration"]))
    model.load_state_dict(state)
    return model.to(device).eval(), card


def parameter_count(model):
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def l1_loss(model, batch):
    """Mean absolute error of the queried intensities (the L1 loss of LIIF's training).

    ``batch`` holds ``frame0``, ``frame1`` (B, h, w), ``t`` (B,), ``coords``, ``cells``
    (B, Q, 2) and ``values`` (B, Q), normalised intensities.
    """
    prediction = model(batch["frame0"], batch["frame1"], batch["t"], batch["coords"],
                       batch["cells"]).float()
    return (prediction - batch["values"].float()).abs().mean()

