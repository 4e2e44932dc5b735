"""DeepASL (Ulas et al., MICCAI 2018): networks, the torch CBF model and the loss (Eq. 2)."""

import numpy as np
import pytest
import torch

from bids_perfusion.asl import consensus
from bids_perfusion.nn import deepasl

# --- architecture ------------------------------------------------------------------------


def test_residual_fcn_is_eight_prelu_convolutions_then_one_to_one_channel():
    model = deepasl.ResidualFCN()
    convs = model.convolutions()
    assert len(convs) == 9
    assert [c.out_channels for c in convs] == [48] * 8 + [1]
    assert all(c.kernel_size == (3, 3) and c.dilation == (1, 1) for c in convs)
    prelus = [m for m in model.layers if isinstance(m, torch.nn.PReLU)]
    assert len(prelus) == 8 and all(p.num_parameters == 48 for p in prelus)
    assert isinstance(model.layers[-1], torch.nn.Conv2d)  # no activation after the last
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    # receptive field: nine 3x3 convolutions of stride 1 -> 1 + 9 * 2
    assert model.receptive_field() == 19
    # parameters: 3x3 kernels and biases of 1->48, 7 x 48->48, 48->1; one slope per channel
    expected = (9 * 1 * 48 + 48) + 7 * (9 * 48 * 48 + 48) + (9 * 48 * 1 + 1) + 8 * 48
    assert deepasl.parameter_count(model) == expected == 146785


