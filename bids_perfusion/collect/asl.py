"""Find the ASL runs of a BIDS dataset and validate them before any graph is built.

Each ``perf/*_asl.nii[.gz]`` needs its ``*_aslcontext.tsv`` beside it, its JSON sidecar
(inheritance honoured by pybids) and, for ``M0Type: Separate``, an ``*_m0scan`` image:
the one whose ``IntendedFor`` names the series (BIDS URI ``bids::sub-01/perf/...`` or a
path relative to the subject folder), else the one with the same entities.
"""

import os
from collections import defaultdict
from pathlib import Path

from bids_perfusion.asl.context import read_aslcontext
from bids_perfusion.asl.metadata import ASLRunMetadata
from bids_perfusion.collect.layout import InputError, sidecar_of
from bids_perfusion.collect.masks import (
    check_masks,
    check_probsegs,
    derivative_masks,
    derivative_probsegs,
)
from bids_perfusion.dsc.metadata import MetadataError
from bids_perfusion.errors import InputDataError
from bids_perfusion.interfaces.images import check_image, check_same_grid
from bids_perfusion.workflows.asl_options import ASLRun

IMAGE_EXTENSIONS = [".nii", ".nii.gz"]


def collect_asl_runs(layout, subjects=None, sessions=None, filters=None, derivatives=(),
                     options=None):
    """Every ASL run of the requested subjects, and the errors of runs that cannot be used.

    Returns ``(runs, errors)``: a list of :class:`ASLRun` and a list of messages, each
    naming the file, the field and the fix. Raises :class:`InputError` when a requested
    subject does not exist; subjects without ASL simply give no run. ``options``
    (:class:`ASLOptions`) lets overrides such as ``labeling_efficiency`` or ``t1_blood``
    settle what the metadata alone cannot.
    """
    available = set(layout.get_subjects())
    subjects = sorted(subjects or available)
    if missing := sorted(set(subjects) - available):
        raise InputError(f"{layout.root}: no subject(s) {missing}; the dataset has "
                         f"{sorted(available)}.")
    query = {"suffix": "asl", "extension": IMAGE_EXTENSIONS, "subject": subjects,
             **(filters or {})}
    if sessions:
        query["session"] = sessions
    images = sorted(layout.get(**query), key=lambda image: image.path)
    m0_links = _m0_links(layout, subjects, sessions)
    masks = derivative_masks(derivatives)
    probsegs = derivative_probsegs(derivatives)
    runs, errors = [], []
    for image in images:
        path = image.path
        try:
            run = _run(layout, image, m0_links, masks, probsegs, options)
        except InputDataError as error:
            errors.append(str(error))
            continue
        except (ValueError, TypeError) as error:  # a sidecar value of an unexpected type
            errors.append(f"{path} or its sidecars: {error}; fix the field it names.")
            continue
        runs.append(run)
    return runs, errors


def usable_denoiser(options, runs):
    """``(options, errors)`` of ``--asl-denoise``: the denoiser's weights (given, else
    bundled) are checked against their model card (sha256, model name) before any
    processing; when they fail, denoising is dropped (``options.denoise`` None) and every
    run is still quantified. Single-delay runs need weights of the method, multi-delay
    runs multi-delay DeepASL weights (:func:`bids_perfusion.nn.deepasl.weights_for_run`);
    runs the weights cannot serve (the other kind, no ΔM) get a message each; their
    other maps are made."""
    from dataclasses import replace

    from bids_perfusion.nn.deepasl import weights_for_run
    from bids_perfusion.nn.deepasl_multidelay import MODEL_NAME
    from bids_perfusion.nn.weights import WeightsError, bundled_weights, verify_weights

    method = options.denoise
    if method is None:
        return options, []
    advice = (" No run is denoised; the other ASL maps are made. Give weights trained with "
              f"'bids-perfusion-train {method}' with --asl-denoise-weights.")
    models = (method, MODEL_NAME) if method == "deepasl" else (method,)
    try:
        if options.denoise_weights is not None:
            verify_weights(options.denoise_weights, models)
        else:
            verify_weights(bundled_weights(method), (method,))
            if method == "deepasl" and any(run.metadata.multi_delay for run in runs):
                verify_weights(bundled_weights(MODEL_NAME), (MODEL_NAME,))
    except WeightsError as error:
        return replace(options, denoise=None), [f"--asl-denoise {method}: {error}" + advice]
    errors = []
    for run in runs:
        meta = run.metadata
        if not meta.quantifiable:
            errors.append(f"{run.file}: --asl-denoise {method} denoises the mean ΔM; this "
                          "run has no ΔM (CBF volumes), so it is quantified without "
                          "denoising.")
            continue
        try:
            weights_for_run(method, options.denoise_weights, meta.multi_delay)
        except WeightsError as error:
            errors.append(f"{run.file}: --asl-denoise {method}: this run has "
                          + ("several delays" if meta.multi_delay else "one delay")
                          + f" and {error}, so it is quantified without denoising.")
    return options, errors


