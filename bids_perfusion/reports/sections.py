"""The section of one run in the report: its figures drawn, its tables and parameters.

:func:`report_run` reads the run's derivatives (:mod:`bids_perfusion.reports.derivatives`),
draws them with :mod:`bids_perfusion.reports.figures` into ``sub-X/figures/`` and returns
the run's part of the template context. Figures are named like the derivatives they show,
``<run entities>_desc-<name>_<suffix>.svg``: a map ``..._desc-osvd_cbf.nii.gz`` gives
``..._desc-osvd_cbf.svg`` (maps without ``desc`` get ``desc-map``), the masks
``..._desc-aif_mask.svg`` and ``..._desc-rois_mask.svg``, the AIF
``..._desc-aif_timeseries.svg``, the mean ROI curves ``..._desc-tissue_timeseries.svg``
(from ``desc-roi_timeseries.tsv``), the head motion ``..._desc-motion_timeseries.svg``
(from ``desc-confounds_timeseries.tsv``), for a super-resolved run, the acquired against the
super-resolved series ``..._desc-superres_dsc.svg`` and, for a denoised ASL run, ΔM and
CBF before and after denoising ``..._desc-<denoiser>denoising_deltam.svg``.

The runs of one report share ``drawn``: a head-motion figure whose table another run of
the report has drawn already (a simulated dose keeps the motion of its acquired run) is
copied from that run's figure, not drawn again (figures are deterministic to the byte).
"""

import logging
import re
import shutil
from pathlib import Path

import numpy as np

from bids_perfusion.naming import parse_name
from bids_perfusion.reports import derivatives as read
from bids_perfusion.reports import figures

LOGGER = logging.getLogger("bids_perfusion")

#: Display of each map suffix: (title, colour map, order in the report).
MAP_STYLES = {
    "cbv": ("CBV", "inferno", 0),
    "k2": ("K2", "RdBu_r", 1),
    "cbf": ("CBF", "inferno", 2),
    "mtt": ("MTT", "viridis", 3),
    "tmax": ("Tmax", "viridis", 4),
    "ttp": ("TTP", "viridis", 5),
    "bat": ("BAT", "viridis", 6),
    "att": ("ATT", "viridis", 7),
    "deltam": ("ΔM", "gray", 8),
    "m0scan": ("M0", "gray", 9),
}


def figure_name(run, desc, suffix):
    """``<run>_desc-<desc>_<suffix>.svg``, the BIDS-like name of a figure."""
    return f"{run}_desc-{desc}_{suffix}.svg"


def _number(value):
    """Compact text of a number (4 significant digits; integers as they are)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not np.isfinite(number):
        return str(value)
    return str(int(number)) if number.is_integer() and "." not in str(value) else f"{number:.4g}"


def format_value(value):
    """Short text of a sidecar value: long lists as their ends and length, dicts inline."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {format_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        if len(value) > 6:
            return f"{_number(value[0])} … {_number(value[-1])} ({len(value)} values)"
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if value is None:
        return "null"
    return _number(value)


def _baseline_span(aif_metadata, time):
    """(start, end) in s of the baseline frames, on the time axis of the AIF TSV."""
    frames = aif_metadata.get("BaselineFrames")
    if not frames or len(time) < 2:
        return None
    tr = aif_metadata.get("RepetitionTime") or float(np.median(np.diff(time)))
    return float(frames[0] * tr), float(frames[1] * tr)


class _Run:
    """Figures, tables and parameters of one run, collected for the template."""

    def __init__(self, name, files, figures_dir, output_dir, record=None, drawn=None):
        self.name = name
        self.drawn = {} if drawn is None else drawn
        self.record = record
        self.files = files
        self.figures_dir = figures_dir
        self.output_dir = output_dir
        self.figures = []
        self.notes = []
        self.roi_table = {"columns": [], "rows": []}
        self.maps = []
        self.aif = []

    def add(self, path, caption, section):
        self.figures.append({"src": Path(path).relative_to(self.output_dir).as_posix(),
                             "caption": caption, "section": section})

    def target(self, desc, suffix):
        return self.figures_dir / figure_name(self.name, desc, suffix)

    def context(self):
        sections = {}
        for figure in self.figures:
            sections.setdefault(figure["section"], []).append(figure)
        return {"name": self.name, "anchor": re.sub(r"[^A-Za-z0-9_-]", "-", self.name),
                "sections": sections, "notes": self.notes, "roi_table": self.roi_table,
                "maps": self.maps, "aif": self.aif, "record": _record_context(self.record)}