def test_residual_fcn_receptive_field_is_measured_by_the_gradient(one_thread):
    """The computed receptive field equals the support of d output / d input."""
    torch.manual_seed(0)
    for model in (deepasl.ResidualFCN(), deepasl.DilatedConv()):
        size = 2 * model.receptive_field() + 1
        x = torch.randn(1, 1, size, size, requires_grad=True)
        model(x)[0, 0, size // 2, size // 2].backward()
        rows = torch.nonzero(x.grad[0, 0].abs().sum(dim=1)).flatten()
        assert int(rows.max() - rows.min() + 1) == model.receptive_field()


def test_dilated_conv_has_two_pathways_with_the_dilations_of_kim_et_al():
    model = deepasl.DilatedConv()
    assert [c.dilation[0] for c in model.dilated] == [2, 4, 8, 16]
    assert [c.dilation[0] for c in model.local] == [1, 1, 1, 1]
    assert model.merge.in_channels == 128 and model.last.out_channels == 1
    # 1 + 2 (first) + 2 * (2 + 4 + 8 + 16) (dilated) + 2 + 2 (merge, last)
    assert model.receptive_field() == 67
    w = 64
    expected = ((9 * w + w) + 8 * (9 * w * w + w) + (9 * 2 * w * 2 * w + 2 * w)
                + (9 * 2 * w + 1))
    assert deepasl.parameter_count(model) == expected


def test_models_keep_the_slice_size_and_build_from_a_card():
    x = torch.zeros(2, 1, 23, 17)
    for name in deepasl.MODEL_NAMES:
        model = deepasl.build(name, {"width": 4})
        assert model(x).shape == x.shape
    with pytest.raises(ValueError, match="unknown ASL denoising model"):
        deepasl.build("unet")


# --- the torch CBF model equals the consensus formula -------------------------------------


@pytest.mark.parametrize("label_type", ["PCASL", "PASL"])
def test_kinetic_cbf_equals_the_numpy_consensus_formula(label_type):
    rng = np.random.default_rng(1)
    delta_m = rng.normal(5.0, 3.0, (6, 5, 4))
    m0 = rng.uniform(-50, 1000, (6, 5, 4))  # some M0 <= 0: CBF 0 there, as in numpy
    timing = [0.0, 0.04, 0.08, 0.12]
    duration = 1.6 if label_type == "PCASL" else 0.8
    expected = consensus.single_delay_cbf(
        delta_m, m0, label_type, 2.2, 1.65, 0.85, labeling_duration=duration,
        bolus_duration=duration, slice_timing=timing, partition=0.9)
    delay = torch.tensor(2.2 + np.asarray(timing)).reshape(1, 1, -1)
    got = deepasl.kinetic_cbf(torch.from_numpy(delta_m), torch.from_numpy(m0), delay, 1.65,
                              0.85, duration, label_type == "PASL", 0.9)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert (got.numpy()[m0 <= 0] == 0).all()


def test_kinetic_cbf_lets_gradients_flow():
    delta_m = torch.full((3,), 4.0, dtype=torch.float64, requires_grad=True)
    cbf = deepasl.kinetic_cbf(delta_m, torch.tensor([800.0, 0.0, 400.0], dtype=torch.float64),
                              1.8, 1.65, 0.85, 1.8, False)
    cbf.sum().backward()
    slope = consensus.pcasl_cbf(1.0, 800.0, 1.8, 1.8, 1.65, 0.85)
    np.testing.assert_allclose(delta_m.grad.numpy(), [slope, 0.0, 2 * slope])


# --- the loss ----------------------------------------------------------------------------


def _batch(seed=0, pasl=False):
    g = torch.Generator().manual_seed(seed)
    shape = (3, 1, 8, 8)
    scalars = {"delay": 2.2, "t1_blood": 1.65, "efficiency": 0.85,
               "duration": 0.8 if pasl else 1.6, "partition": 0.9}
    batch = {key: torch.full((3, 1, 1, 1), value) for key, value in scalars.items()}
    batch["pasl"] = torch.full((3, 1, 1, 1), pasl)
    batch.update(noisy=torch.randn(shape, generator=g), residual=torch.randn(shape, generator=g),
                 m0=100 + torch.rand(shape, generator=g), cbf=60 * torch.rand(shape, generator=g),
                 mask=(torch.rand(shape, generator=g) > 0.3).float())
    return batch


def test_loss_with_weight_one_is_the_plain_residual_loss():
    torch.manual_seed(0)
    model = deepasl.ResidualFCN(deepasl.DeepASLConfig(depth=2, width=4))
    batch = _batch()
    predicted = model(batch["noisy"])
    mask = batch["mask"]
    plain = ((batch["residual"] - predicted) ** 2 * mask).sum() / mask.sum()
    torch.testing.assert_close(deepasl.deepasl_loss(model, batch, 1.0), plain)


@pytest.mark.parametrize("pasl", [False, True])
def test_loss_is_equation_2(pasl):
    torch.manual_seed(0)
    model = deepasl.ResidualFCN(deepasl.DeepASLConfig(depth=2, width=4))
    batch = _batch(pasl=pasl)
    predicted = model(batch["noisy"]).detach().numpy()
    b = {k: v.numpy() for k, v in batch.items()}
    denoised = b["noisy"] - predicted
    label_type = "PASL" if pasl else "PCASL"
    cbf = consensus.single_delay_cbf(denoised, b["m0"], label_type, 2.2, 1.65, 0.85,
                                     labeling_duration=1.6, bolus_duration=0.8,
                                     partition=0.9)
    inside = b["mask"] > 0
    expected = (0.2 * ((b["residual"] - predicted)[inside] ** 2).mean()
                + 0.8 * ((b["cbf"] - cbf)[inside] ** 2).mean())
    with torch.no_grad():
        got = float(deepasl.deepasl_loss(model, batch, 0.2))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_denoise_returns_the_input_less_the_scaled_residual():
    model = deepasl.ResidualFCN(deepasl.DeepASLConfig(depth=1, width=2))
    volume = np.random.default_rng(0).normal(size=(10, 12, 3))
    out = deepasl.denoise(model, volume, scale=7.0)
    with torch.no_grad():
        slices = torch.from_numpy(np.moveaxis(volume, 2, 0)[:, None].astype(np.float32))
        residual = model(slices / 7.0)[:, 0].numpy()
    np.testing.assert_allclose(out, volume - 7.0 * np.moveaxis(residual, 0, 2), atol=1e-5)
    assert deepasl.intensity_scale([[0.0, 200.0, 400.0, 600.0]], [[1, 1, 1, 0]]) == 3.0
    volume[3, 4, 1] = np.nan
    out = deepasl.denoise(model, volume, scale=7.0)
    assert np.isfinite(out).all()
