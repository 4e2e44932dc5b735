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
        # negative intensities, impossible for magnitude images, become 0
        np.testing.assert_allclose(out[:, :, 1, int(4 * (pair + t))],
                                   np.maximum(expected, 0) * scale, rtol=1e-5, atol=1e-6)
    assert out.min() == 0  # the random model predicts negative intensities somewhere


def test_output_affine_keeps_the_field_of_view():
    affine = np.array([[-3.0, 0, 0, 90], [0, 3.0, 0, -100], [0, 0, 5.0, -40], [0, 0, 0, 1]])
    new = inference.output_affine(affine, (8, 6, 4), (16, 9, 4))
    np.testing.assert_allclose(np.sqrt((new[:3, :3] ** 2).sum(axis=0)), [1.5, 2.0, 5.0])

    def corner(a, voxel):  # the outer edge of a voxel along the in-plane axes
        return (a @ [*voxel, 1])[:3]
    # the first voxel's outer corner, half a voxel before its centre, is the same point
    np.testing.assert_allclose(corner(new, (-0.5, -0.5, 0)), corner(affine, (-0.5, -0.5, 0)))
    np.testing.assert_allclose(corner(new, (15.5, 8.5, 3)), corner(affine, (7.5, 5.5, 3)))


def test_nearest_resampling_of_masks():
    mask = np.zeros((4, 3, 2), dtype=bool)
    mask[1, 2, 1] = True
    out = inference.resample_nearest(mask, (8, 6, 2))
    assert out.shape == (8, 6, 2) and out.sum() == 4 and out[2:4, 4:6, 1].all()
    assert inference.resample_nearest(mask, (6, 5, 2)).sum() == 4  # rows 1, 2; columns 3, 4


def test_acquired_frames_nmse_is_zero_for_a_consistent_series_and_grows_with_errors():
    series = random_series((8, 6, 2, 5))
    blocks = np.repeat(np.repeat(series, 2, axis=0), 2, axis=1)  # each pixel as 2 × 2
    superresolved = np.repeat(blocks, 3, axis=-1)[..., :13]  # frames 0, 3, ... acquired
    assert inference.acquired_frames_nmse(series, superresolved, 3) == pytest.approx(0,
                                                                                     abs=1e-12)
    assert inference.acquired_frames_nmse(series, 1.1 * superresolved, 3) == pytest.approx(
        0.01, rel=1e-4)
    with pytest.raises(ValueError, match="do not match"):
        inference.acquired_frames_nmse(series, superresolved[..., :12], 3)
