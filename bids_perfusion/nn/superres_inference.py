r"""Super-resolution of a whole DSC series: by the neural-ODE + LIIF model
(:mod:`bids_perfusion.nn.superres`) or by interpolation, on the same output grid.

An acquired series (h, w, z, T) with repetition time TR becomes (H, W, z, T′) with
H = round(s·h), W = round(s·w) (s, the in-plane scale, need not be an integer) and
T′ = s_t·(T − 1) + 1 frames at the interval TR/s_t: output frame j lies at
t = j/s_t in units of acquired frames, between acquired frames k = ⌊j/s_t⌋ and k + 1.
In plane, both grids cover the same field of view: output pixel centres lie at
−1 + (2i + 1)/H in the [−1, 1] coordinates of :mod:`~bids_perfusion.nn.superres`, that is
at (i + ½)/s − ½ acquired pixels. Slices are not changed. :func:`output_affine` gives
the affine of that grid and :func:`resample_nearest` carries masks onto it.

- :func:`super_resolve` renders every output frame of every slice with the model: each
  acquired frame is encoded once; the latent features Z_t of the s_t times between each
  pair of acquired frames are computed in one batch and projected once by the first
  layer of the decoder, then decoded in tiles of at most ``max_queries`` queries (over
  the batch), so memory stays bounded at any output size. Intensities are divided by
  the series' baseline scale (:func:`~bids_perfusion.nn.superres_data.baseline_scale`),
  as in training, and multiplied back; negative outputs, impossible for magnitude images, become 0.
- :func:`interpolate` is the classical baseline on the same grid: in plane, spline
  interpolation of order 1 (bilinear) or 3 (cubic B-spline) between pixel centres
  (``scipy.ndimage.zoom`` with ``grid_mode=True``), then along time between the acquired
  frames (linear or cubic spline), edges replicated.
- :func:`acquired_frames_nmse` checks a super-resolved series against what was acquired:
  its frames at the acquired times, brought back to the acquired grid, should reproduce
  the acquired frames (a model applied to data unlike its training data does not).
"""

import numpy as np

#: Interpolation orders of :func:`interpolate` by name.
INTERPOLATION_ORDERS = {"linear": 1, "cubic": 3}


def output_shape(shape, space, time):
    """Shape (H, W, z, T′) of the super-resolved series of a series of ``shape``
    (h, w, z, T) at in-plane scale ``space`` and temporal factor ``time`` (module
    docstring)."""
    rows, cols, slices, frames = shape
    if space <= 0 or int(time) != time or time < 1:
        raise ValueError(f"the in-plane scale must be positive and the temporal factor a "
                         f"positive integer (got {space}, {time})")
    if frames < 2:
        raise ValueError(f"super-resolution in time needs two frames or more, got {frames}")
    return (round(rows * space), round(cols * space), slices,
            int(time) * (frames - 1) + 1)


def output_affine(affine, shape, new_shape):
    """The affine of the super-resolved grid ``new_shape`` of an image of ``shape`` and
    ``affine``: the same field of view, output voxel (i, j) at input voxel coordinates
    ((i + ½)·h/H − ½, (j + ½)·w/W − ½), slices unchanged."""
    ratio = np.array([shape[0] / new_shape[0], shape[1] / new_shape[1], 1.0])
    to_input = np.diag([*ratio, 1.0])
    to_input[:3, 3] = (ratio - 1) / 2
    return np.asarray(affine, dtype=np.float64) @ to_input


def resample_nearest(volume, new_shape):
    """A volume (h, w, z, ...) on the super-resolved grid (H, W, z) by nearest neighbour:
    output pixel i takes input pixel ⌊(i + ½)·h/H⌋ (masks and labels)."""
    rows = ((np.arange(new_shape[0]) + 0.5) * volume.shape[0] / new_shape[0]).astype(int)
    cols = ((np.arange(new_shape[1]) + 0.5) * volume.shape[1] / new_shape[1]).astype(int)
    return volume[rows][:, cols]


def interpolate(series, space, time, method="linear"):
    """The series (h, w, z, T) on the super-resolved grid (module docstring) by
    interpolation of order ``method`` ('linear' or 'cubic') in plane and in time.
    Returns float32 (H, W, z, T′)."""
    from scipy import ndimage

    if method not in INTERPOLATION_ORDERS:
        raise ValueError(f"method must be one of {tuple(INTERPOLATION_ORDERS)}, got "
                         f"{method!r}")
    order = INTERPOLATION_ORDERS[method]
    shape = output_shape(series.shape, space, time)
    series = np.asarray(series, dtype=np.float32)
    zoom = (shape[0] / series.shape[0], shape[1] / series.shape[1])
    out = np.empty(shape, dtype=np.float32)
    for z in range(shape[2]):
        plane = ndimage.zoom(series[:, :, z], (*zoom, 1), order=order, mode="nearest",
                             grid_mode=True)
        out[:, :, z] = ndimage.zoom(plane, (1, 1, shape[3] / series.shape[3]),
                                    order=order, mode="nearest", grid_mode=False)
    return out


