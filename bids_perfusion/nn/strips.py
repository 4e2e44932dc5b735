r"""Strips of a slice: sampling with a stride and reassembly by averaging.

After the stU-Net paper (``seeds/stunet-lowdose-dsc.txt``, §3): the network reads
"strips", rectangular 2-D patches of a slice, with all their frames. Here a strip is the
slab of ``width`` consecutive rows ``[s, s + width)`` of a slice (all columns, all frames).
Training strips start every ``stride`` = 8 rows, test strips every row (stride 1), and
the predictions of overlapping strips are averaged:

.. math::

    \hat y(i, j) = \frac{1}{|\{s : s \le i < s + w\}|} \sum_{s \le i < s + w} \hat y_s(i - s, j).

The start positions are ``0, stride, 2·stride, ...`` plus ``size − width`` when the
stride does not land on it, so every row is covered by at least one strip; averaging
a constant field returns it exactly.
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
    """
    import torch

    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    dsc = np.asarray(dsc, dtype=np.float32)
    out = np.zeros(dsc.shape[:3], dtype=np.float32)
    slices = [z for z in range(dsc.shape[2]) if np.any(mask[..., z])]
    if not slices:
        return out
    pieces, index = [], []
    for z in slices:
        strips, starts = extract_strips(dsc[:, :, z], width, stride)
        pieces.append(strips)
        index.append((z, starts))
    strips = np.concatenate(pieces)
    predictions = np.empty(strips.shape[:3], dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(strips), batch_size):
            block = torch.from_numpy(strips[start:start + batch_size]).to(device)
            predictions[start:start + batch_size] = model(block).float().cpu().numpy()
    offset = 0
    for z, starts in index:
        out[:, :, z] = assemble_strips(predictions[offset:offset + len(starts)], starts,
                                       dsc.shape[0])
        offset += len(starts)
    return out
