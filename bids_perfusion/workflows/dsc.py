"""DSC-MRI quantification of one run: the run's workflow, made of the front-end, methods
and outputs sub-workflows, and its methods text."""

from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from bids_perfusion.constants import SUPERRES_LABELS
from bids_perfusion.dsc.first_pass import DOWNSLOPE_FRACTION
from bids_perfusion.dsc.leakage import TRANSIT_KERNELS
from bids_perfusion.dsc.lowdose import SAVGOL_ORDER, TEMPORAL_WINDOW_S, simulation_metadata
from bids_perfusion.dsc.normalisation import TUMOUR_MARGIN, WHITE_MATTER_QUANTILE
from bids_perfusion.dsc.relaxivity import at_field
from bids_perfusion.naming import dose_label
from bids_perfusion.workflows.dsc_front_end import (
    GIVEN_MASKS,
    MOTION_OUTPUTS,
    init_dsc_front_end_wf,
)
from bids_perfusion.workflows.dsc_methods import (
    METHOD_INPUTS,
    METHOD_NAMES,
    init_dsc_methods_wf,
    metadata_field,
    method_maps,
)
from bids_perfusion.workflows.dsc_outputs import FRONT_END_INPUTS, init_dsc_outputs_wf
from bids_perfusion.workflows.motion import motion_record, motion_text
from bids_perfusion.workflows.options import DECONVOLUTION_METHODS
from bids_perfusion.workflows.spatial import coregistration_text


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


def superres_text(options):
    """Methods text of the spatio-temporal super-resolution of ``options``."""
    space, time = options.superres_scale
    how = ("by a bi-directional neural ODE with a local implicit image function [@superres; "
           "@liif; @chen2018node] solved with a fixed-step scheme"
           if options.superres == "node-liif" else
           "by bilinear interpolation in plane and linear interpolation in time")
    return (f"Each run was also super-resolved before quantification, {space:g} times in "
            f"plane and {time} frames per acquired frame interval, {how}, and quantified "
            "in the same way on that grid.\n")


def superres_resolution(run, options):
    """The ``Resolution`` sidecar entry of the maps of a super-resolved run: what the
    ``res`` label means (method, in-plane scale, frame interval)."""
    space, time = options.superres_scale
    method = ("the bi-directional neural ODE with a local implicit image function"
              if options.superres == "node-liif" else
              "bilinear interpolation in plane and linear interpolation in time")
    return (f"super-resolved by {method}: {space:g} times in plane (the acquired voxel "
            f"size divided by {space:g}), frame interval "
            f"{run.metadata.repetition_time / time:.4g} s ({time} per acquired frame); "
            "the voxel size is in the desc-superres_dsc sidecar")