def super_resolve(model, series, space, time, baseline_frames=3, device="cpu",
                  max_queries=None, progress=None):
    """The series (h, w, z, T) on the super-resolved grid (module docstring) rendered by
    a trained :class:`~bids_perfusion.nn.superres.SuperResolution` ``model``.

    ``baseline_frames``: the frames of the acquired series whose mean scales its
    intensities (the model card's ``degradation.baseline_frames``); ``progress``: called
    with the number of slices done after each slice; ``max_queries``: queries decoded at
    once (over the batch of times; default
    :data:`~bids_perfusion.nn.superres.CPU_MAX_QUERIES`). Returns float32 (H, W, z, T′).
    """
    import torch

    from bids_perfusion.nn.superres import CPU_MAX_QUERIES, grid_coordinates
    from bids_perfusion.nn.superres_data import baseline_scale

    shape = output_shape(series.shape, space, time)
    time = int(time)
    max_queries = max_queries or CPU_MAX_QUERIES
    series = np.asarray(series, dtype=np.float32)
    scale = baseline_scale(series, baseline_frames)
    model = model.to(device).eval()
    coords, cell = grid_coordinates(shape[0], shape[1], device=device)
    steps = torch.arange(time, dtype=torch.float32, device=device) / time
    tile = max(1, max_queries // (time + 1))
    out = np.empty(shape, dtype=np.float32)
    with torch.inference_mode():
        for z in range(shape[2]):
            frames = torch.from_numpy(series[:, :, z] / scale).to(device).permute(2, 0, 1)
            # each acquired frame is encoded once, whatever the pairs that read it
            encoded = torch.cat([model.encoder(chunk[:, None])
                                 for chunk in frames.split(time)])
            for k in range(series.shape[3] - 1):
                # the s_t frames k + j/s_t, j = 0 … s_t − 1, in one batch; the last
                # acquired frame is frame k + 1 of the last pair at t = 1
                last = k == series.shape[3] - 2
                t = torch.cat([steps, steps.new_ones(1)]) if last else steps
                features = model.temporal_features(
                    model.orient(encoded[k:k + 1], 1.0).expand(len(t), -1, -1, -1),
                    model.orient(encoded[k + 1:k + 2], -1.0).expand(len(t), -1, -1, -1), t)
                projected = model.decoder.project(features)
                decoded = [model.decoder.query(projected, features.shape[-2:],
                                               query.expand(len(t), -1, -1),
                                               cell.expand(len(t), len(query), -1))
                           for query in coords.split(tile)]
                block = torch.cat(decoded, dim=1).reshape(len(t), shape[0], shape[1])
                out[:, :, z, time * k:time * k + len(t)] = (
                    block.clamp(min=0).permute(1, 2, 0).float().cpu().numpy() * scale)
            if progress is not None:
                progress(z + 1)
    return out


def acquired_frames_nmse(series, superresolved, time, bright_fraction=0.1):
    """Normalised mean squared error Σ(Ŝ − S)² / Σ S² between the acquired series S
    (h, w, z, T) and the super-resolved one at the acquired times (every ``time``-th
    frame) brought back to the acquired grid Ŝ (bilinear at the acquired pixel centres:
    the mean of each 2 × 2 block at a scale of 2), over the voxels whose mean is above
    ``bright_fraction`` of the brightest (the head)."""
    from scipy import ndimage

    series = np.asarray(series, dtype=np.float32)
    frames = superresolved[..., ::int(time)]
    if frames.shape[-1] != series.shape[-1]:
        raise ValueError(f"{superresolved.shape[-1]} super-resolved frames do not match "
                         f"{series.shape[-1]} acquired frames at a factor of {time}")
    zoom = (series.shape[0] / frames.shape[0], series.shape[1] / frames.shape[1], 1, 1)
    back = ndimage.zoom(frames, zoom, order=1, mode="nearest", grid_mode=True)
    mean = series.mean(axis=-1)
    head = mean > bright_fraction * mean.max()
    return float(((back - series)[head] ** 2).sum() / (series[head] ** 2).sum())
