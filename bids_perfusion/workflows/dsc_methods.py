"""The quantification methods of a DSC run: CBV, leakage correction, deconvolution, PHAE,
stU-Net, each a node of :func:`init_dsc_methods_wf`, and the maps they write
(:func:`method_maps`)."""

from dataclasses import dataclass, field

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe
from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from bids_perfusion.interfaces.deconvolution import Deconvolve
from bids_perfusion.interfaces.first_pass import FirstPassFit
from bids_perfusion.interfaces.leakage import LeakageCorrection
from bids_perfusion.interfaces.maps import BloodVolume
from bids_perfusion.interfaces.phae import PHAEInference
from bids_perfusion.interfaces.stunet import StUNetInference
from bids_perfusion.workflows.options import DECONVOLUTION_METHODS

METHOD_NAMES = {"ssvd": "standard truncated SVD (sSVD)",
                "csvd": "block-circulant truncated SVD (cSVD)",
                "osvd": "oscillation-index SVD (oSVD)",
                "tikhonov": "Tikhonov regularisation",
                "phae": "physics-informed autoencoder (PHAE)",
                "stunet": "spatio-temporal U-Net (stU-Net)"}
#: What the methods read from the front end.
METHOD_INPUTS = ("in_files", "brain", "delta_r2star", "frame_times", "aif_tsv", "aif_mask")


@dataclass(frozen=True)
class MapOutput:
    """One map of the methods: the ``output`` of node ``node``, written with ``entities``
    and ``sidecar`` (plus the node's ``metadata`` at run time). A map with a ``measure``
    name is also normalised to the NAWM and summarised in the ROI table."""

    node: str
    output: str
    entities: dict
    sidecar: dict = field(default_factory=dict)
    measure: str | None = None

    @property
    def name(self):
        """The methods' output field of the map: its measure, or ``<suffix>_<desc>``."""
        return self.measure or f"{self.entities['suffix']}_{self.entities['desc']}"


def method_maps(options, relaxivity):
    """The maps of the methods of ``options``, in the order they are written: first those
    normalised and summarised (area-ratio CBV, leakage-corrected CBV, CBF of each
    deconvolution method, of PHAE, stU-Net CBV), then K2 and the MTT and Tmax of each
    method (stU-Net predicts CBV only, PHAE's residue has no delay and so no Tmax)."""
    cbv_units, cbf_units = options.cbv_units, options.cbf_units
    maps = [MapOutput("cbv", "cbv", {"desc": "areaRatio", "suffix": "cbv"},
                      {"Units": cbv_units, "EstimationMethod": "area ratio"}, "cbv")]
    label = options.leakage_label
    if label:
        maps.append(MapOutput("leakage_correction", "cbv", {"desc": label, "suffix": "cbv"},
                              {"Units": cbv_units,
                               "EstimationMethod": "area ratio, leakage-corrected"},
                              f"cbv_{label}"))
    for method in (m for m in options.methods if m in DECONVOLUTION_METHODS):
        maps.append(MapOutput(f"deconvolve_{method}", "cbf", {"desc": method, "suffix": "cbf"},
                              {"Units": cbf_units, "EstimationMethod": METHOD_NAMES[method]},
                              f"cbf_{method}"))
    if "phae" in options.methods:
        maps.append(MapOutput("phae", "cbf", {"desc": "phae", "suffix": "cbf"},
                              {"Units": cbf_units, "EstimationMethod": METHOD_NAMES["phae"]},
                              "cbf_phae"))
    if "stunet" in options.methods:
        maps.append(MapOutput("stunet", "cbv", {"desc": "stunet", "suffix": "cbv"},
                              {"Units": cbv_units, "EstimationMethod": METHOD_NAMES["stunet"],
                               **relaxivity}, "cbv_stunet"))
    if label:
        maps.append(MapOutput("leakage_correction", "k2", {"desc": label, "suffix": "k2"},
                              {"Units": "1/s", "Description": "leakage constant K2"}))
    for method in (m for m in options.methods if m != "stunet"):
        node = "phae" if method == "phae" else f"deconvolve_{method}"
        maps.append(MapOutput(node, "mtt", {"desc": method, "suffix": "mtt"}, {"Units": "s"}))
        if method != "phae":
            maps.append(MapOutput(node, "tmax", {"desc": method, "suffix": "tmax"},
                                  {"Units": "s"}))
    return maps


def metadata_field(node):
    """The methods' output field of the sidecar entries of ``node``."""
    return f"metadata_{node}"


