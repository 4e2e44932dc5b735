"""Spatio-temporal super-resolution (neural ODE + LIIF): model, data and training recipe."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from bids_perfusion.nn import superres, training
from bids_perfusion.nn import superres_data as data

TINY = superres.SuperResConfig(width=8, encoder_blocks=1, ode_hidden=8, mlp_hidden=(32, 32))


def tiny_model(seed=0, **changes):
    torch.manual_seed(seed)
    return superres.SuperResolution(dataclasses.replace(TINY, **changes))


def smooth_series(rows=16, cols=16, slices=2, frames=9):
    """A positive, band-limited series whose blobs darken and brighten over time."""
    i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    image = 2 + np.cos(2 * np.pi * i / rows) * np.sin(2 * np.pi * j / cols)
    time = 1 - 0.4 * np.sin(np.pi * np.arange(frames) / (frames - 1))
    series = image[:, :, None, None] * time * (1 + 0.1 * np.arange(slices))[:, None]
    return series.astype(np.float32)


# --- model -------------------------------------------------------------------------------


@pytest.mark.parametrize("low, high", [((7, 9), (17, 20)), ((5, 5), (12, 7)), ((6, 8), (6, 8))])
def test_shapes_for_odd_sizes_and_non_integer_scales(one_thread, low, high):
    model = tiny_model()
    frame0, frame1 = torch.rand(2, *low), torch.rand(2, *low)
    coords, cell = superres.grid_coordinates(*high)
    queries = coords[None].expand(2, -1, -1)
    out = model(frame0, frame1, torch.tensor([0.3, 0.8]), queries, cell.expand_as(queries))
    assert out.shape == (2, high[0] * high[1]) and torch.isfinite(out).all()
    rendered = superres.render_slice(model, frame0[0], frame1[0], 0.3, high, max_queries=17)
    assert rendered.shape == high
    # tiling over queries does not change the result
    whole = superres.render_slice(model, frame0[0], frame1[0], 0.3, high)
    torch.testing.assert_close(rendered, whole)
    torch.testing.assert_close(whole.reshape(-1), out[0].detach())


def test_grid_coordinates_are_pixel_centres():
    coords, cell = superres.grid_coordinates(2, 4)
    assert coords[:4].tolist() == [[-0.5, -0.75], [-0.5, -0.25], [-0.5, 0.25], [-0.5, 0.75]]
    assert cell.tolist() == [1.0, 0.5]


@pytest.mark.parametrize("method", superres.ODE_METHODS)
def test_flows_start_at_the_embedded_inputs(one_thread, method):
    """The forward flow at t = 0 is Z̃_0, the backward flow at t = 1 is Z̃_1, and in between
    they move."""
    model = tiny_model(ode_method=method)
    frame0, frame1 = torch.rand(2, 6, 7), torch.rand(2, 6, 7)
    with torch.no_grad():
        start0, start1 = model.embed(frame0, 1.0), model.embed(frame1, -1.0)
        assert start0.shape == (2, TINY.width + 1, 6, 7)
        assert torch.all(start0[:, -1] == 1) and torch.all(start1[:, -1] == -1)
        assert torch.equal(model.forward_flow(start0, 0.0), start0)
        assert torch.equal(model.backward_flow(start1, 1.0), start1)
        # per-item times: the item at its start is unchanged, the other moved
        forward = model.forward_flow(start0, torch.tensor([0.0, 1.0]))
        backward = model.backward_flow(start1, torch.tensor([0.5, 1.0]))
    assert torch.equal(forward[0], start0[0]) and not torch.allclose(forward[1], start0[1])
    assert torch.equal(backward[1], start1[1]) and not torch.allclose(backward[0], start1[0])


def test_flows_of_a_batch_equal_each_item_integrated_alone(one_thread):
    """Items at their start are not integrated (dZ/ds = 0); the others keep their place
    in the batch and the numbers they have when integrated alone, gradients included."""
    model = tiny_model()
    start = model.embed(torch.rand(4, 6, 7), 1.0).detach()
    times = torch.tensor([0.0, 0.25, 0.0, 0.75])
    batch = model.forward_flow(start, times)
    with torch.no_grad():
        for item, t in enumerate(times):
            alone = model._solve(model.forward_field, 0.0, start[item:item + 1], t[None])
            torch.testing.assert_close(batch[item:item + 1], alone)
    batch.sum().backward()
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in model.forward_field.parameters())


def test_linear_ablation_interpolates_the_embedded_inputs(one_thread):
    """The ablation's temporal feature is Z̃_0 at t = 0, Z̃_1 at t = 1, their mean at
    t = ½, per item; it has no flow fields."""
    model = tiny_model(temporal="linear")
    assert not hasattr(model, "forward_field") and model.fusion.in_channels == TINY.width + 1
    assert superres.parameter_count(model) < superres.parameter_count(tiny_model())
    frame0, frame1 = torch.rand(2, 6, 7), torch.rand(2, 6, 7)
    with torch.no_grad():
        start0, start1 = model.embed(frame0, 1.0), model.embed(frame1, -1.0)
        assert torch.equal(model.interpolated_features(start0, start1, 0.0), start0)
        assert torch.equal(model.interpolated_features(start0, start1, 1.0), start1)
        mixed = model.interpolated_features(start0, start1, torch.tensor([0.0, 0.5]))
        assert torch.equal(mixed[0], start0[0])
        torch.testing.assert_close(mixed[1], (start0[1] + start1[1]) / 2)
        torch.testing.assert_close(model.features(frame0, frame1, 1.0),
                                   model.fusion(start1))


def test_unknown_temporal_model_is_refused():
    with pytest.raises(ValueError, match="temporal"):
        superres.SuperResConfig(temporal="spline")


def test_load_model_rebuilds_the_temporal_model_of_the_card(tmp_path, one_thread):
    from bids_perfusion.nn.weights import save_weights

    model = tiny_model(temporal="linear")
    path = tmp_path / "superres.safetensors"
    save_weights(model.state_dict(), path, {"model": superres.MODEL_NAME,
                                            "configuration": model.config.as_dict()})
    loaded, card = superres.load_model(path)
    assert loaded.config == model.config and card["configuration"]["temporal"] == "linear"
    frame0, frame1 = torch.rand(5, 6), torch.rand(5, 6)
    torch.testing.assert_close(superres.render_slice(loaded, frame0, frame1, 0.5, (9, 11)),
                               superres.render_slice(model, frame0, frame1, 0.5, (9, 11)))


def test_adjoint_gives_the_same_gradients(one_thread):
    frame0, frame1 = torch.rand(1, 5, 6), torch.rand(1, 5, 6)
    coords = torch.rand(1, 10, 2) * 2 - 1
    cells = torch.full((1, 10, 2), 0.2)
    grads = []
    for adjoint in (False, True):
        model = tiny_model(adjoint=adjoint)
        model(frame0, frame1, torch.tensor([0.4]), coords, cells).sum().backward()
        grads.append(model.forward_field.net[0].weight.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_same_seed_same_output(one_thread):
    frame0, frame1 = torch.rand(1, 5, 6), torch.rand(1, 5, 6)
    outputs = [superres.render_slice(tiny_model(seed=3), frame0[0], frame1[0], 0.25, (9, 11))
               for _ in range(2)]
    assert torch.equal(*outputs)


# --- data --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", data.DEGRADATIONS)
def test_degradation_of_a_constant_is_the_constant(method):
    series = np.full((10, 14, 2, 3), 3.5, dtype=np.float32)
    low = data.degrade_space(series, 2, method)
    assert low.shape == (5, 7, 2, 3)
    np.testing.assert_allclose(low, 3.5, rtol=1e-6)


def test_kspace_truncation_keeps_band_limited_images_at_the_block_centres():
    """A band-limited image survives k-space truncation: the LR voxel i is the image at
    the centre of HR voxels 2i and 2i + 1, and the mean is kept."""
    n = np.arange(16)
    image = (2 + np.cos(2 * np.pi * n / 16))[:, None] * (3 + np.sin(4 * np.pi * n / 16))[None]
    centre = 2 * np.arange(8) + 0.5
    expected = ((2 + np.cos(2 * np.pi * centre / 16))[:, None]
                * (3 + np.sin(4 * np.pi * centre / 16))[None])
    low = data.kspace_truncate(image, 2)
    np.testing.assert_allclose(low, expected, atol=1e-12)
    assert low.mean() == pytest.approx(image.mean(), abs=1e-12)


def test_block_average():
    image = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(data.block_average(image, 2), [[2.5, 4.5], [10.5, 12.5]])


def test_temporal_subsampling_keeps_every_fourth_frame():
    series = np.broadcast_to(np.arange(13.0), (2, 2, 1, 13))
    assert data.subsample_time(series, 4)[0, 0, 0].tolist() == [0, 4, 8, 12]


def test_pair_crops_scales_and_items_match_the_high_resolution_frames():
    series = smooth_series(rows=17, cols=16, frames=10)
    degradation = data.Degradation(space=2, time=4, baseline_frames=1)
    pair = data.make_pair(series * 250, degradation)
    assert pair.high.shape == (16, 16, 2, 10) and pair.low.shape == (8, 8, 2, 3)
    assert pair.scale == pytest.approx(data.baseline_scale(
        data.degrade_space(series[:16] * 250, 2)[..., :1], 1))
    np.testing.assert_allclose(pair.high * pair.scale, series[:16] * 250, rtol=1e-6)
    items = data.sample_items(pair, 40, 3, 20, np.random.default_rng(0))
    assert items["frame0"].shape == (40, 3, 3) and items["coords"].shape == (40, 20, 2)
    assert set(items["t"].tolist()) <= {0, 0.25, 0.5, 0.75, 1}
    np.testing.assert_allclose(items["cells"], 2 / 6)
    # every item's frames and values are found in the pair at one slice, pair and patch
    side = 6
    for n in range(40):
        index = np.round((items["coords"][n] + 1) * side / 2 - 0.5).astype(int)
        found = False
        for z in range(2):
            for k in range(2):  # 10 HR frames: LR pairs (0, 1) and (1, 2)
                hr = pair.high[..., z, 4 * k + round(4 * items["t"][n])]
                for top in range(6):
                    for left in range(6):
                        low = pair.low[top:top + 3, left:left + 3, z]
                        target = hr[2 * top:2 * top + side, 2 * left:2 * left + side]
                        found |= (np.array_equal(low[..., k], items["frame0"][n])
                                  and np.array_equal(low[..., k + 1], items["frame1"][n])
                                  and np.array_equal(target[index[:, 0], index[:, 1]],
                                                     items["values"][n]))
        assert found


# --- training ----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=superres.TEMPORAL_MODELS)
def trained(request):
    """A tiny model (neural ODE, or the linear ablation) trained for a few epochs on a
    smooth series; its history and init."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pair = data.make_pair(smooth_series(), data.Degradation())
    rng = np.random.default_rng(0)
    arrays = {part: {k: torch.from_numpy(v) for k, v in
                     data.sample_items(pair, 64, 6, 48, rng).items()} for part in ("t", "v")}
    model = tiny_model(temporal=request.param)
    untrained = tiny_model(temporal=request.param)
    config = training.TrainingConfig(epochs=10, batch_size=8, lr=3e-3, progress=False)
    result = training.train(model, superres.l1_loss, arrays["t"], arrays["v"], config, "cpu")
    torch.set_num_threads(threads)
    return pair, untrained, model, result


