"""Masks of a run given with ``--derivatives``: found by their ``label-`` entity, and
opened before processing (readable, non-empty, on the grid of the series)."""

from collections import defaultdict
from pathlib import Path

from bids_perfusion.collect.layout import InputError
from bids_perfusion.errors import InputDataError
from bids_perfusion.interfaces.images import check_image, check_same_grid
from bids_perfusion.interfaces.nifti import load_mask
from bids_perfusion.naming import parse_name

#: ``label-`` values of masks read from ``--derivatives``, with accepted spellings.
MASK_LABELS = {"brain": "brain", "tumor": "tumor", "tumour": "tumor", "NAWM": "NAWM",
               "nawm": "NAWM", "arteries": "arteries", "AIF": "arteries", "aif": "arteries",
               "GM": "GM", "WM": "WM"}


def derivative_masks(folders):
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


def check_masks(masks, series, header):
    """Open every mask of a run: readable, non-empty, on the grid of ``series``."""
    for mask in masks.values():
        mask_header = check_image(mask, kind="mask")
        check_same_grid([series, mask], [header, mask_header], what="mask")
        try:
            load_mask(mask, header.shape)
        except ValueError as error:
            raise InputDataError(f"{error} (needed by {series})") from None
