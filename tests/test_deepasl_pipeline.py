"""``--asl-denoise``: the weights check, the denoising interface, the ASL workflow with a
denoiser for every labelling and M0 mode, and the command line end to end (phantom ->
``bids-perfusion-train deepasl`` -> ``bids-perfusion participant --asl-denoise``)."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import load, truth
from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from bids_perfusion.collect import collect_asl_runs, layout_of, usable_denoiser
from bids_perfusion.interfaces.deepasl import DenoiseDeltaM
from bids_perfusion.nn import deepasl
from bids_perfusion.nn.weights import save_weights
from bids_perfusion.phantom import PhantomConfig, write_dataset
from bids_perfusion.workflows.asl import init_asl_wf
from bids_perfusion.workflows.asl_options import ASLOptions

TINY = {"matrix": (32, 32, 4), "fov_mm": 220.0, "slab_mm": 64.0}


def tiny_weights(folder, model="deepasl", weight=0.2):
    """Weights of a small untrained network with its card."""
    torch.manual_seed(0)
    configuration = {"width": 4, "kinetic_weight": weight,
                     **({"depth": 2} if model == "deepasl" else {"dilations": [2, 4]})}
    network = deepasl.build(model, configuration)
    path = Path(folder) / f"{model}.safetensors"
    save_weights(network.state_dict(), path, {"model": model, "configuration": configuration,
                                              "data": {"synthetic": True}})
    return path


def _dataset(tmp, **asl):
    config = PhantomConfig.preset("deepasl", grades=("HGG",), **TINY,
                                  asl={"n_pairs": (4,), **asl})
    return write_dataset(tmp / "bids", config)


def test_weights_are_checked_before_processing(tmp_path):
    weights = tiny_weights(tmp_path)
    options = ASLOptions(denoise="deepasl", denoise_weights=str(weights))
    assert usable_denoiser(options, []) == (options, [])
    wrong = ASLOptions(denoise="dilatedconv", denoise_weights=str(weights))
    dropped, errors = usable_denoiser(wrong, [])
    assert dropped.denoise is None and "not 'dilatedconv'" in errors[0]
    weights.write_bytes(weights.read_bytes() + b"x")
    dropped, errors = usable_denoiser(options, [])
    assert dropped.denoise is None and "sha256" in errors[0]
    assert "--asl-denoise-weights" in errors[0]


def test_multi_delay_runs_are_refused_by_name(tmp_path):
    root = _dataset(tmp_path, plds=(1.5, 2.2), n_pairs=(2,))
    runs, _ = collect_asl_runs(layout_of(root))
    options = ASLOptions(denoise="deepasl", denoise_weights=str(tiny_weights(tmp_path)))
    kept, errors = usable_denoiser(options, runs)
    assert kept == options and len(errors) == 1
    assert "sub-01_asl.nii.gz" in errors[0] and "several delays" in errors[0]


def _denoise_node(tmp_path, **inputs):
    """DenoiseDeltaM on a random ΔM, M0 600 (scale 6), a box of brain."""
    rng = np.random.default_rng(0)
    files = {}
    brain = np.zeros((12, 10, 3), np.uint8)
    brain[2:10, 2:8] = 1
    for name, data in {"dm": rng.normal(5, 2, brain.shape), "m0": np.full(brain.shape, 600.0),
                       "brain": brain, "excluded": np.zeros_like(brain)}.items():
        files[name] = str(tmp_path / f"{name}.nii.gz")
        nib.Nifti1Image(np.asarray(data), np.eye(4)).to_filename(files[name])
    node = DenoiseDeltaM(mean_deltam=files["dm"], m0=files["m0"], brain_mask=files["brain"],
                         excluded_mask=files["excluded"], method="deepasl", **inputs)
    return node.run(cwd=str(tmp_path)), files


def test_interface_writes_the_denoised_delta_m_and_its_provenance(tmp_path):
    weights = tiny_weights(tmp_path)
    result, files = _denoise_node(tmp_path, weights=str(weights))
    model, card = deepasl.load_model("deepasl", weights)
    expected = deepasl.denoise(model, load(files["dm"]), 6.0)
    np.testing.assert_allclose(load(result.outputs.deltam), expected, rtol=1e-5, atol=1e-5)
    meta = result.outputs.metadata
    assert meta["DenoisingModel"] == "deepasl" and meta["KineticLossWeight"] == 0.2
    assert meta["ModelWeightsSHA256"] == card["sha256"] and meta["ModelWeights"] == weights.name
    assert meta["DenoisingIntensityScale"] == 6.0
    assert meta["OutsideTrainingRanges"] == []  # the tiny card states no training ranges


def _run(run, options, tmp):
    out = tmp / "out"
    workflow = Workflow(name="top", base_dir=str(tmp / "work"))
    workflow.add_nodes([init_asl_wf(run, options, str(out))])
    workflow.run(plugin="Linear")
    return out / "sub-01" / "perf"


def _without_m0_scan(root, sidecar):
    """The phantom's run turned into M0Type Absent or Estimate (``sidecar`` changes)."""
    perf = root / "sub-01" / "perf"
    for path in perf.glob("*_m0scan.*"):
        path.unlink()
    path = perf / "sub-01_asl.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **sidecar}))


