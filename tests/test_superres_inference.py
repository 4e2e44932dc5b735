"""Whole-series super-resolution: the model's renderer and the interpolation baselines on
the same output grid."""

import numpy as np
import pytest
import torch

from bids_perfusion.nn import superres
from bids_perfusion.nn import superres_inference as inference
from bids_perfusion.nn.superres_data import baseline_scale


def random_series(shape=(7, 9, 2, 5), seed=0):
    return (np.random.default_rng(seed).random(shape) + 1).astype(np.float32)


@pytest.mark.parametrize("space, time, expected", [(2, 4, (14, 18, 2, 17)),
                                                   (1.5, 3, (10, 14, 2, 13)),
                                                   (1, 1, (7, 9, 2, 5))])
def test_output_grid(space, time, expected):
    assert inference.output_shape((7, 9, 2, 5), space, time) == expected
    assert inference.interpolate(random_series(), space, time).shape == expected


@pytest.mark.parametrize("bad", [(0, 4), (2, 1.5), (2, 0)])
def test_output_grid_refuses_bad_factors(bad):
    with pytest.raises(ValueError, match="scale"):
        inference.output_shape((7, 9, 2, 5), *bad)


@pytest.mark.parametrize("method", ["linear", "cubic"])
def test_interpolation_at_factor_one_returns_the_input(method):
    series = random_series()
    np.testing.assert_array_equal(inference.interpolate(series, 1, 1, method), series)


def test_interpolation_keeps_the_acquired_frames_and_is_exact_for_ramps():
    series = random_series()
    out = inference.interpolate(series, 2, 4)
    # output frame 4k is acquired frame k, interpolated in plane only
    np.testing.assert_array_equal(out[..., ::4], inference.interpolate(series, 2, 1))
    ramp = np.broadcast_to(np.arange(5, dtype=np.float32), (7, 9, 2, 5)).copy()
    np.testing.assert_allclose(inference.interpolate(ramp, 1.5, 4),
                               np.broadcast_to(np.arange(17) / 4, (10, 14, 2, 17)), atol=1e-6)
    rows = np.broadcast_to(np.arange(8.0, dtype=np.float32)[:, None, None, None],
                           (8, 8, 1, 2)).copy()
    centres = (np.arange(16) + 0.5) / 2 - 0.5  # output pixel centres in input pixels
    np.testing.assert_allclose(inference.interpolate(rows, 2, 1)[1:-1, 0, 0, 0],
                               centres[1:-1], atol=1e-6)


@pytest.mark.parametrize("temporal", superres.TEMPORAL_MODELS)
def test_model_renders_every_frame_as_render_slice_does(one_thread, temporal):
    torch.manual_seed(0)
    model = superres.SuperResolution(superres.SuperResConfig(
        width=8, encoder_blocks=1, ode_hidden=8, mlp_hidden=(16,), temporal=temporal))
    series = random_series()
    done = []
    out = inference.super_resolve(model, series, 1.5, 4, max_queries=50,
                                  progress=done.append)
    assert out.shape == (10, 14, 2, 17) and done == [1, 2]
    scale = baseline_scale(series)
    frames = torch.from_numpy(series / scale)
    for pair, t in [(0, 0.0), (1, 0.5), (3, 0.75), (3, 1.0)]:
        expected = superres.render_slice(model, frames[:, :, 1, pair],
                                         frames[:, :, 1, pair + 1], t, (10, 14)).numpy()
        np.testing.assert_allclose(out[:, :, 1, int(4 * (pair + t))], expected * scale,
                                   rtol=1e-5, atol=1e-6)
