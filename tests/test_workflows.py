"""Graph-building tests: the workflow is decided from metadata and options before it runs."""

from pathlib import Path

import pytest
from helpers import connections, sidecar_fields

from bids_perfusion.cli.parser import build_parser, dsc_options
from bids_perfusion.dsc.metadata import DSCRunMetadata
from bids_perfusion.dsc.relaxivity import at_field
from bids_perfusion.workflows.base import init_bids_perfusion_wf
from bids_perfusion.workflows.citations import methods_text
from bids_perfusion.workflows.dsc import init_dsc_wf
from bids_perfusion.workflows.dsc_front_end import (
    FRONT_END_OUTPUTS,
    MOTION_OUTPUTS,
    init_dsc_front_end_wf,
)
from bids_perfusion.workflows.dsc_methods import (
    init_dsc_methods_wf,
    metadata_field,
    method_maps,
)
from bids_perfusion.workflows.dsc_outputs import FRONT_END_INPUTS, init_dsc_outputs_wf
from bids_perfusion.workflows.engine import choose_plugin, parallel_units
from bids_perfusion.workflows.options import DSCOptions, DSCRun

SOURCE = "sub-01/perf/sub-01_ce-gadolinium_dsc.nii.gz"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Interfaces check that input files exist: run in a folder where empty ones do."""
    monkeypatch.chdir(tmp_path)


def _touch(path):
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return str(path)


def _run(masks=None, echoes=1, subject="01"):
    source = SOURCE.replace("01", subject)
    names = [source.replace("_dsc", f"_echo-{e + 1}_dsc") for e in range(echoes)] \
        if echoes > 1 else [source]
    metadata = DSCRunMetadata(tuple(0.02 * (e + 1) for e in range(echoes)), 1.5, 60,
                              magnetic_field_strength=3.0)
    masks = {key: _touch(path) for key, path in (masks or {}).items()}
    return DSCRun(subject, None, tuple(_touch(n) for n in names), metadata, masks)


def _nodes(workflow):
    """The names of the nodes of ``workflow`` and of its sub-workflows, without the
    sub-workflow's prefix."""
    return {name.rsplit(".", 1)[-1] for name in workflow.list_node_names()}


def _node(workflow, name):
    """The node called ``name`` in ``workflow`` or one of its sub-workflows."""
    [path] = [p for p in workflow.list_node_names() if p.rsplit(".", 1)[-1] == name]
    return workflow.get_node(path)


def _sub(workflow, name):
    """The sub-workflow that holds node ``name``, and the node."""
    [path] = [p for p in workflow.list_node_names() if p.rsplit(".", 1)[-1] == name]
    parent = workflow.get_node(path.rsplit(".", 1)[0]) if "." in path else workflow
    return parent, parent.get_node(name)


def test_default_graph():
    workflow = init_dsc_wf(_run(), DSCOptions(), "/out")
    nodes = _nodes(workflow)
    for name in ("brain_mask", "delta_r2star", "aif", "cbv", "bolus_timing",
                 "deconvolve_osvd", "leakage_correction", "nawm_mask", "relative_maps",
                 "roi_statistics", "barrier", "ds_osvd_cbf", "ds_osvdNawm_cbf", "ds_bsw_k2"):
        assert name in nodes, name
    assert "simulate_low_dose" not in nodes
    assert not any(n.startswith("deconvolve_") and n != "deconvolve_osvd" for n in nodes)


def test_given_masks_replace_automatic_steps():
    masks = {k: f"masks/sub-01_label-{k}_mask.nii.gz" for k in ("brain", "NAWM", "arteries")}
    run = _run(masks)
    workflow = init_dsc_wf(run, DSCOptions(), "/out")
    nodes = _nodes(workflow)
    assert "brain_mask" not in nodes and "nawm_mask" not in nodes
    assert _node(workflow, "aif").inputs.aif_mask == run.masks["arteries"]
    assert "given arterial mask" in workflow.visit_desc()