def init_dsc_methods_wf(options, relaxivity, name="methods_wf"):
    """CBV, leakage correction and the perfusion maps of every method of ``options``.

    .. workflow::
        :graph2use: colored

        from bids_perfusion.workflows.dsc_methods import init_dsc_methods_wf
        wf = init_dsc_methods_wf(DSCOptions(methods=("osvd", "phae")), relaxivity)

    ``cbv`` is the area ratio of tissue and arterial curves; ``leakage_correction`` (with
    ``--leakage-correction``) fits the chosen leakage model to the measured curves;
    ``deconvolve_<method>`` gives CBF, MTT and Tmax of each SVD or Tikhonov method;
    ``phae`` the CBF and MTT of the physics-informed autoencoder, and ``stunet`` the CBV of
    the spatio-temporal U-Net from the series. With ``--first-pass gamma``, ``first_pass``
    replaces the curves of CBV and deconvolution by gamma variates fitted to their first
    pass. Every node converting ΔR2* to concentration gets ``relaxivity`` (the run's
    relaxivity record), and kH, ρ and the scaling of ``options``.

    Inputs
    ------
    in_files
        the series quantified (stU-Net reads it)
    brain, delta_r2star, frame_times, aif_tsv, aif_mask
        the outputs of :func:`~bids_perfusion.workflows.dsc_front_end.init_dsc_front_end_wf`

    Outputs
    -------
    one field per map of :func:`method_maps` (``MapOutput.name``), and
    ``metadata_<node>`` (:func:`metadata_field`): the sidecar entries of each node
    """
    maps = method_maps(options, relaxivity)
    nodes = list(dict.fromkeys(m.node for m in maps))
    workflow = Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=list(METHOD_INPUTS)), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(
        fields=[m.name for m in maps] + [metadata_field(node) for node in nodes]),
        name="outputnode")
    scaling = {"kh": options.kh, "rho": options.rho, "scaled": options.scaled,
               "relaxivity": relaxivity}
    cbv = pe.Node(BloodVolume(**scaling), name="cbv")
    # Curves of CBV and deconvolution: as measured, or their gamma-variate first passes.
    curves, arterial = (inputnode, "delta_r2star"), (inputnode, "aif_tsv")
    if options.first_pass == "gamma":
        first_pass = pe.Node(FirstPassFit(), name="first_pass")
        workflow.connect([
            (inputnode, first_pass, [("delta_r2star", "delta_r2star"),
                                     ("brain", "brain_mask"), ("aif_tsv", "aif_tsv")]),
            (first_pass, cbv, [("metadata", "first_pass")]),
        ])
        curves, arterial = (first_pass, "delta_r2star"), (first_pass, "aif_tsv")
    workflow.connect([
        (curves[0], cbv, [(curves[1], "delta_r2star")]),
        (inputnode, cbv, [("brain", "brain_mask")]),
        (arterial[0], cbv, [(arterial[1], "aif_tsv")]),
    ])
    created = {"cbv": cbv}
    if options.leakage_label:
        created["leakage_correction"] = leak = pe.Node(
            LeakageCorrection(model=options.leakage_correction, **scaling),
            name="leakage_correction")
        workflow.connect([(inputnode, leak, [
            ("delta_r2star", "delta_r2star"), ("frame_times", "frame_times"),
            ("brain", "brain_mask"), ("aif_tsv", "aif_tsv"), ("aif_mask", "aif_mask")])])
    for method in (m for m in options.methods if m in DECONVOLUTION_METHODS):
        created[f"deconvolve_{method}"] = deconvolve = pe.Node(
            Deconvolve(method=method, **scaling, device=options.device,
                       parameters=options.method_parameters.get(method, {})),
            name=f"deconvolve_{method}")
        workflow.connect([
            (curves[0], deconvolve, [(curves[1], "delta_r2star")]),
            (inputnode, deconvolve, [("brain", "brain_mask")]),
            (arterial[0], deconvolve, [(arterial[1], "aif_tsv")]),
            (cbv, deconvolve, [("cbv", "cbv")]),
        ])
        if options.first_pass == "gamma":
            workflow.connect(first_pass, "metadata", deconvolve, "first_pass")
    if "phae" in options.methods:
        created["phae"] = phae = pe.Node(PHAEInference(device=options.device, **scaling),
                                         name="phae", n_procs=1)
        if options.phae_weights:
            phae.inputs.weights = options.phae_weights
        workflow.connect([(inputnode, phae, [("delta_r2star", "delta_r2star"),
                                             ("brain", "brain_mask"),
                                             ("aif_tsv", "aif_tsv")])])
    if "stunet" in options.methods:
        created["stunet"] = stunet = pe.Node(StUNetInference(device=options.device),
                                             name="stunet", n_procs=1)
        if options.stunet_weights:
            stunet.inputs.weights = options.stunet_weights
        workflow.connect([
            (inputnode, stunet, [("in_files", "in_files"), ("brain", "brain_mask")]),
            (cbv, stunet, [("cbv", "cbv")]),
        ])
    for output in maps:
        workflow.connect(created[output.node], output.output, outputnode, output.name)
    for node in nodes:
        workflow.connect(created[node], "metadata", outputnode, metadata_field(node))
    return workflow
