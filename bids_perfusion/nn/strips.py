r"""Strips of a slice: sampling with a stride and reassembly by averaging.

After the stU-Net paper (Veron Vialard et al. 2021, hal-03128610, §3): the network reads
"strips", rectangular 2-D patches of a slice, with all their frames. Here a strip is the
slab of ``width`` consecutive rows ``[s, s + width)`` of a slice (all columns, all frames).
Training strips start every ``stride`` = 8 rows, test strips every row (stride 1), and
the predictions of overlapping strips are averaged:

.. math::

    \hat y(i, j) = \frac{1}{|\{s : s \le i < s + w\}|} \sum_{s \le i < s + w} \hat y_s(i - s, j).

The start positions are ``0, stride, 2·stride, ...`` plus ``size − width`` when the
stride does not land on it, so every row is covered by at least one strip; averaging
a constant field returns it exactly. Training strips may be augmented by random flips
of their rows and columns (:func:`flip_strips`).
"""

import numpy as np


def strip_starts(size, width, stride):
    """First rows (n,) of the strips of ``width`` rows over ``size`` rows, every ``stride``.

    The last strip ends at the last row and ``stride <= width``, so every row is covered.
    """
    if not 1 <= width <= size:
        raise ValueError(f"strip width must be in [1, {size}], got {width}")
    if not 1 <= stride <= width:
        raise ValueError(f"stride must be in [1, width={width}], got {stride}: wider strides "
                         "would leave rows uncovered")
    starts = list(range(0, size - width + 1, stride))
    if starts[-1] != size - width:
        starts.append(size - width)
    return np.asarray(starts)


def extract_strips(image, width, stride):
    """Strips (n, width, ...) of ``image`` (rows, ...) and their first rows (n,)."""
    image = np.asarray(image)
    starts = strip_starts(image.shape[0], width, stride)
    return np.stack([image[s:s + width] for s in starts]), starts


def assemble_strips(strips, starts, size):
    """Average of overlapping strips (n, width, ...) placed at ``starts``: (size, ...)."""
    strips = np.asarray(strips, dtype=np.float64)
    width = strips.shape[1]
    total = np.zeros((size, *strips.shape[2:]))
    count = np.zeros(size)
    for strip, start in zip(strips, starts, strict=True):
        total[start:start + width] += strip
        count[start:start + width] += 1
    if np.any(count == 0):
        raise ValueError("the strips do not cover every row")
    return total / count.reshape((size,) + (1,) * (strips.ndim - 2))


def predict_slices(model, dsc, mask, width, stride=1, batch_size=64, device=None):
    """Map (X, Y, Z) of a strip model applied to every slice of ``dsc`` (X, Y, Z, T).

    Slices without a voxel in ``mask`` (X, Y, Z) are skipped (0); the others are cut into
    strips of ``width`` rows every ``stride`` rows, predicted in batches, and averaged
    (:func:`assemble_strips`). The model takes (B, width, Y, T) and returns (B, width, Y).
    Strips are cut for as many slices as fill about one batch at a time, so memory does
    not grow with the number of slices.
    """
    import torch

    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    out = np.zeros(dsc.shape[:3], dtype=np.float32)
    slices = [z for z in range(dsc.shape[2]) if np.any(mask[..., z])]
    starts = strip_starts(dsc.shape[0], width, stride)
    group = max(1, batch_size // len(starts))
    with torch.inference_mode():
        for first in range(0, len(slices), group):
            chosen = slices[first:first + group]
            strips = np.concatenate([extract_strips(np.asarray(dsc[:, :, z], np.float32),
                                                    width, stride)[0] for z in chosen])
            predictions = np.concatenate([
                model(torch.from_numpy(strips[i:i + batch_size]).to(device)).float().cpu().numpy()
                for i in range(0, len(strips), batch_size)])
            for k, z in enumerate(chosen):
                out[:, :, z] = assemble_strips(predictions[k * len(starts):(k + 1) * len(starts)],
                                               starts, dsc.shape[0])
    return out


def flip_strips(batch, generator):
    """Training batch with each strip flipped, at random, along its rows and its columns.

    ``batch`` holds tensors (B, H, W, ...) that share their strips' geometry (``dsc``,
    ``cbv``, ``mask``); each strip is reversed along H with probability ½ and along W
    with probability ½, independently, the same way in every tensor. A strip model is
    meant to be equivariant to these mirror images (the hemispheres of a brain are
    mirror images of each other, and so are the two edges of a strip), so the flips add
    training views without new data. The draws use ``generator`` (CPU), so a seeded
    training run is reproducible.
    """
    import torch

    n = len(next(iter(batch.values())))
    flips = torch.rand(n, 2, generator=generator) < 0.5
    out = {}
    for key, value in batch.items():
        shape = (n,) + (1,) * (value.ndim - 1)
        for axis in (0, 1):
            chosen = flips[:, axis].to(value.device).reshape(shape)
            value = torch.where(chosen, value.flip(axis + 1), value)
        out[key] = value
    return out