def test_tiny_training_lowers_the_loss(trained):
    history = trained[3].history
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert trained[3].best_val_loss < 0.5 * history[0]["val_loss"]


def test_querying_the_input_grid_and_times_reproduces_the_inputs(trained):
    pair, untrained, model, _ = trained
    frames = torch.from_numpy(pair.low[:, :, 0])
    errors = {}
    for name, net in (("untrained", untrained), ("trained", model)):
        errors[name] = max(
            float((superres.render_slice(net, frames[..., 0], frames[..., 1], t,
                                         frames.shape[:2]) - frames[..., k]).abs().mean())
            for t, k in ((0.0, 0), (1.0, 1)))
    assert errors["trained"] < 0.3 * errors["untrained"]


# --- recipe, end to end ------------------------------------------------------------------


def test_recipe_is_registered_with_its_options():
    from bids_perfusion.cli.train import build_parser
    from bids_perfusion.nn.recipes import RECIPES
    from bids_perfusion.nn.weights import BUNDLED

    assert "superres" in RECIPES and BUNDLED["superres"][1] == ("superres",)
    args = build_parser().parse_args(["superres", "bids", "out", "--mlp-hidden", "8", "8",
                                      "--degradation", "block", "--temporal", "linear"])
    assert args.mlp_hidden == [8, 8] and args.degradation == "block"
    assert args.temporal == "linear"


