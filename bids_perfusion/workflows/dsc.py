"""DSC-MRI quantification of one run: from the raw series to maps, ROI table and files."""

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe
from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from bids_perfusion.dsc.first_pass import DOWNSLOPE_FRACTION
from bids_perfusion.dsc.leakage import TRANSIT_KERNELS
from bids_perfusion.dsc.lowdose import SAVGOL_ORDER, TEMPORAL_WINDOW_S, simulation_metadata
from bids_perfusion.dsc.normalisation import TUMOUR_MARGIN, WHITE_MATTER_QUANTILE
from bids_perfusion.dsc.relaxivity import at_field
from bids_perfusion.interfaces.aif import ArterialInputFunction
from bids_perfusion.interfaces.deconvolution import Deconvolve
from bids_perfusion.interfaces.first_pass import FirstPassFit
from bids_perfusion.interfaces.leakage import LeakageCorrection
from bids_perfusion.interfaces.lowdose import SimulateLowDose
from bids_perfusion.interfaces.maps import BloodVolume, BolusTiming, RelativeMaps
from bids_perfusion.interfaces.masks import BrainMask, NAWMMask
from bids_perfusion.interfaces.phae import PHAEInference
from bids_perfusion.interfaces.roi import ROICurves, ROIStatistics
from bids_perfusion.interfaces.signal import SignalToDeltaR2Star
from bids_perfusion.interfaces.stunet import StUNetInference
from bids_perfusion.naming import dose_label
from bids_perfusion.workflows.options import DECONVOLUTION_METHODS
from bids_perfusion.workflows.outputs import connect_outputs, mask_sidecar

METHOD_NAMES = {"ssvd": "standard truncated SVD (sSVD)",
                "csvd": "block-circulant truncated SVD (cSVD)",
                "osvd": "oscillation-index SVD (oSVD)",
                "tikhonov": "Tikhonov regularisation",
                "phae": "physics-informed autoencoder (PHAE)",
                "stunet": "spatio-temporal U-Net (stU-Net)"}
#: ROI masks that ROI statistics use when they are given or derived.
ROI_NAMES = ("brain", "tumor", "NAWM", "GM", "WM")


def simulated_dose_text(doses, model="exponential", average="temporal"):
    """Methods text of the simulation of reduced doses (fractions ``doses``) with the
    signal ``model`` and local ``average`` of :mod:`bids_perfusion.dsc.lowdose`."""
    fractions = ", ".join(f"{dose:g}" for dose in doses)
    if model == "exponential":
        equation = ("S_d(t) = S(0) [S̄(t)/S(0)]^d + [S(t) - S̄(t)], which scales ΔR2* by d "
                    "in S = S(0) exp(-TE ΔR2*) and keeps the noise of the acquisition (the "
                    "exact form of which Eq. 1 of [@stunet] is the first-order expansion)")
    else:
        equation = "S_d(t) = S(t) - (1 - d)[S̄(t) - S(0)] (Eq. 1 of [@stunet])"
    local = (f"a Savitzky-Golay smoother of order {SAVGOL_ORDER} along time over the odd "
             f"number of frames closest to {TEMPORAL_WINDOW_S:g} s (at least 5), with "
             "Gaussian noise added to restore the noise variance it removes"
             if average == "temporal" else "a 3×3×3 spatial moving average")
    return (f"Each run was also processed at simulated dose fractions of {fractions}, "
            f"obtained from the acquired series as {equation}, with S̄ the local average "
            f"({local}) and S(0) its baseline mean.\n")


def relaxivity_text(relax):
    """Methods text of the conversion of ΔR2* to concentration with ``relax``
    (:class:`~bids_perfusion.dsc.relaxivity.Relaxivities`)."""
    blood = f"{relax.blood_linear:g} C" + (f" + {relax.blood_quadratic:g} C²"
                                           if relax.blood_quadratic else "")
    scaled = ("" if relax.nominal_field == 1.5 else
              ", scaled from the 1.5 T values with the field (linear terms x B0, quadratic "
              "term x B0²) [@yablonskiy1994; @kiselev2005]")
    return ("Concentration C (mM) was obtained from ΔR2* with the relaxivities at "
            f"{relax.nominal_field:g} T (MagneticFieldStrength {relax.field_strength:g} T): "
            f"ΔR2* = {relax.tissue:g} C in tissue and ΔR2* = {blood} in whole blood "
            f"(s⁻¹) [@kjolby2006]{scaled}. ")


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


