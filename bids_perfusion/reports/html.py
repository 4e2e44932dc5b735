"""``output_dir/sub-X.html``: the subject's report, assembled from the derivatives on disk.

:func:`write_reports` runs after the participant level. For each subject it finds the
runs in ``sub-X[/ses-Y]/perf/`` (one run per set of entities other than ``desc``: an
acquired run and its simulated doses ``rec-doseNN`` are separate runs), draws the figures
of :mod:`bids_perfusion.reports.figures` into ``sub-X/figures/`` and renders the template
``templates/report.html`` with jinja2. Every derivative is optional: a figure or table
whose files are missing is left out, never an error.

Figures are named like the derivatives they show, ``<run entities>_desc-<name>_<suffix>.svg``:
a map ``..._desc-osvd_cbf.nii.gz`` gives ``..._desc-osvd_cbf.svg`` (maps without ``desc``
get ``desc-map``), the masks ``..._desc-aif_mask.svg`` and ``..._desc-rois_mask.svg``, the
AIF ``..._desc-aif_timeseries.svg`` and the tissue curves ``..._desc-tissue_timeseries.svg``.

Only files that a run's completion record lists unchanged are shown
(:mod:`bids_perfusion.records`); the others (stale files of an earlier run with other
options, files of an interrupted run, files missing or changed since their run) are
listed, not drawn, and each run shows the options of its record. A derivatives folder
without any record (written by hand, or by a version before records) is shown whole,
with a note that its completeness could not be checked.

Tissue curves need the DSC series, which the derivatives do not hold: they are recomputed
from the input dataset (``bids_dir``, or the ``SourceDatasets`` URL of
``dataset_description.json``) with the frames and formula recorded in the AIF sidecar,
and left out for simulated doses and when the input dataset cannot be read.
"""

import csv
import json
import logging
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from bids_perfusion import records
from bids_perfusion.reports import figures

LOGGER = logging.getLogger("bids_perfusion")
TEMPLATES = Path(__file__).parent / "templates"

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
#: Masks of ``desc-<name>_mask`` drawn in the ROI overlay, with their legend labels.
ROI_MASKS = {"NAWM": "NAWM", "tumor": "tumour", "tumour": "tumour", "GM": "GM", "WM": "WM"}


# --- file names ---


def parse_name(name):
    """``(entities, suffix)`` of a BIDS file name: ``entities`` is an ordered list of
    (key, value); ``'sub-01_desc-osvd_cbf.nii.gz'`` -> ``([('sub', '01'), ('desc', 'osvd')],
    'cbf')``."""
    parts = name.split(".")[0].split("_")
    return [tuple(p.split("-", 1)) for p in parts[:-1] if "-" in p], parts[-1]


def _join(entities):
    return "_".join(f"{key}-{value}" for key, value in entities)


def figure_name(run, desc, suffix):
    """``<run>_desc-<desc>_<suffix>.svg``, the BIDS-like name of a figure."""
    return f"{run}_desc-{desc}_{suffix}.svg"


def find_runs(subject_dir):
    """``{run: {(desc, suffix, extension): path}}`` of the files in ``perf/`` folders under
    ``subject_dir``; ``run`` is the file's entities without ``desc``, in order."""
    runs = {}
    for path in sorted(Path(subject_dir).glob("**/perf/*")):
        if not path.is_file() or "-" not in path.name:
            continue
        entities, suffix = parse_name(path.name)
        run = _join([(k, v) for k, v in entities if k != "desc"])
        desc = dict(entities).get("desc")
        extension = path.name[len(path.name.split(".")[0]):]
        runs.setdefault(run, {})[(desc, suffix, extension)] = path
    return runs


# --- reading derivatives ---


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def read_tsv(path):
    """A TSV file as a list of dict rows (empty when it cannot be read)."""
    try:
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle, delimiter="\t"))
    except OSError:
        return []


def _load(path):
    """``(data, zooms)`` in RAS+ voxel order; a 4-D image of one volume becomes 3-D."""
    import nibabel as nib

    image = nib.as_closest_canonical(nib.load(str(path)))
    data = np.asarray(image.dataobj, dtype=float)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    return data, tuple(float(z) for z in image.header.get_zooms()[:2])


def _nifti(files, desc, suffix):
    return files.get((desc, suffix, ".nii.gz")) or files.get((desc, suffix, ".nii"))


def _sidecar(files, desc, suffix):
    path = files.get((desc, suffix, ".json"))
    return _read_json(path) if path else {}


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


# --- the input series, for tissue curves ---


