"""BIDS file names: entities, subject labels and dose labels, one home each.

A BIDS file name is ``<key>-<value>[_<key>-<value>...]_<suffix><extension>`` (BIDS
specification, "Filenames"): :func:`parse_name` splits it, :func:`join_entities` joins
entities back, :func:`subject_of` finds the subject a message or path names, and
:func:`dose_label` names a contrast-agent dose (the ``rec`` entity of a simulated dose
and the ``acq`` entity of a phantom dose).
"""

import re
from pathlib import Path

#: A subject label as it appears in a file name or message: ``sub-<alphanumerics>``.
SUBJECT = re.compile(r"sub-([A-Za-z0-9]+)")


def parse_name(name):
    """``(entities, suffix)`` of a BIDS file name or path, ``entities`` a dict in the
    order of the name: ``'sub-01_desc-osvd_cbf.nii.gz'`` -> ``({'sub': '01', 'desc':
    'osvd'}, 'cbf')``. Parts without ``-`` other than the suffix are ignored."""
    *parts, suffix = Path(name).name.split(".")[0].split("_")
    return dict(part.split("-", 1) for part in parts if "-" in part), suffix


def entities(name):
    """``{key: value}`` of the entities of a BIDS file name or path (suffix left out)."""
    return parse_name(name)[0]


def join_entities(pairs):
    """``{'sub': '01', 'ses': 'a'}`` -> ``'sub-01_ses-a'``."""
    return "_".join(f"{key}-{value}" for key, value in pairs.items())


def subject_of(text):
    """The first subject label ``text`` names (``'.../sub-01_dsc.nii.gz'`` -> ``'01'``),
    or None."""
    match = SUBJECT.search(str(text))
    return match.group(1) if match else None


def names_subject(text, subject):
    """Whether ``text`` names ``sub-<subject>`` (not a longer label that starts with it)."""
    return re.search(rf"sub-{re.escape(subject)}(?![A-Za-z0-9])", str(text)) is not None


def dose_label(dose):
    """Label of a dose fraction, in percent with at least two digits: 0.5 -> 'dose50',
    0.05 -> 'dose05', 1.0 -> 'dose100'."""
    return f"dose{round(100 * dose):02d}"