def test_options_decide_methods_leakage_and_dose():
    options = DSCOptions(methods=("ssvd", "tikhonov"), leakage_correction=False,
                         method_parameters={"tikhonov": {"criterion": "gcv"}})
    workflow = init_dsc_wf(_run(), options, "/out", dose=0.25)
    nodes = _nodes(workflow)
    assert {"deconvolve_ssvd", "deconvolve_tikhonov", "simulate_low_dose"} <= nodes
    assert "leakage_correction" not in nodes and "ds_bsw_k2" not in nodes
    assert _node(workflow, "deconvolve_tikhonov").inputs.parameters == {"criterion": "gcv"}
    sink = _node(workflow, "ds_ssvd_cbf")
    assert sink.inputs.reconstruction == "dose25"
    assert workflow.name.endswith("dose25_wf")


def test_every_sink_waits_for_the_barrier():
    workflow = init_dsc_wf(_run(), DSCOptions(methods=("osvd", "csvd")), "/out")
    sinks = [n for n in _nodes(workflow) if n.startswith("ds_")]
    outputs, _barrier = _sub(workflow, "barrier")
    edges = connections(outputs)
    waiting = {target for source, target, _field in edges if source == "barrier"}
    assert set(sinks) == waiting
    inputs = [field for _source, target, field in edges if target == "merge_outputs"]
    assert len(inputs) == len(sinks)


def test_dual_echo_run_uses_dual_echo_formula():
    workflow = init_dsc_wf(_run(echoes=2), DSCOptions(), "/out")
    assert _node(workflow, "delta_r2star").inputs.echo_times == [0.02, 0.04]
    assert "TE2 - TE1" in workflow.visit_desc()


def test_top_level_has_one_workflow_per_run_and_dose():
    runs = [_run(), _run(subject="02")]
    workflow = init_bids_perfusion_wf(runs, DSCOptions(simulate_doses=(0.5, 0.25)), "/out",
                                      "/work")
    names = {n.split(".")[0] for n in workflow.list_node_names()}
    assert len(names) == 6
    text = methods_text(workflow.visit_desc())
    assert text.count("The DSC-MRI series") == 1
    assert "0.5, 0.25" in text and "### References" in text


def test_simulated_doses_share_the_motion_correction_of_the_acquired_run():
    run = _run()
    workflow = init_bids_perfusion_wf([run], DSCOptions(simulate_doses=(0.5, 0.25)), "/out",
                                      "/work")
    names = workflow.list_node_names()
    assert [n for n in names if n.endswith(".motion_correction")] == [
        "sub_01_ce_gadolinium_acquired_wf.front_end_wf.motion_correction"]
    edges = {(source, target, fields) for source, target, fields in connections(workflow)}
    for label in ("dose50", "dose25"):
        dose_wf = f"sub_01_ce_gadolinium_{label}_wf"
        assert {(source, fields) for source, target, fields in edges if target == dose_wf} == {
            ("sub_01_ce_gadolinium_acquired_wf",
             (f"front_end_wf.motion_correction.{output}", f"front_end_wf.inputnode.{field}"))
            for output, field in (("out_files", "in_files"), ("confounds", "confounds"),
                                  ("metadata", "motion_metadata"), ("out_file", "corrected"))}
        front_end = workflow.get_node(f"{dose_wf}.front_end_wf")
        assert ("in_files", "in_files") in _fields(front_end, "inputnode", "simulate_low_dose")
        assert ("corrected", "in_file") in _fields(front_end, "inputnode", "brain_mask")
        outputs = workflow.get_node(f"{dose_wf}.outputs_wf")
        assert "ds_confounds_timeseries" in _nodes(outputs)
    # without motion correction every dose simulates from the raw series, as before
    still = init_bids_perfusion_wf([run], DSCOptions(simulate_doses=(0.5,),
                                                      motion_correction=False), "/out", "/work")
    assert not [n for n in still.list_node_names() if n.endswith(".motion_correction")]
    assert not connections(still)
    front_end = still.get_node("sub_01_ce_gadolinium_dose50_wf.front_end_wf")
    assert front_end.get_node("inputnode").inputs.in_files == list(run.files)


