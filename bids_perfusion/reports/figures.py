"""Report figures as SVG: pure functions from arrays to a file, deterministic to the byte.

Every function takes numpy arrays (no file reading) and writes one SVG. Volumes are in
RAS+ voxel order (``nibabel.as_closest_canonical``): axial slices are shown in the
neurological convention (patient's left on the left of the image, anterior up).

Figures are built on :class:`matplotlib.figure.Figure` without pyplot, so no global
backend is chosen or changed, and saved with a fixed ``svg.hashsalt`` and no date, so
that writing the same arrays twice gives identical files. Matplotlib is imported inside
the functions: importing this module costs nothing.
"""

from contextlib import contextmanager

import numpy as np

#: Matplotlib settings of every figure: fixed SVG ids, text kept as text, small fonts.
RC = {
    "svg.hashsalt": "bids-perfusion",
    "svg.fonttype": "none",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    # titles at the top of their axes, where matplotlib's automatic placement puts them
    # when no tick label is above the axes (none here), without measuring every artist
    "axes.titley": 1.0,
}

#: Colours of the mask overlays, in the order masks are drawn (later ones on top).
MASK_COLOURS = ("#1e90ff", "#ff3030", "#32cd32", "#ffa500", "#9467bd", "#8c564b")


@contextmanager
def _figure(width, height, layout="constrained"):
    """A pyplot-free :class:`Figure` under :data:`RC` (no pyplot: nothing keeps it once
    the block ends, so it is not cleared, which would rebuild its axes)."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):
        yield Figure(figsize=(width, height), layout=layout)


def _margins(figure, *, left=0.7, right=0.15, bottom=0.45, top=0.3, hspace=0.12):
    """Fixed margins of a figure of curves, in inches (room for the tick labels and axis
    labels of 8-point text, the title above): much cheaper than the constrained layout,
    which measures every text of the figure to place the same axes."""
    width, height = figure.get_size_inches()
    figure.subplots_adjust(left=left / width, right=1 - right / width,
                           bottom=bottom / height, top=1 - top / height, hspace=hspace)


def _save(figure, path):
    """Write ``figure`` as SVG without a date (and with the fixed hash salt of :data:`RC`)."""
    import matplotlib

    with matplotlib.rc_context(RC):
        figure.savefig(path, format="svg", metadata={"Date": None})
    return str(path)


def robust_range(values, low=2.0, high=98.0, symmetric=False):
    """Display range ``(vmin, vmax)``: the ``low`` and ``high`` percentiles of the finite values.

    ``symmetric`` gives ``(-m, m)`` with ``m`` the ``high`` percentile of ``|values|``
    (for signed maps such as K2). A degenerate range is widened so that ``vmin < vmax``;
    no finite value gives ``(0, 1)``.
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    if symmetric:
        m = float(np.percentile(np.abs(values), high))
        vmin, vmax = -m, m
    else:
        vmin, vmax = (float(v) for v in np.percentile(values, [low, high]))
    if not vmax > vmin:
        pad = abs(vmax) * 0.05 or 1.0
        vmin, vmax = vmin - pad, vmax + pad
    return vmin, vmax


def pick_slices(mask, n_slices=12, min_voxels=1):
    """Up to ``n_slices`` axial indices, evenly spread over the slices where ``mask`` holds
    at least ``min_voxels`` voxels (over all slices when it holds none)."""
    mask = np.asarray(mask, dtype=bool)
    counts = mask.reshape(-1, mask.shape[2]).sum(axis=0)
    candidates = np.flatnonzero(counts >= min_voxels)
    if candidates.size == 0:
        candidates = np.arange(mask.shape[2])
    if candidates.size <= n_slices:
        return [int(k) for k in candidates]
    positions = np.linspace(0, candidates.size - 1, n_slices).round().astype(int)
    return [int(k) for k in candidates[np.unique(positions)]]


