"""The front end of a DSC run: masks, signal to ΔR2*, arterial input function, timing."""

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe
from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from bids_perfusion.interfaces.aif import ArterialInputFunction
from bids_perfusion.interfaces.lowdose import SimulateLowDose
from bids_perfusion.interfaces.maps import BolusTiming
from bids_perfusion.interfaces.masks import BrainMask, NAWMMask
from bids_perfusion.interfaces.signal import SignalToDeltaR2Star

#: Masks a run may be given (``--derivatives``) that pass through the front end.
GIVEN_MASKS = ("brain", "tumor", "GM", "WM", "NAWM")
#: What the front end hands to the methods and the outputs.
FRONT_END_OUTPUTS = ("in_files", *GIVEN_MASKS, "delta_r2star", "frame_times", "aif_tsv",
                     "aif_mask", "aif_metadata", "ttp", "bat")


def init_dsc_front_end_wf(run, options, relaxivity, dose=1.0, name="front_end_wf"):
    """From the raw DSC series of ``run`` to ΔR2*(t), the AIF, bolus timing and the masks.

    .. workflow::
        :graph2use: colored

        from bids_perfusion.workflows.dsc_front_end import init_dsc_front_end_wf
        wf = init_dsc_front_end_wf(run, DSCOptions(), relaxivity)

    The graph follows the run's masks: a given brain mask, else one derived from the first
    DSC frames (``brain_mask``); a given NAWM, else one chosen on the pre-contrast image
    (``nawm_mask``); a given arterial mask for the AIF, else automatic selection. A dose
    ``d < 1`` is first simulated from the acquired series (``simulate_low_dose``).
    ``delta_r2star`` drops the approach to steady state and converts the signal to ΔR2*
    (single- or dual-echo); ``aif`` averages arterial voxels and converts them to
    concentration with ``relaxivity`` (the run's
    :meth:`~bids_perfusion.dsc.relaxivity.Relaxivities.sidecar` record);
    ``bolus_timing`` maps TTP and bolus arrival.

    Parameters
    ----------
    run : :class:`~bids_perfusion.workflows.options.DSCRun`
    options : :class:`~bids_perfusion.workflows.options.DSCOptions`
    relaxivity : dict
    dose : float
        1 for the acquired series, d < 1 for a simulated reduced dose.

    Inputs
    ------
    in_files
        the echo files of the run (set from ``run``)
    brain, tumor, GM, WM, NAWM
        the masks the run was given (set from ``run``)

    Outputs
    -------
    in_files
        the series quantified: the acquired echoes, or those of the simulated dose
    brain, tumor, GM, WM, NAWM
        the masks (tumour, GM and WM only when given)
    delta_r2star, frame_times
        ΔR2*(t) (s⁻¹) from the first baseline frame on, and the time of each frame (s)
    aif_tsv, aif_mask, aif_metadata
        the AIF table, its voxels and its sidecar entries
    ttp, bat
        time to peak and bolus arrival time maps (s)
    """
    workflow = Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["in_files", *GIVEN_MASKS]),
                        name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=list(FRONT_END_OUTPUTS)), name="outputnode")
    inputnode.inputs.in_files = list(run.files)
    for key in GIVEN_MASKS:
        if key in run.masks:
            setattr(inputnode.inputs, key, run.masks[key])
            workflow.connect(inputnode, key, outputnode, key)

    if "brain" in run.masks:
        brain = (inputnode, "brain")
    else:
        brain_mask = pe.Node(BrainMask(in_file=run.files[0]), name="brain_mask")
        brain = (brain_mask, "out_file")
        workflow.connect(*brain, outputnode, "brain")

    series = (inputnode, "in_files")
    if dose < 1.0:
        lowdose = pe.Node(SimulateLowDose(dose=dose,
                                          repetition_time=run.metadata.repetition_time,
                                          model=options.lowdose_model,
                                          average=options.lowdose_average),
                          name="simulate_low_dose")
        workflow.connect(inputnode, "in_files", lowdose, "in_files")
        workflow.connect(*brain, lowdose, "brain_mask")
        series = (lowdose, "out_files")

    signal = pe.Node(SignalToDeltaR2Star(echo_times=list(run.metadata.echo_times),
                                         repetition_time=run.metadata.repetition_time,
                                         source_files=list(run.files)),
                     name="delta_r2star")
    aif = pe.Node(ArterialInputFunction(relaxivity=relaxivity), name="aif")
    if "arteries" in run.masks:
        aif.inputs.aif_mask = run.masks["arteries"]
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
            if key in run.masks:
                setattr(nawm.inputs, field, run.masks[key])
        workflow.connect([(signal, nawm, [("baseline_image", "baseline")]),
                          (nawm, outputnode, [("out_file", "NAWM")])])
        workflow.connect(*brain, nawm, "brain_mask")
    return workflow
