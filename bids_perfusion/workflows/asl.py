"""ASL quantification of one run: from the series to ΔM, M0, CBF (and ATT), ROI table, files."""

from dataclasses import replace

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe
from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from bids_perfusion import constants
from bids_perfusion.asl.m0 import T1_GREY_MATTER
from bids_perfusion.interfaces.asl import (
    ASLBrainMask,
    CBFTimeSeries,
    ExtractASL,
    MeanCBFVolumes,
    MultiDelayCBF,
    PrepareM0,
    SingleDelayCBF,
)
from bids_perfusion.interfaces.deepasl import DenoiseDeltaM
from bids_perfusion.interfaces.roi import ROIStatistics
from bids_perfusion.interfaces.spatial import RunReference
from bids_perfusion.motion.series import ASL_STRUCTURAL
from bids_perfusion.workflows.asl_tissue import (
    connect_voxelwise_t1,
    partial_volume_sinks,
    tissue_fractions,
    voxelwise_t1,
)
from bids_perfusion.workflows.bids_uris import raw_uris
from bids_perfusion.workflows.motion import motion_node, motion_record, motion_sinks, motion_text
from bids_perfusion.workflows.outputs import (
    ROI_NAMES,
    brain_mask_sink,
    connect_outputs,
    mask_sidecar,
    merge_fields,
)
from bids_perfusion.workflows.spatial import coregistration_text, space_sinks

CBF_UNITS = "mL/100 g/min"

EQUATIONS = {
    "PCASL": "CBF = 6000 λ ΔM exp(PLD/T1b) / (2 α T1b M0 (1 - exp(-τ/T1b)))",
    "CASL": "CBF = 6000 λ ΔM exp(PLD/T1b) / (2 α T1b M0 (1 - exp(-τ/T1b)))",
    "PASL": "CBF = 6000 λ ΔM exp(TI/T1b) / (2 α TI1 M0)",
}


def quantification_parameters(run, options):
    """Sidecar entries of every constant and acquisition parameter the CBF map used."""
    meta = run.metadata
    efficiency, source = meta.efficiency(options.labeling_efficiency)
    t1_blood = meta.t1_blood(options.t1_blood)
    delay_name = "InversionTime" if meta.label_type == "PASL" else "PostLabelingDelay"
    delays = list(meta.unique_delays)
    parameters = {
        "ArterialSpinLabelingType": meta.label_type,
        delay_name: delays[0] if len(delays) == 1 else delays,
        "LabelingEfficiency": efficiency,
        "LabelingEfficiencySource": source,
        "BackgroundSuppression": meta.background_suppression,
        "BackgroundSuppressionNumberPulses": meta.background_suppression_pulses,
        "BackgroundSuppressionPulseEfficiency": (
            constants.BACKGROUND_SUPPRESSION_PULSE_EFFICIENCY
            if "pulses" in source else None),
        "T1Blood": t1_blood,
        "T1BloodSource": ("command line (--t1-blood)" if options.t1_blood is not None else
                          f"consensus value at {meta.nominal_field_strength:g} T "
                          "(Alsop et al. 2015)"),
        "MagneticFieldStrength": meta.magnetic_field_strength,
        "BloodBrainPartitionCoefficient": options.partition,
        "NumberOfDeltaM": len(meta.delays),
        "SliceTimingCorrectedDelay": meta.slice_timing is not None,
        "Sources": raw_uris(run.files),
        **motion_record(options, "asl"),
    }
    if meta.label_type == "PASL":
        parameters.update(BolusCutOffDelayTime=meta.bolus_cutoff_delay,
                          BolusCutOffTechnique=meta.bolus_cutoff_technique)
    else:
        durations = sorted(set(meta.durations))
        parameters["LabelingDuration"] = durations[0] if len(durations) == 1 else durations
    return parameters