def _tile(volume, slices, n_columns, fill=np.nan):
    """Axial slices side by side (rows of ``n_columns``), anterior up: a 2-D array to show
    with ``origin='lower'``; also the (x, y) offsets of each tile's lower left corner."""
    nx, ny = volume.shape[:2]
    n_rows = -(-len(slices) // n_columns)
    tail = volume.shape[3:]
    canvas = np.full((n_rows * ny, n_columns * nx, *tail), fill, dtype=float)
    offsets = []
    for index, k in enumerate(slices):
        row, column = divmod(index, n_columns)
        y0 = (n_rows - 1 - row) * ny  # first slice on the top row
        x0 = column * nx
        canvas[y0:y0 + ny, x0:x0 + nx] = np.swapaxes(volume[:, :, k], 0, 1)
        offsets.append((x0, y0))
    return canvas, offsets


#: Montage layout, fixed in inches (faster than a layout engine): figure width, room
#: above for the title, below for the legend (masks) and on the right for the colour bar.
MONTAGE_WIDTH, TITLE_ROOM, LEGEND_ROOM, COLOURBAR_ROOM = 7.0, 0.3, 0.35, 0.9


def _montage_layout(canvas, zooms, colourbar):
    """``(height, axes box, colour bar box)`` of a montage figure: inches, then
    [left, bottom, width, height] in figure fractions; the axes hold ``canvas`` at its
    aspect ratio."""
    right = COLOURBAR_ROOM if colourbar else 0.05
    bottom = 0.05 if colourbar else LEGEND_ROOM
    width = MONTAGE_WIDTH - right - 0.05
    ratio = canvas.shape[0] * zooms[1] / (canvas.shape[1] * zooms[0])
    height = min(width * ratio, 10.0)
    total = height + TITLE_ROOM + bottom
    axes = (0.05 / MONTAGE_WIDTH, bottom / total, width / MONTAGE_WIDTH, height / total)
    bar = ((MONTAGE_WIDTH - right + 0.1) / MONTAGE_WIDTH, (bottom + 0.1 * height) / total,
           0.12 / MONTAGE_WIDTH, 0.8 * height / total)
    return total, axes, bar


def _montage_axes(figure, canvas, aspect, box):
    axes = figure.add_axes(box)
    axes.set_axis_off()
    axes.set_facecolor("black")
    axes.set_xlim(-0.5, canvas.shape[1] - 0.5)
    axes.set_ylim(-0.5, canvas.shape[0] - 0.5)
    axes.set_aspect(aspect)
    return axes


def _label_slices(axes, slices, offsets, ny):
    for k, (x0, y0) in zip(slices, offsets, strict=True):
        axes.text(x0 + 1, y0 + ny - 2, f"z={k}", color="white", fontsize=6,
                  va="top", ha="left")


def map_montage(path, data, mask=None, *, title="", units="", cmap="inferno",
                vrange=None, symmetric=False, n_slices=12, n_columns=6, zooms=(1.0, 1.0)):
    """Montage of axial slices of a 3-D map with a colour bar, written as SVG to ``path``.

    Voxels outside ``mask`` (the brain) and non-finite voxels are not shown. The display
    range is ``vrange`` or :func:`robust_range` of the voxels in the mask (2nd to 98th
    percentile; symmetric about 0 with ``symmetric``). ``zooms`` are the in-plane voxel
    sizes (x, y) in mm, for the aspect ratio. Returns ``path`` as a string.
    """
    data = np.asarray(data, dtype=float)
    if data.ndim != 3:
        raise ValueError(f"map_montage needs a 3-D map, got shape {data.shape}")
    mask = np.isfinite(data) if mask is None else np.asarray(mask, dtype=bool) & np.isfinite(data)
    vmin, vmax = vrange if vrange is not None else robust_range(data[mask], symmetric=symmetric)
    slices = pick_slices(mask, n_slices)
    n_columns = min(n_columns, len(slices))
    canvas, offsets = _tile(np.where(mask, data, np.nan), slices, n_columns)
    import matplotlib as mpl

    colours = mpl.colormaps[cmap].with_extremes(bad="black")
    height, box, bar_box = _montage_layout(canvas, zooms, colourbar=True)
    with _figure(MONTAGE_WIDTH, height, layout=None) as figure:
        axes = _montage_axes(figure, canvas, zooms[1] / zooms[0], box)
        image = axes.imshow(canvas, cmap=colours, vmin=vmin, vmax=vmax, origin="lower",
                            interpolation="nearest", aspect=zooms[1] / zooms[0])
        _label_slices(axes, slices, offsets, data.shape[1])
        bar = figure.colorbar(image, cax=figure.add_axes(bar_box))
        bar.set_label(units)
        if title:
            axes.set_title(title)
        return _save(figure, path)


def edges(image, sigma=1.0, quantile=85.0):
    """Boolean edges of a 3-D image: the voxels whose Gaussian gradient magnitude (of
    ``sigma`` voxels) is above its ``quantile`` percentile over the non-zero voxels, the
    outline that registration overlays draw over another image."""
    from scipy import ndimage

    image = np.nan_to_num(np.asarray(image, dtype=float))
    magnitude = ndimage.gaussian_gradient_magnitude(image, sigma)
    inside = image != 0
    if not inside.any():
        return np.zeros(image.shape, dtype=bool)
    return (magnitude > np.percentile(magnitude[inside], quantile)) & inside


def mask_overlay(path, background, masks, *, title="", n_slices=12, n_columns=6,
                 zooms=(1.0, 1.0), brain=None, alpha=0.6, colours=MASK_COLOURS):
    """Masks drawn in colour over a grey-scale background (a baseline image or a map).

    ``masks`` maps a legend label to a 3-D boolean array; later masks are drawn over
    earlier ones, in ``colours`` (cycled). Slices are chosen where any mask has voxels, so
    that a few arterial voxels are not missed. ``brain`` (optional) limits the grey-scale
    range to the brain; ``alpha`` is the opacity of the masks.
    """
    background = np.asarray(background, dtype=float)
    masks = {label: np.asarray(m, dtype=bool) for label, m in masks.items()}
    union = np.zeros(background.shape, dtype=bool)
    for m in masks.values():
        union |= m
    slices = pick_slices(union, n_slices)
    n_columns = min(n_columns, len(slices))
    inside = np.asarray(brain, dtype=bool) if brain is not None else np.isfinite(background)
    vmin, vmax = robust_range(background[inside], low=1.0, high=99.0)
    canvas, offsets = _tile(background, slices, n_columns, fill=vmin)
    import matplotlib as mpl

    height, box, _ = _montage_layout(canvas, zooms, colourbar=False)
    with _figure(MONTAGE_WIDTH, height, layout=None) as figure:
        axes = _montage_axes(figure, canvas, zooms[1] / zooms[0], box)
        axes.imshow(np.nan_to_num(canvas, nan=vmin), cmap="gray", vmin=vmin, vmax=vmax,
                    origin="lower", interpolation="nearest", aspect=zooms[1] / zooms[0])
        handles = []
        for index, (label, mask) in enumerate(masks.items()):
            colour = mpl.colors.to_rgba(colours[index % len(colours)])
            tiled, _ = _tile(mask.astype(float), slices, n_columns, fill=0.0)
            rgba = np.zeros((*tiled.shape, 4))
            rgba[tiled > 0] = (*colour[:3], alpha)
            axes.imshow(rgba, origin="lower", interpolation="nearest",
                        aspect=zooms[1] / zooms[0])
            handles.append(mpl.patches.Patch(color=colour, label=f"{label} ({mask.sum()} vx)"))
        _label_slices(axes, slices, offsets, background.shape[1])
        if handles:
            figure.legend(handles=handles, loc="lower center", ncols=len(handles),
                          frameon=False)
        if title:
            axes.set_title(title)
        return _save(figure, path)


def _baseline_span(axes, baseline):
    if baseline is not None:
        axes.axvspan(*baseline, color="0.85", zorder=0, label="baseline")


def aif_curve(path, time, delta_r2star, concentration=None, *, baseline=None, title=""):
    """The arterial input function against time: ΔR2* (1/s, left axis) and, when given,
    the blood concentration (mM, right axis); ``baseline`` = (start, end) in s is shaded."""
    time = np.asarray(time, dtype=float)
    with _figure(6.0, 2.8, layout=None) as figure:
        axes = figure.add_subplot()
        _margins(figure, right=0.7 if concentration is not None else 0.15)
        _baseline_span(axes, baseline)
        lines = axes.plot(time, delta_r2star, color="C3", marker=".", markersize=3,
                          label="ΔR2*")
        axes.set_xlabel("time (s)")
        axes.set_ylabel("ΔR2* (1/s)", color="C3")
        axes.axhline(0.0, color="0.5", linewidth=0.5)
        if concentration is not None:
            right = axes.twinx()
            lines += right.plot(time, concentration, color="C0", linestyle="--",
                                label="concentration")
            right.set_ylabel("concentration (mM)", color="C0")
            low, high = axes.get_ylim()
            scale = np.nanmax(np.abs(concentration)) / max(np.nanmax(np.abs(delta_r2star)),
                                                           1e-12)
            right.set_ylim(low * scale, high * scale)  # same zero on both axes
        handles = lines + ([axes.patches[0]] if baseline is not None else [])
        axes.legend(handles=handles, loc="upper right", frameon=False)
        if title:
            axes.set_title(title)
        return _save(figure, path)


def tissue_curves(path, time, curves, *, baseline=None, title="", units="1/s"):
    """Mean tissue curves against time, one line per ROI: ``curves`` maps a label to a 1-D
    array (e.g. mean ΔR2* in the brain, NAWM and tumour); ``baseline`` (s) is shaded."""
    time = np.asarray(time, dtype=float)
    with _figure(6.0, 2.8, layout=None) as figure:
        axes = figure.add_subplot()
        _margins(figure)
        _baseline_span(axes, baseline)
        for index, (label, curve) in enumerate(curves.items()):
            axes.plot(time, curve, color=MASK_COLOURS[index % len(MASK_COLOURS)],
                      label=label)
        axes.axhline(0.0, color="0.5", linewidth=0.5)
        axes.set_xlabel("time (s)")
        axes.set_ylabel(f"mean ΔR2* ({units})")
        axes.legend(loc="upper right", frameon=False)
        if title:
            axes.set_title(title)
        return _save(figure, path)


def superres_comparison(path, frames, curves, *, zooms=((1.0, 1.0), (1.0, 1.0)), title=""):
    """Acquired against super-resolved DSC: the images of ``frames``, a dict
    ``{row label: (acquired 2-D, super-resolved 2-D)}`` (one row per frame, shown with one
    grey scale per row), and the signal of a few voxels, ``curves`` a list of
    ``(label, (time, signal) acquired, (time, signal) super-resolved)`` (acquired samples
    as dots, the super-resolved series as a line). ``zooms`` are the in-plane voxel sizes
    of the acquired and super-resolved grids, for the aspect ratio."""
    rows = len(frames)
    with _figure(8.0, 2.6 * rows + 0.4) as figure:
        grid = figure.add_gridspec(rows, 3, width_ratios=(1, 1, 1.6))
        for row, (label, images) in enumerate(frames.items()):
            low, high = robust_range(np.concatenate([np.ravel(i) for i in images]), 1, 99.5)
            for column, (image, zoom, name) in enumerate(
                    zip(images, zooms, ("acquired", "super-resolved"), strict=True)):
                axes = figure.add_subplot(grid[row, column])
                axes.imshow(np.asarray(image).T, cmap="gray", vmin=low, vmax=high,
                            origin="lower", interpolation="nearest",
                            aspect=zoom[1] / zoom[0])
                axes.set_title(f"{name}, {label}", fontsize="small")
                axes.set_axis_off()
        axes = figure.add_subplot(grid[:, 2])
        for index, (label, acquired, superres) in enumerate(curves):
            colour = MASK_COLOURS[index % len(MASK_COLOURS)]
            axes.plot(*superres, color=colour, linewidth=1, label=f"{label}")
            axes.plot(*acquired, color=colour, marker="o", markersize=3, linestyle="none")
        axes.set_xlabel("time (s)")
        axes.set_ylabel("signal (line: super-resolved; dots: acquired)")
        axes.legend(loc="lower right", frameon=False, fontsize="small")
        if title:
            figure.suptitle(title)
        return _save(figure, path)


def denoising_comparison(path, rows, *, zooms=(1.0, 1.0), title=""):
    """ASL maps before and after denoising, one slice: ``rows`` is ``{row label: (before
    2-D, after 2-D, units)}`` (e.g. ΔM and CBF); each row shows before, after (one grey
    scale, the 1st-99th percentile of both) and before − after (symmetric about 0: what
    the denoiser removed). ``zooms``: in-plane voxel sizes (x, y), for the aspect."""
    n = len(rows)
    with _figure(7.5, 2.3 * n + 0.4) as figure:
        grid = figure.add_gridspec(n, 3)
        for row, (label, (before, after, units)) in enumerate(rows.items()):
            before, after = np.asarray(before, float), np.asarray(after, float)
            low, high = robust_range(np.concatenate([before.ravel(), after.ravel()]), 1, 99)
            removed = before - after
            span = robust_range(removed.ravel(), 1, 99, symmetric=True)
            panels = ((before, "before", "gray", (low, high)),
                      (after, "after", "gray", (low, high)),
                      (removed, "before − after", "RdBu_r", span))
            for column, (image, name, cmap, (vmin, vmax)) in enumerate(panels):
                axes = figure.add_subplot(grid[row, column])
                shown = axes.imshow(image.T, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower",
                                    interpolation="nearest", aspect=zooms[1] / zooms[0])
                axes.set_title(f"{label}, {name}", fontsize="small")
                axes.set_axis_off()
                figure.colorbar(shown, ax=axes, shrink=0.8).set_label(units)
        if title:
            figure.suptitle(title)
        return _save(figure, path)


def motion_parameters(path, parameters, framewise_displacement, *, threshold=None,
                      title=""):
    """Head motion of a series against the volume index: the translations (mm), the
    rotations (shown in degrees) and the framewise displacement (mm) with ``threshold``
    as a dashed line and the volumes above it marked. ``parameters`` maps the six
    confound names (``trans_x`` ... ``rot_z``, mm and rad) to 1-D arrays."""
    fd = np.asarray(framewise_displacement, dtype=float)
    volumes = np.arange(fd.size)
    with _figure(6.0, 4.6, layout=None) as figure:
        axes = figure.subplots(3, 1, sharex=True)
        _margins(figure)
        for index, axis in enumerate("xyz"):
            axes[0].plot(volumes, parameters[f"trans_{axis}"], color=f"C{index}",
                         label=axis)
            axes[1].plot(volumes, np.rad2deg(parameters[f"rot_{axis}"]), color=f"C{index}",
                         label=axis)
        axes[0].set_ylabel("translation (mm)")
        axes[1].set_ylabel("rotation (°)")
        axes[2].plot(volumes, fd, color="0.2", marker=".", markersize=3)
        if threshold is not None:
            axes[2].axhline(threshold, color="C3", linestyle="--", linewidth=1,
                            label=f"threshold {threshold:g} mm")
            flagged = fd > threshold
            axes[2].plot(volumes[flagged], fd[flagged], "o", color="C3", markersize=4,
                         label="motion outlier")
            axes[2].legend(loc="upper right", frameon=False)
        axes[2].set_ylabel("FD (mm)")
        axes[2].set_xlabel("volume")
        for axis in axes[:2]:
            axis.axhline(0.0, color="0.5", linewidth=0.5)
            axis.legend(loc="upper right", frameon=False, ncols=3)
        if title:
            axes[0].set_title(title)
        return _save(figure, path)
