"""Maps in other spaces: co-registration to the T1w, normalisation, resampling, files.

:func:`init_anat_wf` normalises a subject's T1w to the template once, whatever the number
of runs; :func:`space_sinks` adds to a run's output block the co-registration of its
reference image to the T1w and, for every output space but ``run``, one node composing
the transforms into the run's points of that space's grid, then one resampling node and
one sink per NIfTI output of the run. A map is resampled once from its native grid
(:mod:`bids_perfusion.spatial.transforms`): trilinear for maps, nearest neighbour for
masks.
"""

from dataclasses import dataclass

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe
from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from bids_perfusion.interfaces.spatial import (
    TEMPLATE_DESCRIPTION,
    ComposeTransforms,
    CoregisterToT1w,
    NormaliseT1w,
    ResampleToSpace,
)
from bids_perfusion.spatial.registration import NORMALISATION
from bids_perfusion.spatial.spaces import RUN, T1W, TEMPLATE, Anatomy, SpatialOptions
from bids_perfusion.workflows.bids_uris import raw_uris
from bids_perfusion.workflows.outputs import TABLES, connect_outputs

#: Outputs that are not resampled: tables, transforms and series.
NOT_RESAMPLED = (*TABLES, "xfm", "dsc")
#: Name of the node of a run that receives the subject's template warp.
TEMPLATE_INPUTNODE = "template_inputnode"


@dataclass(frozen=True)
class RunSpaces:
    """What a run needs to write its maps in other spaces: the ``options``, the
    subject's ``anatomy`` and the suffix naming its reference image (``dscref``,
    ``aslref``)."""

    options: SpatialOptions
    anatomy: Anatomy
    reference_suffix: str


def normalisation_text(options):
    """Methods text of the normalisation of the T1w (``options.normalisation``)."""
    setting = NORMALISATION[options.normalisation]
    return (
        "The T1w was normalised to the MNI152 2009a nonlinear symmetric template "
        "[@fonov2011] (nilearn's copy, skull-stripped) with dipy [@garyfallidis2014]: "
        "affine registration maximising mutual information [@mattes2003], the T1w "
        "skull-stripped by the template's brain mask brought through it unless a brain "
        "mask was given, then symmetric diffeomorphic registration (SyN) with local "
        "cross-correlation [@avants2008] on the template's "
        f"{setting.resolution_mm} mm grid ({options.normalisation} setting, SyN "
        f"iterations {list(setting.syn_iterations)} from the coarsest level). ")


def coregistration_text(reference_suffix):
    """Methods text of the co-registration of a run to the T1w."""
    image = ("the mean of its pre-bolus baseline frames" if reference_suffix == "dscref"
             else "its M0 reference (the mean control image without one)")
    return (f"The reference image of the run, {image}, was co-registered to the T1w by a "
            "rigid transform maximising mutual information [@mattes2003] (dipy "
            "[@garyfallidis2014]). Maps were resampled into each output space once, "
            "composing the transforms, trilinearly (masks by nearest neighbour). ")


def init_anat_wf(anatomy, options, output_dir):
    """Normalise the T1w of ``anatomy`` to the template and write the transform and the
    T1w on the registration grid (``outputnode.template_warp`` feeds every run).

    .. workflow::
        :graph2use: colored

        from bids_perfusion.workflows.spatial import init_anat_wf
        wf = init_anat_wf(Anatomy("01", None, "/data/sub-01/anat/sub-01_T1w.nii.gz"),
                          SpatialOptions(("MNI152NLin2009aSym:res-2",)), "/out")
    """
    workflow = Workflow(name=f"{anatomy.name}_wf")
    resolution = str(NORMALISATION[options.normalisation].resolution_mm)
    workflow.__desc__ = normalisation_text(options)
    normalise = pe.Node(NormaliseT1w(t1w=anatomy.t1w, setting=options.normalisation),
                        name="normalise_t1w")
    if anatomy.brain_mask:
        normalise.inputs.brain_mask = anatomy.brain_mask
    outputnode = pe.Node(niu.IdentityInterface(fields=["template_warp"]), name="outputnode")
    workflow.connect(normalise, "out_file", outputnode, "template_warp")
    sinks = [
        (normalise, "out_file", {"from": T1W, "to": TEMPLATE, "mode": "image",
                                 "suffix": "xfm"}, (normalise, "metadata"), {}),
        (normalise, "t1w_template", {"space": TEMPLATE,
                                     "resolution": resolution,
                                     "desc": "preproc", "suffix": "T1w"}, None,
         {"Description": "the T1w (skull-stripped) normalised to the template",
          "SpatialReference": TEMPLATE_DESCRIPTION,
          "Resolution": f"{resolution} mm isotropic"}),
    ]
    return connect_outputs(workflow, [anatomy.t1w], output_dir, sinks, options=options,
                           methods=workflow.__desc__)