def test_plugin_follows_the_runs_to_process():
    runs = [_run(), _run(subject="02")]
    assert parallel_units(init_bids_perfusion_wf(runs[:1], DSCOptions(), "/out", "/w")) == 1
    assert parallel_units(init_bids_perfusion_wf(
        runs, DSCOptions(simulate_doses=(0.5,)), "/out", "/w")) == 4
    assert choose_plugin(2, 1) == "Linear"  # one series: no pool of workers
    assert choose_plugin(1, 4) == "Linear"
    assert choose_plugin(2, 4) == "MultiProc"


def _fields(workflow, source, target):
    """Fields connected from node ``source`` to node ``target`` of ``workflow``'s own graph."""
    return {fields for s, t, fields in connections(workflow) if (s, t) == (source, target)}


def test_unknown_citation_is_an_error():
    with pytest.raises(KeyError, match="nobody2020"):
        methods_text("as shown [@nobody2020]")


def test_phae_is_a_method_without_tmax():
    workflow = init_dsc_wf(_run(), DSCOptions(methods=("osvd", "phae"), device="cpu"), "/out")
    nodes = _nodes(workflow)
    assert {"phae", "ds_phae_cbf", "ds_phae_mtt", "ds_phaeNawm_cbf"} <= nodes
    assert "ds_phae_tmax" not in nodes and "deconvolve_phae" not in nodes
    assert _node(workflow, "phae").inputs.device == "cpu"
    assert "physics-informed autoencoder" in workflow.visit_desc()


def test_stunet_writes_cbv_only_for_every_dose():
    weights = _touch("model/stunet.safetensors")
    options = DSCOptions(methods=("osvd", "stunet"), device="cpu", stunet_weights=weights)
    for dose in (1.0, 0.5):
        workflow = init_dsc_wf(_run(), options, "/out", dose=dose)
        nodes = _nodes(workflow)
        assert {"stunet", "ds_stunet_cbv", "ds_stunetNawm_cbv"} <= nodes
        assert not {"ds_stunet_mtt", "ds_stunet_cbf", "deconvolve_stunet"} & nodes
        node = _node(workflow, "stunet")
        assert node.inputs.device == "cpu" and node.inputs.weights == weights
        # stU-Net reads the series quantified: the acquired one or the simulated dose
        methods = workflow.get_node("methods_wf")
        assert {("in_files", "in_files"), ("brain", "brain_mask")} <= _edges(
            methods, "inputnode", "stunet")
        assert ("cbv", "cbv") in _edges(methods, "cbv", "stunet")
        front_end = workflow.get_node("front_end_wf")
        source = "simulate_low_dose" if dose < 1 else "motion_correction"
        assert ("out_files", "in_files") in _edges(front_end, source, "outputnode")
        text = methods_text(workflow.visit_desc())
        assert "stU-Net" in text and "Veron Vialard" in text


def test_completion_record_waits_for_every_sink_and_holds_options_and_methods():
    options = DSCOptions(methods=("osvd", "csvd"))
    workflow = init_dsc_wf(_run(), options, "/out", dose=0.5)
    sinks = {n for n in _nodes(workflow) if n.startswith("ds_")}
    outputs, _written = _sub(workflow, "merge_written")
    edges = [(source, field) for source, target, field in connections(outputs)
             if target == "merge_written"]
    assert {name for name, _c in edges} == sinks
    assert sorted({field for _name, (field, _in) in edges}) == ["out_file", "out_meta"]
    assert len(edges) == 2 * len(sinks)
    record = _node(workflow, "run_record")
    assert record.inputs.run == _node(workflow, "barrier").inputs.run == workflow.name
    assert record.inputs.options["methods"] == ["osvd", "csvd"]
    assert record.inputs.options["simulate_doses"] == []
    assert "oscillation-index SVD" in record.inputs.methods
    assert "simulated dose fractions of 0.5" in record.inputs.methods
    for name in sinks:  # every file gets a sidecar naming its sources
        sources = sidecar_fields(_node(workflow, name))["Sources"]
        assert len(sources) == 1 and sources[0].startswith("bids:raw:"), name
        assert sources[0].endswith(SOURCE), name


def _edges(workflow, source, target):
    """Fields connected from node ``source`` to node ``target`` (in one sub-workflow of
    ``workflow``, the methods' when the names are in several)."""
    parent, _u = _sub(workflow, source)
    other, _v = _sub(workflow, target)
    assert parent is other, (source, target)
    return {field for start, end, field in connections(parent)
            if (start, end) == (source, target)}


