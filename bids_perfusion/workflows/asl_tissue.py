"""Tissue-aware parts of the ASL workflow, for runs with GM and WM partial-volume maps.

Wiring only (:func:`bids_perfusion.workflows.asl.init_asl_wf` calls these): the fractions
on the ASL grid, the voxelwise tissue T1 of the multi-delay fit, and the partial-volume
corrected CBF (``desc-pvGM_cbf``, ``desc-pvWM_cbf``).
"""

from nipype.pipeline import engine as pe

from bids_perfusion import constants
from bids_perfusion.interfaces.asl_tissue import PartialVolumeCorrection, TissueFractions
from bids_perfusion.workflows.citations import REFERENCES


def tissue_fractions(run):
    """The node of the run's GM and WM fractions on the ASL grid, or None without
    partial-volume maps."""
    if not run.probsegs:
        return None
    return pe.Node(TissueFractions(gm_probseg=run.probsegs["GM"],
                                   wm_probseg=run.probsegs["WM"], reference=run.file),
                   name="tissue_fractions")


def voxelwise_t1(run, options):
    """``(T1 of GM, T1 of WM, field)`` at the run's field when its multi-delay fit takes a
    voxelwise tissue T1 (partial-volume maps given, no ``--t1-tissue``), else None."""
    if not run.probsegs or options.t1_tissue is not None:
        return None
    field = run.metadata.nominal_field_strength
    return constants.T1_GREY_MATTER[field], constants.T1_WHITE_MATTER[field], field


def connect_voxelwise_t1(workflow, fit, fractions, t1):
    """Give the multi-delay fit node ``fit`` the fractions and tissue T1 ``t1``
    (:func:`voxelwise_t1`), and say so in its sidecar entries; returns the methods text."""
    t1_gm, t1_wm, field = t1
    source = "wansapura1999" if field == 3.0 else "stanisz2005"
    fit.inputs.t1_gm, fit.inputs.t1_wm = t1_gm, t1_wm
    fit.inputs.parameters = {
        **fit.inputs.parameters, "T1Tissue": "voxelwise, from the GM and WM fractions",
        "T1TissueGM": t1_gm, "T1TissueWM": t1_wm, "T1TissueSource": REFERENCES[source],
        "Model": "Buxton et al. 1998, T1' = 1/(1/T1 + CBF/λ), 1/T1 = (P_GM/T1TissueGM + "
                 "P_WM/T1TissueWM) / (P_GM + P_WM)"}
    workflow.connect(fractions, "gm", fit, "gm_fraction")
    workflow.connect(fractions, "wm", fit, "wm_fraction")
    return (f" The tissue T1 of the model was voxelwise, the fraction-weighted relaxation "
            f"rate of grey matter (T1 {t1_gm:g} s) and white matter ({t1_wm:g} s) "
            f"[@{source}].")


def partial_volume_sinks(workflow, options, fractions, cbf, prepare, masks):
    """Partial-volume correction of the CBF output ``cbf`` ((node, field, ...), the
    workflow's first output) with ``--asl-pvc lr``: the sinks of ``desc-pvGM_cbf`` and
    ``desc-pvWM_cbf`` and the methods text; ``([], '')`` without fractions or with
    ``--asl-pvc none``."""
    if fractions is None or options.pvc == "none":
        return [], ""
    node, field, _measure, _entities, sidecar = cbf
    kernel = options.pvc_kernel
    pvc = pe.Node(PartialVolumeCorrection(kernel=kernel), name="partial_volume_correction")
    workflow.connect([
        (node, pvc, [(field, "cbf"), ("metadata", "metadata")]),
        (fractions, pvc, [("gm", "gm"), ("wm", "wm")]),
        (prepare, pvc, [("excluded_mask", "excluded_mask")]),
        (masks, pvc, [("brain", "brain_mask")]),
    ])
    sinks = [
        (pvc, f"{tissue.lower()}_cbf", {"desc": f"pv{tissue}", "suffix": "cbf"},
         (pvc, "metadata"),
         {"Units": sidecar["Units"],
          "Description": f"partial-volume corrected CBF of {name} (0 where the voxel holds "
                         f"no {name} or where it is undetermined)",
          "PartialVolumeCorrectionReference": REFERENCES["asllani2008"]})
        for tissue, name in (("GM", "grey matter"), ("WM", "white matter"))]
    text = (f" CBF was corrected for partial volumes by linear regression on the grey- and "
            f"white-matter fractions in a {kernel} x {kernel} x 1 voxel kernel "
            "[@asllani2008].")
    return sinks, text