def source_dataset(output_dir):
    """The input dataset of ``output_dir`` (its first ``file://`` SourceDatasets URL)."""
    description = _read_json(Path(output_dir) / "dataset_description.json")
    for source in description.get("SourceDatasets", []):
        url = urlparse(str(source.get("URL", "")))
        if url.scheme == "file":
            return Path(unquote(url.path))
    return None


def find_series(bids_dir, run):
    """The echo files of the acquired DSC series of ``run`` (sorted by echo), or ``[]``.

    A run holding ``rec-doseNN`` that the input dataset does not hold is a simulated dose,
    whose series is not stored: ``[]``.
    """
    if bids_dir is None:
        return []
    entities, _ = parse_name(run + "_x")
    wanted = dict(entities)
    folder = Path(bids_dir) / f"sub-{wanted['sub']}"
    if "ses" in wanted:
        folder = folder / f"ses-{wanted['ses']}"
    found = []
    for path in sorted((folder / "perf").glob("*_dsc.nii*")):
        these, _ = parse_name(path.name)
        echo = dict(these).get("echo", "1")
        if {k: v for k, v in these if k != "echo"} == wanted:
            found.append((int(echo) if echo.isdigit() else 0, path))
    return [path for _, path in sorted(found)]


def mean_delta_r2star(series, rois, aif_metadata):
    """Mean ΔR2* (1/s) in each ROI, from the frames after the approach to steady state.

    ``series`` are the echo arrays (4-D, RAS+), ``rois`` maps a label to a 3-D mask.
    S0 is each voxel's mean over ``BaselineFrames`` (first and last, inclusive) of the
    AIF sidecar; one echo gives ``-ln(S/S0)/TE``, two or more the dual-echo formula of
    :func:`bids_perfusion.dsc.relaxivity.dual_echo_delta_r2star`, as the pipeline does.
    """
    from bids_perfusion.dsc import relaxivity

    first, last = aif_metadata["BaselineFrames"]
    start = int(aif_metadata.get("SteadyStateFramesDiscarded", first))
    te = aif_metadata["EchoTime"]
    te = [te] if np.isscalar(te) else list(te)
    curves = {}
    for label, mask in rois.items():
        if not mask.any():
            continue
        signals = [s[mask][:, start:] for s in series]
        s0 = [s[mask][:, first:last + 1].mean(axis=1, keepdims=True) for s in series]
        with np.errstate(divide="ignore", invalid="ignore"):
            if len(series) == 1 or len(te) < 2:
                delta = relaxivity.signal_to_delta_r2star(signals[0], s0[0], te[0])
            else:
                delta = relaxivity.dual_echo_delta_r2star(signals[0], s0[0], signals[1],
                                                          s0[1], te[0], te[1])
        delta = np.where(np.isfinite(delta), delta, np.nan)
        if np.isfinite(delta).any():
            with np.errstate(invalid="ignore"):
                curves[label] = np.nanmean(delta, axis=0)
    return curves


# --- one run ---


def _baseline_span(aif_metadata, time):
    """(start, end) in s of the baseline frames, on the time axis of the AIF TSV."""
    frames = aif_metadata.get("BaselineFrames")
    if not frames or len(time) < 2:
        return None
    tr = aif_metadata.get("RepetitionTime") or float(np.median(np.diff(time)))
    return float(frames[0] * tr), float(frames[1] * tr)


def _tumour_mask(files, derivatives, run):
    path = _nifti(files, "tumor", "mask") or _nifti(files, "tumour", "mask")
    if path:
        return path
    wanted = dict(parse_name(run + "_x")[0])
    for folder in derivatives:
        for candidate in sorted(Path(folder).glob(f"sub-{wanted['sub']}/**/*_mask.nii*")):
            entities = dict(parse_name(candidate.name)[0])
            if entities.get("label") in ("tumor", "tumour") and (
                    entities.get("ses") == wanted.get("ses")):
                return candidate
    return None


class _Run:
    """Figures, tables and parameters of one run, collected for the template."""

    def __init__(self, name, files, figures_dir, output_dir, record=None):
        self.name = name
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
        sidecar = _sidecar(run.files, desc, suffix)
        data, map_zooms = _load(path)
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
    aif_path = _nifti(run.files, "aif", "mask")
    if aif_path is not None:
        aif = _load(aif_path)[0] > 0
        if aif.shape == background.shape:
            figures.mask_overlay(run.target("aif", "mask"), background, {"AIF voxels": aif},
                                 title="voxels of the arterial input function",
                                 zooms=zooms, brain=brain, alpha=0.9,
                                 colours=("#ff3030",))
            run.add(run.target("aif", "mask"), f"AIF voxels — {aif_path.name}", "Masks")
    rois = {}
    for desc, label in ROI_MASKS.items():
        path = _nifti(run.files, desc, "mask")
        if path is not None:
            rois[label] = _load(path)[0] > 0
    if tumour_path is not None and "tumour" not in rois:
        rois["tumour"] = _load(tumour_path)[0] > 0
    rois = {label: mask for label, mask in rois.items() if mask.shape == background.shape}
    if rois:
        figures.mask_overlay(run.target("rois", "mask"), background, rois,
                             title="regions of interest", zooms=zooms, brain=brain)
        run.add(run.target("rois", "mask"), "ROIs: " + ", ".join(rois), "Masks")
    return rois


