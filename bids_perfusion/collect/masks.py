"""Masks of a run given with ``--derivatives``: found by their ``label-`` entity, and
opened before processing (readable, non-empty, on the grid of the series); likewise the
grey- and white-matter partial-volume maps (``label-GM_probseg``, ``label-WM_probseg``) of
the tissue-aware ASL model."""

from collections import defaultdict
from pathlib import Path

import numpy as np

from bids_perfusion.asl.tissue import check_fraction, check_tissue_sum, resample_linear
from bids_perfusion.collect.layout import InputError
from bids_perfusion.errors import InputDataError
from bids_perfusion.interfaces.images import check_image, check_same_grid
from bids_perfusion.interfaces.nifti import load, load_mask, refused
from bids_perfusion.naming import parse_name

#: ``label-`` values of masks read from ``--derivatives``, with accepted spellings.
MASK_LABELS = {"brain": "brain", "tumor": "tumor", "tumour": "tumor", "NAWM": "NAWM",
               "nawm": "NAWM", "arteries": "arteries", "AIF": "arteries", "aif": "arteries",
               "GM": "GM", "WM": "WM"}


def derivative_masks(folders):
    """``{(subject, session): {mask name: path}}`` from ``*_label-<name>_mask`` files."""
    return _labelled_images(folders, "mask", MASK_LABELS)


def _labelled_images(folders, suffix, labels):
    """``{(subject, session): {name: path}}`` of the ``*_label-<label>_<suffix>`` images
    whose label ``labels`` names (the first found of each name)."""
    found = defaultdict(dict)
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"--derivatives {folder}: no such folder.")
        for path in sorted(folder.glob(f"sub-*/**/*_{suffix}.nii*")):
            entities = parse_name(path)[0]
            name = labels.get(entities.get("label", ""))
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


#: ``label-`` values of the partial-volume maps (``*_probseg``) read from ``--derivatives``
#: for the tissue-aware ASL model: grey and white matter.
PROBSEG_LABELS = {"GM": "GM", "WM": "WM"}


def derivative_probsegs(folders):
    """``{(subject, session): {'GM': path, 'WM': path}}`` from ``*_label-GM_probseg`` and
    ``*_label-WM_probseg`` files (a subject with only one of them is reported by
    :func:`check_probsegs`)."""
    return _labelled_images(folders, "probseg", PROBSEG_LABELS)


def check_probsegs(probsegs, series, header):
    """Open the GM and WM partial-volume maps of a run before processing: both given,
    readable, 3-D, fractions in [0, 1] that sum to at most 1 once on the series grid
    (resampled by world coordinates when on another grid,
    :func:`bids_perfusion.asl.tissue.resample_linear`)."""
    if not probsegs:
        return
    if missing := sorted(set(PROBSEG_LABELS.values()) - set(probsegs)):
        given = next(iter(probsegs.values()))
        raise InputDataError(f"{given}: the label-{missing[0]}_probseg of the same subject is "
                             f"missing (needed by {series}); give both GM and WM partial-volume "
                             "maps with --derivatives, or neither.")
    fractions = {}
    for name, path in sorted(probsegs.items()):
        probseg_header = check_image(path, kind="partial-volume map")
        if len(probseg_header.shape) == 4 and probseg_header.shape[3] != 1:
            raise InputDataError(f"{path}: {probseg_header.shape[3]} volumes; a probseg holds "
                                 f"one 3-D map of the {name} fraction: give one file per "
                                 "tissue.")
        with refused(path):
            values = check_fraction(load(path, dtype=np.float64).reshape(
                probseg_header.shape[:3]), name)
            fractions[name] = resample_linear(values, probseg_header.affine, header.affine,
                                              header.shape[:3])
    try:
        check_tissue_sum(fractions["GM"], fractions["WM"])
    except ValueError as error:
        raise InputDataError(f"{probsegs['GM']} and {probsegs['WM']}: {error}.") from None
