"""Find the DSC runs of a BIDS dataset and validate them before any graph is built."""

import json
from collections import defaultdict
from pathlib import Path

import nibabel as nib

from bids_perfusion.dsc.metadata import DSCRunMetadata, MetadataError
from bids_perfusion.interfaces.nifti import load_mask
from bids_perfusion.workflows.options import DSCRun

#: ``label-`` values of masks read from ``--derivatives``, with accepted spellings.
MASK_LABELS = {"brain": "brain", "tumor": "tumor", "tumour": "tumor", "NAWM": "NAWM",
               "nawm": "NAWM", "arteries": "arteries", "AIF": "arteries", "aif": "arteries",
               "GM": "GM", "WM": "WM"}


class InputError(ValueError):
    """The request cannot be served: no dataset, unknown subjects, no DSC data."""


def layout_of(bids_dir):
    from bids import BIDSLayout

    if not (Path(bids_dir) / "dataset_description.json").is_file():
        raise InputError(f"{bids_dir}: not a BIDS dataset (no dataset_description.json).")
    return BIDSLayout(str(bids_dir), validate=False, derivatives=False)


def collect_dsc_runs(layout, subjects=None, sessions=None, filters=None, derivatives=()):
    """Every DSC run of the requested subjects, and the errors of runs that cannot be used.

    Returns ``(runs, errors)``: a list of :class:`DSCRun` and a list of messages, each
    naming the file, the field and the fix. Raises :class:`InputError` when a requested
    subject does not exist; subjects without DSC simply give no run.
    """
    available = set(layout.get_subjects())
    subjects = sorted(subjects or available)
    if missing := sorted(set(subjects) - available):
        raise InputError(f"{layout.root}: no subject(s) {missing}; the dataset has "
                         f"{sorted(available)}.")
    query = {"suffix": "dsc", "extension": [".nii", ".nii.gz"], "subject": subjects,
             **(filters or {})}
    if sessions:
        query["session"] = sessions
    groups = defaultdict(list)
    for image in layout.get(**query):
        entities = {k: v for k, v in image.get_entities().items() if k != "echo"}
        groups[tuple(sorted(entities.items()))].append(image)
    masks = _derivative_masks(derivatives)
    runs, errors = [], []
    for key, images in sorted(groups.items()):
        entities = dict(key)
        images.sort(key=lambda image: image.get_entities().get("echo", 0))
        paths = [image.path for image in images]
        try:
            metadata = DSCRunMetadata.from_sidecars(
                paths, [_sidecar(layout, path) for path in paths],
                [nib.load(path).shape for path in paths])
        except MetadataError as error:
            errors.append(str(error))
            continue
        files = sorted(paths, key=lambda p: _sidecar(layout, p).get("EchoTime", 0))
        subject, session = entities["subject"], entities.get("session")
        run_masks = masks.get((subject, session), masks.get((subject, None), {}))
        try:
            for mask in run_masks.values():
                load_mask(mask, nib.load(files[0]).shape)
        except ValueError as error:
            errors.append(f"{error} (needed by {files[0]})")
            continue
        runs.append(DSCRun(subject, session, tuple(files), metadata, run_masks))
    return runs, errors


def _sidecar(layout, path):
    try:
        return layout.get_metadata(path)
    except json.JSONDecodeError as error:
        raise MetadataError(f"{path}: its JSON sidecar is not valid JSON ({error}).") from None


def _derivative_masks(folders):
    """``{(subject, session): {mask name: path}}`` from ``*_label-<name>_mask`` files."""
    found = defaultdict(dict)
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"--derivatives {folder}: no such folder.")
        for path in sorted(folder.glob("sub-*/**/*_mask.nii*")):
            entities = dict(part.split("-", 1) for part in path.name.split(".")[0].split("_")
                            if "-" in part)
            name = MASK_LABELS.get(entities.get("label", ""))
            if name:
                found[(entities["sub"], entities.get("ses"))].setdefault(name, str(path))
    return found
