"""The pybids layout of a BIDS dataset, read defensively, and the request's errors.

A sidecar that is not a valid JSON object is left out of the index and refuses the
metadata of the files it applies to (BIDS inheritance), so that it skips those runs only.
"""

import json
from pathlib import Path

from bids import BIDSLayout, BIDSLayoutIndexer
from bids.layout.validation import DEFAULT_LOCATIONS_TO_IGNORE

from bids_perfusion.dsc.metadata import MetadataError
from bids_perfusion.naming import parse_name


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


def sidecar_of(layout, path):
    """The metadata of ``path`` (BIDS inheritance applied); MetadataError names a bad
    sidecar."""
    return layout.get_metadata(path)