def init_asl_wf(run, options, output_dir, name=None, spatial=None):
    """Quantify one ASL run and write its derivatives.

    The graph is decided here from the run's metadata: single delay (consensus formula,
    plus the CBF of each pair as a time series when there are several) or multiple delays
    (general kinetic model fit of CBF and ATT), scanner CBF volumes when the series holds
    no ΔM, brain mask given or derived from M0. The outputs are written by
    :func:`~bids_perfusion.workflows.outputs.connect_outputs`: nothing when the run
    fails, and a completion record (options, methods, files) when it succeeds.

    Parameters
    ----------
    run : :class:`~bids_perfusion.workflows.asl_options.ASLRun`
    options : :class:`~bids_perfusion.workflows.asl_options.ASLOptions`
    output_dir : str
    spatial : :class:`~bids_perfusion.workflows.spatial.RunSpaces`, optional
        Also write the maps in other output spaces, the run's reference being its M0
        (the temporal mean of the series for scanner CBF volumes).
    """
    meta = run.metadata
    workflow = Workflow(name=name or f"{run.name}_asl_wf")
    masks = pe.Node(niu.IdentityInterface(fields=list(ROI_NAMES)), name="masks")
    for key in ROI_NAMES:
        if key in run.masks:
            setattr(masks.inputs, key, run.masks[key])
    sinks = []
    if not meta.quantifiable:
        workflow.__desc__ = ("The ASL series held CBF maps computed by the scanner and no "
                             "label/control data; they were averaged.")
        if "brain" not in run.masks:
            brain = pe.Node(ASLBrainMask(in_file=run.file), name="brain_mask")
            workflow.connect(brain, "out_file", masks, "brain")
        cbf_node = pe.Node(MeanCBFVolumes(in_file=run.file,
                                          volume_types=list(meta.context.volume_types),
                                          parameters={"Sources": raw_uris([run.file])}),
                           name="scanner_cbf")
        workflow.connect(masks, "brain", cbf_node, "brain_mask")
        outputs = [(cbf_node, "cbf", "cbf_scanner", {"desc": "scanner", "suffix": "cbf"},
                    {"Units": CBF_UNITS,
                     "EstimationMethod": "mean of the scanner's CBF volumes"})]
        return _finish(workflow, run, output_dir, masks, outputs, sinks, options,
                       spatial=spatial)

    if not set(meta.context.volume_types) <= set(ASL_STRUCTURAL):
        # ΔM or CBF volumes computed by the scanner cannot be realigned
        options = replace(options, motion_correction=False)
    parameters = quantification_parameters(run, options)
    m0_path = meta.m0_file or run.file
    m0_t1 = options.m0_t1 or T1_GREY_MATTER[meta.nominal_field_strength]
    extract = pe.Node(ExtractASL(
        in_file=run.file, volume_types=list(meta.context.volume_types),
        delays=list(meta.delays), m0_type=meta.m0_type, m0_t1=m0_t1,
        m0_scale=options.m0_scale, m0_recovery_correction=options.m0_recovery_correction,
        m0_source=(raw_uris([m0_path])[0] if meta.m0_type != "Estimate" else "M0Estimate"),
        m0_path=m0_path), name="extract_asl")
    if meta.durations is not None:
        extract.inputs.durations = list(meta.durations)
    if meta.m0_file:
        extract.inputs.m0_file = meta.m0_file
    if meta.m0_estimate is not None:
        extract.inputs.m0_estimate = meta.m0_estimate
    if meta.m0_repetition_time is not None:
        extract.inputs.m0_repetition_time = meta.m0_repetition_time
    if options.motion_correction:
        motion = motion_node(run, options, "asl")
        workflow.connect(motion, "out_file", extract, "in_file")
        extract.inputs.source_file = run.file
        if options.exclude_motion_outliers:
            workflow.connect(motion, "outliers", extract, "excluded_volumes")
        sinks += motion_sinks((motion, "confounds", "metadata"), options, "asl",
                              (motion, "out_file"))
    if "brain" not in run.masks:
        brain = pe.Node(ASLBrainMask(source_file=m0_path), name="brain_mask")
        if meta.m0_type == "Estimate" and options.motion_correction:
            workflow.connect(motion, "out_file", brain, "in_file")
        elif meta.m0_type == "Estimate":
            brain.inputs.in_file = run.file
        else:
            workflow.connect(extract, "m0", brain, "in_file")
        workflow.connect(brain, "out_file", masks, "brain")
    prepare = pe.Node(PrepareM0(min_fraction=options.m0_min_fraction,
                                smoothing_fwhm=options.m0_smoothing_fwhm,
                                series_file=run.file, m0_file=m0_path), name="prepare_m0")
    workflow.connect([
        (extract, prepare, [("m0", "m0"), ("nonfinite", "nonfinite"),
                            ("metadata", "m0_metadata")]),
        (masks, prepare, [("brain", "brain_mask")]),
    ])
    fractions = tissue_fractions(run)

    efficiency, t1_blood = parameters["LabelingEfficiency"], parameters["T1Blood"]
    common = {"label_type": meta.label_type, "t1_blood": t1_blood, "efficiency": efficiency,
              "partition": options.partition}
    if meta.label_type == "PASL":
        common["bolus_duration"] = meta.bolus_cutoff_delay
    if meta.slice_timing is not None:
        common["slice_timing"] = list(meta.slice_timing)
    equation = EQUATIONS[meta.label_type]
    workflow.__desc__ = motion_text(options, "asl") + (
        f"CBF was quantified from the {meta.label_type} series with the general kinetic "
        "model of arterial spin labelling [@buxton1998]. Control and label volumes were "
        "subtracted pairwise. The M0 reference was "
        f"{_m0_text(meta.m0_type)}, corrected for incomplete T1 recovery at its repetition "
        f"time and scaled by {options.m0_scale:g}"
        + (f", then smoothed by a Gaussian of {options.m0_smoothing_fwhm:g} mm FWHM within "
           "the brain" if options.m0_smoothing_fwhm > 0 else "")
        + f". Brain voxels whose M0 was below {options.m0_min_fraction:g} times the brain "
        "median, or that held non-finite values, were excluded from CBF and from the ROI "
        f"statistics. Constants: λ = {options.partition:g} mL/g, "
        f"T1 of blood {t1_blood:g} s, labelling efficiency α = {efficiency:.4g} "
        f"({parameters['LabelingEfficiencySource']}) [@alsop2015].")
    if meta.multi_delay:
        fit = pe.Node(MultiDelayCBF(**common, parameters={
            **parameters, "EstimationMethod": "general kinetic model, weighted least "
            "squares over delays (weighted-delay initialisation, Levenberg-Marquardt)",
            "T1Tissue": options.t1_tissue,
            "Model": "Buxton et al. 1998, T1' = " + (
                "T1b" if options.t1_tissue is None else "1/(1/T1Tissue + CBF/λ)")}),
            name="multi_delay_cbf")
        if options.t1_tissue is not None:
            fit.inputs.t1_tissue = options.t1_tissue
        if tissue_t1 := voxelwise_t1(run, options):
            workflow.__desc__ += connect_voxelwise_t1(workflow, fit, fractions, tissue_t1)
        workflow.connect([
            (extract, fit, [("mean_deltam", "mean_deltam"), ("delays", "delays"),
                            ("durations", "durations"), ("counts", "counts")]),
            (prepare, fit, [("m0", "m0"), ("excluded_mask", "excluded_mask"),
                            ("metadata", "m0_metadata")]),
            (masks, fit, [("brain", "brain_mask")]),
        ])
        workflow.__desc__ += (
            f" CBF and arterial transit time were fitted voxel-wise to the mean ΔM of the "
            f"{len(meta.unique_delays)} delays by weighted least squares, initialised with "
            "the weighted delay [@dai2012] and refined by Levenberg-Marquardt.")
        outputs = [
            (fit, "cbf", "cbf_gkm", {"desc": "gkm", "suffix": "cbf"},
             {"Units": CBF_UNITS}),
            (fit, "att", "att_gkm", {"desc": "gkm", "suffix": "att"},
             {"Units": "s", "EstimationMethod": "general kinetic model fit"}),
        ]
        if denoiser := _denoiser(options, multi_delay=True):
            denoise, method = _denoise_node(workflow, run, options, denoiser, extract,
                                            prepare, masks)
            refit = fit.clone(f"multi_delay_cbf_{method}")
            if tissue_t1:
                connect_voxelwise_t1(workflow, refit, fractions, tissue_t1)
            refit.inputs.parameters = {
                **fit.inputs.parameters, "EstimationMethod": "general kinetic model fit to "
                "the mean ΔM of every delay denoised by the multi-delay DeepASL"}
            workflow.connect([
                (extract, refit, [("delays", "delays"), ("durations", "durations"),
                                  ("counts", "counts")]),
                (denoise, refit, [("deltam", "mean_deltam"),
                                  ("metadata", "extra_metadata")]),
                (prepare, refit, [("m0", "m0"), ("excluded_mask", "excluded_mask"),
                                  ("metadata", "m0_metadata")]),
                (masks, refit, [("brain", "brain_mask")]),
            ])
            workflow.__desc__ += (" CBF and arterial transit time were also fitted to the "
                                  "mean ΔM of every delay after each was denoised by "
                                  f"{_DENOISER_TEXT[denoiser[0]]}.")
            outputs += [
                (refit, "cbf", f"cbf_{method}", {"desc": method, "suffix": "cbf"},
                 {"Units": CBF_UNITS}),
                (refit, "att", f"att_{method}", {"desc": method, "suffix": "att"},
                 {"Units": "s", "EstimationMethod": "general kinetic model fit to the "
                  "denoised ΔM"}),
            ]
            sinks.append(_denoised_sink(run, denoise, method))
    else:
        single = {**common, "delay": meta.unique_delays[0]}
        if meta.durations is not None:
            single["labeling_duration"] = meta.durations[0]
        cbf_node = pe.Node(SingleDelayCBF(**single, parameters={
            **parameters, "EstimationMethod": "ISMRM consensus single-delay formula",
            "Equation": equation}), name="single_delay_cbf")
        workflow.connect([
            (extract, cbf_node, [("mean_deltam", "mean_deltam")]),
            (prepare, cbf_node, [("m0", "m0"), ("excluded_mask", "excluded_mask"),
                                 ("metadata", "m0_metadata")]),
            (masks, cbf_node, [("brain", "brain_mask")]),
        ])
        workflow.__desc__ += (f" CBF followed the consensus single-delay formula {equation} "
                              "[@alsop2015].")
        outputs = [(cbf_node, "cbf", "cbf_consensus", {"desc": "consensus", "suffix": "cbf"},
                    {"Units": CBF_UNITS})]
        if denoiser := _denoiser(options, multi_delay=False):
            denoised = _denoised_outputs(workflow, run, options, denoiser, single,
                                         parameters, extract, prepare, masks)
            outputs.append(denoised[0])
            sinks.append(denoised[1])
        if len(meta.delays) > 1:
            series = pe.Node(CBFTimeSeries(**single), name="cbf_timeseries")
            workflow.connect([(extract, series, [("deltam", "deltam")]),
                              (prepare, series, [("m0", "m0"),
                                                 ("excluded_mask", "excluded_mask")]),
                              (masks, series, [("brain", "brain_mask")])])
            sinks.append((series, "out_file", {"desc": "meanCbf", "suffix": "timeseries"},
                          None, {"pair": {"Description": "index of the ΔM estimate "
                                          "(control/label pair, in order)"},
                                 "cbf": {"Description": "mean CBF over the brain mask",
                                         "Units": CBF_UNITS},
                                 "cbf_median": {"Description": "median CBF over the brain "
                                                "mask", "Units": CBF_UNITS}}))
    pv_sinks, pv_text = partial_volume_sinks(workflow, options, fractions, outputs[0],
                                             prepare, masks)
    sinks += pv_sinks
    workflow.__desc__ += pv_text
    delay_name = "InversionTime" if meta.label_type == "PASL" else "PostLabelingDelay"
    sinks += [
        (extract, "mean_deltam", {"desc": "mean", "suffix": "deltam"}, None,
         {"Units": "arbitrary (units of the ASL series)",
          "Description": "mean control - label difference ΔM"
          + (", one volume per delay" if meta.multi_delay else ""),
          delay_name: (list(meta.unique_delays) if meta.multi_delay
                       else meta.unique_delays[0])}),
        (prepare, "m0", {"desc": "reference", "suffix": "m0scan"}, (prepare, "metadata"),
         {"Units": "arbitrary (units of the ASL series)",
          "Description": "M0 reference used for CBF", "SkullStripped": False,
          "Sources": raw_uris([run.file, *([meta.m0_file] if meta.m0_file else [])])}),
        (prepare, "excluded_mask", {"desc": "excluded", "suffix": "mask"},
         (prepare, "metadata"),
         mask_sidecar("ROI", "brain voxels excluded from CBF (written 0) and from the ROI "
                      "statistics; counts and reasons in ExcludedVoxels")),
    ]
    return _finish(workflow, run, output_dir, masks, outputs, sinks, options,
                   excluded=prepare, spatial=spatial)