def _draw_curves(run, series_files, series, brain, rois):
    tsv = run.files.get(("aif", "timeseries", ".tsv"))
    rows = read_tsv(tsv) if tsv else []
    if not rows:
        run.notes.append("no AIF table: AIF and tissue curves not shown")
        return
    metadata = _sidecar(run.files, "aif", "timeseries")
    run.aif = [{"key": k, "value": format_value(v)} for k, v in metadata.items()
               if not isinstance(v, dict)]

    def column(name):
        try:
            return np.array([float(row[name]) for row in rows])
        except (KeyError, ValueError):
            return None

    time = column("time")
    delta = column("delta_r2star")
    if time is None or delta is None:
        run.notes.append(f"{tsv.name}: no time or delta_r2star column, AIF not shown")
        return
    span = _baseline_span(metadata, time)
    figures.aif_curve(run.target("aif", "timeseries"), time, delta, column("concentration"),
                      baseline=span, title="arterial input function")
    run.add(run.target("aif", "timeseries"), f"AIF — {tsv.name}", "Curves")
    if not series:
        dose = dict(parse_name(run.name + "_x")[0]).get("rec", "")
        run.notes.append("tissue curves not shown: " + (
            "the series of a simulated dose is not stored" if dose.startswith("dose")
            else "the input DSC series was not found"))
        return
    if not {"BaselineFrames", "EchoTime"} <= metadata.keys():
        run.notes.append("tissue curves not shown: the AIF sidecar lacks BaselineFrames "
                         "or EchoTime")
        return
    masks = {"brain": brain, **rois} if brain is not None else dict(rois)
    masks = {k: v for k, v in masks.items() if v.shape == series[0].shape[:3]}
    curves = mean_delta_r2star(series, masks, metadata)
    curves = {k: v for k, v in curves.items() if v.shape == time.shape}
    if curves:
        figures.tissue_curves(run.target("tissue", "timeseries"), time, curves,
                              baseline=span, title="mean tissue ΔR2*")
        run.add(run.target("tissue", "timeseries"),
                "mean ΔR2* in the ROIs — from " + ", ".join(p.name for p in series_files),
                "Curves")


def _roi_table(run):
    path = run.files.get(("roi", "roistats", ".tsv"))
    rows = read_tsv(path) if path else []
    if rows:
        columns = list(rows[0])
        run.roi_table = {"file": path.name, "columns": columns,
                         "rows": [[_number(row.get(c) or "n/a") if c not in ("roi", "measure")
                                   else row.get(c) or "" for c in columns] for row in rows]}


def report_run(name, files, output_dir, figures_dir, *, bids_dir=None, derivatives=(),
               record=None):
    """Draw the figures of one run and return its part of the template context."""
    run = _Run(name, files, figures_dir, output_dir, record)
    brain_path = _nifti(files, "brain", "mask")
    brain, zooms = (None, (1.0, 1.0))
    if brain_path is not None:
        data, zooms = _load(brain_path)
        brain = data > 0
    _draw_maps(run, brain, zooms)
    series_files = find_series(bids_dir, name)
    series = [_load(path)[0] for path in series_files]
    metadata = _sidecar(files, "aif", "timeseries")
    background = None
    if series and "BaselineFrames" in metadata and series[0].ndim == 4:
        first, last = metadata["BaselineFrames"]
        background = series[0][..., first:last + 1].mean(axis=-1)
    elif _map_items(files):
        background = _load(_map_items(files)[0][2])[0]
    if background is not None and background.ndim == 3:
        rois = _draw_masks(run, brain, background, zooms, _tumour_mask(files, derivatives,
                                                                       name))
    else:
        rois = {}
    if any(suffix == "mtt" for _desc, suffix, _ext in run.files):  # a DSC run
        _draw_curves(run, series_files, series, brain, rois)
    _roi_table(run)
    return run.context()


def _safe_report_run(name, files, output_dir, figures_dir, **options):
    """:func:`report_run`, or a section that says why the run's figures failed."""
    try:
        return report_run(name, files, output_dir, figures_dir, **options)
    except Exception as error:  # an unreadable derivative must not lose the whole report
        LOGGER.error("Report of %s incomplete: %s: %s", name, type(error).__name__, error)
        run = _Run(name, files, figures_dir, output_dir, options.get("record"))
        run.notes.append(f"the figures of this run failed: {type(error).__name__}: {error}")
        return run.context()


