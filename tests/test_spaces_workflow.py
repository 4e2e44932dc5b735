"""--output-spaces from the command line to the files: validation, the T1w of each subject,
the graph (one normalisation per subject, one resampling per output and space), names."""

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_perfusion.cli.parser import build_parser, run_config
from bids_perfusion.collect import collect_asl_runs, collect_dsc_runs, layout_of
from bids_perfusion.collect.anat import collect_anatomy
from bids_perfusion.config import RunConfig
from bids_perfusion.spatial import registration, transforms
from bids_perfusion.spatial.spaces import SpatialOptions
from bids_perfusion.workflows.asl_options import ASLOptions
from bids_perfusion.workflows.base import init_bids_perfusion_wf
from bids_perfusion.workflows.options import DSCOptions

SPACES = ("run", "T1w", "MNI152NLin2009aSym:res-2")
TEMPLATE_ENTITIES = {"space": "MNI152NLin2009aSym", "resolution": "2"}


def _runs(root):
    layout = layout_of(root)
    dsc, _ = collect_dsc_runs(layout)
    asl, _ = collect_asl_runs(layout, None, None, {}, [])
    return layout, dsc, asl


def _sinks(workflow):
    """``{node path: entities}`` of every DerivativesDataSink under ``workflow``."""
    found = {}
    for path in workflow.list_node_names():
        node = workflow.get_node(path)
        if type(node.interface).__name__ == "DerivativesDataSink":
            inputs = node.interface.inputs
            found[path] = {key: getattr(inputs, key) for key in (
                "space", "resolution", "desc", "suffix", "from", "to", "mode")
                if isinstance(getattr(inputs, key, None), str)}
    return found


# --- the option -------------------------------------------------------------------------------

@pytest.mark.parametrize("value, words", [
    ("MNI152NLin2009cAsym", ["argument --output-spaces", "unknown space",
                             "MNI152NLin2009aSym:res-N"]),
    ("MNI152NLin2009aSym:res-two", ["argument --output-spaces", "unknown modifier"]),
])
def test_unknown_space_is_a_usage_error_naming_the_option_and_the_fix(value, words, capsys,
                                                                       tmp_path):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([str(tmp_path), str(tmp_path / "out"), "participant",
                                   "--output-spaces", value])
    assert exit_.value.code == 2
    message = capsys.readouterr().err
    for word in words:
        assert word in message


def test_spaces_are_saved_with_the_configuration(tmp_path):
    args = build_parser().parse_args([str(tmp_path), str(tmp_path / "out"), "participant",
                                      "--output-spaces", *SPACES, "--normalisation", "fast"])
    config = run_config(args, tmp_path, tmp_path / "out", tmp_path / "work")
    assert config.execution.spatial == SpatialOptions(SPACES, "fast")
    assert RunConfig.from_dict(json.loads(json.dumps(config.as_dict()))) == config
    default = build_parser().parse_args([str(tmp_path), str(tmp_path / "out"), "participant"])
    assert run_config(default, tmp_path, tmp_path / "out", tmp_path).execution.spatial \
        == SpatialOptions(("run",), "full")


# --- the T1w of each subject --------------------------------------------------------------------

def test_a_subject_without_t1w_has_its_runs_skipped_only_when_a_space_needs_it(noise_free,
                                                                               tmp_path):
    root, _ = noise_free
    copy = tmp_path / "bids"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("derivatives"))
    shutil.rmtree(copy / "sub-02" / "anat")
    layout, dsc, asl = _runs(copy)
    runs = [*dsc, *asl]
    anatomy, usable, errors = collect_anatomy(layout, runs, SpatialOptions(SPACES))
    assert set(anatomy) == {("01", None)}
    assert anatomy[("01", None)].t1w.endswith("sub-01/anat/sub-01_T1w.nii.gz")
    assert usable == [run for run in runs if run.subject == "01"]
    assert len(errors) == len(runs) - len(usable) > 0
    for message in errors:
        assert "sub-02/anat: no T1w (sub-02_T1w.nii[.gz])" in message
        assert "--output-spaces T1w MNI152NLin2009aSym:res-2" in message
        assert "drop those spaces" in message
    # in the runs' own grids, no T1w is needed
    assert collect_anatomy(layout, runs, SpatialOptions(("run",))) == ({}, runs, [])


