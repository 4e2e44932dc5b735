"""The outputs of a DSC run: maps relative to the NAWM, ROI table and curves, and files."""

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe
from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from bids_perfusion.interfaces.maps import RelativeMaps
from bids_perfusion.interfaces.roi import ROICurves, ROIStatistics
from bids_perfusion.interfaces.spatial import RunReference
from bids_perfusion.workflows.dsc_front_end import GIVEN_MASKS, MOTION_OUTPUTS
from bids_perfusion.workflows.dsc_methods import metadata_field
from bids_perfusion.workflows.motion import motion_sinks
from bids_perfusion.workflows.outputs import (
    ROI_NAMES,
    brain_mask_sink,
    connect_outputs,
    mask_sidecar,
    merge_fields,
)
from bids_perfusion.workflows.spatial import space_sinks

#: What the outputs read from the front end (the maps come from the methods; the series
#: and its record when it is written, ``series_sidecar``).
FRONT_END_INPUTS = (*GIVEN_MASKS, "delta_r2star", "frame_times", "aif_tsv", "aif_mask",
                    "aif_metadata", "ttp", "bat")


def roi_curves_sidecar(rois, relaxivity):
    """Sidecar of ``desc-roi_timeseries.tsv``: what each column holds, in which units, and
    the relaxivities (``relaxivity``, the run's record) that gave the concentrations."""
    columns = {"time": {"Units": "s", "Description": "time of the frame from the first "
                                                     "acquired frame"}}
    for roi in rois:
        columns[f"{roi}_delta_r2star"] = {
            "Units": "1/s", "Description": f"mean ΔR2* over the voxels of the {roi} mask"}
        columns[f"{roi}_concentration"] = {
            "Units": "mM", "Description": f"mean tissue concentration over the {roi} "
                                          "mask, C = ΔR2*/TissueRelaxivity"}
    return {"Description": "mean ΔR2* and tissue concentration of each ROI of the run, "
                           "from the first baseline frame on (the frames of the AIF table)",
            **columns, **relaxivity}


