"""The T1w of each subject whose runs are written in a space other than ``run``.

``--output-spaces T1w`` and the template reach their grids through the subject's T1w
(``anat/sub-X[_ses-Y][_acq-...][_run-N]_T1w.nii[.gz]``): the session's own, else one
without a session. With several, the first in BIDS order is used (and named in the log).
A brain mask of the T1w may come from ``--derivatives``
(``sub-X/[ses-Y/]anat/*_desc-brain_mask.nii[.gz]``, sMRIPrep's name); without one the T1w
is skull-stripped through the template (:func:`bids_perfusion.spatial.registration.normalise`).
A subject without a usable T1w has its runs skipped, each with a message; the others run.
"""

import logging
from pathlib import Path

from bids_perfusion.errors import InputDataError
from bids_perfusion.interfaces.images import check_image, check_same_grid
from bids_perfusion.naming import parse_name
from bids_perfusion.spatial.spaces import Anatomy

LOGGER = logging.getLogger("bids_perfusion")


def collect_anatomy(layout, runs, options, derivatives=()):
    """``(anatomy, usable, errors)``: the :class:`Anatomy` of each (subject, session) of
    ``runs`` when ``options`` (:class:`~bids_perfusion.spatial.spaces.SpatialOptions`)
    need a T1w, the runs that can be served, and one message per run that cannot."""
    if not options.needs_t1w:
        return {}, list(runs), []
    anatomy, problems = {}, {}
    for key in dict.fromkeys((run.subject, run.session) for run in runs):
        try:
            anatomy[key] = _anatomy_of(layout, *key, derivatives)
        except InputDataError as error:
            problems[key] = str(error)
    usable = [run for run in runs if (run.subject, run.session) in anatomy]
    spaces = " ".join(value for value in options.output_spaces if value != "run")
    errors = [f"{problems[(run.subject, run.session)]} (--output-spaces {spaces}: the run "
              f"{Path(getattr(run, 'file', None) or run.files[0]).name} is skipped; drop "
              "those spaces to write its maps in its own grid only)"
              for run in runs if (run.subject, run.session) in problems]
    return anatomy, usable, errors


def _anatomy_of(layout, subject, session, derivatives):
    query = {"subject": subject, "suffix": "T1w", "datatype": "anat",
             "extension": [".nii", ".nii.gz"]}
    images = layout.get(**query, session=session) if session else []
    images = images or layout.get(**query, session=None) or (
        [] if session else layout.get(**query))
    where = f"sub-{subject}" + (f"/ses-{session}" if session else "")
    if not images:
        raise InputDataError(f"{layout.root}/{where}/anat: no T1w "
                             f"(sub-{subject}{f'_ses-{session}' if session else ''}"
                             "_T1w.nii[.gz]); the output spaces T1w and "
                             "MNI152NLin2009aSym need one: add it")
    paths = sorted(image.path for image in images)
    if len(paths) > 1:
        LOGGER.info("%s has %d T1w images; using %s", where, len(paths), paths[0])
    t1w = paths[0]
    header = check_image(t1w, kind="T1w")
    if len(header.shape) != 3 and not (len(header.shape) == 4 and header.shape[3] == 1):
        raise InputDataError(f"{t1w}: a T1w is a 3-D image, got shape {header.shape}; give "
                             "one volume.")
    mask = _brain_mask(derivatives, subject, session)
    if mask:
        check_same_grid([t1w, mask], [header, check_image(mask, kind="mask")],
                        what="T1w brain mask")
    return Anatomy(subject, session, t1w, mask)


def _brain_mask(derivatives, subject, session):
    """The first ``*_desc-brain_mask`` of the subject's anat/ in ``derivatives``."""
    for folder in derivatives:
        for path in sorted(Path(folder).glob(f"sub-{subject}/**/anat/*_desc-brain_mask.nii*")):
            entities = parse_name(path)[0]
            if entities.get("sub") == subject and entities.get("ses") == session \
                    and "space" not in entities:
                return str(path)
    return None