def _record_context(record):
    """What the report shows of a run's completion record: name, time, version, options."""
    if not record:
        return None
    return {"run": record.get("Run", ""), "completed": record.get("Completed", ""),
            "version": record.get("Version", ""),
            "options": [{"key": k, "value": format_value(v)}
                        for k, v in (record.get("Options") or {}).items()]}


def _map_items(files):
    """``[(desc, suffix, path)]`` of the 3-D maps of a run, in report order."""
    items = []
    for (desc, suffix, _), path in files.items():
        if suffix in MAP_STYLES and path.name.endswith((".nii.gz", ".nii")):
            relative = bool(desc and desc.endswith("Nawm"))
            items.append(((MAP_STYLES[suffix][2], relative, desc or ""), desc, suffix, path))
    return [item[1:] for item in sorted(items, key=lambda item: item[0])]


def _draw_maps(run, brain, zooms):
    for desc, suffix, path in _map_items(run.files):
        sidecar = read.sidecar(run.files, desc, suffix)
        data, map_zooms = read.load_image(path)
        if data.ndim != 3 or (brain is not None and brain.shape != data.shape):
            run.notes.append(f"{path.name}: not a 3-D map on the brain mask grid, not shown")
            continue
        title, cmap, _ = MAP_STYLES[suffix]
        relative = bool(desc and desc.endswith("Nawm"))
        method = desc[:-4] if relative else desc
        label = f"{'r' if relative else ''}{title}" + (f" ({method})" if method else "")
        units = sidecar.get("Units", "")
        figures.map_montage(run.target(desc or "map", suffix), data, brain,
                            title=label, units=units, cmap=cmap,
                            symmetric=suffix == "k2", zooms=map_zooms or zooms)
        run.add(run.target(desc or "map", suffix), f"{label} — {path.name}",
                "Relative maps" if relative else "Maps")
        parameters = {k: v for k, v in sidecar.items()
                      if k not in ("Units", "EstimationMethod", "Description")}
        run.maps.append({"file": path.name, "label": label, "units": units,
                         "method": sidecar.get("EstimationMethod",
                                               sidecar.get("Description", "")),
                         "parameters": "; ".join(f"{k}: {format_value(v)}"
                                                 for k, v in parameters.items())})


def _draw_masks(run, brain, background, zooms, tumour_path):
    """Draw the AIF voxels and the ROIs over ``background``; returns the ROI labels drawn."""
    aif_path = read.nifti(run.files, "aif", "mask")
    if aif_path is not None:
        aif = read.load_image(aif_path)[0] > 0
        if aif.shape == background.shape:
            figures.mask_overlay(run.target("aif", "mask"), background, {"AIF voxels": aif},
                                 title="voxels of the arterial input function",
                                 zooms=zooms, brain=brain, alpha=0.9,
                                 colours=("#ff3030",))
            run.add(run.target("aif", "mask"), f"AIF voxels — {aif_path.name}", "Masks")
    rois = {label: read.load_image(path)[0] > 0
            for label, path in read.roi_masks(run.files, tumour_path).items()}
    rois = {label: mask for label, mask in rois.items() if mask.shape == background.shape}
    if rois:
        figures.mask_overlay(run.target("rois", "mask"), background, rois,
                             title="regions of interest", zooms=zooms, brain=brain)
        run.add(run.target("rois", "mask"), "ROIs: " + ", ".join(rois), "Masks")
    return list(rois)