def test_a_t1w_brain_mask_comes_from_derivatives(noise_free, tmp_path):
    root, _ = noise_free
    layout, dsc, _ = _runs(root)
    mask = tmp_path / "masks" / "sub-01" / "anat" / "sub-01_desc-brain_mask.nii.gz"
    mask.parent.mkdir(parents=True)
    t1w = nib.load(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    nib.Nifti1Image(np.ones(t1w.shape, np.uint8), t1w.affine).to_filename(mask)
    anatomy, _, errors = collect_anatomy(layout, dsc, SpatialOptions(("T1w",)),
                                         [tmp_path / "masks"])
    assert not errors
    assert anatomy[("01", None)].brain_mask == str(mask)
    assert anatomy[("02", None)].brain_mask is None


# --- the graph ---------------------------------------------------------------------------------

def test_every_output_in_every_space_one_normalisation_per_subject(noise_free, tmp_path):
    root, _ = noise_free
    layout, dsc, asl = _runs(root)
    spatial = SpatialOptions(SPACES, "fast")
    anatomy, _, _ = collect_anatomy(layout, [*dsc, *asl], spatial)
    workflow = init_bids_perfusion_wf(dsc, DSCOptions(), tmp_path,
                                      tmp_path / "work", asl_runs=asl,
                                      asl_options=ASLOptions(), spatial=spatial,
                                      anatomy=anatomy)
    names = workflow.list_node_names()
    anat_wfs = {name.split(".")[0] for name in names if name.endswith("normalise_t1w")}
    assert anat_wfs == {"sub_01_anat_wf", "sub_02_anat_wf"}
    edges = [(source.name, target.name, field) for source, target, data
             in workflow._graph.edges(data=True) for field in data["connect"]]
    run_wfs = {name.split(".")[0] for name in names} - anat_wfs
    assert len(run_wfs) == len(dsc) + len(asl)
    # every run gets its subject's warp
    for run_wf in run_wfs:
        [(source, field)] = [(s, f) for s, t, f in edges if t == run_wf]
        assert source == f"sub_{run_wf.split('_')[1]}_anat_wf"
        assert field[0] == "outputnode.template_warp"
        assert field[1].endswith("template_inputnode.template_warp")
    for run_wf in run_wfs:
        sinks = _sinks(workflow.get_node(run_wf))
        native = [e for e in sinks.values() if "space" not in e and e["suffix"] not in (
            "roistats", "timeseries", "xfm")]
        assert native
        for entities in native:
            assert {**entities, "space": "T1w"} in sinks.values()
            assert {**entities, **TEMPLATE_ENTITIES} in sinks.values()
        reference = "aslref" if "asl" in run_wf else "dscref"
        assert {"from": reference, "to": "T1w", "mode": "image", "suffix": "xfm"} \
            in sinks.values()
        assert {"space": "T1w", "suffix": reference} in sinks.values()
    # masks are resampled by nearest neighbour, maps trilinearly
    kinds = []
    for path in names:
        node = workflow.get_node(path)
        if type(node.interface).__name__ != "DerivativesDataSink" or not isinstance(
                node.interface.inputs.space, str) or node.interface.inputs.suffix in (
                "dscref", "aslref", "T1w"):
            continue
        parent = workflow.get_node(path.rsplit(".", 1)[0])
        [source] = [s for s, _ in parent._graph.in_edges(node)
                    if type(s.interface).__name__ == "ResampleToSpace"]
        kind = source.interface.inputs.kind
        assert kind == ("mask" if node.interface.inputs.suffix == "mask" else "map")
        assert source.interface.inputs.space in SPACES[1:]
        kinds.append(kind)
    assert 0 < kinds.count("mask") < kinds.count("map")
    anat_sinks = _sinks(workflow.get_node("sub_01_anat_wf"))
    assert {"from": "T1w", "to": "MNI152NLin2009aSym", "mode": "image",
            "suffix": "xfm"} in anat_sinks.values()


def test_runs_only_in_their_own_grid_add_no_spatial_node(noise_free, tmp_path):
    root, _ = noise_free
    _, dsc, asl = _runs(root)
    workflow = init_bids_perfusion_wf(dsc, DSCOptions(), tmp_path, tmp_path / "work",
                                      asl_runs=asl, asl_options=ASLOptions(),
                                      spatial=SpatialOptions(("run",)), anatomy={})
    assert not [name for name in workflow.list_node_names()
                if name.rsplit(".", 1)[-1] in ("coregister_t1w", "normalise_t1w")]


# --- end to end --------------------------------------------------------------------------------

@pytest.mark.slow  # a participant run with normalisation: 18 s idle, 85 s on a loaded machine
def test_participant_writes_maps_masks_and_transforms_in_every_space(tmp_path):
    from helpers import small_config

    from bids_perfusion.cli.run import main
    from bids_perfusion.phantom import write_dataset

    root = write_dataset(tmp_path / "bids", small_config(grades=("HGG",)))
    out = tmp_path / "out"
    assert main([str(root), str(out), "participant", "--skip-bids-validation", "-w",
                 str(tmp_path / "work"), "--nprocs", "1", "--output-spaces", *SPACES,
                 "--normalisation", "fast"]) == 0
    perf, anat = out / "sub-01" / "perf", out / "sub-01" / "anat"
    template = "space-MNI152NLin2009aSym_res-2"
    for run in ("sub-01_ce-gadolinium", "sub-01"):
        # the phantom's runs and T1w share one pose: the co-registration is the identity
        reference = "dscref" if "ce-" in run else "aslref"
        xfm = perf / f"{run}_from-{reference}_to-T1w_mode-image_xfm.txt"
        matrix = transforms.affine_from_itk_text(xfm.read_text())
        brain = np.array([[-60, 60], [-90, 60], [-40, 70]], dtype=float)
        corners = np.stack(np.meshgrid(*brain, indexing="ij")).reshape(3, -1)
        assert np.abs(transforms.apply_affine(matrix, corners) - corners).max() < 1.0
        mask = nib.load(perf / f"{run}_{template}_desc-brain_mask.nii.gz")
        assert mask.shape == (99, 117, 95)
        assert set(np.unique(np.asarray(mask.dataobj))) == {0, 1}
        assert (perf / f"{run}_space-T1w_desc-brain_mask.nii.gz").exists()
        assert (perf / f"{run}_space-T1w_{reference}.nii.gz").exists()
    cbf = perf / "sub-01_ce-gadolinium_desc-osvd_cbf.nii.gz"
    native, in_template = (np.asarray(nib.load(path).dataobj) for path in (
        cbf, perf / f"sub-01_ce-gadolinium_{template}_desc-osvd_cbf.nii.gz"))
    # the brain's mean CBF survives the warp (a volume-weighted mean, within 10 %)
    native_mask = np.asarray(nib.load(perf / "sub-01_ce-gadolinium_desc-brain_mask.nii.gz")
                             .dataobj) > 0
    template_mask = np.asarray(nib.load(
        perf / f"sub-01_ce-gadolinium_{template}_desc-brain_mask.nii.gz").dataobj) > 0
    assert in_template[template_mask].mean() == pytest.approx(native[native_mask].mean(),
                                                              rel=0.1)
    sidecar = json.loads((perf / f"sub-01_ce-gadolinium_{template}_desc-osvd_cbf.json")
                         .read_text())
    assert sidecar["Interpolation"] == "trilinear" and "MNI152NLin2009aSym" in \
        sidecar["SpatialReference"] and sidecar["Units"] == "mL/100 g/min"
    warp = nib.load(anat / "sub-01_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.nii.gz")
    assert warp.shape[3:] == (1, 3) and warp.header.get_intent()[0] == "vector"
    assert (anat / "sub-01_space-MNI152NLin2009aSym_res-4_desc-preproc_T1w.nii.gz").exists()
    # the report shows the registrations; the maps in other spaces are no sections
    figures = out / "sub-01" / "figures"
    for name in ("sub-01_ce-gadolinium_desc-coreg_T1w.svg", "sub-01_desc-coreg_T1w.svg",
                 "sub-01_space-MNI152NLin2009aSym_res-4_desc-preproc_T1w.svg"):
        assert (figures / name).exists()
    assert not list(figures.glob("*_space-T1w_*")) and "Registration" in (
        out / "sub-01.html").read_text()
    # the group level averages the template's maps (one subject: SD 0, count 1)
    assert main([str(root), str(out), "group", "--n-bootstrap", "0"]) in (0, 1)
    count = out / "group" / f"group_ce-gadolinium_{template}_desc-osvd_stat-n_cbf.nii.gz"
    assert np.asarray(nib.load(count).dataobj).max() == 1


def test_coregistration_of_the_phantom_recovers_a_known_t1w_pose(noise_free, tmp_path,
                                                                  monkeypatch):
    """The phantom's T1w given a known pose (3°, 2.7 mm, in its header): the nodes'
    co-registration of the DSC pre-bolus reference and of the ASL M0 (4.6 × 4.6 × 11 mm
    voxels) finds the inverse within 1 mm over the brain and 1°."""
    from bids_perfusion.interfaces.spatial import CoregisterToT1w, RunReference

    root, _ = noise_free
    monkeypatch.chdir(tmp_path)
    t1w = nib.load(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    angle = np.deg2rad(3.0)
    pose = np.eye(4)
    pose[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    pose[:3, 3] = [2.0, -1.5, 1.0]
    moved = tmp_path / "sub-01_T1w.nii.gz"
    nib.Nifti1Image(np.asarray(t1w.dataobj), pose @ t1w.affine).to_filename(moved)
    dsc = root / "sub-01" / "perf" / "sub-01_ce-gadolinium_dsc.nii.gz"
    references = []
    for name, kind in ((dsc, "dsc"), (dsc.with_name("sub-01_m0scan.nii.gz"), "mean")):
        (tmp_path / kind).mkdir()
        monkeypatch.chdir(tmp_path / kind)
        references.append(RunReference(in_file=str(name), kind=kind).run().outputs.out_file)
    data = np.asarray(t1w.dataobj)
    brain = pose[:3, :3] @ registration.grid_points(t1w.shape, t1w.affine)[
        :, data.ravel() > 0.2 * data.max()] + pose[:3, 3:4]
    for reference in references:
        result = CoregisterToT1w(reference=reference, t1w=str(moved)).run()
        matrix = transforms.affine_from_itk_text(Path(result.outputs.out_file).read_text())
        error = np.linalg.norm(transforms.apply_affine(matrix - np.linalg.inv(pose), brain),
                               axis=0)
        angle = np.degrees(np.arccos(np.clip((np.trace(matrix[:3, :3] @ pose[:3, :3]) - 1)
                                             / 2, -1, 1)))
        assert error.max() < 1.0 and angle < 1.0, (reference, error.max(), angle)
        assert result.outputs.metadata["Type"] == "rigid (6 parameters)"
