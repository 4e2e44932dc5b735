"""Find the DSC runs of a BIDS dataset and validate them before any graph is built.

Everything a run needs is opened here, before processing: its sidecars (a sidecar that is
not valid JSON skips the runs it applies to, and only those), its image headers (a file
that is not NIfTI, a truncated file, impossible dimensions, grids that differ) and the
masks given with ``--derivatives``.
"""

import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from bids import BIDSLayout, BIDSLayoutIndexer
from bids.layout.validation import DEFAULT_LOCATIONS_TO_IGNORE

from bids_perfusion.dsc.metadata import DSCRunMetadata, MetadataError
from bids_perfusion.errors import InputDataError
from bids_perfusion.interfaces.images import check_image, check_same_grid
from bids_perfusion.interfaces.nifti import load_mask
from bids_perfusion.naming import parse_name
from bids_perfusion.workflows.options import DSCRun

#: ``label-`` values of masks read from ``--derivatives``, with accepted spellings.
MASK_LABELS = {"brain": "brain", "tumor": "tumor", "tumour": "tumor", "NAWM": "NAWM",
               "nawm": "NAWM", "arteries": "arteries", "AIF": "arteries", "aif": "arteries",
               "GM": "GM", "WM": "WM"}


class InputError(ValueError):
    """The request cannot be served: no dataset, unknown subjects, no DSC data."""


#: Top-level folders of a dataset that hold no raw data (pybids' defaults, and derivatives).
NOT_RAW = ("code", "derivatives", "models", "sourcedata", "stimuli")


def layout_of(bids_dir):
    """The pybids layout of the raw data, indexed without the sidecars that are not valid
    JSON objects; those are kept in ``layout.invalid_sidecars`` ({path: problem}) and make
    ``get_metadata`` raise :class:`MetadataError` for the files they apply to."""
    description = Path(bids_dir) / "dataset_description.json"
    if not description.is_file():
        raise InputError(f"{bids_dir}: not a BIDS dataset (no dataset_description.json).")
    if problem := _json_problem(description):
        raise InputError(f"{description}: {problem}; fix it (BIDS needs at least 'Name' "
                         "and 'BIDSVersion').")
    invalid = {}
    for path in sorted(Path(bids_dir).rglob("*.json")):
        parts = path.relative_to(bids_dir).parts
        if parts[0] in NOT_RAW or any(part.startswith(".") for part in parts):
            continue
        if problem := _json_problem(path):
            invalid[path] = problem
    indexer = BIDSLayoutIndexer(validate=False, ignore=[*DEFAULT_LOCATIONS_TO_IGNORE,
                                                        *map(str, invalid)])
    return CheckedLayout(str(bids_dir), validate=False, derivatives=False, indexer=indexer,
                         invalid_sidecars=invalid)


def _json_problem(path):
    """Why ``path`` is not a JSON object, or None."""
    try:
        content = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"not valid JSON ({error})"
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    if not isinstance(content, dict):
        return f"holds a JSON {type(content).__name__}, not an object of fields"
    return None


class CheckedLayout(BIDSLayout):
    """A BIDSLayout that refuses the metadata of files an invalid sidecar applies to."""

    def __init__(self, root, *args, invalid_sidecars=None, **kwargs):
        super().__init__(root, *args, **kwargs)
        self.invalid_sidecars = dict(invalid_sidecars or {})

    def get_metadata(self, path, *args, **kwargs):
        for sidecar, problem in self.invalid_sidecars.items():
            if _applies_to(sidecar, path):
                raise MetadataError(
                    f"{sidecar}: {problem}; it is a sidecar of {path}. Fix the JSON "
                    "(python -m json.tool shows where it breaks).")
        return super().get_metadata(path, *args, **kwargs)


def _applies_to(sidecar, path):
    """BIDS inheritance: a sidecar applies to a file in its folder or below, with the same
    suffix and a subset of its entities."""
    (keys, suffix), (file_keys, file_suffix) = parse_name(sidecar), parse_name(path)
    folder = Path(sidecar).parent
    return (suffix == file_suffix and keys.items() <= file_keys.items()
            and (folder == Path(path).parent or folder in Path(path).parents))


def collect_dsc_runs(layout, subjects=None, sessions=None, filters=None, derivatives=(),
                     field_strength=None):
    """Every DSC run of the requested subjects, and the errors of runs that cannot be used.

    ``field_strength`` (tesla, ``--field-strength``) replaces the ``MagneticFieldStrength``
    of the sidecars, which is otherwise required.

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
            headers = [check_image(path, kind="DSC series") for path in paths]
            check_same_grid(paths, headers)
            metadata = DSCRunMetadata.from_sidecars(
                paths, [_sidecar(layout, path) for path in paths],
                [header.shape for header in headers], field_strength=field_strength)
        except InputDataError as error:
            errors.append(str(error))
            continue
        files = [paths[i] for i in sorted(range(len(paths)), key=lambda i: float(
            _sidecar(layout, paths[i])["EchoTime"]))]
        subject, session = entities["subject"], entities.get("session")
        run_masks = masks.get((subject, session), masks.get((subject, None), {}))
        try:
            check_masks(run_masks, files[0], headers[0])
        except InputDataError as error:
            errors.append(str(error))
            continue
        runs.append(DSCRun(subject, session, tuple(files), metadata, run_masks))
    return runs, errors


def check_masks(masks, series, header):
    """Open every mask of a run: readable, non-empty, on the grid of ``series``."""
    for mask in masks.values():
        mask_header = check_image(mask, kind="mask")
        check_same_grid([series, mask], [header, mask_header], what="mask")
        try:
            load_mask(mask, header.shape)
        except ValueError as error:
            raise InputDataError(f"{error} (needed by {series})") from None


def usable_weights(options):
    """``(options, errors)``: the deep methods whose weights fail their check are dropped
    from ``options`` (the classical maps of every run are still made), each with a message
    naming the file and the fix. Weights are checked against their model card's sha256
    here, before any processing (:func:`bids_perfusion.nn.weights.verify_weights`)."""
    from bids_perfusion.nn.weights import BUNDLED, WeightsError, bundled_weights, verify_weights

    kept, errors = list(options.methods), []
    for method, (_file, models) in BUNDLED.items():
        if method not in options.methods:
            continue
        option = f"{method}_weights"
        try:
            verify_weights(getattr(options, option) or bundled_weights(method), models)
        except WeightsError as error:
            kept.remove(method)
            errors.append(f"--dsc-methods {method}: {error} Its maps are not made; the "
                          "other methods run. Give valid weights with "
                          f"--{option.replace('_', '-')}.")
    return replace(options, methods=tuple(kept)), errors


def _sidecar(layout, path):
    """The metadata of ``path`` (BIDS inheritance applied); MetadataError names a bad
    sidecar."""
    return layout.get_metadata(path)


def _derivative_masks(folders):
    """``{(subject, session): {mask name: path}}`` from ``*_label-<name>_mask`` files."""
    found = defaultdict(dict)
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"--derivatives {folder}: no such folder.")
        for path in sorted(folder.glob("sub-*/**/*_mask.nii*")):
            entities = parse_name(path)[0]
            name = MASK_LABELS.get(entities.get("label", ""))
            if name:
                found[(entities["sub"], entities.get("ses"))].setdefault(name, str(path))
    return found
