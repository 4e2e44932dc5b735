r"""The baseline of Hess et al. (2018): a per-voxel sequence encoder and a 2-D spatial module.

Hess A, Meier R, Kaesmacher J, et al., "Synthetic perfusion maps: imaging perfusion
deficits in DSC-MRI with deep learning", MICCAI Brainlesion workshop 2018, pp. 447-455;
as described by the stU-Net paper (Veron Vialard et al. 2021, hal-03128610, §1 and [8]), which
compares against it: a **sequence encoder** of 1-D convolutions reads the time curve of
every voxel on its own, and a **spatial correlation** module of 2-D convolutions then
combines the voxels' features. The stU-Net generalises it by mixing space and time from
the first layer. Reimplemented from that description (the original code is not public):

- sequence encoder: ``len(temporal_widths)`` blocks of Conv1d (kernel
  ``temporal_kernel``, stride 1), ReLU and max-pooling by 2 over time, then the maximum
  over the remaining frames: one feature vector f(x, y) per voxel;
- spatial correlation: ``len(spatial_widths)`` blocks of 3×3 Conv2d, batch normalisation
  and ReLU, then a 1×1 convolution to the map.

It reads the same standardised strips and is trained with the same loss
(:func:`bids_perfusion.nn.stunet.masked_l2`) as the stU-Net.
"""

import dataclasses

from torch import nn

#: Name of the model in weights files, model cards and ``bids-perfusion-train``.
MODEL_NAME = "hess"


@dataclasses.dataclass(frozen=True)
class HessConfig:
    """Architecture of the baseline: temporal_widths and temporal_kernel of the sequence
    encoder, spatial_widths and spatial_kernel of the spatial correlation module."""

    temporal_widths: tuple = (16, 32)
    temporal_kernel: int = 7
    spatial_widths: tuple = (32, 32)
    spatial_kernel: int = 3

    def __post_init__(self):
        if not self.temporal_widths or not self.spatial_widths:
            raise ValueError("temporal_widths and spatial_widths must not be empty")
        if self.temporal_kernel % 2 == 0 or self.spatial_kernel % 2 == 0:
            raise ValueError("kernels must be odd")

    def as_dict(self):
        return {**dataclasses.asdict(self), "temporal_widths": list(self.temporal_widths),
                "spatial_widths": list(self.spatial_widths)}


class Hess(nn.Module):
    """Sequence encoder then spatial correlation. ``forward(x)``: (B, H, W, T) -> (B, H, W)."""

    def __init__(self, config=None):
        super().__init__()
        self.config = config = config or HessConfig()
        k, blocks, previous = config.temporal_kernel, [], 1
        for width in config.temporal_widths:
            blocks += [nn.Conv1d(previous, width, k, padding=k // 2), nn.ReLU(inplace=True),
                       nn.MaxPool1d(2, ceil_mode=True)]
            previous = width
        self.sequence_encoder = nn.Sequential(*blocks)
        p, blocks = config.spatial_kernel, []
        for width in config.spatial_widths:
            blocks += [nn.Conv2d(previous, width, p, padding=p // 2), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            previous = width
        blocks.append(nn.Conv2d(previous, 1, 1))
        self.spatial_correlation = nn.Sequential(*blocks)

    def forward(self, x):
        b, h, w, t = x.shape
        features = self.sequence_encoder(x.reshape(b * h * w, 1, t)).amax(dim=-1)
        features = features.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        return self.spatial_correlation(features)[:, 0]