@pytest.mark.parametrize("asl, sidecar", [
    ({"label_type": "PCASL", "m0_type": "Included"}, None),
    ({"label_type": "PASL", "plds": (1.8,), "m0_type": "Separate", "readout": "2D"}, None),
    pytest.param({"label_type": "PCASL", "m0_type": "Separate"},
                 {"M0Type": "Absent", "RepetitionTimePreparation": 4.5},
                 marks=pytest.mark.slow),
    pytest.param({"label_type": "PCASL", "m0_type": "Separate"},
                 {"M0Type": "Estimate", "M0Estimate": 700.0}, marks=pytest.mark.slow),
])
def test_workflow_writes_denoised_delta_m_and_cbf_beside_the_others(tmp_path, asl, sidecar):
    root = _dataset(tmp_path, **asl)
    if sidecar:
        _without_m0_scan(root, sidecar)
        asl = {**asl, "m0_type": sidecar["M0Type"]}
    runs, errors = collect_asl_runs(layout_of(root))
    assert not errors
    weights = tiny_weights(tmp_path)
    perf = _run(runs[0], ASLOptions(denoise="deepasl", denoise_weights=str(weights)),
                tmp_path)
    for name in ("desc-mean_deltam", "desc-consensus_cbf", "desc-deepasl_deltam",
                 "desc-deepasl_cbf"):
        assert (perf / f"sub-01_{name}.nii.gz").is_file()
    sidecar = json.loads((perf / "sub-01_desc-deepasl_cbf.json").read_text())
    assert sidecar["DenoisingModel"] == "deepasl" and sidecar["KineticLossWeight"] == 0.2
    assert sidecar["M0Type"] == asl["m0_type"]
    assert sidecar["ArterialSpinLabelingType"] == asl["label_type"]
    delta = json.loads((perf / "sub-01_desc-deepasl_deltam.json").read_text())
    assert delta["ModelWeightsSHA256"] == sidecar["ModelWeightsSHA256"]
    # the same formula on the denoised ΔM: the CBF ratio is the ΔM ratio in the brain
    brain = load(perf / "sub-01_desc-consensus_cbf.nii.gz") != 0
    ratio_cbf = load(perf / "sub-01_desc-deepasl_cbf.nii.gz")[brain] / load(
        perf / "sub-01_desc-consensus_cbf.nii.gz")[brain]
    ratio_dm = load(perf / "sub-01_desc-deepasl_deltam.nii.gz")[brain] / load(
        perf / "sub-01_desc-mean_deltam.nii.gz")[brain]
    np.testing.assert_allclose(ratio_cbf, ratio_dm, rtol=1e-4)
    roi = (perf / "sub-01_desc-roi_roistats.tsv").read_text()
    assert "cbf_deepasl" in roi


