"""The output block of every run: a barrier, one sink per file, then the completion record.

DSC and ASL runs end the same way (DESIGN.md, section 4): nothing is written until every
output of the run exists (:class:`~bids_perfusion.interfaces.bids.RunBarrier`, which also
removes the run's previous completion record), every NIfTI and table gets a JSON sidecar
naming its ``Sources``, and once every sink has written, the run's completion record
``logs/runs/<workflow name>.json`` (:mod:`bids_perfusion.records`) lists the files with
their SHA-256, the run's options and its methods text.
"""

import json
from dataclasses import asdict

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_perfusion.interfaces.bids import DerivativesDataSink, RunBarrier
from bids_perfusion.interfaces.provenance import RunRecord
from bids_perfusion.workflows.bids_uris import raw_uris

#: Suffixes of outputs written as TSV tables (the others are compressed NIfTI).
TABLES = ("timeseries", "roistats")
#: ROI masks that ROI statistics use when they are given or derived, in table order.
ROI_NAMES = ("brain", "tumor", "NAWM", "GM", "WM")


def mask_sidecar(mask_type, description):
    """BIDS-Derivatives sidecar of a mask: ``Type`` (Brain, ROI...) and ``Description``."""
    return {"Type": mask_type, "Description": description}


def brain_mask_sink(source, given, derived_from):
    """The sink entry of a run's brain mask ``source`` (node, field): given with
    ``--derivatives`` or ``derived_from`` the run's images."""
    return (*source, {"desc": "brain", "suffix": "mask"}, None,
            mask_sidecar("Brain", "brain mask of the run (" + (
                "given with --derivatives)" if given else f"derived from {derived_from})")))


def merge_fields(workflow, sources, name):
    """A :class:`~nipype.interfaces.utility.Merge` node of ``workflow`` whose list ``out``
    holds the outputs ``sources`` ((node, field) pairs), in order. It only moves file
    names, so it runs in the main process (no worker round trip)."""
    merge = pe.Node(niu.Merge(len(sources)), name=name, run_without_submitting=True)
    for index, (node, field) in enumerate(sources, start=1):
        workflow.connect(node, field, merge, f"in{index}")
    return merge


def connect_outputs(workflow, source_files, output_dir, sinks, *, options, methods,
                    extra_entities=None, extra_sidecar=None, run_name=None):
    """Add the barrier, the sinks and the completion record of a run to ``workflow``.

    Parameters
    ----------
    workflow : LiterateWorkflow
        The workflow the output block is added to (the run's, or its outputs
        sub-workflow).
    source_files : list of str
        The run's raw files (the first is the sinks' ``source_file``; all are ``Sources``).
    output_dir : str or Path
    sinks : list of tuple
        ``(node, field, entities, metadata, sidecar)`` of every file to write: ``metadata``
        is the (node, field) of a dict merged into the sidecar at run time, or None; a
        sidecar's own ``Sources`` replaces the default.
    options : dataclass
        The run's options (``DSCOptions`` or ``ASLOptions``), saved in the record.
    methods : str
        The run's methods text, saved in the record (``logs/CITATION.md`` is their union).
    extra_entities : dict, optional
        Entities added to every file name (``reconstruction`` of a simulated dose).
    extra_sidecar : dict, optional
        Metadata added to every sidecar (how a simulated dose was simulated).
    run_name : str, optional
        The run's name, which names its completion record: ``workflow.name`` when omitted.
    """
    output_dir = str(output_dir)
    run_name = run_name or workflow.name
    sources = raw_uris(source_files)
    barrier = pe.Node(RunBarrier(source_file=source_files[0], output_dir=output_dir,
                                 run=run_name), name="barrier", run_without_submitting=True)
    merge_all = merge_fields(workflow, [(node, field) for node, field, *_ in sinks],
                             "merge_outputs")
    written = pe.Node(niu.Merge(2 * len(sinks)), name="merge_written",
                      run_without_submitting=True)
    record = pe.Node(RunRecord(output_dir=output_dir, run=run_name, methods=methods,
                               options=json.loads(json.dumps(asdict(options), default=str))),
                     name="run_record", run_without_submitting=True)
    workflow.connect([(merge_all, barrier, [("out", "in_files")]),
                      (written, record, [("out", "in_files")])])
    for index, (node, field, entities, metadata, sidecar) in enumerate(sinks, start=1):
        label = "_".join(str(v) for v in entities.values())
        sink = pe.Node(
            DerivativesDataSink(base_directory=output_dir, dismiss_entities=["echo"],
                                compress=entities["suffix"] not in (*TABLES, "xfm") or None,
                                **entities, **(extra_entities or {}),
                                **{"Sources": sources, **(extra_sidecar or {}),
                                   **sidecar}),
            name=f"ds_{label}", run_without_submitting=True)
        workflow.connect([(node, sink, [(field, "in_file")]),
                          (barrier, sink, [("source_file", "source_file")]),
                          (sink, written, [("out_file", f"in{2 * index - 1}"),
                                           ("out_meta", f"in{2 * index}")])])
        if metadata is not None:
            workflow.connect(*metadata, sink, "meta_dict")
    return workflow