def test_bundled_weights_match_their_card():
    """The shipped neural-ODE + LIIF weights load (sha256 checked) and say that they are
    phantom-trained, on the degradation of the abstract."""
    model, card = superres.load_model()
    assert card["model"] == "superres" and card["data"]["synthetic"]
    assert model.config.temporal == "ode" and "phantom" in card["data"]["trained_on"]
    assert "bids-perfusion-train superres" in card["command"]
    assert card["configuration"]["degradation"] == {"space": 2, "time": 4,
                                                    "method": "kspace", "baseline_frames": 3}
    assert card["metrics"]["parameters"] == superres.parameter_count(model)


def test_bundled_training_ranges_are_the_inputs_the_model_read():
    """The pipeline checks the acquired frame interval against ``RepetitionTime``: the
    card must hold that of the LR inputs of training (s_t × the phantom's TR, its frames
    every s_t-th), as its phantom command states them."""
    import shlex

    _model, card = superres.load_model()
    command = shlex.split(card["data"]["phantom_command"])
    tr, frames = (float(command[command.index(flag) + 1]) for flag in ("--tr", "--n-frames"))
    step = card["configuration"]["degradation"]["time"]
    ranges = card["training_ranges"]
    assert ranges["RepetitionTime"] == [step * tr] * 2
    assert ranges["Frames"] == [len(range(0, int(frames), step))] * 2


