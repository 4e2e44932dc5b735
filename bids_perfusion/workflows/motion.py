"""Head-motion correction in a run's workflow: the node, its methods text, its sidecar
record and the files it writes (``desc-confounds_timeseries.tsv``, ``desc-preproc``)."""

from nipype.pipeline import engine as pe

from bids_perfusion.interfaces.motion import ASLMotionCorrection, DSCMotionCorrection
from bids_perfusion.motion.realign import SCHEDULE

#: How frames are resampled (:func:`bids_perfusion.motion.series.realign_dsc`).
INTERPOLATION = "cubic B-spline"


def motion_record(options, modality):
    """The ``MotionCorrection`` sidecar entry of every map of a run: what was done, with
    which settings, or that it was not done (``options``: DSC or ASL options)."""
    if not options.motion_correction:
        return {"MotionCorrection": "none (--no-motion-correction, or a series of ΔM or "
                                    "CBF volumes, which cannot be realigned)"}
    reference = ("mean of the pre-bolus frames" if modality == "dsc" else
                 "the M0 image (separate scan or mean M0 volume), else the mean control")
    record = {
        "Method": "rigid realignment of every volume, Gauss-Newton least squares with a "
                  "linear intensity model (bids_perfusion.motion)",
        "Reference": reference,
        "Schedule": [{"SmoothingSigma_mm": level.sigma_mm, "VoxelStep": level.step,
                      "MaxIterations": level.iterations} for level in SCHEDULE],
        "Interpolation": INTERPOLATION,
        "FramewiseDisplacementThreshold": options.fd_threshold,
    }
    if modality == "asl":
        record["MotionOutliersExcluded"] = options.exclude_motion_outliers
    return {"MotionCorrection": record}


def motion_text(options, modality):
    """Methods text of the motion correction of a run (empty without it)."""
    if not options.motion_correction:
        return ""
    if modality == "dsc":
        what = ("Every frame of the DSC series was realigned to the mean of its pre-bolus "
                "frames (themselves first realigned to their mean), before the conversion to "
                "ΔR2*; every echo was moved with the transforms of the first")
    else:
        what = ("Every control, label and M0 volume of the ASL series was realigned to the "
                "M0 image (the separate M0 scan or the mean M0 volume; without M0 volumes, "
                "the mean control volume), before the subtraction")
    excluded = (" Control/label pairs holding an outlier were left out of the mean ΔM."
                if modality == "asl" and options.exclude_motion_outliers else "")
    return (f"{what}, by a rigid transform found by Gauss-Newton least squares with a "
            "linear intensity model that absorbs global signal changes, coarse to fine "
            "[@friston1995], each volume resampled once (cubic B-spline). Framewise displacement "
            "was computed from the six parameters [@power2012]; volumes above "
            f"{options.fd_threshold:g} mm were flagged as motion outliers.{excluded} ")


def motion_node(run, options, modality):
    """The motion-correction node of ``run`` (``motion_correction``), inputs set."""
    if modality == "dsc":
        return pe.Node(DSCMotionCorrection(in_files=list(run.files),
                                           fd_threshold=options.fd_threshold,
                                           source_file=run.files[0]),
                       name="motion_correction")
    node = pe.Node(ASLMotionCorrection(in_file=run.file,
                                       volume_types=list(run.metadata.context.volume_types),
                                       fd_threshold=options.fd_threshold,
                                       source_file=run.file),
                   name="motion_correction")
    if run.metadata.m0_type == "Separate" and run.metadata.m0_file:
        node.inputs.m0_file = run.metadata.m0_file
    return node


def motion_sinks(source, options, modality, series_source=None):
    """The sink entries (:func:`~bids_perfusion.workflows.outputs.connect_outputs`) of the
    confounds table of ``source`` (the node, or the node that relays its ``confounds``
    and ``motion_metadata``), and of the corrected series ``series_source`` (node,
    field) with ``--write-series``."""
    node, confounds, metadata = source
    sinks = [(node, confounds, {"desc": "confounds", "suffix": "timeseries"},
              (node, metadata),
              {"Description": "head motion of every volume: six rigid-body parameters, "
                              "framewise displacement and motion-outlier flags"})]
    if options.write_series and series_source is not None:
        sinks.append((*series_source, {"desc": "preproc", "suffix": modality},
                      None, {"Description": "the series after head-motion correction"
                             + (" (first echo)" if modality == "dsc" else ""),
                             "SkullStripped": False}))
    return sinks