@pytest.mark.slow
def test_phantom_train_participant_end_to_end(tmp_path):
    """Tiny phantom -> bids-perfusion-train deepasl -> bids-perfusion --asl-denoise."""
    from bids_perfusion.cli.run import main as run_main
    from bids_perfusion.cli.train import main as train_main

    config = PhantomConfig.preset("deepasl", grades=("HGG", "LGG", "HGG"), **TINY,
                                  asl={"n_pairs": (12,)})
    root = write_dataset(tmp_path / "bids", config)
    models = tmp_path / "models"
    assert train_main(["deepasl", str(root), str(models), "--epochs", "2",
                       "--denoise-width", "8", "--asl-patch-size", "16",
                       "--kinetic-weight", "0.5", "--device", "cpu", "-q"]) == 0
    weights = models / "deepasl.safetensors"
    card = json.loads(weights.with_suffix(".json").read_text())
    out = tmp_path / "out"
    status = run_main([str(root), str(out), "participant", "--participant-label", "01",
                       "--skip-bids-validation", "-w", str(tmp_path / "work"), "--nprocs", "1",
                       "--asl-denoise", "deepasl", "--asl-denoise-weights", str(weights)])
    assert status == 0
    perf = out / "sub-01" / "perf"
    sidecar = json.loads((perf / "sub-01_desc-deepasl_cbf.json").read_text())
    assert sidecar["ModelWeightsSHA256"] == card["sha256"]
    assert sidecar["KineticLossWeight"] == 0.5
    cbf = load(perf / "sub-01_desc-deepasl_cbf.nii.gz")
    brain = truth(root, "01", "label-brain_mask") > 0
    assert np.isfinite(cbf).all() and np.count_nonzero(cbf[brain]) > 0.5 * brain.sum()
    figures = {p.name for p in (out / "sub-01" / "figures").iterdir()}
    assert {"sub-01_desc-deepasl_cbf.svg", "sub-01_desc-deepasl_deltam.svg",
            "sub-01_desc-consensus_cbf.svg", "sub-01_desc-mean_deltam.svg",
            "sub-01_desc-deepasldenoising_deltam.svg"} <= figures


def test_bundled_deepasl_weights_serve_when_none_are_given(tmp_path):
    """The shipped weights: DeepASL, λ = 0.2, trained on the phantom within 20 minutes of
    one CPU thread; the pipeline's default."""
    model, card = deepasl.load_model("deepasl")
    assert card["data"]["synthetic"] and "synthetic data only" in card["notes"]
    assert card["configuration"]["kinetic_weight"] == 0.2 and card["data"]["patch_size"] == 40
    assert card["metrics"]["parameters"] == deepasl.parameter_count(model) == 146785
    assert card["metrics"]["training_seconds"] <= 20 * 60
    assert "bids-perfusion-train deepasl" in card["command"]
    options = ASLOptions(denoise="deepasl")
    assert usable_denoiser(options, []) == (options, [])
    meta = _denoise_node(tmp_path)[0].outputs.metadata
    assert meta["ModelWeights"] == "deepasl.safetensors"
    assert meta["ModelWeightsSHA256"] == card["sha256"]


def test_bundled_dilated_conv_weights_are_table_1_s_row():
    """The shipped Dilated Conv weights: the Table 1 baseline (same phantom data, split and
    settings as the DeepASL weights), so --asl-denoise dilatedconv needs no weights."""
    model, card = deepasl.load_model("dilatedconv")
    assert card["data"]["synthetic"] and "synthetic data only" in card["notes"]
    assert card["configuration"]["kinetic_weight"] == 1.0 and card["data"]["patch_size"] == 40
    assert card["metrics"]["parameters"] == deepasl.parameter_count(model) == 444801
    assert card["split"] == deepasl.load_model("deepasl")[1]["split"]
    assert "bids-perfusion-train dilatedconv" in card["command"]
    options = ASLOptions(denoise="dilatedconv")
    assert usable_denoiser(options, []) == (options, [])
