"""stU-Net, the Hess et al. baseline, strips and preprocessing; CBV in the participant run."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bids_perfusion.nn import cbv_models, hess, stunet, training, weights
from bids_perfusion.nn.cbv_preprocessing import (
    PreprocessingConfig,
    brain_crop,
    calibrate_units,
    prepare_map,
    prepare_run,
    to_native,
)
from bids_perfusion.nn.strips import (
    assemble_strips,
    extract_strips,
    flip_strips,
    predict_slices,
    strip_starts,
)

TINY = stunet.StUNetConfig(widths=(4, 8, 8))


# --- architecture ------------------------------------------------------------------------


def test_shapes_through_every_block_for_odd_sizes():
    model = stunet.StUNet(TINY).eval()
    shapes = {}

    def keep(name):
        return lambda _module, _inputs, output: shapes.__setitem__(name, tuple(output.shape))

    for level, block in enumerate(model.encoder):
        block.register_forward_hook(keep(f"encoder{level}"))
    for level, block in enumerate(model.downsample):
        block.register_forward_hook(keep(f"down{level}"))
    for index, block in enumerate(model.decoder):
        block.register_forward_hook(keep(f"decoder{index}"))
    x = torch.randn(2, 13, 27, 33)  # odd rows, columns and frames
    assert model(x).shape == (2, 13, 27)
    # 3x3x7 stride 1 keeps the size; 2x2x4 stride (2, 2, 4) floors rows and columns and
    # takes ceil(T / 4) frames (replicate padding).
    assert shapes["encoder0"] == (2, 4, 13, 27, 33)
    assert shapes["down0"] == (2, 8, 6, 13, 9)
    assert shapes["encoder1"] == (2, 8, 6, 13, 9)
    assert shapes["down1"] == (2, 8, 3, 6, 3)
    assert shapes["encoder2"] == (2, 8, 3, 6, 3)
    # The 2-D decoder climbs back to the skips' sizes (zero padding where they were odd).
    assert shapes["decoder0"] == (2, 8, 6, 13)
    assert shapes["decoder1"] == (2, 4, 13, 27)
    assert stunet.StUNet(stunet.StUNetConfig(widths=(3,)))(x).shape == (2, 13, 27)
    baseline = hess.Hess(hess.HessConfig(temporal_widths=(4, 4), spatial_widths=(4,)))
    assert baseline(x).shape == (2, 13, 27)


def test_kernels_are_the_papers():
    model = stunet.StUNet()
    assert model.encoder[0][0].kernel_size == (3, 3, 7)
    assert model.downsample[0][0].kernel_size == (2, 2, 4)
    assert model.downsample[0][0].stride == (2, 2, 4)
    assert model.decoder[0][0].kernel_size == (5, 5)
    assert model.upsample[0].kernel_size == (2, 2) and model.upsample[0].stride == (2, 2)
    assert stunet.parameter_count(model) == 110265  # documented in docs/stunet.md


def test_skips_max_pool_the_temporal_dimension():
    features = torch.randn(2, 3, 4, 5, 6)
    np.testing.assert_array_equal(stunet.temporal_max_pool(features).numpy(),
                                  features.numpy().max(axis=-1))
    # In the network: each decoder level concatenates the temporal maximum of the encoder
    # features of the same level.
    model = stunet.StUNet(TINY).eval()
    encoded, concatenated = {}, {}
    model.encoder[0].register_forward_hook(
        lambda _m, _i, output: encoded.__setitem__("level0", output))
    model.decoder[-1].register_forward_pre_hook(
        lambda _m, inputs: concatenated.__setitem__("level0", inputs[0]))
    with torch.no_grad():
        model(torch.randn(1, 8, 12, 20))
    width = TINY.widths[0]
    torch.testing.assert_close(concatenated["level0"][:, width:],
                               encoded["level0"].amax(dim=-1))


# --- strips ------------------------------------------------------------------------------


@pytest.mark.parametrize("size,width,stride", [(64, 16, 8), (64, 16, 1), (27, 8, 8),
                                               (13, 13, 8), (10, 3, 3)])
def test_strips_cover_every_row_and_average_exactly(size, width, stride):
    starts = strip_starts(size, width, stride)
    covered = np.zeros(size, dtype=int)
    for start in starts:
        covered[start:start + width] += 1
    assert covered.min() >= 1 and starts[0] == 0 and starts[-1] == size - width
    assert np.all(np.diff(starts) <= stride)
    constant = np.full((size, 7, 3), 2.5)
    strips, starts = extract_strips(constant, width, stride)
    assert strips.shape == (len(starts), width, 7, 3)
    np.testing.assert_array_equal(assemble_strips(strips, starts, size), constant)
    field = np.random.default_rng(0).normal(size=(size, 5))
    np.testing.assert_allclose(assemble_strips(*extract_strips(field, width, stride), size),
                               field, rtol=0, atol=1e-12)


def test_strides_wider_than_strips_are_refused():
    with pytest.raises(ValueError, match="leave rows uncovered"):
        strip_starts(10, 3, 4)


@pytest.mark.parametrize("batch_size", [5, 64])  # 1 slice per group, or 4 slices
def test_predict_slices_averages_strips_of_every_brain_slice(batch_size):
    class MeanOverTime(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return x.mean(dim=-1) + self.anchor

    dsc = np.random.default_rng(1).normal(size=(20, 9, 3, 6)).astype(np.float32)
    mask = np.zeros((20, 9, 3), dtype=bool)
    mask[2:18, 2:7, :2] = True
    out = predict_slices(MeanOverTime(), dsc, mask, width=8, stride=1, batch_size=batch_size)
    np.testing.assert_allclose(out[..., :2], dsc[..., :2, :].mean(axis=-1), atol=1e-6)
    assert np.all(out[..., 2] == 0)  # no brain in the last slice


def test_flips_are_the_same_in_every_tensor_and_reproducible():
    rng = np.random.default_rng(0)
    dsc = torch.tensor(rng.normal(size=(400, 4, 5, 3)), dtype=torch.float32)
    batch = {"dsc": dsc, "cbv": dsc[..., 0].clone(), "mask": dsc[..., 1] > 0}
    flipped = flip_strips(batch, torch.Generator().manual_seed(3))
    assert torch.equal(flipped["cbv"], flipped["dsc"][..., 0])
    assert torch.equal(flipped["mask"], flipped["dsc"][..., 1] > 0)
    again = flip_strips(batch, torch.Generator().manual_seed(3))
    assert all(torch.equal(flipped[k], again[k]) for k in batch)
    # each strip is one of its four mirror images, and each image is drawn about 1/4 of
    # the time (binomial SD of a count out of 400 at p = 1/4: 8.7)
    images = torch.stack([dsc, dsc.flip(1), dsc.flip(2), dsc.flip(1).flip(2)])
    match = (images == flipped["dsc"][None]).flatten(2).all(dim=2)
    assert torch.all(match.sum(dim=0) == 1)
    counts = match.sum(dim=1)
    assert torch.all((counts > 100 - 35) & (counts < 100 + 35)), counts


# --- preprocessing -----------------------------------------------------------------------


def _head(shape=(30, 22, 3), frames=12, seed=0):
    rng = np.random.default_rng(seed)
    brain = np.zeros(shape, dtype=bool)
    brain[6:25, 4:16, :] = True
    series = 100 + rng.normal(0, 1, (*shape, frames))
    series[brain] += 200.0
    cbv = np.where(brain, 3 + rng.normal(0, 1, shape), 0.0)
    return series.astype(np.float32), brain, cbv.astype(np.float32)


def test_square_crop_round_trip_and_padding():
    _series, brain, cbv = _head()
    crop = brain_crop(brain)
    assert crop.side == 19 and crop.crop(cbv).shape == (19, 19, 3)
    np.testing.assert_array_equal(crop.uncrop(crop.crop(cbv))[brain], cbv[brain])
    edge = np.zeros((10, 10, 1), dtype=bool)
    edge[0:8, 0:2] = True  # the square leaves the grid: zero padding
    crop = brain_crop(edge)
    assert crop.side == 8 and crop.crop(edge).sum() == edge.sum()
    np.testing.assert_array_equal(crop.uncrop(crop.crop(edge)), edge)


def test_strip_arrays_crop_to_the_shortest_run_and_refuse_a_longer_count():
    """Runs of several frame counts (phantom v2) are cropped to one count; a count longer
    than a run (the training split's, given to a validation run) is refused, not stacked."""
    series, brain, cbv = _head()
    config = PreprocessingConfig(size=16, strip_width=8)
    runs = [prepare_run(series, brain, config, cbv),
            prepare_run(series[..., :9], brain, config, cbv)]
    arrays, n_frames = cbv_models.strip_arrays(runs, config)
    assert n_frames == 9 and arrays["dsc"].shape[-1] == 9
    assert arrays["dsc"].shape[0] == arrays["cbv"].shape[0] == arrays["mask"].shape[0]
    with pytest.raises(ValueError, match="fewer than the 12 frames"):
        cbv_models.strip_arrays(runs, config, 12)


def test_prepare_run_standardises_and_clips():
    series, brain, cbv = _head()
    config = PreprocessingConfig(size=16, strip_width=8)
    run = prepare_run(series, brain, config, cbv)
    assert run.dsc.shape == (16, 16, 3, 12) and run.mask.shape == run.cbv.shape == (16, 16, 3)
    baseline = run.dsc[..., :5][run.mask]
    assert abs(baseline.mean()) < 1e-3 and abs(baseline.std() - 1) < 1e-3
    assert abs(run.cbv[run.mask].mean()) < 0.05 and run.cbv.min() >= -5 and run.cbv.max() <= 5
    back = to_native(run.cbv, run.crop)
    assert back.shape == brain.shape and np.all(back[:6] == 0) and np.all(back[25:] == 0)
    np.testing.assert_array_equal(prepare_map(cbv, brain, config), run.cbv)


def test_calibration_recovers_units_from_a_noisy_map():
    rng = np.random.default_rng(2)
    brain = np.ones((40, 40, 4), dtype=bool)
    z = rng.normal(size=brain.shape)
    reference = 4.0 + 1.5 * z + rng.normal(0, 1.0, brain.shape)  # noisy area ratio
    alpha, beta = calibrate_units(z, reference, brain)
    assert abs(alpha - 4.0) < 0.05 and abs(beta - 1.5) < 0.05


# --- training, weights and inference -----------------------------------------------------


def _synthetic_strips(n, seed, width=8, columns=12, frames=20):
    """DSC strips whose signal drop is proportional to a smooth CBV field."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    cbv = ndimage.gaussian_filter(rng.normal(size=(n, width, columns)), (0, 1.5, 1.5))
    cbv = (cbv - cbv.mean()) / cbv.std()
    t = np.arange(frames)
    bolus = np.exp(-0.5 * ((t - 10) / 2.0) ** 2)
    dsc = -cbv[..., None] * bolus + rng.normal(0, 0.3, (n, width, columns, frames))
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return {"dsc": as_tensor(dsc), "cbv": as_tensor(cbv),
            "mask": torch.ones(n, width, columns)}


@pytest.mark.parametrize("module,config", [(stunet.StUNet, TINY),
                                           (hess.Hess, hess.HessConfig((4, 8), 7, (8,)))])
def test_tiny_configuration_trains_on_cpu_and_lowers_the_loss(one_thread, module, config):
    train_set, val_set = _synthetic_strips(64, 0), _synthetic_strips(32, 1)
    training.seed_everything(0)
    model = module(config)
    before = training.evaluate(model, stunet.masked_l2, val_set, 32, "cpu")
    settings = training.TrainingConfig(epochs=8, batch_size=8, lr=3e-3, progress=False)
    result = training.train(model, stunet.masked_l2, train_set, val_set, settings, "cpu")
    assert result.best_val_loss < 0.5 * before


def test_weights_round_trip_through_the_card(tmp_path):
    preprocessing = PreprocessingConfig(size=16, strip_width=8)
    training.seed_everything(0)
    model = stunet.StUNet(TINY).eval()
    path = tmp_path / "stunet.safetensors"
    weights.save_weights(model.state_dict(), path, {
        "model": "stunet", "configuration": cbv_models.configuration(TINY, preprocessing)})
    loaded, config, card = cbv_models.load_model(path, "cpu")
    assert config == preprocessing and loaded.config == TINY
    series, brain, cbv = _head()
    first, prediction = cbv_models.predict_standardised(model, config, series, brain)
    again = cbv_models.predict_standardised(loaded, config, series, brain)[1]
    np.testing.assert_array_equal(prediction, again)
    assert prediction.shape == (16, 16, 3) and np.all(prediction[~first.mask] == 0)
    estimate, info = cbv_models.estimate_cbv(loaded, config, series, brain, cbv)
    assert estimate.shape == brain.shape and np.all(estimate[~brain] == 0)
    assert info["seconds"] > 0 and card["model"] == "stunet"
    with pytest.raises(weights.WeightsError, match="not a CBV strip model"):
        card["model"] = "phae"
        (tmp_path / "stunet.json").write_text(json.dumps(card))
        cbv_models.load_model(path)


def test_bundled_weights_match_their_card():
    model, preprocessing, card = cbv_models.load_model(device="cpu")
    assert card["model"] == "stunet" and card["data"]["synthetic"]
    assert preprocessing.size == 64 and "bids-perfusion-train stunet" in card["command"]
    assert card["metrics"]["parameters"] == stunet.parameter_count(model)
    # trained on doses simulated as the pipeline simulates them (docs/dsc-methods.md §7)
    assert card["data"]["low_dose_model"] == "exponential"
    assert "temporal Savitzky-Golay" in card["data"]["low_dose"]


def test_train_help_lists_strip_models_without_torch():
    code = ("import sys; import bids_perfusion.cli.train as t; h = t.build_parser()"
            ".format_help(); assert 'stunet' in h and '--reference-desc' in h;"
            " assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- end to end --------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_phantom_train_and_participant_run(tmp_path):
    """Tiny phantom -> train a tiny stU-Net -> participant run with stunet at full and a
    simulated half dose -> CBV maps with units and model sidecars."""
    import nibabel as nib

    from bids_perfusion.cli import run, train
    from bids_perfusion.phantom import PhantomConfig, write_dataset

    config = PhantomConfig(grades=("HGG", "LGG", "HGG"), matrix=(24, 24, 6), fov_mm=220.0,
                           slab_mm=64.0).with_(dsc={"n_frames": 30}, asl=None)
    root = write_dataset(tmp_path / "bids", config)
    model = tmp_path / "model"
    assert train.main(["stunet", str(root), str(model), "--epochs", "1", "--device", "cpu",
                       "--widths", "2", "4", "--in-plane-size", "16", "--strip-width", "8",
                       "--test-stride", "4", "--train-doses", "1", "0.5", "--batch-size",
                       "8", "--val-fraction", "0.34", "--test-fraction", "0", "--quiet"]) == 0
    card = json.loads((model / "stunet.json").read_text())
    assert card["data"]["reference"]["desc"] == "truth" and card["data"]["doses"] == [1, 0.5]
    assert card["data"]["low_dose_model"] == "exponential"  # the default of --train-doses
    out = tmp_path / "out"
    assert run.main([str(root), str(out), "participant", "--skip-bids-validation",
                     "--participant-label", "01", "-w", str(tmp_path / "work"),
                     "--nprocs", "1", "--dsc-methods", "stunet", "--device", "cpu",
                     "--stunet-weights", str(model / "stunet.safetensors"),
                     "--simulate-dose", "0.5", "--no-leakage-correction"]) == 0
    perf = out / "sub-01" / "perf"
    for label in ("", "_rec-dose50"):
        name = f"sub-01_ce-gadolinium{label}_desc-stunet_cbv"
        sidecar = json.loads((perf / f"{name}.json").read_text())
        assert sidecar["Units"] == "mL/100 g"
        assert sidecar["ModelWeightsSHA256"] == card["sha256"] and sidecar["Device"] == "cpu"
        cbv = np.asarray(nib.load(perf / f"{name}.nii.gz").dataobj)
        brain = np.asarray(nib.load(perf / "sub-01_ce-gadolinium_desc-brain_mask.nii.gz")
                           .dataobj) > 0
        assert cbv.shape == brain.shape and np.all(cbv[~brain] == 0)
        assert 0.5 < np.median(cbv[brain]) < 20  # mL/100 g


def test_reference_map_matches_the_runs_entities(tmp_path):
    from bids_perfusion.nn.recipes import KeyedRun, TrainingRequest
    from bids_perfusion.nn.recipes.strips import StripOptions, reference_map
    from bids_perfusion.workflows.options import DSCRun

    def touch(relative):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        return path

    raw = touch("bids/sub-01/perf/sub-01_ce-gadolinium_dsc.nii.gz")
    out = "derivatives/out/sub-01/perf/sub-01_ce-gadolinium"
    full = touch(f"bids/{out}_desc-areaRatio_cbv.nii.gz")
    touch(f"bids/{out}_rec-dose50_desc-areaRatio_cbv.nii.gz")  # a simulated dose: never
    touch("bids/derivatives/out/sub-01/perf/sub-01_ce-other_desc-areaRatio_cbv.nii.gz")
    truth = touch("bids/derivatives/phantom-truth/sub-01/perf/sub-01_desc-truth_cbv.nii.gz")
    run = KeyedRun("sub-01", DSCRun("01", None, (str(raw),), metadata=None))

    def request(**options):
        return TrainingRequest(model="stunet", bids_dirs=(tmp_path / "bids",),
                               output=tmp_path / "model", options=StripOptions(**options))

    assert reference_map(request(reference_derivatives=Path("derivatives/out"),
                                 reference_desc="areaRatio"), run) == full
    assert reference_map(request(), run) == truth  # the defaults: the phantom's truth
    with pytest.raises(FileNotFoundError, match="--reference-desc"):
        reference_map(request(reference_desc="osvd"), run)