# --- the subject ---


def _errors_of(subject, errors):
    """The messages about ``subject`` (naming ``sub-<label>``) and those naming no subject."""
    mine = re.compile(rf"sub-{re.escape(subject)}(?![A-Za-z0-9])")
    return [str(e) for e in errors if mine.search(str(e)) or not re.search(r"sub-", str(e))]


def _methods(output_dir):
    path = Path(output_dir) / "logs" / "CITATION.md"
    try:
        text = path.read_text()
    except OSError:
        return []
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def render(context):
    """The report's HTML from its context (see :func:`write_report`)."""
    import jinja2

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                                     autoescape=True, trim_blocks=True, lstrip_blocks=True,
                                     keep_trailing_newline=True)
    return environment.get_template("report.html").render(**context)


def _checked_runs(output_dir, subject_dir, subject):
    """``(runs, records of the runs, unchecked, problems)`` of a subject's derivatives.

    ``runs`` is :func:`find_runs` restricted to files that a completion record lists
    unchanged; ``problems`` lists the other files (stale, or of a damaged run) with why.
    ``unchecked`` is True when the folder holds no record at all: everything is shown.
    """
    runs = find_runs(subject_dir) if subject_dir.is_dir() else {}
    if not records.read_records(output_dir):
        return runs, {}, bool(runs), []
    checked = records.audit(output_dir, subject)
    problems = [f"{relative}: {problem}" for damaged in checked.damaged.values()
                for relative, problem in sorted(damaged.items())]
    problems += [f"{relative}: listed by no completion record (an interrupted run, or an "
                 "earlier run with other options), not shown" for relative in checked.stale]
    kept, run_records = {}, {}
    for name, files in runs.items():
        files = {key: path for key, path in files.items()
                 if checked.run_of(path, output_dir) is not None}
        if files:
            kept[name] = files
            record = checked.run_of(next(iter(files.values())), output_dir)
            run_records[name] = checked.complete[record]
    return kept, run_records, False, problems


def write_report(output_dir, subject, errors=(), *, bids_dir=None, derivatives=()):
    """Draw the figures of ``subject`` and write ``output_dir/sub-<subject>.html``."""
    output_dir = Path(output_dir)
    subject = str(subject).removeprefix("sub-")
    subject_dir = output_dir / f"sub-{subject}"
    figures_dir = subject_dir / "figures"
    runs, run_records, unchecked, problems = _checked_runs(output_dir, subject_dir, subject)
    if runs:
        figures_dir.mkdir(parents=True, exist_ok=True)
    if bids_dir is None:
        bids_dir = source_dataset(output_dir)
    if bids_dir is not None and not Path(bids_dir).is_dir():
        bids_dir = None
    description = _read_json(output_dir / "dataset_description.json")
    generated = (description.get("GeneratedBy") or [{}])[0]
    context = {
        "subject": subject,
        "version": generated.get("Version", ""),
        "errors": _errors_of(subject, errors),
        "runs": [_safe_report_run(name, files, output_dir, figures_dir, bids_dir=bids_dir,
                                  derivatives=derivatives, record=run_records.get(name))
                 for name, files in runs.items()],
        "methods": _methods(output_dir),
        "unchecked": unchecked,
        "not_shown": problems,
    }
    path = output_dir / f"sub-{subject}.html"
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(render(context))
    return path


def write_reports(output_dir, subjects=None, errors=(), *, bids_dir=None, derivatives=()):
    """Write ``output_dir/sub-X.html`` and ``sub-X/figures/*.svg`` for each subject.

    ``subjects``: labels with or without ``sub-``; all ``sub-*`` folders of
    ``output_dir`` when None. ``errors``: messages of runs that failed or were skipped;
    each report shows those that name its subject and those that name none.
    ``bids_dir``: the input dataset, for tissue curves and the baseline image (default:
    the ``SourceDatasets`` URL); ``derivatives``: folders of user-given masks, searched
    for a ``label-tumor`` mask. A subject whose report fails is logged, not raised.
    Returns the paths of the reports written.
    """
    output_dir = Path(output_dir)
    if subjects is None:
        subjects = sorted(p.name for p in output_dir.glob("sub-*") if p.is_dir())
    written = []
    for subject in subjects:
        try:
            written.append(write_report(output_dir, subject, errors, bids_dir=bids_dir,
                                        derivatives=derivatives))
        except Exception as error:  # a broken report must not fail the participant level
            LOGGER.error("Report of sub-%s not written: %s: %s",
                         str(subject).removeprefix("sub-"), type(error).__name__, error)
    return written