def _draw_curves(run, rois):
    """Draw the AIF and the mean ΔR2* of the brain and of the ROIs drawn (``rois``)."""
    tsv = run.files.get(("aif", "timeseries", ".tsv"))
    rows = read.read_rows(tsv)
    if not rows:
        run.notes.append("no AIF table: AIF and tissue curves not shown")
        return
    metadata = read.sidecar(run.files, "aif", "timeseries")
    run.aif = [{"key": k, "value": format_value(v)} for k, v in metadata.items()
               if not isinstance(v, dict)]
    time = read.column(rows, "time")
    delta = read.column(rows, "delta_r2star")
    if time is None or delta is None:
        run.notes.append(f"{tsv.name}: no time or delta_r2star column, AIF not shown")
        return
    span = _baseline_span(metadata, time)
    figures.aif_curve(run.target("aif", "timeseries"), time, delta,
                      read.column(rows, "concentration"), baseline=span,
                      title="arterial input function")
    run.add(run.target("aif", "timeseries"), f"AIF — {tsv.name}", "Curves")
    curves_time, curves = read.roi_curves(run.files)
    if curves_time is None:
        run.notes.append("tissue curves not shown: the run has no ROI curve table "
                         "(desc-roi_timeseries.tsv)")
        return
    curves = {label: curves[label] for label in ("brain", *rois)
              if label in curves and curves[label].shape == time.shape}
    if curves:
        figures.tissue_curves(run.target("tissue", "timeseries"), time, curves,
                              baseline=span, title="mean tissue ΔR2*")
        table = run.files[("roi", "timeseries", ".tsv")]
        run.add(run.target("tissue", "timeseries"),
                f"mean ΔR2* in the ROIs — {table.name}", "Curves")


def _draw_motion(run):
    """The six motion parameters and the framewise displacement of the run, with the
    outlier threshold, when it has a ``desc-confounds_timeseries.tsv``."""
    from bids_perfusion.motion.rigid import PARAMETER_NAMES

    table = run.files.get(("confounds", "timeseries", ".tsv"))
    rows = read.read_rows(table)
    if not rows:
        return
    parameters = {name: read.column(rows, name) for name in PARAMETER_NAMES}
    fd = read.column([{**row, "framewise_displacement": row.get("framewise_displacement")
                       .replace("n/a", "0")} for row in rows], "framewise_displacement")
    if fd is None or any(values is None for values in parameters.values()):
        run.notes.append(f"{table.name}: not a table of motion parameters, not drawn")
        return
    record = read.sidecar(run.files, "confounds", "timeseries").get("MotionCorrection", {})
    threshold = record.get("FramewiseDisplacementThreshold")
    key = ("motion", table.read_bytes(), threshold)
    if key in run.drawn and Path(run.drawn[key]).exists():
        shutil.copyfile(run.drawn[key], run.target("motion", "timeseries"))
    else:
        run.drawn[key] = figures.motion_parameters(run.target("motion", "timeseries"),
                                                   parameters, fd, threshold=threshold,
                                                   title="head motion")
    flagged = int((fd > threshold).sum()) if threshold else 0
    run.add(run.target("motion", "timeseries"),
            f"head motion and framewise displacement, {flagged} volume(s) above "
            f"{threshold} mm — {table.name}", "Head motion")