@pytest.mark.slow
def test_tiny_phantom_trains_end_to_end_and_the_weights_load_back(tmp_path, one_thread):
    from bids_perfusion.cli import train
    from bids_perfusion.nn.weights import config_from_dict, load_weights
    from bids_perfusion.phantom import PhantomConfig, write_dataset

    config = PhantomConfig(grades=("HGG", "LGG"), matrix=(24, 24, 4), fov_mm=220.0,
                           slab_mm=48.0).with_(dsc={"n_frames": 21}, asl=None)
    root = write_dataset(tmp_path / "bids", config)
    out = tmp_path / "model"
    assert train.main(["superres", str(root), str(out), "--epochs", "2", "--device", "cpu",
                       "--latent-width", "4", "--encoder-blocks", "1", "--ode-hidden", "4",
                       "--mlp-hidden", "16", "--patch-size", "4", "--queries-per-item",
                       "16", "--items-per-run", "8", "--batch-size", "4", "--val-fraction",
                       "0.34", "--test-fraction", "0", "--quiet"]) == 0
    card = json.loads((out / "superres.json").read_text())
    assert card["model"] == "superres" and card["data"]["synthetic"]
    assert card["configuration"]["degradation"] == {"space": 2, "time": 4,
                                                    "method": "kspace", "baseline_frames": 3}
    assert card["data"]["samples"] == {"train": 8, "val": 8, "test": 0}
    assert all(scale > 0 for _, scale in card["data"]["scales"])
    assert (out / "losses.tsv").read_text().count("\n") == 3
    state, card = load_weights(out / "superres.safetensors", "superres")
    model = superres.SuperResolution(config_from_dict(superres.SuperResConfig,
                                                      card["configuration"]))
    model.load_state_dict(state)
    assert card["metrics"]["parameters"] == superres.parameter_count(model)


def test_decoder_equals_its_mlp_on_the_concatenated_inputs(one_thread):
    """The first layer is applied to the latent codes before they are gathered: the
    decoder must equal g_ψ([z^γ; x_q − v^γ; cell]) evaluated query by query, with the
    area-weighted ensemble over the four nearest codes."""
    import torch.nn.functional as F

    decoder = tiny_model().decoder
    features = torch.randn(2, 8, 5, 7)
    coords = torch.rand(2, 30, 2) * 2 - 1
    cells = torch.full((2, 30, 2), 0.2)
    unfolded = F.unfold(features, 3, padding=1)  # (B, 9c, h w)
    sizes = torch.tensor([5.0, 7.0])
    low = torch.floor((coords + 1) / 2 * sizes - 0.5)
    predictions, areas = [], []
    for offset in ([0, 0], [0, 1], [1, 0], [1, 1]):
        index = torch.minimum((low + torch.tensor(offset)).clamp(min=0), sizes - 1)
        flat = (index[..., 0] * 7 + index[..., 1]).long()
        code = torch.stack([unfolded[b, :, flat[b]].T for b in range(2)])
        relative = (coords - (-1 + (2 * index + 1) / sizes)) * sizes / 2
        inputs = torch.cat([code, relative, cells * sizes / 2], dim=-1)
        predictions.append(decoder.mlp(inputs)[..., 0])
        areas.append((relative[..., 0] * relative[..., 1]).abs() + 1e-9)
    expected = sum(p * a for p, a in zip(predictions, reversed(areas), strict=True)) / sum(areas)
    torch.testing.assert_close(decoder(features, coords, cells), expected)
