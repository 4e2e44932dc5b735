"""Find the DSC runs of a BIDS dataset and validate them before any graph is built.

Everything a run needs is opened here, before processing: its sidecars (a sidecar that is
not valid JSON skips the runs it applies to, and only those), its image headers (a file
that is not NIfTI, a truncated file, impossible dimensions, grids that differ) and the
masks given with ``--derivatives``.
"""

from collections import defaultdict
from dataclasses import replace

from bids_perfusion.collect.layout import InputError, sidecar_of
from bids_perfusion.collect.masks import check_masks, derivative_masks
from bids_perfusion.dsc.metadata import DSCRunMetadata
from bids_perfusion.errors import InputDataError
from bids_perfusion.interfaces.images import check_image, check_same_grid
from bids_perfusion.workflows.options import DSCRun


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
    masks = derivative_masks(derivatives)
    runs, errors = [], []
    for key, images in sorted(groups.items()):
        entities = dict(key)
        images.sort(key=lambda image: image.get_entities().get("echo", 0))
        paths = [image.path for image in images]
        try:
            headers = [check_image(path, kind="DSC series") for path in paths]
            check_same_grid(paths, headers)
            metadata = DSCRunMetadata.from_sidecars(
                paths, [sidecar_of(layout, path) for path in paths],
                [header.shape for header in headers], field_strength=field_strength)
        except InputDataError as error:
            errors.append(str(error))
            continue
        files = [paths[i] for i in sorted(range(len(paths)), key=lambda i: float(
            sidecar_of(layout, paths[i])["EchoTime"]))]
        subject, session = entities["subject"], entities.get("session")
        run_masks = masks.get((subject, session), masks.get((subject, None), {}))
        try:
            check_masks(run_masks, files[0], headers[0])
        except InputDataError as error:
            errors.append(str(error))
            continue
        runs.append(DSCRun(subject, session, tuple(files), metadata, run_masks))
    return runs, errors


def usable_weights(options):
    """``(options, errors)``: the deep methods whose weights fail their check are dropped
    from ``options`` (the classical maps of every run are still made), and so is the
    super-resolution of ``--dsc-superres node-liif``, each with a message
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
    if options.superres == "node-liif":
        try:
            verify_weights(options.superres_weights or bundled_weights("superres"),
                           ("superres",))
        except WeightsError as error:
            errors.append(f"--dsc-superres node-liif: {error} No run is super-resolved; "
                          "the native maps are made. Give valid weights with "
                          "--superres-weights or use --dsc-superres linear.")
            options = replace(options, superres=None)
    return replace(options, methods=tuple(kept)), errors