def test_first_pass_gamma_feeds_cbv_and_deconvolution():
    """``--first-pass gamma`` adds the fit between ΔR2*/AIF and CBV/deconvolution."""
    default = init_dsc_wf(_run(), DSCOptions(), "/out").get_node("methods_wf")
    assert "first_pass" not in _nodes(default)
    assert ("delta_r2star", "delta_r2star") in _edges(default, "inputnode", "cbv")
    workflow = init_dsc_wf(_run(), DSCOptions(first_pass="gamma", methods=("osvd", "ssvd")),
                           "/out")
    methods = workflow.get_node("methods_wf")
    assert "first_pass" in _nodes(methods)
    for target in ("cbv", "deconvolve_osvd", "deconvolve_ssvd"):
        assert {("delta_r2star", "delta_r2star"), ("aif_tsv", "aif_tsv"),
                ("metadata", "first_pass")} <= _edges(methods, "first_pass", target)
        measured = _edges(methods, "inputnode", target)
        assert not {("delta_r2star", "delta_r2star"), ("aif_tsv", "aif_tsv")} & measured
    # Leakage correction and the AIF output keep the measured curves.
    assert {("delta_r2star", "delta_r2star"), ("aif_tsv", "aif_tsv")} <= _edges(
        methods, "inputnode", "leakage_correction")
    front_end = workflow.get_node("front_end_wf")
    assert ("aif_tsv", "aif_tsv") in _edges(front_end, "aif", "outputnode")
    assert "gamma variates" in workflow.visit_desc()
    assert "Madsen MT" in methods_text(workflow.visit_desc())


def test_automatic_nawm_reads_the_baseline_image():
    """The NAWM is chosen from the pre-contrast image, never from the CBV it normalises."""
    workflow = init_dsc_wf(_run({"WM": "masks/sub-01_label-WM_mask.nii.gz"}), DSCOptions(),
                           "/out")
    assert _edges(workflow, "delta_r2star", "nawm_mask") == {("baseline_image", "baseline")}
    assert "cbv" not in _nodes(workflow.get_node("front_end_wf"))  # where NAWM is chosen
    front_end = workflow.get_node("front_end_wf")
    assert _edges(front_end, "inputnode", "nawm_mask") == {("WM", "wm_mask")}
    assert front_end.get_node("inputnode").inputs.WM.endswith("label-WM_mask.nii.gz")
    assert "given white-matter segmentation" in workflow.visit_desc()
    assert "pre-contrast image" in init_dsc_wf(_run(), DSCOptions(), "/out").visit_desc()


def test_first_pass_option_on_the_command_line():
    from bids_perfusion.cli.parser import build_parser, dsc_options

    parser = build_parser()
    base = ["/bids", "/out", "participant"]
    assert dsc_options(parser.parse_args(base)).first_pass == "none"
    assert dsc_options(parser.parse_args([*base, "--first-pass", "gamma"])).first_pass == "gamma"
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--first-pass", "spline"])


@pytest.mark.parametrize(("scaled", "cbv", "cbf"), [(True, "mL/100 g", "mL/100 g/min"),
                                                    (False, "mL/100 mL", "mL/100 mL/min")])
def test_units_of_the_sidecars_follow_the_scaling(scaled, cbv, cbf):
    """--no-scaling writes per 100 mL of tissue, and its sidecars must say so."""
    workflow = init_dsc_wf(_run(), DSCOptions(methods=("osvd", "phae", "stunet"),
                                              scaled=scaled), "/out")
    units = {name: sidecar_fields(_node(workflow, name)).get("Units")
             for name in _nodes(workflow) if name.startswith("ds_")}
    assert units["ds_areaRatio_cbv"] == units["ds_bsw_cbv"] == units["ds_stunet_cbv"] == cbv
    assert units["ds_osvd_cbf"] == units["ds_phae_cbf"] == cbf


@pytest.mark.parametrize("field, tissue, blood", [(1.5, "87 C", "7.6 C"),
                                                  (3.0, "174 C", "15.2 C")])
