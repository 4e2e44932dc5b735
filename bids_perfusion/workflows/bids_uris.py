"""BIDS URIs of input files, for the ``Sources`` of derivative sidecars."""

from pathlib import Path


def bids_relative(path):
    """A path from its ``sub-`` folder on (``sub-01/perf/sub-01_asl.nii.gz``)."""
    parts = Path(path).parts
    starts = [i for i, part in enumerate(parts) if part.startswith("sub-")]
    return "/".join(parts[starts[0]:]) if starts else Path(path).name


def raw_uris(paths):
    """``bids:raw:<path>`` of each input file; ``raw`` is in the DatasetLinks of the
    output's dataset_description.json."""
    return [f"bids:raw:{bids_relative(path)}" for path in paths]