def space_sinks(workflow, sinks, spatial, reference):
    """The sinks that write the outputs of ``sinks`` (a run's sinks, as
    :func:`~bids_perfusion.workflows.outputs.connect_outputs` takes them) in every space
    of ``spatial`` (:class:`RunSpaces`) but ``run``, with the co-registration of
    ``reference`` ((node, field): the run's reference image) and the reference on the
    T1w grid. Nodes are added to ``workflow``; with the template among the spaces, its
    node :data:`TEMPLATE_INPUTNODE` takes the subject's ``template_warp``."""
    anatomy, suffix = spatial.anatomy, spatial.reference_suffix
    coregister = pe.Node(CoregisterToT1w(t1w=anatomy.t1w), name="coregister_t1w")
    workflow.connect(*reference, coregister, "reference")
    t1w_uri = raw_uris([anatomy.t1w])[0]
    added = [
        (coregister, "out_file", {"from": suffix, "to": T1W, "mode": "image",
                                  "suffix": "xfm"}, (coregister, "metadata"), {}),
        (coregister, "reference_t1w", {"space": T1W, "suffix": suffix}, None,
         {"Description": "the run's reference image (the image co-registered to the "
                         "T1w) on the T1w grid", "SpatialReference": t1w_uri}),
    ]
    spaces = [space for space in spatial.options.spaces if space.name != RUN]
    warp = None
    if any(space.name == TEMPLATE for space in spaces):
        warp = pe.Node(niu.IdentityInterface(fields=["template_warp"]),
                       name=TEMPLATE_INPUTNODE)
    for space in spaces:
        label = str(space).replace(":", "_").replace("-", "")
        compose = pe.Node(ComposeTransforms(space=str(space), t1w=anatomy.t1w),
                          name=f"compose_{label}")
        workflow.connect(coregister, "out_file", compose, "coregistration")
        if space.name == TEMPLATE:
            workflow.connect(warp, "template_warp", compose, "template_warp")
        for node, field, entities, metadata, sidecar in sinks:
            if entities["suffix"] in NOT_RESAMPLED:
                continue
            kind = "mask" if entities["suffix"] == "mask" else "map"
            output = "_".join(str(value) for value in entities.values())
            resample = pe.Node(ResampleToSpace(space=str(space), kind=kind),
                               name=f"to_{label}_{output}")
            workflow.connect([(node, resample, [(field, "in_file")]),
                              (compose, resample, [("out_file", "points")])])
            reference_entry = ({"SpatialReference": t1w_uri} if space.name == T1W else {
                "SpatialReference": TEMPLATE_DESCRIPTION,
                "Resolution": f"{space.voxel_size_mm} mm isotropic grid over the "
                              "template's field of view"})
            added.append((resample, "out_file", {**entities, **space.entities}, metadata,
                          {**sidecar, **reference_entry,
                           "Interpolation": "nearest neighbour" if kind == "mask"
                           else "trilinear"}))
    return added


def template_warp_input(run_workflow):
    """The ``<sub-workflow path>.template_inputnode.template_warp`` input of a run's
    workflow, or None when the run writes nothing in the template."""
    for name in run_workflow.list_node_names():
        if name.split(".")[-1] == TEMPLATE_INPUTNODE:
            return f"{name}.template_warp"
    return None
