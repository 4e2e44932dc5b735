r"""Spatio-temporal U-Net (stU-Net): CBV from raw, possibly low-dose, DSC strips.

After Veron Vialard et al., "Going beyond voxel-wise deconvolution in perfusion MRI:
learning and leveraging spatio-temporal regularities with the stU-Net" (2021,
hal-03128610, §3, Fig. 3). A hybrid 2/3-D U-Net
(Ronneberger et al., MICCAI 2015) maps a strip of a standardised DSC series,
x ∈ ℝ^{H×W×T} (rows × columns × frames, :mod:`bids_perfusion.nn.strips`), to the strip
of the standardised CBV map, ŷ ∈ ℝ^{H×W}:

- **3-D encoder** over (x, y, t). Level ℓ = 0..L−1 is a convolution with an anisotropic
  3×3×7 kernel, stride 1 (``temporal_kernel`` = 7), batch normalisation and ReLU, with
  ``widths[ℓ]`` channels; between levels, a 2×2×4 convolution with stride (2, 2, 4) halves
  the rows and columns and divides the frames by 4 (frames are padded by replication to a
  multiple of 4 first, so any number of frames works).
- **Skip connections** reduce the (2+1)-D features of each level to 2-D by a max-pool over
  the whole temporal axis: ``s_ℓ(x, y) = max_t f_ℓ(x, y, t)``.
- **2-D decoder**: from the deepest level, a 2×2 transposed convolution with stride 2
  (zero-padded to the skip's size when a size was odd), concatenation with ``s_ℓ``, and a
  5×5 convolution (``decoder_kernel``), batch normalisation and ReLU; a final 1×1
  convolution gives ŷ.

Training (paper §3): L2 loss between ŷ and the standardised reference CBV, Adam with
default hyper-parameters; here the squared error is averaged over the brain voxels of the
strip only (``mask``), since outside the brain the reference is undefined.

Defaults: ``widths = (8, 16, 32)`` (3 levels, 2 downsamplings): 110 265 parameters, see
:func:`parameter_count`; the paper gives neither widths nor depth. The bundled weights
use these defaults at an in-plane size of 64 (the paper: 256), so that they train on a
CPU in minutes (``docs/stunet.md``).
"""

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

#: Name of the model in weights files, model cards and ``bids-perfusion-train``.
MODEL_NAME = "stunet"


@dataclasses.dataclass(frozen=True)
class StUNetConfig:
    """Architecture of a stU-Net, stored in its model card.

    widths: channels of the encoder levels (its length is the depth); temporal_kernel:
    frames of the 3×3×t stride-1 kernels (paper: 7); temporal_stride: frames of the
    2×2×s kernels and their temporal stride (paper: 4); decoder_kernel: size of the 2-D
    decoder convolutions (paper: 5).
    """

    widths: tuple = (8, 16, 32)
    temporal_kernel: int = 7
    temporal_stride: int = 4
    decoder_kernel: int = 5

    def __post_init__(self):
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be positive channel counts, got {self.widths}")
        if self.temporal_kernel % 2 == 0 or self.decoder_kernel % 2 == 0:
            raise ValueError("temporal_kernel and decoder_kernel must be odd")
        if self.temporal_stride < 1:
            raise ValueError("temporal_stride must be at least 1")

    def as_dict(self):
        return {**dataclasses.asdict(self), "widths": list(self.widths)}


def temporal_max_pool(features):
    """Skip connection: (B, C, H, W, T) -> (B, C, H, W), the maximum over frames."""
    return features.amax(dim=-1)


class StUNet(nn.Module):
    """The stU-Net (module docstring). ``forward(x)``: (B, H, W, T) -> (B, H, W)."""

    def __init__(self, config=None):
        super().__init__()
        self.config = config = config or StUNetConfig()
        k, s = config.temporal_kernel, config.temporal_stride
        self.encoder = nn.ModuleList()
        self.downsample = nn.ModuleList()
        previous = 1
        for level, width in enumerate(config.widths):
            self.encoder.append(nn.Sequential(
                nn.Conv3d(previous, width, (3, 3, k), padding=(1, 1, k // 2)),
                nn.BatchNorm3d(width), nn.ReLU(inplace=True)))
            if level + 1 < len(config.widths):
                self.downsample.append(nn.Sequential(
                    nn.Conv3d(width, config.widths[level + 1], (2, 2, s), stride=(2, 2, s)),
                    nn.ReLU(inplace=True)))
            previous = config.widths[level + 1] if level + 1 < len(config.widths) else width
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        p = config.decoder_kernel
        for level in reversed(range(len(config.widths) - 1)):
            width = config.widths[level]
            self.upsample.append(nn.ConvTranspose2d(config.widths[level + 1], width, 2, stride=2))
            self.decoder.append(nn.Sequential(
                nn.Conv2d(2 * width, width, p, padding=p // 2),
                nn.BatchNorm2d(width), nn.ReLU(inplace=True)))
        self.head = nn.Conv2d(config.widths[0], 1, 1)

    def _pad_frames(self, features):
        """Replicate the last frame so that the frames are a multiple of the stride."""
        extra = -features.shape[-1] % self.config.temporal_stride
        if not extra:
            return features
        return torch.cat([features, features[..., -1:].expand(*features.shape[:-1], extra)],
                         dim=-1)

    def forward(self, x):
        features = x[:, None]
        skips = []
        for level, block in enumerate(self.encoder):
            features = block(features)
            skips.append(temporal_max_pool(features))
            if level < len(self.downsample):
                features = self.downsample[level](self._pad_frames(features))
        out = skips.pop()
        for upsample, block in zip(self.upsample, self.decoder, strict=True):
            skip = skips.pop()
            out = upsample(out)
            rows, columns = skip.shape[-2] - out.shape[-2], skip.shape[-1] - out.shape[-1]
            out = F.pad(out, (0, columns, 0, rows))
            out = block(torch.cat([out, skip], dim=1))
        return self.head(out)[:, 0]


def parameter_count(model):
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def masked_l2(model, batch):
    """Mean squared error over the brain voxels of the strips (paper §3: the L2 loss).

    ``batch`` holds ``dsc`` (B, H, W, T), ``cbv`` (B, H, W) and ``mask`` (B, H, W).
    Shared by every strip model (stU-Net and the baseline of Hess et al.).
    """
    prediction = model(batch["dsc"]).float()
    mask = batch["mask"].float()
    return ((prediction - batch["cbv"].float()) ** 2 * mask).sum() / mask.sum().clamp(min=1)