def test_run_field_selects_relaxivities_of_every_node_and_the_methods(field, tissue, blood):
    """The run's MagneticFieldStrength reaches every node that converts ΔR2* to
    concentration, and the methods text states the constants (issue 12, item 3)."""
    run = _run()
    run = DSCRun(run.subject, run.session, run.files,
                 DSCRunMetadata((0.03,), 1.5, 60, magnetic_field_strength=field), run.masks)
    options = DSCOptions(methods=("osvd", "phae"), blood_relaxivity="quadratic")
    workflow = init_dsc_wf(run, options, "/out")
    record = {**at_field(field, "quadratic").sidecar(), "MagneticFieldStrengthSource": "sidecar"}
    for name in ("aif", "cbv", "leakage_correction", "deconvolve_osvd", "phae"):
        assert _node(workflow, name).inputs.relaxivity == record, name
    assert record["TissueRelaxivity"] == {1.5: 87.0, 3.0: 174.0}[field]
    text = workflow.visit_desc()
    assert f"ΔR2* = {tissue} in tissue" in text and f"ΔR2* = {blood} + " in text
    assert ("scaled from the 1.5 T values" in text) == (field == 3.0)
    methods_text(text)  # every citation of the text is known


@pytest.mark.parametrize("model, average", [("exponential", "temporal"), ("linear", "spatial")])
def test_simulated_dose_records_its_model_and_average(model, average):
    """--lowdose-model and --lowdose-average reach the node, every sidecar of the simulated
    run (with the smoother's width at the run's TR: 5 frames, 7.5 s at TR 1.5 s) and the
    methods text; the acquired run's sidecars hold none of it."""
    args = build_parser().parse_args(["/bids", "/out", "participant", "--simulate-dose", "0.5",
                                      "--lowdose-model", model, "--lowdose-average", average])
    options = dsc_options(args)
    assert (options.lowdose_model, options.lowdose_average) == (model, average)
    workflow = init_dsc_wf(_run(), options, "/out", dose=0.5)
    node = _node(workflow, "simulate_low_dose")
    assert (node.inputs.model, node.inputs.average) == (model, average)
    assert node.inputs.repetition_time == 1.5
    sinks = [n for n in _nodes(workflow) if n.startswith("ds_")]
    for name in sinks:
        metadata = sidecar_fields(_node(workflow, name))
        assert metadata["LowDoseModel"] == model, name
        assert metadata["LowDoseLocalAverage"] == average, name
        assert metadata["SimulatedDose"] == 0.5
    if average == "temporal":
        assert (metadata["LowDoseSmootherFrames"], metadata["LowDoseSmootherWidth"]) == (5, 7.5)
    text = _node(workflow, "run_record").inputs.methods
    assert ("S(0) [S̄(t)/S(0)]^d" in text) == (model == "exponential")
    assert ("Savitzky-Golay" in text) == (average == "temporal")
    acquired = init_dsc_wf(_run(), options, "/out")
    for name in (n for n in _nodes(acquired) if n.startswith("ds_")):
        assert "LowDoseModel" not in sidecar_fields(_node(acquired, name))
    default = dsc_options(build_parser().parse_args(["/bids", "/out", "participant"]))
    assert (default.lowdose_model, default.lowdose_average) == ("exponential", "temporal")


@pytest.mark.parametrize(("model", "label"), [("bsw", "bsw"), ("bidirectional", "bidirectional"),
                                              ("bsw-transit", "bswTransit")])
def test_leakage_model_decides_node_outputs_and_methods_text(model, label):
    """Issue 12 item 2: one leakage node fitting the chosen model, its maps named
    desc-<model>_cbv / _k2 (and their NAWM ratios), the model cited in the methods."""
    workflow = init_dsc_wf(_run(), DSCOptions(leakage_correction=model), "/out")
    nodes = _nodes(workflow)
    assert _node(workflow, "leakage_correction").inputs.model == model
    assert {f"ds_{label}_cbv", f"ds_{label}_k2", f"ds_{label}Nawm_cbv"} <= nodes
    others = {"bsw", "bidirectional", "bswTransit"} - {label}
    assert not any(f"ds_{o}_" in n for o in others for n in nodes)
    text = workflow.visit_desc()
    assert ("Leu K" in methods_text(text)) == (model == "bidirectional")
    assert ("Bjørnerud A" in methods_text(text)) == (model == "bidirectional")
    assert ("transit-time terms" in text) == (model != "bsw")