def init_dsc_outputs_wf(run, maps, output_dir, relaxivity, *, options, methods,
                        run_name, extra_entities=None, extra_sidecar=None,
                        series_sidecar=None, write_corrected=False, spatial=None,
                        name="outputs_wf"):
    """Normalise the maps to the NAWM, summarise them in the ROIs and write every file.

    .. workflow::
        :graph2use: colored

        from bids_perfusion.workflows.dsc_outputs import init_dsc_outputs_wf
        wf = init_dsc_outputs_wf(run, method_maps(options, relaxivity), "/out",
                                 relaxivity, options=options, methods="",
                                 run_name="sub_01_ce_gadolinium_acquired_wf")

    ``relative_maps`` divides each map with a measure name by its NAWM median;
    ``roi_statistics`` summarises maps, relative maps, TTP and BAT in the ROIs (brain,
    NAWM, and tumour, GM, WM when given); ``roi_curves`` averages ΔR2* in the same ROIs
    (``desc-roi_timeseries.tsv``). The files are written by
    :func:`~bids_perfusion.workflows.outputs.connect_outputs`: nothing until every output
    of the run exists, then one sink per file and the completion record named
    ``run_name``. With ``series_sidecar``, the series quantified (its first echo) is
    written too, as ``desc-superres_dsc`` with that sidecar and the record of its
    super-resolution. With ``options.motion_correction``, the motion parameters are written
    (``desc-confounds_timeseries.tsv``), and with ``write_corrected`` the corrected series
    (``desc-preproc_dsc``, first echo).

    Parameters
    ----------
    run : :class:`~bids_perfusion.workflows.options.DSCRun`
    maps : list of :class:`~bids_perfusion.workflows.dsc_methods.MapOutput`
        the maps of the methods sub-workflow
    output_dir : str
    relaxivity : dict
        the run's relaxivity record, in the sidecar of the ROI curves
    options, methods, run_name, extra_entities, extra_sidecar
        as in :func:`~bids_perfusion.workflows.outputs.connect_outputs`
    series_sidecar : dict, optional
        the sidecar of the super-resolved series; None: the series is not written
    write_corrected : bool
        write the motion-corrected series (``--write-series``, acquired runs)
    spatial : :class:`~bids_perfusion.workflows.spatial.RunSpaces`, optional
        the maps and masks are also written in these output spaces
        (:func:`~bids_perfusion.workflows.spatial.space_sinks`), the run's reference
        being the mean of its pre-bolus frames

    Inputs
    ------
    brain, tumor, GM, WM, NAWM, delta_r2star, frame_times, aif_tsv, aif_mask,
    aif_metadata, ttp, bat
        the outputs of :func:`~bids_perfusion.workflows.dsc_front_end.init_dsc_front_end_wf`
    in_files, superres_metadata
        the same, with ``series_sidecar`` only
    confounds, motion_metadata, corrected
        the same, with ``options.motion_correction`` only
    one field per map and ``metadata_<node>`` per node
        the outputs of :func:`~bids_perfusion.workflows.dsc_methods.init_dsc_methods_wf`
    """
    workflow = Workflow(name=name)
    nodes = list(dict.fromkeys(m.node for m in maps))
    series = ["in_files", "superres_metadata"] if series_sidecar is not None else []
    if options.motion_correction:
        series += list(MOTION_OUTPUTS)
    inputnode = pe.Node(niu.IdentityInterface(
        fields=[*FRONT_END_INPUTS, *series, *(m.name for m in maps),
                *(metadata_field(node) for node in nodes)]), name="inputnode")
    measured = [m for m in maps if m.measure]

    def metadata(output):
        return (inputnode, metadata_field(output.node))

    merge_maps = merge_fields(workflow, [(inputnode, m.name) for m in measured], "merge_maps")
    relative = pe.Node(RelativeMaps(), name="relative_maps")
    workflow.connect([(merge_maps, relative, [("out", "in_files")]),
                      (inputnode, relative, [("NAWM", "nawm_mask")])])

    roi_names = [key for key in ROI_NAMES if key in run.masks or key in ("brain", "NAWM")]
    roi = pe.Node(ROIStatistics(rois=roi_names), name="roi_statistics")
    measures = [m.measure for m in measured]
    roi.inputs.measures = measures + [f"r{measure}" for measure in measures] + ["ttp", "bat"]
    merge_timing = merge_fields(workflow, [(inputnode, "ttp"), (inputnode, "bat")],
                                "merge_timing")
    merge_roi_maps = merge_fields(workflow, [(merge_maps, "out"), (relative, "out_files"),
                                             (merge_timing, "out")], "merge_roi_maps")
    merge_masks = merge_fields(workflow, [(inputnode, key) for key in roi_names],
                               "merge_masks")
    roi_curves = pe.Node(ROICurves(rois=roi_names, relaxivity=relaxivity), name="roi_curves")
    workflow.connect([
        (merge_roi_maps, roi, [("out", "in_files")]),
        (merge_masks, roi, [("out", "masks")]),
        (inputnode, roi_curves, [("delta_r2star", "delta_r2star"),
                                 ("frame_times", "frame_times")]),
        (merge_masks, roi_curves, [("out", "masks")]),
    ])

    # Every file to write, as (node, field, entities, metadata or None, sidecar).
    sinks = [
        brain_mask_sink((inputnode, "brain"), "brain" in run.masks, "the first DSC frames"),
        (inputnode, "NAWM", {"desc": "NAWM", "suffix": "mask"}, None,
         mask_sidecar("ROI", "normal-appearing white matter, reference of relative maps")),
        (inputnode, "aif_mask", {"desc": "aif", "suffix": "mask"}, (inputnode, "aif_metadata"),
         mask_sidecar("ROI", "voxels averaged into the arterial input function")),
        (inputnode, "aif_tsv", {"desc": "aif", "suffix": "timeseries"},
         (inputnode, "aif_metadata"),
         {"time": {"Units": "s"}, "delta_r2star": {"Units": "1/s"},
          "concentration": {"Units": "mM"}}),
        (inputnode, "ttp", {"suffix": "ttp"}, None,
         {"Units": "s", "Description": "time to peak of ΔR2*, from the first frame"}),
        (inputnode, "bat", {"suffix": "bat"}, None,
         {"Units": "s", "Description": "bolus arrival time, from the first frame"}),
        (roi, "out_file", {"desc": "roi", "suffix": "roistats"}, None,
         {"Description": "ROI statistics of every map; relative maps are prefixed 'r'"}),
        (roi_curves, "out_file", {"desc": "roi", "suffix": "timeseries"}, None,
         roi_curves_sidecar(roi_names, relaxivity)),
    ]
    sinks += [(inputnode, m.name, m.entities, metadata(m), m.sidecar) for m in measured]
    for index, output in enumerate(measured):
        select = pe.Node(niu.Select(index=index), name=f"select_relative{index}",
                         run_without_submitting=True)
        workflow.connect(relative, "out_files", select, "inlist")
        sinks.append((select, "out", {**output.entities, "desc": output.entities["desc"] + "Nawm"},
                      metadata(output), {**output.sidecar,
                                         "Units": "1 (ratio to the NAWM median)"}))
    sinks += [(inputnode, m.name, m.entities, metadata(m), m.sidecar)
              for m in maps if not m.measure]
    if series_sidecar is not None:
        first_echo = pe.Node(niu.Select(index=0), name="select_series",
                             run_without_submitting=True)
        workflow.connect(inputnode, "in_files", first_echo, "inlist")
        sinks.append((first_echo, "out", {"desc": "superres", "suffix": "dsc"},
                      (inputnode, "superres_metadata"), series_sidecar))
    if spatial is not None:
        reference = pe.Node(RunReference(in_file=run.files[0]), name="run_reference")
        sinks += space_sinks(workflow, sinks, spatial, (reference, "out_file"))
    if options.motion_correction:
        sinks += motion_sinks((inputnode, "confounds", "motion_metadata"), options, "dsc",
                              (inputnode, "corrected") if write_corrected else None)
    return connect_outputs(workflow, list(run.files), output_dir, sinks, options=options,
                           methods=methods, extra_entities=extra_entities,
                           extra_sidecar=extra_sidecar, run_name=run_name)
