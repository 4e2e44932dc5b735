"""Multi-delay DeepASL: the torch general kinetic model and its closed-form fit equal the
numpy ones, the loss, the training pairs and recipe, and ``--asl-denoise deepasl`` on a
multi-delay run (weights of the right kind, or a clear refusal)."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import load
from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from bids_perfusion.asl import kinetics
from bids_perfusion.collect import collect_asl_runs, layout_of, usable_denoiser
from bids_perfusion.nn import deepasl, deepasl_data
from bids_perfusion.nn import deepasl_multidelay as md
from bids_perfusion.nn.weights import WeightsError, save_weights
from bids_perfusion.phantom import PhantomConfig, write_dataset
from bids_perfusion.workflows.asl import init_asl_wf
from bids_perfusion.workflows.asl_options import ASLOptions

TINY = {"matrix": (32, 32, 4), "fov_mm": 220.0, "slab_mm": 64.0}
PLDS = np.array([0.5, 1.0, 1.5, 2.0, 2.5])


@pytest.mark.parametrize("t1_tissue", [None, 1.3])
def test_torch_general_kinetic_model_equals_numpy(t1_tissue):
    rng = np.random.default_rng(0)
    cbf, att = rng.uniform(0, 100, (300, 1)), rng.uniform(0, 3, (300, 1))
    pcasl = kinetics.pcasl_delta_m(PLDS, cbf, att, 1.0, 1.6, 1.65, 0.85, t1_tissue=t1_tissue)
    pasl = kinetics.pasl_delta_m(PLDS + 0.8, cbf, att, 1.0, 0.8, 1.65, 0.98,
                                 t1_tissue=t1_tissue)
    t_cbf, t_att = torch.tensor(cbf, requires_grad=True), torch.tensor(att)
    ours = md.kinetic_delta_m(t_cbf, t_att, torch.tensor(PLDS), 1.6, 1.65, 0.85, False,
                              t1_tissue=t1_tissue)
    np.testing.assert_allclose(ours.detach().numpy(), pcasl, rtol=1e-12, atol=1e-15)
    ours = md.kinetic_delta_m(t_cbf, t_att, torch.tensor(PLDS + 0.8), 0.8, 1.65, 0.98,
                              True, t1_tissue=t1_tissue)
    np.testing.assert_allclose(ours.detach().numpy(), pasl, rtol=1e-12, atol=1e-15)
    ours.sum().backward()
    assert torch.isfinite(t_cbf.grad).all() and t_cbf.grad.abs().sum() > 0


@pytest.mark.parametrize("label_type", ["PCASL", "PASL"])
def test_closed_form_fit_equals_the_pipeline_s_initial_guess_and_lets_gradients_through(
        label_type):
    rng = np.random.default_rng(1)
    pasl = label_type == "PASL"
    constants = deepasl_data.MultiDelayConstants(
        delays=tuple(PLDS + (0.8 if pasl else 0.0)), slice_timing=(0.0, 0.05, 0.1),
        durations=(0.8 if pasl else 1.6,) * 5, counts=(4, 4, 6, 6, 8), t1_blood=1.65,
        efficiency=0.85, pasl=pasl, partition=0.9)
    model = constants.model()
    shape = (6, 5, 3)
    cbf, att = rng.uniform(10, 90, shape), rng.uniform(0.3, 2.5, shape)
    delays = constants.slice_delays  # (z, K)
    ratio = np.stack([model.predict(cbf[..., z].ravel(), att[..., z].ravel(), delays[z])
                      .reshape(6, 5, -1) for z in range(3)], axis=2)
    ratio = ratio + rng.normal(0, 2e-4, ratio.shape)
    ours_cbf, ours_att = deepasl_data.multi_delay_fit(ratio, np.ones(shape), constants)
    per_voxel = np.broadcast_to(delays[None, None], (*shape, 5)).reshape(-1, 5)
    guess_cbf, guess_att = dataclasses.replace(model, delays=per_voxel).initial_guess(
        ratio.reshape(-1, 5))
    guess_cbf, guess_att = guess_cbf.reshape(shape), guess_att.reshape(shape)
    np.testing.assert_allclose(ours_att, guess_att, atol=1e-9)
    np.testing.assert_allclose(ours_cbf, guess_cbf, rtol=1e-9, atol=1e-9)
    # gradients reach ΔM through both the ATT (weighted delay) and the CBF
    batch = {k: torch.as_tensor(np.asarray(v, float))
             for k, v in deepasl_data.fit_constants(constants, np.arange(3)).items()}
    batch["m0"] = torch.ones(3, 1, 6, 5, dtype=torch.float64)
    y = torch.tensor(np.moveaxis(ratio, (2, 3), (0, 1)), requires_grad=True)
    fitted_cbf, fitted_att = md.fit_batch(batch, y)
    (fitted_cbf.sum() + fitted_att.sum()).backward()
    assert torch.isfinite(y.grad).all() and (y.grad != 0).float().mean() > 0.9


def _synthetic_batch(n=8, k=3, size=12, noise=0.3, seed=0):
    """A multi-delay batch of a flat tissue (CBF 60, ATT 1.2 s) with Gaussian noise."""
    rng = np.random.default_rng(seed)
    constants = deepasl_data.MultiDelayConstants(
        delays=(1.0, 1.8, 2.6), slice_timing=(0.0,), durations=(1.6,) * k,
        counts=(5,) * k, t1_blood=1.65, efficiency=0.85, pasl=False, partition=0.9)
    clean = constants.model().predict(np.array([60.0]), np.array([1.2]))[0]  # ΔM/M0
    m0 = 100.0  # network units: ΔM in percent of M0
    complete = np.broadcast_to(m0 * clean[None, :, None, None], (n, k, size, size))
    noisy = complete + rng.normal(0, noise, complete.shape)
    batch = {"noisy": noisy, "residual": noisy - complete, "m0": np.full((n, 1, size, size),
             m0), "cbf": np.full((n, 1, size, size), 60.0),
             "att": np.full((n, 1, size, size), 1.2), "mask": np.ones((n, 1, size, size)),
             **deepasl_data.fit_constants(constants, np.zeros(n, int))}
    return {key: torch.as_tensor(np.array(v, dtype=np.float32)) for key, v in batch.items()}


def test_loss_with_lambda_one_is_the_residual_loss_and_tiny_training_lowers_it():
    torch.manual_seed(0)
    batch = _synthetic_batch()
    model = deepasl.build(md.MODEL_NAME, {"depth": 2, "width": 8})
    residual = ((batch["residual"] - md.per_delay(model, batch["noisy"])) ** 2).mean()
    torch.testing.assert_close(md.multidelay_loss(model, batch, 1.0), residual)
    # the kinetic term is the fit's CBF and ATT errors: 0 for the noiseless ΔM
    cbf, att = md.fit_batch(batch, batch["noisy"] - batch["residual"])
    torch.testing.assert_close(cbf, batch["cbf"], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(att, batch["att"], rtol=1e-3, atol=1e-3)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        optimiser.zero_grad()
        loss = md.multidelay_loss(model, batch, 0.2)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]


def test_multi_delay_training_pairs_hold_every_delay():
    rng = np.random.default_rng(0)
    shape = (12, 10, 2)
    brain = np.zeros(shape, bool)
    brain[2:10, 2:8] = True
    constants = deepasl_data.MultiDelayConstants(
        delays=(1.0, 2.0), slice_timing=(0.0, 0.04), durations=(1.6, 1.6), counts=(10, 5),
        t1_blood=1.65, efficiency=0.85, pasl=False, partition=0.9)
    run = deepasl_data.MultiDelayRunArrays(
        "sub-x", (rng.normal(5, 2, (*shape, 10)), rng.normal(3, 2, (*shape, 5))),
        np.full(shape, 800.0), brain, constants)
    samples = deepasl_data.multi_delay_training_pairs(run, (0.2, 0.8), 1, 8, 2, rng)
    n = 2 * 2 * 2  # fractions x slices x patches
    assert samples["noisy"].shape == (n, 2, 8, 8) and samples["cbf"].shape == (n, 1, 8, 8)
    assert samples["delays"].shape == (n, 2, 1, 1)
    np.testing.assert_allclose(np.unique(samples["delays"][:, 1]), [2.0, 2.04], rtol=1e-6)
    # counts of the noisy inputs: 20 % and 80 % of 10 and 5 pairs
    assert sorted({tuple(c) for c in samples["counts"][:, :, 0, 0].tolist()}) == [
        (2.0, 1.0), (8.0, 4.0)]
    target = (samples["noisy"] - samples["residual"]) * run.scale
    complete = run.complete
    assert np.isclose(target[:, 0, 0, 0][:, None], complete[..., 0].ravel()[None],
                      rtol=1e-5).any(axis=1).all()
    _, att = deepasl_data.multi_delay_fit(complete, run.m0, constants)
    assert np.isclose(samples["att"][:, 0, 0, 0][:, None], att.ravel()[None],
                      rtol=1e-5).any(axis=1).all()


def tiny_weights(folder, model=md.MODEL_NAME):
    """Weights of a small untrained residual FCN with its card."""
    torch.manual_seed(0)
    configuration = {"width": 4, "depth": 2, "kinetic_weight": 0.2}
    network = deepasl.build(model, configuration)
    path = Path(folder) / f"{model}.safetensors"
    save_weights(network.state_dict(), path, {"model": model, "configuration": configuration,
                                              "data": {"synthetic": True}})
    return path


@pytest.fixture(scope="module")
def multi_delay_phantom(tmp_path_factory):
    config = PhantomConfig.preset("deepasl-multidelay", grades=("HGG", "LGG", "HGG"), **TINY,
                                  asl={"n_pairs": (6,), "plds": (0.5, 1.5, 2.5)})
    return write_dataset(tmp_path_factory.mktemp("multidelay") / "bids", config)


def test_weights_of_the_wrong_kind_are_refused_by_name(tmp_path, multi_delay_phantom):
    runs, _ = collect_asl_runs(layout_of(multi_delay_phantom))
    single = tiny_weights(tmp_path, "deepasl")
    options = ASLOptions(denoise="deepasl", denoise_weights=str(single))
    kept, errors = usable_denoiser(options, runs[:1])
    assert kept == options and len(errors) == 1
    assert "sub-01_asl.nii.gz" in errors[0] and "several delays" in errors[0]
    assert "single-delay weights" in errors[0] and "deepasl-multidelay" in errors[0]
    multi = tiny_weights(tmp_path)
    assert usable_denoiser(ASLOptions(denoise="deepasl", denoise_weights=str(multi)),
                           runs[:1])[1] == []
    with pytest.raises(WeightsError, match="one delay needs"):
        deepasl.weights_for_run("deepasl", multi, multi_delay=False)
    with pytest.raises(WeightsError, match="no multi-delay model"):
        deepasl.weights_for_run("dilatedconv", None, multi_delay=True)


def test_tiny_recipe_training_writes_a_multi_delay_card(multi_delay_phantom, tmp_path,
                                                        one_thread):
    from bids_perfusion.nn.recipes import TrainingRequest
    from bids_perfusion.nn.recipes.deepasl import ASLDenoiseOptions
    from bids_perfusion.train import train_model

    options = ASLDenoiseOptions(kinetic_weight=0.5, subset_draws=1, asl_patch_size=16,
                                patches_per_slice=2, denoise_width=8)
    request = TrainingRequest(model=md.MODEL_NAME, bids_dirs=(multi_delay_phantom,),
                              output=tmp_path, options=options, epochs=2, lr=1e-3,
                              progress=False, batch_size=8, command="test")
    card = train_model(request).card
    assert card["model"] == md.MODEL_NAME and card["configuration"]["att_weight"] == 50.0
    assert card["data"]["pairs_per_run"][0][1] == 18 and card["data"]["synthetic"]
    assert np.isfinite([h["train_loss"] for h in card["metrics"]["history"]]).all()


def test_workflow_denoises_every_delay_and_fits_again(tmp_path, multi_delay_phantom):
    runs, errors = collect_asl_runs(layout_of(multi_delay_phantom))
    assert not errors
    weights = tiny_weights(tmp_path)
    out = tmp_path / "out"
    workflow = Workflow(name="top", base_dir=str(tmp_path / "work"))
    workflow.add_nodes([init_asl_wf(runs[0], ASLOptions(denoise="deepasl",
                                                        denoise_weights=str(weights)),
                                    str(out))])
    workflow.run(plugin="Linear")
    perf = out / "sub-01" / "perf"
    for name in ("desc-gkm_cbf", "desc-gkm_att", "desc-deepasl_deltam", "desc-deepasl_cbf",
                 "desc-deepasl_att"):
        assert (perf / f"sub-01_{name}.nii.gz").is_file(), name
    denoised = load(perf / "sub-01_desc-deepasl_deltam.nii.gz")
    assert denoised.shape == (32, 32, 4, 3)
    model, _ = deepasl.load_model(md.MODEL_NAME, weights)
    mean = load(perf / "sub-01_desc-mean_deltam.nii.gz")
    sidecar = json.loads((perf / "sub-01_desc-deepasl_cbf.json").read_text())
    scale = sidecar["DenoisingIntensityScale"]
    np.testing.assert_allclose(denoised[..., 1], deepasl.denoise(model, mean[..., 1], scale),
                               rtol=1e-4, atol=1e-4)
    assert sidecar["DenoisingModel"] == md.MODEL_NAME and "FitIterations" in sidecar
    att = json.loads((perf / "sub-01_desc-deepasl_att.json").read_text())
    assert att["ModelWeightsSHA256"] == sidecar["ModelWeightsSHA256"]
    assert "cbf_deepasl" in (perf / "sub-01_desc-roi_roistats.tsv").read_text()
    # the report shows ΔM (longest delay) and CBF before and after denoising
    from bids_perfusion.reports.derivatives import find_runs
    from bids_perfusion.reports.sections import report_run

    (name, files), = find_runs(out / "sub-01").items()
    figures_dir = out / "sub-01" / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    context = report_run(name, files, out, figures_dir)
    (figure,) = context["sections"]["Denoising"]
    assert figure["src"].endswith("desc-deepasldenoising_deltam.svg")
    svg = (out / figure["src"]).read_text()
    assert "before − after" in svg and "CBF, after" in svg


@pytest.mark.slow
def test_bundled_multi_delay_weights_serve_a_participant_run(tmp_path):
    """``bids-perfusion participant --asl-denoise deepasl`` on a multi-delay phantom run,
    no weights given: the bundled multi-delay weights (phantom-trained, said so)."""
    from bids_perfusion.cli.run import main as run_main
    from bids_perfusion.nn.weights import bundled_weights

    model, card = deepasl.load_model(md.MODEL_NAME)
    assert card["data"]["synthetic"] and "synthetic data only" in card["notes"]
    assert card["configuration"]["kinetic_weight"] == 0.2
    assert "bids-perfusion-train deepasl-multidelay" in card["command"]
    assert card["metrics"]["parameters"] == deepasl.parameter_count(model)
    config = PhantomConfig.preset("deepasl-multidelay", grades=("HGG",), matrix=(24, 24, 4),
                                  fov_mm=220.0, slab_mm=48.0,
                                  asl={"n_pairs": (2,), "plds": (1.0, 2.0)})
    root = write_dataset(tmp_path / "bids", config)
    out = tmp_path / "out"
    assert run_main([str(root), str(out), "participant", "--skip-bids-validation",
                     "-w", str(tmp_path / "work"), "--asl-denoise", "deepasl"]) == 0
    perf = out / "sub-01" / "perf"
    sidecar = json.loads((perf / "sub-01_desc-deepasl_att.json").read_text())
    assert sidecar["ModelWeightsSHA256"] == card["sha256"]
    assert sidecar["ModelWeights"] == Path(str(bundled_weights(md.MODEL_NAME))).name
    assert np.isfinite(load(perf / "sub-01_desc-deepasl_cbf.nii.gz")).all()
    assert (out / "sub-01" / "figures" / "sub-01_desc-deepasldenoising_deltam.svg").is_file()