def init_dsc_wf(run, options, output_dir, dose=1.0, name=None):
    """Quantify one DSC run (or a low dose simulated from it) and write its derivatives.

    The graph is decided here from the run's metadata, masks and options: automatic or
    mask-based brain mask, AIF and NAWM; one deconvolution node per method; leakage
    correction when requested. The outputs are written by
    :func:`~bids_perfusion.workflows.outputs.connect_outputs`: nothing when the run
    fails, and a completion record (options, methods, files) when it succeeds.

    Parameters
    ----------
    run : :class:`~bids_perfusion.workflows.options.DSCRun`
    options : :class:`~bids_perfusion.workflows.options.DSCOptions`
    output_dir : str
    dose : float
        1 for the acquired series, d < 1 for the simulation of a reduced dose.
    """
    simulated = dose < 1.0
    name = name or f"{run.name}_{dose_label(dose) if simulated else 'acquired'}_wf"
    workflow = Workflow(name=name)
    classical = [m for m in options.methods if m in DECONVOLUTION_METHODS]
    methods = ", ".join(METHOD_NAMES[m] for m in classical) or "none of the classical methods"
    relax = at_field(run.metadata.magnetic_field_strength, options.blood_relaxivity)
    record = {**relax.sidecar(),
              "MagneticFieldStrengthSource": run.metadata.field_strength_source}
    workflow.__desc__ = (
        "The DSC-MRI series was converted to the change in transverse relaxation rate "
        + ("ΔR2*(t) = -ln(S(t)/S0)/TE [@rosen1990] " if len(run.files) == 1 else
           "ΔR2*(t) = ln[(S1(t)/S1,0)/(S2(t)/S2,0)]/(TE2 - TE1) of the first two echoes, "
           "insensitive to T1 leakage [@vonken1999] ")
        + "after discarding the frames of the approach "
        "to steady state; S0 was the mean of the baseline frames before bolus arrival. "
        + relaxivity_text(relax)
        + ("The arterial input function was the mean over a given arterial mask. "
           if "arteries" in run.masks else
           "The arterial input function was the mean of arterial voxels chosen "
           "automatically by early arrival, large area, smoothness and cluster analysis "
           "[@mouridsen2006]. ")
        + f"Tissue curves were deconvolved by the arterial input function with {methods} "
        "[@ostergaard1996; @wu2003; @calamante2003]; CBV was the ratio of the areas under "
        f"the tissue and arterial curves with kH = {options.kh} and ρ = {options.rho} g/mL "
        "[@rempp1994], MTT = CBV/CBF [@stewart1894]."
    )
    if options.first_pass == "gamma":
        workflow.__desc__ += (
            " For CBV and deconvolution, the tissue curves and the arterial input function "
            "were replaced by gamma variates fitted to their first pass, from the first "
            f"frame to {100 * DOWNSLOPE_FRACTION:.0f} % of the peak on the downslope, which "
            "leaves out the recirculation "
            "[@madsen1992; @benner1997].")
    if options.leakage_label:
        workflow.__desc__ += " CBV was corrected for contrast agent leakage with " + {
            "bsw": "the Boxerman-Schmainda-Weisskoff model [@boxerman2006].",
            "bsw-transit": "the Boxerman-Schmainda-Weisskoff model [@boxerman2006] extended "
                           "with transit-time terms (exponential kernels of "
                           f"{', '.join(f'{k:g}' for k in TRANSIT_KERNELS)} s).",
            "bidirectional": "the bidirectional exchange model [@leu2016] with transit-time "
                             "terms (exponential kernels of "
                             f"{', '.join(f'{k:g}' for k in TRANSIT_KERNELS)} s).",
        }[options.leakage_correction]
    workflow.__desc__ += (" Maps were normalised to the median of normal-appearing white "
                          "matter [@wetzel2002]"
                          + ("." if "NAWM" in run.masks else
                             ", chosen without reference to the maps: "
                             + ("the given white-matter segmentation" if "WM" in run.masks
                                else f"the darkest {100 * WHITE_MATTER_QUANTILE:.0f} % of the "
                                "smoothed pre-contrast image, where white matter is darkest")
                             + ", eroded"
                             + (f", {TUMOUR_MARGIN} voxels from the tumour and in the other "
                                "hemisphere, found from the image orientation"
                                if "tumor" in run.masks else "") + ".")
                          + "\n\n")

    masks = pe.Node(niu.IdentityInterface(fields=["brain", "tumor", "GM", "WM"]),
                    name="masks")
    reference = pe.Node(niu.IdentityInterface(fields=["NAWM"]), name="reference")
    for key in ("tumor", "GM", "WM"):
        if key in run.masks:
            setattr(masks.inputs, key, run.masks[key])
    if "brain" in run.masks:
        masks.inputs.brain = run.masks["brain"]
    else:
        brain = pe.Node(BrainMask(in_file=run.files[0]), name="brain_mask")
        workflow.connect(brain, "out_file", masks, "brain")

    source = pe.Node(niu.IdentityInterface(fields=["files"]), name="source")
    source.inputs.files = list(run.files)
    if simulated:
        lowdose = pe.Node(SimulateLowDose(dose=dose, in_files=list(run.files),
                                          repetition_time=run.metadata.repetition_time,
                                          model=options.lowdose_model,
                                          average=options.lowdose_average),
                          name="simulate_low_dose")
        workflow.connect(masks, "brain", lowdose, "brain_mask")
        series = (lowdose, "out_files")
    else:
        series = (source, "files")

    signal = pe.Node(SignalToDeltaR2Star(echo_times=list(run.metadata.echo_times),
                                         repetition_time=run.metadata.repetition_time,
                                         source_files=list(run.files)),
                     name="delta_r2star")
    aif = pe.Node(ArterialInputFunction(relaxivity=record), name="aif")
    if "arteries" in run.masks:
        aif.inputs.aif_mask = run.masks["arteries"]
    scaling = {"kh": options.kh, "rho": options.rho, "scaled": options.scaled,
               "relaxivity": record}
    cbv = pe.Node(BloodVolume(**scaling), name="cbv")
    timing = pe.Node(BolusTiming(), name="bolus_timing")
    # Curves of CBV and deconvolution: as measured, or their gamma-variate first passes.
    curves, arterial = (signal, "delta_r2star"), (aif, "aif_tsv")
    if options.first_pass == "gamma":
        first_pass = pe.Node(FirstPassFit(), name="first_pass")
        workflow.connect([
            (signal, first_pass, [("delta_r2star", "delta_r2star")]),
            (masks, first_pass, [("brain", "brain_mask")]),
            (aif, first_pass, [("aif_tsv", "aif_tsv")]),
            (first_pass, cbv, [("metadata", "first_pass")]),
        ])
        curves, arterial = (first_pass, "delta_r2star"), (first_pass, "aif_tsv")
    workflow.connect([
        (series[0], signal, [(series[1], "in_files")]),
        (masks, signal, [("brain", "brain_mask")]),
        (signal, aif, [("delta_r2star", "delta_r2star"), ("frame_times", "frame_times"),
                       ("metadata", "signal_metadata")]),
        (masks, aif, [("brain", "brain_mask")]),
        (curves[0], cbv, [(curves[1], "delta_r2star")]),
        (masks, cbv, [("brain", "brain_mask")]),
        (arterial[0], cbv, [(arterial[1], "aif_tsv")]),
        (signal, timing, [("delta_r2star", "delta_r2star"), ("frame_times", "frame_times")]),
        (masks, timing, [("brain", "brain_mask")]),
    ])

    if "NAWM" in run.masks:
        reference.inputs.NAWM = run.masks["NAWM"]
    else:
        nawm = pe.Node(NAWMMask(), name="nawm_mask")
        for key, field in (("tumor", "tumor_mask"), ("WM", "wm_mask")):
            if key in run.masks:
                setattr(nawm.inputs, field, run.masks[key])
        workflow.connect([(signal, nawm, [("baseline_image", "baseline")]),
                          (masks, nawm, [("brain", "brain_mask")]),
                          (nawm, reference, [("out_file", "NAWM")])])

    # Outputs, in the order of the maps merged for normalisation and ROI statistics:
    # (node, field, measure name, entities, metadata node, sidecar)
    outputs = [(cbv, "cbv", "cbv", {"desc": "areaRatio", "suffix": "cbv"}, cbv,
                {"Units": options.cbv_units, "EstimationMethod": "area ratio"})]
    label = options.leakage_label
    if label:
        leak = pe.Node(LeakageCorrection(model=options.leakage_correction, **scaling),
                       name="leakage_correction")
        workflow.connect([
            (signal, leak, [("delta_r2star", "delta_r2star"), ("frame_times", "frame_times")]),
            (masks, leak, [("brain", "brain_mask")]),
            (aif, leak, [("aif_tsv", "aif_tsv"), ("aif_mask", "aif_mask")]),
        ])
        outputs.append((leak, "cbv", f"cbv_{label}", {"desc": label, "suffix": "cbv"}, leak,
                        {"Units": options.cbv_units,
                         "EstimationMethod": "area ratio, leakage-corrected"}))
    for method in classical:
        deconvolve = pe.Node(Deconvolve(method=method, **scaling,
                                        parameters=options.method_parameters.get(method, {})),
                             name=f"deconvolve_{method}")
        workflow.connect([
            (curves[0], deconvolve, [(curves[1], "delta_r2star")]),
            (masks, deconvolve, [("brain", "brain_mask")]),
            (arterial[0], deconvolve, [(arterial[1], "aif_tsv")]),
            (cbv, deconvolve, [("cbv", "cbv")]),
        ])
        if options.first_pass == "gamma":
            workflow.connect(first_pass, "metadata", deconvolve, "first_pass")
        outputs.append((deconvolve, "cbf", f"cbf_{method}", {"desc": method, "suffix": "cbf"},
                        deconvolve, {"Units": options.cbf_units,
                                     "EstimationMethod": METHOD_NAMES[method]}))

    if "phae" in options.methods:
        workflow.__desc__ += (
            " CBF and MTT were also estimated by a physics-informed autoencoder whose "
            "encoder predicts MTT from the tissue curve and the AIF, with CBV from the area "
            "ratio and CBF = CBV/MTT, trained self-supervised on simulated data [@phae].")
        phae = pe.Node(PHAEInference(device=options.device, **scaling), name="phae",
                       n_procs=1)
        if options.phae_weights:
            phae.inputs.weights = options.phae_weights
        workflow.connect([
            (signal, phae, [("delta_r2star", "delta_r2star")]),
            (masks, phae, [("brain", "brain_mask")]),
            (aif, phae, [("aif_tsv", "aif_tsv")]),
        ])
        outputs.append((phae, "cbf", "cbf_phae", {"desc": "phae", "suffix": "cbf"}, phae,
                        {"Units": options.cbf_units, "EstimationMethod": METHOD_NAMES["phae"]}))

    if "stunet" in options.methods:
        workflow.__desc__ += (
            " CBV was also predicted from the raw series by a spatio-temporal U-Net "
            "(stU-Net) whose 3-D encoder convolves space and time jointly, applied to strips "
            "of slices cropped to the brain, resampled and standardised, with the "
            "predictions of overlapping strips averaged [@stunet]; its standardised output "
            "was mapped to mL/100 g by a least-squares fit onto the area-ratio CBV.")
        stunet = pe.Node(StUNetInference(device=options.device), name="stunet", n_procs=1)
        if options.stunet_weights:
            stunet.inputs.weights = options.stunet_weights
        workflow.connect([
            (series[0], stunet, [(series[1], "in_files")]),
            (masks, stunet, [("brain", "brain_mask")]),
            (cbv, stunet, [("cbv", "cbv")]),
        ])
        outputs.append((stunet, "cbv", "cbv_stunet", {"desc": "stunet", "suffix": "cbv"},
                        stunet, {"Units": options.cbv_units,
                                 "EstimationMethod": METHOD_NAMES["stunet"], **record}))

    relative = pe.Node(RelativeMaps(), name="relative_maps")
    merge_maps = pe.Node(niu.Merge(len(outputs)), name="merge_maps")
    for index, (node, field, *_rest) in enumerate(outputs, start=1):
        workflow.connect(node, field, merge_maps, f"in{index}")
    workflow.connect([(merge_maps, relative, [("out", "in_files")]),
                      (reference, relative, [("NAWM", "nawm_mask")])])

    roi_names = [key for key in ROI_NAMES
                 if key in run.masks or key in ("brain", "NAWM")]
    roi = pe.Node(ROIStatistics(rois=roi_names), name="roi_statistics")
    measures = [measure for _node, _field, measure, *_rest in outputs]
    roi.inputs.measures = measures + [f"r{measure}" for measure in measures] + ["ttp", "bat"]
    merge_roi_maps = pe.Node(niu.Merge(3), name="merge_roi_maps")
    merge_timing = pe.Node(niu.Merge(2), name="merge_timing")
    merge_masks = pe.Node(niu.Merge(len(roi_names)), name="merge_masks")
    workflow.connect([
        (merge_maps, merge_roi_maps, [("out", "in1")]),
        (relative, merge_roi_maps, [("out_files", "in2")]),
        (timing, merge_timing, [("ttp", "in1"), ("bat", "in2")]),
        (merge_timing, merge_roi_maps, [("out", "in3")]),
        (merge_roi_maps, roi, [("out", "in_files")]),
        (merge_masks, roi, [("out", "masks")]),
    ])
    for index, key in enumerate(roi_names, start=1):
        workflow.connect(reference if key == "NAWM" else masks, key, merge_masks, f"in{index}")
    roi_curves = pe.Node(ROICurves(rois=roi_names, relaxivity=record), name="roi_curves")
    workflow.connect([
        (signal, roi_curves, [("delta_r2star", "delta_r2star"), ("frame_times", "frame_times")]),
        (merge_masks, roi_curves, [("out", "masks")]),
    ])

    # Every file to write, as (node, field, entities, metadata node or None, sidecar).
    sinks = [
        (masks, "brain", {"desc": "brain", "suffix": "mask"}, None,
         mask_sidecar("Brain", "brain mask of the run (" + (
             "given with --derivatives)" if "brain" in run.masks else
             "derived from the first DSC frames)"))),
        (reference, "NAWM", {"desc": "NAWM", "suffix": "mask"}, None,
         mask_sidecar("ROI", "normal-appearing white matter, reference of relative maps")),
        (aif, "aif_mask", {"desc": "aif", "suffix": "mask"}, aif,
         mask_sidecar("ROI", "voxels averaged into the arterial input function")),
        (aif, "aif_tsv", {"desc": "aif", "suffix": "timeseries"}, aif,
         {"time": {"Units": "s"}, "delta_r2star": {"Units": "1/s"},
          "concentration": {"Units": "mM"}}),
        (timing, "ttp", {"suffix": "ttp"}, None,
         {"Units": "s", "Description": "time to peak of ΔR2*, from the first frame"}),
        (timing, "bat", {"suffix": "bat"}, None,
         {"Units": "s", "Description": "bolus arrival time, from the first frame"}),
        (roi, "out_file", {"desc": "roi", "suffix": "roistats"}, None,
         {"Description": "ROI statistics of every map; relative maps are prefixed 'r'"}),
        (roi_curves, "out_file", {"desc": "roi", "suffix": "timeseries"}, None,
         roi_curves_sidecar(roi_names, record)),
    ]
    for node, field, _measure, entities, meta_node, sidecar in outputs:
        sinks.append((node, field, entities, meta_node, sidecar))
    for index, (_node, _field, _measure, entities, meta_node, sidecar) in enumerate(outputs):
        select = pe.Node(niu.Select(index=index), name=f"select_relative{index}")
        workflow.connect(relative, "out_files", select, "inlist")
        sinks.append((select, "out", {**entities, "desc": entities["desc"] + "Nawm"},
                      meta_node, {**sidecar, "Units": "1 (ratio to the NAWM median)"}))
    if label:
        sinks.append((leak, "k2", {"desc": label, "suffix": "k2"}, leak,
                      {"Units": "1/s", "Description": "leakage constant K2"}))
    for method in (m for m in options.methods if m != "stunet"):  # stU-Net: CBV only
        node = workflow.get_node("phae" if method == "phae" else f"deconvolve_{method}")
        sinks += [
            (node, "mtt", {"desc": method, "suffix": "mtt"}, node, {"Units": "s"}),
        ]
        if method != "phae":  # PHAE's residue has no delay: it has no Tmax
            sinks.append((node, "tmax", {"desc": method, "suffix": "tmax"}, node,
                          {"Units": "s"}))

    return connect_outputs(workflow, list(run.files), output_dir, sinks, options=options,
                           methods=workflow.__desc__ + (
                               simulated_dose_text((dose,), options.lowdose_model,
                                                   options.lowdose_average)
                               if simulated else ""),
                           extra_entities={"reconstruction": dose_label(dose)} if simulated
                           else None,
                           extra_sidecar=simulation_metadata(
                               dose, run.metadata.repetition_time,
                               model=options.lowdose_model, average=options.lowdose_average)
                           if simulated else None)