#: The denoisers in the methods text.
_DENOISER_TEXT = {
    "deepasl": "DeepASL, a residual convolutional network trained with a loss that includes "
               "the single-delay kinetic model [@ulas2018]",
    "dilatedconv": "the dilated convolutional network of Kim et al. [@kim2018]",
    "deepasl-multidelay": "the multi-delay variant of DeepASL [@ulas2018], the same residual "
                          "network applied to each delay and trained with the general "
                          "kinetic model in its loss",
}


def _denoiser(options, multi_delay):
    """``(model name, weights)`` that denoise a run of this kind, or None (no
    ``--asl-denoise``, or weights for the other kind of run: refused, with its message,
    before processing by :func:`bids_perfusion.collect.asl.usable_denoiser`)."""
    from bids_perfusion.nn.deepasl import weights_for_run
    from bids_perfusion.nn.weights import WeightsError

    if not options.denoise:
        return None
    try:
        return weights_for_run(options.denoise, options.denoise_weights, multi_delay)
    except WeightsError:
        return None


def _denoise_node(workflow, run, options, denoiser, extract, prepare, masks):
    """The node that denoises the mean ΔM with ``denoiser`` (:func:`_denoiser`), and the
    ``desc`` of its outputs (the name of ``--asl-denoise``)."""
    model, weights = denoiser
    method = options.denoise
    denoise = pe.Node(DenoiseDeltaM(method=model, weights=str(weights),
                                    device=options.device),
                      name=f"denoise_{method}")
    workflow.connect([
        (extract, denoise, [("mean_deltam", "mean_deltam")]),
        (prepare, denoise, [("m0", "m0"), ("excluded_mask", "excluded_mask")]),
        (masks, denoise, [("brain", "brain_mask")]),
    ])
    return denoise, method