def test_leakage_option_values_and_the_former_boolean():
    assert DSCOptions().leakage_correction == "bsw"
    assert DSCOptions(leakage_correction=True).leakage_correction == "bsw"
    assert DSCOptions(leakage_correction=False).leakage_correction == "none"
    assert DSCOptions(leakage_correction="none").leakage_label is None
    nodes = _nodes(init_dsc_wf(_run(), DSCOptions(leakage_correction="none"), "/out"))
    assert "leakage_correction" not in nodes and not any(n.endswith("_k2") for n in nodes)
    with pytest.raises(ValueError, match="leakage_correction"):
        DSCOptions(leakage_correction="weisskoff")


def test_leakage_correction_on_the_command_line():
    from bids_perfusion.cli.parser import build_parser, dsc_options

    parser = build_parser()
    base = ["/bids", "/out", "participant"]

    def model(*extra):
        return dsc_options(parser.parse_args([*base, *extra])).leakage_correction

    assert model() == "bsw"
    assert model("--leakage-correction", "bidirectional") == "bidirectional"
    assert model("--leakage-correction", "bsw-transit") == "bsw-transit"
    assert model("--leakage-correction", "none") == "none"
    assert model("--no-leakage-correction") == "none"
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--leakage-correction", "weisskoff"])


# --- the DSC sub-workflows, with the public nipype API only (node names, nodes, and the
# inputs a workflow leaves unconnected) ---

RELAXIVITY = at_field(3.0).sidecar()


def _masks(*keys):
    return {key: f"masks/sub-01_label-{key}_mask.nii.gz" for key in keys}


def _connected(workflow, name):
    """The inputs of node ``name`` that ``workflow`` connects (all but the unconnected ones
    of ``workflow.inputs``)."""
    unconnected = getattr(workflow.inputs, name).get()
    return set(workflow.get_node(name).inputs.get()) - set(unconnected)


def test_front_end_derives_brain_mask_aif_and_nawm():
    workflow = init_dsc_front_end_wf(_run(), DSCOptions(), RELAXIVITY)
    assert set(workflow.list_node_names()) == {
        "inputnode", "motion_correction", "brain_mask", "delta_r2star", "aif",
        "bolus_timing", "nawm_mask", "outputnode"}
    assert _connected(workflow, "delta_r2star") == {"in_files", "brain_mask"}
    assert _connected(workflow, "aif") == {"delta_r2star", "frame_times", "signal_metadata",
                                           "brain_mask"}  # aif_mask: automatic selection
    assert _connected(workflow, "nawm_mask") == {"baseline", "brain_mask"}
    assert _connected(workflow, "outputnode") == {*FRONT_END_OUTPUTS, *MOTION_OUTPUTS} - {
        "tumor", "GM", "WM"}
    assert workflow.get_node("aif").inputs.relaxivity == RELAXIVITY


def test_front_end_passes_given_masks_through():
    run = _run(_masks("brain", "NAWM", "arteries", "tumor"))
    workflow = init_dsc_front_end_wf(run, DSCOptions(), RELAXIVITY)
    nodes = set(workflow.list_node_names())
    assert not {"brain_mask", "nawm_mask"} & nodes
    assert workflow.get_node("inputnode").inputs.brain == run.masks["brain"]
    assert workflow.get_node("aif").inputs.aif_mask == run.masks["arteries"]
    assert _connected(workflow, "outputnode") == {*FRONT_END_OUTPUTS, *MOTION_OUTPUTS} - {
        "GM", "WM"}


def test_front_end_simulates_a_reduced_dose_before_the_signal():
    workflow = init_dsc_front_end_wf(_run(), DSCOptions(lowdose_model="linear"), RELAXIVITY,
                                     dose=0.25)
    lowdose = workflow.get_node("simulate_low_dose")
    assert (lowdose.inputs.dose, lowdose.inputs.model) == (0.25, "linear")
    assert _connected(workflow, "simulate_low_dose") == {"in_files", "brain_mask"}
    assert "in_files" in _connected(workflow, "delta_r2star")