def _run(layout, image, m0_links, masks, probsegs, options):
    path = image.path
    entities = image.get_entities()
    context_path = Path(_stem(path) + "context.tsv")
    if not context_path.is_file():
        raise MetadataError(f"{path}: no {context_path.name} beside it; BIDS ASL needs one "
                            "row 'volume_type' per volume (control, label, m0scan, deltam, "
                            "cbf or noRF).")
    volume_types = read_aslcontext(context_path)
    sidecar = sidecar_of(layout, path)
    header = check_image(path, kind="ASL series")
    shape = header.shape
    m0_file = m0_sidecar = m0_shape = None
    if sidecar.get("M0Type") == "Separate":
        m0_file = _find_m0(layout, image, m0_links)
        if m0_file is not None:
            m0_sidecar = sidecar_of(layout, m0_file)
            m0_header = check_image(m0_file, kind="M0 scan")
            check_same_grid([path, m0_file], [header, m0_header], what="M0 scan")
            m0_shape = m0_header.shape
    metadata = ASLRunMetadata.from_sidecar(path, sidecar, context_path, volume_types, shape,
                                           m0_file, m0_sidecar, m0_shape)
    if options is not None and metadata.quantifiable:
        metadata.efficiency(options.labeling_efficiency)
        metadata.t1_blood(options.t1_blood)
    elif metadata.quantifiable:
        metadata.efficiency()
        metadata.t1_blood()
    subject, session = entities["subject"], entities.get("session")
    run_masks = masks.get((subject, session), masks.get((subject, None), {}))
    check_masks(run_masks, path, header)
    run_probsegs = probsegs.get((subject, session), probsegs.get((subject, None), {}))
    check_probsegs(run_probsegs, path, header)
    return ASLRun(subject, session, path, metadata, dict(run_masks), dict(run_probsegs))


def _stem(path):
    """``.../sub-01_asl.nii.gz`` -> ``.../sub-01_asl`` (the aslcontext adds 'context.tsv')."""
    text = str(path)
    for extension in (".nii.gz", ".nii"):
        if text.endswith(extension):
            return text[: -len(extension)]
    return text


def _relative(layout, path):
    """``path`` relative to the dataset, links not followed (a dataset made of symbolic
    links, as ``cp -rs`` or DataLad make, is read like any other)."""
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(layout.root))
                ).as_posix()


def _m0_links(layout, subjects, sessions):
    """``{series path relative to the dataset: [m0scan paths]}`` from ``IntendedFor``."""
    query = {"suffix": "m0scan", "extension": IMAGE_EXTENSIONS, "subject": subjects}
    if sessions:
        query["session"] = sessions
    links = defaultdict(list)
    for m0 in layout.get(**query):
        try:
            targets = sidecar_of(layout, m0.path).get("IntendedFor") or []
        except MetadataError:  # an invalid sidecar: reported with the run that needs it
            continue
        for target in [targets] if isinstance(targets, str) else targets:
            target = str(target)
            if target.startswith("bids::"):
                relative = target.removeprefix("bids::")
            elif target.startswith("bids:"):
                continue  # another dataset
            else:  # deprecated: relative to the subject folder
                subject_dir = f"sub-{m0.get_entities()['subject']}"
                relative = f"{subject_dir}/{target.lstrip('/')}"
            links[relative.lstrip("/")].append(m0.path)
    return links


def _find_m0(layout, image, links):
    """The M0 scan of a series: named by IntendedFor, else with the same entities."""
    linked = links.get(_relative(layout, image.path), [])
    if len(linked) == 1:
        return linked[0]
    if len(linked) > 1:
        raise MetadataError(
            f"{image.path}: several M0 scans name it in 'IntendedFor' "
            f"({', '.join(sorted(Path(p).name for p in linked))}); keep one.")
    entities = {k: v for k, v in image.get_entities().items()
                if k not in ("suffix", "extension", "datatype")}
    candidates = layout.get(suffix="m0scan", extension=IMAGE_EXTENSIONS, **entities)
    exact = [c.path for c in candidates
             if {k: v for k, v in c.get_entities().items()
                 if k not in ("suffix", "extension", "datatype")} == entities]
    return exact[0] if len(exact) == 1 else None