def _draw_superres(run, brain):
    """Acquired against super-resolved frames (the middle brain slice, before the bolus
    and at its peak) and the signal of three voxels (the largest, the median and the
    smallest drop of the brain on that slice), when the run has a ``desc-superres_dsc``
    series and its acquired series can be found."""
    import nibabel as nib

    path = read.nifti(run.files, "superres", "dsc")
    if path is None:
        return
    metadata = read.sidecar(run.files, "superres", "dsc")
    source = read.raw_source(run.output_dir, metadata)
    record = metadata.get("SuperResolution") or {}
    if source is None or brain is None or "TemporalFactor" not in record:
        run.notes.append(f"{path.name}: the acquired series it names in Sources was not "
                         "found (moved?): the comparison figure is not drawn")
        return
    high, low = (nib.as_closest_canonical(nib.load(str(p))) for p in (path, source))
    if high.shape[:3] != brain.shape or high.ndim != 4 or low.ndim != 4:
        run.notes.append(f"{path.name}: not a series on the brain mask grid, not compared")
        return
    factor = int(record["TemporalFactor"])
    z = int(np.flatnonzero(brain.any(axis=(0, 1))).mean().round())
    fine = np.asarray(high.dataobj[:, :, z, :], dtype=float)
    coarse = np.asarray(low.dataobj[:, :, z, :], dtype=float)
    plane = brain[:, :, z]
    peak = int(np.argmin(fine[plane].mean(axis=0))) // factor
    frames = {f"frame {k + 1}": (coarse[..., k], fine[..., factor * k])
              for k in (0, peak)}
    tr = float(metadata.get("RepetitionTime", 1.0)) * factor
    drop = 1 - fine[plane].min(axis=1) / np.maximum(fine[plane][:, :3].mean(axis=1), 1e-12)
    order = np.argsort(drop)
    voxels = np.argwhere(plane)[[order[-1], order[len(order) // 2], order[0]]]
    curves = []
    for label, (i, j) in zip(("largest drop", "median drop", "smallest drop"), voxels,
                             strict=True):
        a = (int((i + 0.5) * coarse.shape[0] / fine.shape[0]),
             int((j + 0.5) * coarse.shape[1] / fine.shape[1]))
        curves.append((f"{label} ({i}, {j})",
                       (tr * np.arange(coarse.shape[-1]), coarse[a[0], a[1]]),
                       (tr / factor * np.arange(fine.shape[-1]), fine[i, j])))
    zooms = (tuple(float(v) for v in low.header.get_zooms()[:2]),
             tuple(float(v) for v in high.header.get_zooms()[:2]))
    figures.superres_comparison(run.target("superres", "dsc"), frames, curves, zooms=zooms,
                                title=f"acquired and super-resolved series, slice {z}")
    run.add(run.target("superres", "dsc"), f"acquired ({source.name}) and super-resolved "
            f"({path.name}) series: {record.get('Method', '')}", "Super-resolution")


#: The undenoised maps a denoised ASL map is shown against: (desc, suffix) in the order
#: looked for (single-delay consensus CBF, multi-delay fit).
_BEFORE = {"deltam": (("mean", "deltam"),), "cbf": (("consensus", "cbf"), ("gkm", "cbf"))}


def _draw_denoising(run, brain):
    """ΔM and CBF before and after ``--asl-denoise`` on the middle brain slice (the
    longest delay's ΔM for a multi-delay run), when the run has denoised maps."""
    for method in ("deepasl", "dilatedconv"):
        pairs = {}
        for suffix, label, units in (("deltam", "ΔM", "a.u."),
                                     ("cbf", "CBF", "mL/100 g/min")):
            after = read.nifti(run.files, method, suffix)
            before = next((p for p in (read.nifti(run.files, *key)
                                       for key in _BEFORE[suffix]) if p is not None), None)
            if after is not None and before is not None:
                pairs[label] = (before, after, units)
        if len(pairs) < 2 or brain is None:
            continue
        z = int(np.flatnonzero(brain.any(axis=(0, 1))).mean().round())
        rows, zooms = {}, (1.0, 1.0)
        for label, (before, after, units) in pairs.items():
            (a, zooms), (b, _) = read.load_image(before), read.load_image(after)
            a, b = (v[..., -1] if v.ndim == 4 else v for v in (a, b))
            if a.shape != brain.shape or b.shape != brain.shape:
                break
            rows[label] = (*(np.where(brain[..., z], v[..., z], 0.0) for v in (a, b)),
                           units)
        if len(rows) < 2:
            continue
        target = run.target(f"{method}denoising", "deltam")
        figures.denoising_comparison(target, rows, zooms=zooms,
                                     title=f"before and after {method} denoising, slice {z}")
        run.add(target, f"ΔM and CBF before and after {method} denoising — "
                f"{pairs['CBF'][1].name}", "Denoising")


def _draw_registration(run, output_dir):
    """The run's reference image, co-registered and resampled onto the T1w, as edges over
    the T1w; and the T1w normalised to the template as edges over the template."""
    first = next(iter(run.files.values()))
    for suffix in ("dscref", "aslref"):
        reference = read.space_file(first, run.name, "space-T1w", suffix)
        if reference is None:
            continue
        metadata = read.read_json(reference.with_name(reference.name.replace(".nii.gz",
                                                                           ".json")))
        t1w_path = read.raw_source(output_dir, {"Sources": [metadata.get(
            "SpatialReference", "")]})
        if t1w_path is not None:
            (t1w, zooms), (moved, _) = read.load_image(t1w_path), read.load_image(reference)
            if t1w.shape == moved.shape:
                target = run.target("coreg", "T1w")
                figures.mask_overlay(target, t1w, {"run reference edges":
                                                   figures.edges(moved)},
                                     zooms=zooms, alpha=0.8,
                                     title="co-registration: run reference on the T1w")
                run.add(target, f"Edges of the run's reference ({reference.name}) on the "
                        "subject's T1w", "Registration")
    anat = Path(first).parent.parent / "anat"
    for normalised in sorted(anat.glob("*_space-MNI152NLin2009aSym_res-*_desc-preproc_"
                                       "T1w.nii.gz")):
        import nibabel as nib
        from nilearn.datasets import load_mni152_template

        template = load_mni152_template(resolution=int(parse_name(normalised)[0]["res"]))
        background = np.asarray(nib.as_closest_canonical(template).dataobj, dtype=float)
        moved, zooms = read.load_image(normalised)
        if moved.shape != background.shape:
            continue
        target = run.figures_dir / normalised.name.replace(".nii.gz", ".svg")
        if not target.exists():
            figures.mask_overlay(target, background, {"T1w edges": figures.edges(moved)},
                                 zooms=zooms, alpha=0.8,
                                 title="normalisation: T1w on the MNI152 2009a template")
        run.add(target, f"Edges of the subject's T1w normalised to the template "
                f"({normalised.name}) on nilearn's MNI152NLin2009aSym", "Registration")


def _roi_table(run):
    path = run.files.get(("roi", "roistats", ".tsv"))
    rows = read.read_rows(path)
    if rows:
        columns = list(rows[0])
        run.roi_table = {"file": path.name, "columns": columns,
                         "rows": [[_number(row.get(c) or "n/a") if c not in ("roi", "measure")
                                   else row.get(c) or "" for c in columns] for row in rows]}


def report_run(name, files, output_dir, figures_dir, *, derivatives=(), record=None,
               drawn=None):
    """Draw the figures of one run and return its part of the template context.

    Masks are drawn over the run's first map (in report order); ``derivatives`` are the
    user's folders searched for a tumour mask when the run has none; ``drawn`` is the
    dict of figures already drawn that the runs of a report share (module docstring).
    """
    run = _Run(name, files, figures_dir, output_dir, record, drawn)
    brain_path = read.nifti(files, "brain", "mask")
    brain, zooms = (None, (1.0, 1.0))
    if brain_path is not None:
        data, zooms = read.load_image(brain_path)
        brain = data > 0
    _draw_maps(run, brain, zooms)
    maps = _map_items(files)
    background = read.load_image(maps[0][2])[0] if maps else None
    rois = []
    if background is not None and background.ndim == 3:
        rois = _draw_masks(run, brain, background, zooms,
                           read.tumour_mask(files, derivatives, name))
    _draw_motion(run)
    if any(suffix == "mtt" for _desc, suffix, _ext in run.files):  # a DSC run
        _draw_curves(run, rois)
        _draw_superres(run, brain)
    _draw_denoising(run, brain)
    _draw_registration(run, output_dir)
    _roi_table(run)
    return run.context()


def safe_report_run(name, files, output_dir, figures_dir, **options):
    """:func:`report_run`, or a section that says why the run's figures failed."""
    try:
        return report_run(name, files, output_dir, figures_dir, **options)
    except Exception as error:  # an unreadable derivative must not lose the whole report
        LOGGER.error("Report of %s incomplete: %s: %s", name, type(error).__name__, error)
        run = _Run(name, files, figures_dir, output_dir, options.get("record"))
        run.notes.append(f"the figures of this run failed: {type(error).__name__}: {error}")
        return run.context()