def test_methods_nodes_and_outputs_follow_the_options():
    options = DSCOptions(methods=("phae", "osvd", "stunet"), device="cpu")
    workflow = init_dsc_methods_wf(options, RELAXIVITY)
    assert set(workflow.list_node_names()) == {
        "inputnode", "cbv", "leakage_correction", "deconvolve_osvd", "phae", "stunet",
        "outputnode"}
    maps = method_maps(options, RELAXIVITY)
    assert [m.name for m in maps] == ["cbv", "cbv_bsw", "cbf_osvd", "cbf_phae", "cbv_stunet",
                                      "k2_bsw", "mtt_phae", "mtt_osvd", "tmax_osvd"]
    assert [m.measure for m in maps if m.measure] == [
        "cbv", "cbv_bsw", "cbf_osvd", "cbf_phae", "cbv_stunet"]
    nodes = ["cbv", "leakage_correction", "deconvolve_osvd", "phae", "stunet"]
    fields = [m.name for m in maps] + [metadata_field(node) for node in nodes]
    assert _connected(workflow, "outputnode") == set(fields)
    assert _connected(workflow, "stunet") == {"in_files", "brain_mask", "cbv"}
    assert _connected(workflow, "deconvolve_osvd") == {"delta_r2star", "brain_mask",
                                                       "aif_tsv", "cbv"}
    for name in nodes[:-1]:
        assert workflow.get_node(name).inputs.relaxivity == RELAXIVITY, name
    assert maps[4].sidecar["TissueRelaxivity"] == RELAXIVITY["TissueRelaxivity"]


def test_methods_with_first_pass_and_without_leakage():
    options = DSCOptions(methods=("ssvd",), first_pass="gamma", leakage_correction="none")
    workflow = init_dsc_methods_wf(options, RELAXIVITY)
    assert set(workflow.list_node_names()) == {
        "inputnode", "first_pass", "cbv", "deconvolve_ssvd", "outputnode"}
    assert "first_pass" in _connected(workflow, "cbv")
    assert "first_pass" in _connected(workflow, "deconvolve_ssvd")
    assert [m.name for m in method_maps(options, RELAXIVITY)] == [
        "cbv", "cbf_ssvd", "mtt_ssvd", "tmax_ssvd"]


def test_outputs_write_every_map_its_ratio_and_the_roi_tables():
    run = _run(_masks("tumor"))
    options = DSCOptions(methods=("osvd",))
    maps = method_maps(options, RELAXIVITY)
    workflow = init_dsc_outputs_wf(run, maps, "/out", RELAXIVITY, options=options,
                                   methods="text", run_name="sub_01_acquired_wf")
    nodes = set(workflow.list_node_names())
    sinks = {name for name in nodes if name.startswith("ds_")}
    assert sinks == {
        "ds_brain_mask", "ds_NAWM_mask", "ds_aif_mask", "ds_aif_timeseries", "ds_ttp",
        "ds_bat", "ds_roi_roistats", "ds_roi_timeseries", "ds_areaRatio_cbv",
        "ds_bsw_cbv", "ds_osvd_cbf", "ds_areaRatioNawm_cbv", "ds_bswNawm_cbv",
        "ds_osvdNawm_cbf", "ds_bsw_k2", "ds_osvd_mtt", "ds_osvd_tmax",
        "ds_confounds_timeseries"}
    for name in sinks:  # every sink writes a file and waits for the barrier
        assert {"in_file", "source_file"} <= _connected(workflow, name), name
    assert workflow.get_node("run_record").inputs.run == "sub_01_acquired_wf"
    assert workflow.get_node("barrier").inputs.run == "sub_01_acquired_wf"
    curves = workflow.get_node("roi_curves")
    assert curves.inputs.rois == ["brain", "tumor", "NAWM"]
    assert _connected(workflow, "roi_curves") == {"delta_r2star", "frame_times", "masks"}
    sidecar = workflow.get_node("ds_roi_timeseries").interface._metadata
    assert sidecar["tumor_delta_r2star"]["Units"] == "1/s"
    assert sidecar["tumor_concentration"]["Units"] == "mM"
    assert sidecar["TissueRelaxivity"] == RELAXIVITY["TissueRelaxivity"]
    inputs = workflow.get_node("inputnode").inputs.copyable_trait_names()
    assert set(FRONT_END_INPUTS) <= set(inputs)