def _denoised_sink(run, denoise, method):
    """The sink of the denoised mean ΔM (``desc-<method>_deltam``)."""
    meta = run.metadata
    delay_name = "InversionTime" if meta.label_type == "PASL" else "PostLabelingDelay"
    return (denoise, "deltam", {"desc": method, "suffix": "deltam"}, (denoise, "metadata"),
            {"Units": "arbitrary (units of the ASL series)",
             "Description": f"mean control - label difference ΔM denoised by {method}"
             + (", one volume per delay" if meta.multi_delay else ""),
             delay_name: (list(meta.unique_delays) if meta.multi_delay
                          else meta.unique_delays[0])})


def _denoised_outputs(workflow, run, options, denoiser, single, parameters, extract,
                      prepare, masks):
    """The mean ΔM of a single-delay run denoised by ``denoiser`` and its consensus CBF:
    the CBF output and the ΔM sink (``desc-<method>``), with the methods text."""
    denoise, method = _denoise_node(workflow, run, options, denoiser, extract, prepare,
                                    masks)
    cbf = pe.Node(SingleDelayCBF(**single, parameters={
        **parameters, "EstimationMethod": "ISMRM consensus single-delay formula on the mean "
        f"ΔM denoised by {method}", "Equation": EQUATIONS[run.metadata.label_type]}),
        name=f"single_delay_cbf_{method}")
    workflow.connect([
        (denoise, cbf, [("deltam", "mean_deltam"), ("metadata", "extra_metadata")]),
        (prepare, cbf, [("m0", "m0"), ("excluded_mask", "excluded_mask"),
                        ("metadata", "m0_metadata")]),
        (masks, cbf, [("brain", "brain_mask")]),
    ])
    workflow.__desc__ += (f" The mean ΔM was also denoised by {_DENOISER_TEXT[method]}, "
                          "and CBF was computed again from the denoised ΔM with the same "
                          "formula.")
    return ((cbf, "cbf", f"cbf_{method}", {"desc": method, "suffix": "cbf"},
             {"Units": CBF_UNITS}),
            _denoised_sink(run, denoise, method))


