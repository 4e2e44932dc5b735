"""The front end of a DSC run: masks, signal to ΔR2*, arterial input function, timing."""

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe
from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from bids_perfusion.interfaces.aif import ArterialInputFunction
from bids_perfusion.interfaces.lowdose import SimulateLowDose
from bids_perfusion.interfaces.maps import BolusTiming
from bids_perfusion.interfaces.masks import BrainMask, NAWMMask
from bids_perfusion.interfaces.signal import SignalToDeltaR2Star
from bids_perfusion.interfaces.superres import ResampleMask, SuperResolve
from bids_perfusion.workflows.motion import motion_node

#: Masks a run may be given (``--derivatives``) that pass through the front end.
GIVEN_MASKS = ("brain", "tumor", "GM", "WM", "NAWM")
#: What the front end hands to the methods and the outputs.
FRONT_END_OUTPUTS = ("in_files", *GIVEN_MASKS, "delta_r2star", "frame_times", "aif_tsv",
                     "aif_mask", "aif_metadata", "ttp", "bat")
#: What the front end adds with motion correction: the confounds table, its sidecar
#: entries and the corrected series (first echo).
MOTION_OUTPUTS = ("confounds", "motion_metadata", "corrected")


def init_dsc_front_end_wf(run, options, relaxivity, dose=1.0, superres=False,
                          shared_motion=False, name="front_end_wf"):
    """From the raw DSC series of ``run`` to ΔR2*(t), the AIF, bolus timing and the masks.

    .. workflow::
        :graph2use: colored

        from bids_perfusion.workflows.dsc_front_end import init_dsc_front_end_wf
        wf = init_dsc_front_end_wf(run, DSCOptions(), relaxivity)

    With ``options.motion_correction``, every frame is first realigned to the mean of
    the pre-bolus frames (``motion_correction``), and the steps below read the corrected
    series. The graph follows the run's masks: a given brain mask, else one derived from the first
    DSC frames (``brain_mask``); a given NAWM, else one chosen on the pre-contrast image
    (``nawm_mask``); a given arterial mask for the AIF, else automatic selection. A dose
    ``d < 1`` is first simulated from the acquired series (``simulate_low_dose``). With
    ``superres``, the series is first super-resolved (``super_resolve``, the method and
    factors of ``options``) and the given masks carried onto its grid
    (``resample_<mask>``); the frame interval is the acquired one over the temporal
    factor.
    ``delta_r2star`` drops the approach to steady state and converts the signal to ΔR2*
    (single- or dual-echo); ``aif`` averages arterial voxels and converts them to
    concentration with ``relaxivity`` (the run's
    :meth:`~bids_perfusion.dsc.relaxivity.Relaxivities.sidecar` record);
    ``bolus_timing`` maps TTP and bolus arrival.

    With ``shared_motion`` (a simulated dose with motion correction), the run has no
    motion-correction node of its own: ``inputnode`` takes the corrected echoes
    (``in_files``) and the motion outputs of the acquired run's front end, which the
    top-level workflow connects (:func:`~bids_perfusion.workflows.base.share_motion`),
    so that a series is realigned once whatever the number of doses.

    Parameters
    ----------
    run : :class:`~bids_perfusion.workflows.options.DSCRun`
    options : :class:`~bids_perfusion.workflows.options.DSCOptions`
    relaxivity : dict
    dose : float
        1 for the acquired series, d < 1 for a simulated reduced dose.
    superres : bool
        Quantify the super-resolved series (``options.superres``) instead.

    Inputs
    ------
    in_files
        the echo files of the run (set from ``run``; with ``shared_motion``, the corrected
        echoes of the acquired run, connected)
    brain, tumor, GM, WM, NAWM
        the masks the run was given (set from ``run``)
    confounds, motion_metadata, corrected
        with ``shared_motion`` only: the motion outputs of the acquired run, connected

    Outputs
    -------
    in_files
        the series quantified: the acquired echoes, or those of the simulated dose or
        of the super-resolution
    superres_metadata
        the sidecar record of the super-resolution (with ``superres`` only)
    brain, tumor, GM, WM, NAWM
        the masks (tumour, GM and WM only when given)
    delta_r2star, frame_times
        ΔR2*(t) (s⁻¹) from the first baseline frame on, and the time of each frame (s)
    aif_tsv, aif_mask, aif_metadata
        the AIF table, its voxels and its sidecar entries
    ttp, bat
        time to peak and bolus arrival time maps (s)
    confounds, motion_metadata, corrected
        the motion parameters table, its sidecar entries and the corrected series of
        the first echo (with ``options.motion_correction`` only)
    """
    shared_motion = shared_motion and options.motion_correction
    if shared_motion and (superres or dose >= 1.0):
        raise ValueError("only a simulated dose shares the motion correction of its run")
    workflow = Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(
        fields=["in_files", *GIVEN_MASKS, *(MOTION_OUTPUTS if shared_motion else [])]),
        name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(
        fields=[*FRONT_END_OUTPUTS, *(["superres_metadata"] if superres else []),
                *(MOTION_OUTPUTS if options.motion_correction else [])]),
        name="outputnode")
    series = (inputnode, "in_files")
    corrected = None  # the corrected first echo, (node, field), with motion correction
    if shared_motion:
        workflow.connect([(inputnode, outputnode, [(key, key) for key in MOTION_OUTPUTS])])
        corrected = (inputnode, "corrected")
    else:
        inputnode.inputs.in_files = list(run.files)
    if options.motion_correction and not shared_motion:
        motion = motion_node(run, options, "dsc")
        workflow.connect([(inputnode, motion, [("in_files", "in_files")]),
                          (motion, outputnode, [("confounds", "confounds"),
                                                ("metadata", "motion_metadata"),
                                                ("out_file", "corrected")])])
        series, corrected = (motion, "out_files"), (motion, "out_file")
    repetition_time = run.metadata.repetition_time
    masks = {key: (inputnode, key) for key in GIVEN_MASKS if key in run.masks}
    for key in masks:
        setattr(inputnode.inputs, key, run.masks[key])
    arteries = run.masks.get("arteries")
    if superres:
        space, time = options.superres_scale
        resolve = pe.Node(SuperResolve(method=options.superres, space=space, time=time,
                                       repetition_time=repetition_time,
                                       max_nmse=options.superres_max_nmse,
                                       device=options.device), name="super_resolve")
        if options.superres_weights:
            resolve.inputs.weights = options.superres_weights
        workflow.connect([(series[0], resolve, [(series[1], "in_files")]),
                          (resolve, outputnode, [("metadata", "superres_metadata")])])
        series, repetition_time = (resolve, "out_files"), repetition_time / time
        for key in [*masks, *(["arteries"] if arteries else [])]:
            resample = pe.Node(ResampleMask(in_file=run.masks[key]), name=f"resample_{key}")
            workflow.connect(resolve, "reference", resample, "reference")
            masks[key] = (resample, "out_file")
        arteries = masks.pop("arteries", None)
    for key, source in masks.items():
        workflow.connect(*source, outputnode, key)

    if "brain" in masks:
        brain = masks["brain"]
    else:
        brain_mask = pe.Node(BrainMask(), name="brain_mask")
        if superres:
            workflow.connect(resolve, "reference", brain_mask, "in_file")
        elif corrected is not None:
            workflow.connect(*corrected, brain_mask, "in_file")
            brain_mask.inputs.source_file = run.files[0]
        else:
            brain_mask.inputs.in_file = run.files[0]
        brain = (brain_mask, "out_file")
        workflow.connect(*brain, outputnode, "brain")
    if dose < 1.0:
        lowdose = pe.Node(SimulateLowDose(dose=dose, repetition_time=repetition_time,
                                          model=options.lowdose_model,
                                          average=options.lowdose_average),
                          name="simulate_low_dose")
        workflow.connect(*series, lowdose, "in_files")
        workflow.connect(*brain, lowdose, "brain_mask")
        series = (lowdose, "out_files")

    signal = pe.Node(SignalToDeltaR2Star(echo_times=list(run.metadata.echo_times),
                                         repetition_time=repetition_time,
                                         source_files=list(run.files)),
                     name="delta_r2star")
    aif = pe.Node(ArterialInputFunction(relaxivity=relaxivity), name="aif")
    if superres and arteries:
        workflow.connect(*arteries, aif, "aif_mask")
    elif arteries:
        aif.inputs.aif_mask = arteries
    timing = pe.Node(BolusTiming(), name="bolus_timing")
    workflow.connect([
        (series[0], signal, [(series[1], "in_files")]),
        (signal, aif, [("delta_r2star", "delta_r2star"), ("frame_times", "frame_times"),
                       ("metadata", "signal_metadata")]),
        (signal, timing, [("delta_r2star", "delta_r2star"), ("frame_times", "frame_times")]),
        (series[0], outputnode, [(series[1], "in_files")]),
        (signal, outputnode, [("delta_r2star", "delta_r2star"),
                              ("frame_times", "frame_times")]),
        (aif, outputnode, [("aif_tsv", "aif_tsv"), ("aif_mask", "aif_mask"),
                           ("metadata", "aif_metadata")]),
        (timing, outputnode, [("ttp", "ttp"), ("bat", "bat")]),
    ])
    for node in (signal, aif, timing):
        workflow.connect(*brain, node, "brain_mask")

    if "NAWM" not in run.masks:
        nawm = pe.Node(NAWMMask(), name="nawm_mask")
        for key, field in (("tumor", "tumor_mask"), ("WM", "wm_mask")):
            if key in masks:
                workflow.connect(*masks[key], nawm, field)
        workflow.connect([(signal, nawm, [("baseline_image", "baseline")]),
                          (nawm, outputnode, [("out_file", "NAWM")])])
        workflow.connect(*brain, nawm, "brain_mask")
    return workflow