def test_run_workflow_is_made_of_the_three_sub_workflows():
    workflow = init_dsc_wf(_run(), DSCOptions(), "/out", dose=0.5)
    prefixes = {name.split(".")[0] for name in workflow.list_node_names()}
    assert prefixes == {"front_end_wf", "methods_wf", "outputs_wf"}
    assert workflow.get_node("front_end_wf.simulate_low_dose").inputs.dose == 0.5
    assert workflow.get_node("outputs_wf.run_record").inputs.run == workflow.name
    assert workflow.get_node("outputs_wf.ds_osvd_cbf").inputs.reconstruction == "dose50"


def test_superres_run_quantifies_the_super_resolved_series_on_its_grid():
    """``--dsc-superres``: the series is super-resolved first; given masks (the arteries
    of the AIF too) are carried onto its grid; ΔR2* reads the new frame interval; the
    maps and the series carry the ``res`` entity."""
    options = DSCOptions(superres="linear", superres_scale=(1.5, 3))
    run = _run({"arteries": "masks/sub-01_label-arteries_mask.nii.gz",
                "tumor": "masks/sub-01_label-tumor_mask.nii.gz"})
    workflow = init_dsc_wf(run, options, "/out", superres=True)
    assert workflow.name.endswith("_linear_wf")
    front_end = workflow.get_node("front_end_wf")
    resolve = front_end.get_node("super_resolve")
    assert (resolve.inputs.method, resolve.inputs.space, resolve.inputs.time) == (
        "linear", 1.5, 3)
    assert _edges(front_end, "super_resolve", "delta_r2star") == {("out_files", "in_files")}
    assert _node(workflow, "delta_r2star").inputs.repetition_time == pytest.approx(0.5)
    assert _edges(front_end, "resample_arteries", "aif") == {("out_file", "aif_mask")}
    assert _edges(front_end, "resample_tumor", "nawm_mask") == {("out_file", "tumor_mask")}
    assert _edges(front_end, "super_resolve", "brain_mask") == {("reference", "in_file")}
    sinks = [_node(workflow, name) for name in _nodes(workflow) if name.startswith("ds_")]
    assert sinks and all(sink.inputs.resolution == "linear" for sink in sinks)
    assert any(sink.inputs.suffix == "dsc" and sink.inputs.desc == "superres"
               for sink in sinks)
    assert "super-resolved before quantification" in workflow.visit_desc()
    assert "@" not in methods_text(workflow.visit_desc()).split("### References")[1]
    with pytest.raises(ValueError, match="acquired dose only"):
        init_dsc_wf(run, options, "/out", dose=0.5, superres=True)
    native = init_dsc_wf(run, options, "/out")
    assert "super_resolve" not in _nodes(native)


def _frozen_objects(value):
    import gc

    return gc.get_freeze_count()


def test_multiproc_keeps_the_objects_alive_at_its_start_out_of_its_collections(tmp_path):
    """nipype's MultiProc collects garbage before each submission and after each node run
    in the main process; the plugin freezes what exists at its start (0.2 s per collection
    in a workflow of hundreds of nodes before), and unfreezes it when it ends."""
    import gc

    from nipype import Node, Workflow
    from nipype.interfaces.utility import Function

    from bids_perfusion.workflows.engine import MultiProcPlugin

    workflow = Workflow(name="frozen", base_dir=str(tmp_path))
    node = Node(Function(input_names=["value"], output_names=["frozen"],
                         function=_frozen_objects), name="count", run_without_submitting=True)
    node.inputs.value = 1
    workflow.add_nodes([node])
    executed = workflow.run(plugin=MultiProcPlugin(plugin_args={"n_procs": 2}))
    (ran,) = executed.nodes()
    assert ran.result.outputs.frozen > 1000
    assert gc.get_freeze_count() == 0