def _m0_text(m0_type):
    return {"Separate": "the mean of the separate M0 scan",
            "Included": "the mean of the M0 volumes of the series",
            "Estimate": "the M0Estimate of the sidecar",
            "Absent": "the mean control image"}[m0_type]


def _finish(workflow, run, output_dir, masks, outputs, sinks, options, excluded=None,
            spatial=None):
    """ROI statistics of the maps (less the ``excluded_mask`` of the node ``excluded``),
    then the output block (barrier, sinks, record), with the outputs in the spaces of
    ``spatial`` when given (the reference: the M0 of ``excluded``, or the mean series when
    there is no M0 image: scanner CBF volumes, or an ``M0Estimate``, a constant)."""
    roi_names = [key for key in ROI_NAMES if key in run.masks or key == "brain"]
    roi = pe.Node(ROIStatistics(rois=roi_names,
                                measures=[measure for _n, _f, measure, *_r in outputs]),
                  name="roi_statistics")
    merge_maps = merge_fields(workflow, [(node, field) for node, field, *_ in outputs],
                              "merge_maps")
    merge_masks = merge_fields(workflow, [(masks, key) for key in roi_names], "merge_masks")
    workflow.connect([(merge_maps, roi, [("out", "in_files")]),
                      (merge_masks, roi, [("out", "masks")])])
    if excluded is not None:
        workflow.connect(excluded, "excluded_mask", roi, "excluded_mask")

    sinks = [
        brain_mask_sink((masks, "brain"), "brain" in run.masks,
                        "the M0 image or the mean ASL volume"),
        (roi, "out_file", {"desc": "roi", "suffix": "roistats"}, None,
         {"Description": "ROI statistics of every ASL map"}),
        *[(node, field, entities, (node, "metadata"), sidecar)
          for node, field, _measure, entities, sidecar in outputs],
        *sinks,
    ]
    if spatial is not None:
        if excluded is not None and run.metadata.m0_type != "Estimate":
            reference = (excluded, "m0")
        else:
            reference = (pe.Node(RunReference(in_file=run.file, kind="mean"),
                                 name="run_reference"), "out_file")
        sinks += space_sinks(workflow, sinks, spatial, reference)
        workflow.__desc__ += " " + coregistration_text("aslref")
    return connect_outputs(workflow, [run.file], output_dir, sinks, options=options,
                           methods=workflow.__desc__)