def methods_description(run, options, relax):
    """The methods text of a DSC run (``__desc__`` of :func:`init_dsc_wf`), with the
    citations of each step: ΔR2* of the run's echoes, relaxivities ``relax``, AIF, the
    methods and options of ``options``, and the NAWM reference of the run's masks."""
    classical = [m for m in options.methods if m in DECONVOLUTION_METHODS]
    methods = ", ".join(METHOD_NAMES[m] for m in classical) or "none of the classical methods"
    text = (
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
        text += (
            " For CBV and deconvolution, the tissue curves and the arterial input function "
            "were replaced by gamma variates fitted to their first pass, from the first "
            f"frame to {100 * DOWNSLOPE_FRACTION:.0f} % of the peak on the downslope, which "
            "leaves out the recirculation "
            "[@madsen1992; @benner1997].")
    if options.leakage_label:
        text += " CBV was corrected for contrast agent leakage with " + {
            "bsw": "the Boxerman-Schmainda-Weisskoff model [@boxerman2006].",
            "bsw-transit": "the Boxerman-Schmainda-Weisskoff model [@boxerman2006] extended "
                           "with transit-time terms (exponential kernels of "
                           f"{', '.join(f'{k:g}' for k in TRANSIT_KERNELS)} s).",
            "bidirectional": "the bidirectional exchange model [@leu2016] with transit-time "
                             "terms after the residue-function formulation of "
                             "[@bjornerud2011] (exponential kernels of "
                             f"{', '.join(f'{k:g}' for k in TRANSIT_KERNELS)} s).",
        }[options.leakage_correction]
    text += (" Maps were normalised to the median of normal-appearing white "
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

    if "phae" in options.methods:
        text += (
            " CBF and MTT were also estimated by a physics-informed autoencoder whose "
            "encoder predicts MTT from the tissue curve and the AIF, with CBV from the area "
            "ratio and CBF = CBV/MTT, trained self-supervised on simulated data [@phae].")
    if "stunet" in options.methods:
        text += (
            " CBV was also predicted from the raw series by a spatio-temporal U-Net "
            "(stU-Net) whose 3-D encoder convolves space and time jointly, applied to strips "
            "of slices cropped to the brain, resampled and standardised, with the "
            "predictions of overlapping strips averaged [@stunet]; its standardised output "
            "was mapped to mL/100 g by a least-squares fit onto the area-ratio CBV.")
    return text


def init_dsc_wf(run, options, output_dir, dose=1.0, superres=False, name=None,
                spatial=None, shared_motion=False):
    """Quantify one DSC run (or a low dose simulated from it) and write its derivatives.

    .. workflow::
        :graph2use: colored

        from bids_perfusion.workflows.dsc import init_dsc_wf
        wf = init_dsc_wf(run, DSCOptions(), "/out")

    Three sub-workflows, whose graphs are decided here from the run's metadata, masks and
    options: the front end
    (:func:`~bids_perfusion.workflows.dsc_front_end.init_dsc_front_end_wf`: masks, ΔR2*,
    AIF, timing), the methods
    (:func:`~bids_perfusion.workflows.dsc_methods.init_dsc_methods_wf`: CBV, leakage,
    deconvolution, PHAE, stU-Net) and the outputs
    (:func:`~bids_perfusion.workflows.dsc_outputs.init_dsc_outputs_wf`: relative maps, ROI
    table and curves, files). Nothing is written when the run fails, and a completion
    record named like this workflow (options, methods, files) when it succeeds.

    Parameters
    ----------
    run : :class:`~bids_perfusion.workflows.options.DSCRun`
    options : :class:`~bids_perfusion.workflows.options.DSCOptions`
    output_dir : str
    dose : float
        1 for the acquired series, d < 1 for the simulation of a reduced dose.
    superres : bool
        Quantify the super-resolved series of the acquired dose.
    spatial : :class:`~bids_perfusion.workflows.spatial.RunSpaces`, optional
        Also write the maps in other output spaces (not for a super-resolved run, whose
        ``res`` entity names its own grid).
    shared_motion : bool
        A simulated dose that takes the motion correction of the acquired run instead of
        repeating it (:func:`~bids_perfusion.workflows.base.share_motion` connects it).
    """
    simulated = dose < 1.0
    if superres and simulated:
        raise ValueError("super-resolution applies to the acquired dose only")
    label = (SUPERRES_LABELS[options.superres] if superres else
             dose_label(dose) if simulated else "acquired")
    name = name or f"{run.name}_{label}_wf"
    workflow = Workflow(name=name)
    relax = at_field(run.metadata.magnetic_field_strength, options.blood_relaxivity)
    record = {**relax.sidecar(),
              "MagneticFieldStrengthSource": run.metadata.field_strength_source}
    workflow.__desc__ = motion_text(options, "dsc") + methods_description(run, options, relax)
    maps = method_maps(options, record)
    front_end = init_dsc_front_end_wf(run, options, record, dose=dose, superres=superres,
                                      shared_motion=shared_motion)
    methods_wf = init_dsc_methods_wf(options, record)
    if simulated:
        extra_entities = {"reconstruction": label}
        extra_sidecar = simulation_metadata(dose, run.metadata.repetition_time,
                                            model=options.lowdose_model,
                                            average=options.lowdose_average)
        extra_methods = simulated_dose_text((dose,), options.lowdose_model,
                                            options.lowdose_average)
    elif superres:
        extra_entities = {"resolution": label}
        extra_sidecar = {"Resolution": superres_resolution(run, options)}
        extra_methods = workflow.__postdesc__ = superres_text(options)
    else:
        extra_entities = extra_sidecar = None
        extra_methods = ""
    extra_sidecar = {**motion_record(options, "dsc"), **(extra_sidecar or {})}
    if superres:
        spatial = None
    if spatial is not None:
        extra_methods += coregistration_text("dscref")
    outputs = init_dsc_outputs_wf(
        run, maps, output_dir, record, options=options, run_name=name,
        methods=workflow.__desc__ + extra_methods, extra_entities=extra_entities,
        extra_sidecar=extra_sidecar,
        write_corrected=options.write_series and not (simulated or superres),
        series_sidecar={"Description": "the DSC series super-resolved before "
                                       "quantification (first echo)"} if superres else None,
        spatial=spatial)
    masks = [key for key in GIVEN_MASKS if key in run.masks or key in ("brain", "NAWM")]
    to_outputs = [key for key in FRONT_END_INPUTS if key in masks or key not in GIVEN_MASKS]
    if superres:
        to_outputs += ["in_files", "superres_metadata"]
    if options.motion_correction:
        to_outputs += list(MOTION_OUTPUTS)
    from_methods = [m.name for m in maps] + [metadata_field(node)
                                             for node in dict.fromkeys(m.node for m in maps)]
    workflow.connect([
        (front_end, methods_wf, [(f"outputnode.{key}", f"inputnode.{key}")
                                 for key in METHOD_INPUTS]),
        (front_end, outputs, [(f"outputnode.{key}", f"inputnode.{key}")
                              for key in to_outputs]),
        (methods_wf, outputs, [(f"outputnode.{key}", f"inputnode.{key}")
                               for key in from_methods]),
    ])
    return workflow
