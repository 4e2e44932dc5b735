"""Reading a subject's derivatives for the report: runs, images, sidecars and tables.

The report reads nothing but the derivatives dataset (and the user's ``--derivatives``
folders, for a tumour mask): the runs of ``sub-X[/ses-Y]/perf/`` (one run per set of
entities other than ``desc``: an acquired run and its simulated doses ``rec-doseNN`` are
separate runs), sorted by the completion records (:mod:`bids_perfusion.records`), the
run's maps and masks, the AIF table ``desc-aif_timeseries.tsv``, the mean ROI curves
``desc-roi_timeseries.tsv``, the ROI statistics ``desc-roi_roistats.tsv`` and, for a
super-resolved run, its series ``desc-superres_dsc`` beside the acquired series it names
in ``Sources`` (``bids:raw:`` URIs, resolved with the ``DatasetLinks`` of
``dataset_description.json``). Every
reader returns an empty value for a file that is missing or unreadable: the report leaves
out what it cannot read.
"""

import json
import re
from pathlib import Path

import numpy as np

from bids_perfusion import records
from bids_perfusion.naming import join_entities, parse_name
from bids_perfusion.tsv import read_tsv

#: Masks of ``desc-<name>_mask`` drawn as ROIs, with their legend labels, in legend order.
ROI_MASKS = {"NAWM": "NAWM", "tumor": "tumour", "tumour": "tumour", "GM": "GM", "WM": "WM"}


def find_runs(subject_dir):
    """``{run: {(desc, suffix, extension): path}}`` of the files in ``perf/`` folders under
    ``subject_dir``; ``run`` is the file's entities without ``desc``, in order. Outputs in
    another space (``space-``) and transforms are left out: they are not runs of their
    own (the registration figures read them, :func:`space_file`)."""
    runs = {}
    for path in sorted(Path(subject_dir).glob("**/perf/*")):
        if not path.is_file() or "-" not in path.name:
            continue
        entities, suffix = parse_name(path.name)
        if "space" in entities or suffix == "xfm":
            continue
        run = join_entities({k: v for k, v in entities.items() if k != "desc"})
        extension = path.name[len(path.name.split(".")[0]):]
        runs.setdefault(run, {})[(entities.get("desc"), suffix, extension)] = path
    return runs


def checked_runs(output_dir, subject_dir, subject):
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


def space_file(run_file, run, space_entities, suffix):
    """The file ``<run>_<space entities>_<suffix>.nii.gz`` beside ``run_file`` (another
    output of the run), or None."""
    path = Path(run_file).with_name(f"{run}_{space_entities}_{suffix}.nii.gz")
    return path if path.is_file() else None


def read_json(path):
    """A JSON file as a dict (empty when it cannot be read)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def read_rows(path):
    """A TSV file as a list of dict rows (empty when there is none or it cannot be read)."""
    if path is None:
        return []
    try:
        return read_tsv(path)
    except OSError:
        return []


def column(rows, name):
    """Column ``name`` of TSV ``rows`` as a float array, or None when absent or not numeric."""
    try:
        return np.array([float(row[name]) for row in rows])
    except (KeyError, ValueError):
        return None


def load_image(path):
    """``(data, zooms)`` in RAS+ voxel order; a 4-D image of one volume becomes 3-D."""
    import nibabel as nib

    image = nib.as_closest_canonical(nib.load(str(path)))
    data = np.asarray(image.dataobj, dtype=float)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    return data, tuple(float(z) for z in image.header.get_zooms()[:2])


def nifti(files, desc, suffix):
    """The NIfTI ``desc-<desc>_<suffix>`` of a run's ``files``, or None."""
    return files.get((desc, suffix, ".nii.gz")) or files.get((desc, suffix, ".nii"))


def sidecar(files, desc, suffix):
    """The JSON sidecar of ``desc-<desc>_<suffix>`` of a run's ``files`` (empty if none)."""
    path = files.get((desc, suffix, ".json"))
    return read_json(path) if path else {}


def tumour_mask(files, derivatives, run):
    """The run's tumour mask: ``desc-tumor_mask`` of the run, else a ``label-tumor`` mask
    of the subject (and session) in the user's ``derivatives`` folders, or None."""
    path = nifti(files, "tumor", "mask") or nifti(files, "tumour", "mask")
    if path:
        return path
    wanted = parse_name(run + "_x")[0]
    for folder in derivatives:
        for candidate in sorted(Path(folder).glob(f"sub-{wanted['sub']}/**/*_mask.nii*")):
            entities = parse_name(candidate.name)[0]
            if entities.get("label") in ("tumor", "tumour") and (
                    entities.get("ses") == wanted.get("ses")):
                return candidate
    return None


def roi_masks(files, tumour_path):
    """``{legend label: path}`` of the ROI masks of a run (:data:`ROI_MASKS`), the tumour
    mask ``tumour_path`` (:func:`tumour_mask`) last when the run has none of its own."""
    paths = {}
    for desc, label in ROI_MASKS.items():
        path = nifti(files, desc, "mask")
        if path is not None:
            paths.setdefault(label, path)
    if tumour_path is not None and "tumour" not in paths:
        paths["tumour"] = tumour_path
    return paths


def roi_curves(files):
    """``(time, {legend label: mean ΔR2*})`` of ``desc-roi_timeseries.tsv`` (columns
    ``time`` and ``<roi>_delta_r2star``; ROI names as in :data:`ROI_MASKS`, ``brain``
    kept), or ``(None, {})`` when the run has no readable table."""
    rows = read_rows(files.get(("roi", "timeseries", ".tsv")))
    time = column(rows, "time") if rows else None
    if time is None:
        return None, {}
    curves = {}
    for name in rows[0]:
        if name.endswith("_delta_r2star"):
            roi = name.removesuffix("_delta_r2star")
            curve = column(rows, name)
            if curve is not None and np.isfinite(curve).any():
                curves[ROI_MASKS.get(roi, roi)] = curve
    return time, curves


def methods(output_dir):
    """The paragraphs of ``logs/CITATION.md`` (empty when there is none)."""
    try:
        text = (Path(output_dir) / "logs" / "CITATION.md").read_text()
    except OSError:
        return []
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def raw_source(output_dir, metadata):
    """The first ``bids:raw:`` file that a sidecar's ``Sources`` name, resolved with the
    ``raw`` link of the derivatives' ``dataset_description.json``; None when it cannot be
    found (the input dataset moved, or no link)."""
    from urllib.parse import unquote, urlparse

    link = (read_json(Path(output_dir) / "dataset_description.json").get("DatasetLinks")
            or {}).get("raw", "")
    if not link.startswith("file://"):
        return None
    for source in metadata.get("Sources") or []:
        if str(source).startswith("bids:raw:"):
            path = Path(unquote(urlparse(link).path)) / source.removeprefix("bids:raw:")
            return path if path.is_file() else None
    return None
