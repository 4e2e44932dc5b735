"""PHAE across acquisitions: exact scale invariance, the window on the AIF, the synthetic
training curves and the training ranges of every bundled model card."""

import json
import logging

import numpy as np
import pytest
import torch

from bids_perfusion.dsc import kinetics, maps
from bids_perfusion.nn import phae, phae_synthetic, training_ranges, weights

TINY = phae.PHAEConfig(channels=(4, 8, 8, 8), pool_size=4, window=48, dt=1.0)


def _subject(seed=0, **ranges):
    fixed = {"snr": (1e6, 1e6), "aif_snr": (1e6, 1e6), "relaxivity_ratio": (1.0, 1.0),
             "frames": (120, 120), "aif_arrival": (8.0, 8.0), "repetition_time": (1.0, 1.0),
             **ranges}
    return phae_synthetic.simulate_subject(np.random.default_rng(seed), 32,
                                           phae_synthetic.CurveRanges(**fixed))


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    model = phae.PHAE(TINY)
    model.train()
    model(torch.rand(64, TINY.window), torch.rand(TINY.window))  # move BatchNorm statistics
    return model.eval()


def test_cbf_scales_exactly_with_the_aif_and_the_tissue_curves(network):
    """AIF × k: CBF / k; tissue × k: CBF × k; MTT unchanged (bit for bit for k = 4)."""
    subject = _subject()
    tissue, aif, times = subject["tissue"], subject["aif"], subject["frame_times"]
    base = phae.estimate_maps(network, tissue, aif, times)
    for k in (4.0, 3.7, 0.2):
        scaled_aif = phae.estimate_maps(network, tissue, k * aif, times)
        scaled_tissue = phae.estimate_maps(network, (k * tissue).astype(np.float32), aif,
                                           times)
        tolerance = 0 if k == 4.0 else 1e-5
        np.testing.assert_allclose(scaled_aif["mtt"], base["mtt"], rtol=tolerance)
        np.testing.assert_allclose(scaled_tissue["mtt"], base["mtt"], rtol=tolerance)
        np.testing.assert_allclose(scaled_aif["cbf"] * k, base["cbf"], rtol=1e-5)
        np.testing.assert_allclose(scaled_tissue["cbf"], k * base["cbf"], rtol=1e-5)


def test_the_window_follows_the_aif_peak_whatever_the_frames_and_arrival(network):
    """Ten more baseline frames (a later arrival, more frames): the same encoder inputs."""
    subject = _subject()
    tissue, aif, times = subject["tissue"], subject["aif"], subject["frame_times"]
    inputs = phae.encoder_inputs(tissue, aif, times, TINY)
    pad = np.zeros(10)
    later = phae.encoder_inputs(np.pad(tissue, ((0, 0), (10, 0))), np.concatenate([pad, aif]),
                                np.arange(times.size + 10) * 1.0, TINY)
    for a, b in zip(inputs, later, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.argmax(inputs[1]) == round(TINY.lead / TINY.dt) and inputs[1].max() == 1.0
    np.testing.assert_allclose(np.abs(inputs[0]).max(axis=1), 1.0, rtol=1e-6)
    # Another frame interval is resampled onto the model's before windowing.
    coarse = phae.encoder_inputs(tissue[:, ::2], aif[::2], times[::2], TINY)
    assert coarse[0].shape == inputs[0].shape
    with pytest.raises(ValueError, match="positive bolus"):
        phae.encoder_inputs(tissue, np.zeros_like(aif), times, TINY)


def test_resample_matches_numpy_interp_row_by_row():
    rng = np.random.default_rng(1)
    curves, times = rng.normal(size=(5, 40)), np.arange(40) * 1.6
    got = phae.resample(curves, times, 1.0)
    grid = np.arange(63) * 1.0
    np.testing.assert_allclose(got, np.stack([np.interp(grid, times, c) for c in curves]),
                               rtol=1e-12, atol=1e-12)


def test_synthetic_subject_keeps_its_truth():
    """Noise-free: the area-ratio CBV of the measured curves is the drawn CBV (the
    relaxivity ratio 1), the acquisition is the drawn one and the delays shift the curves."""
    subject = _subject(seed=3, delay=(0.0, 0.0), mtt=(2.0, 6.0), recirculation_fraction=(0, 0))
    cbv = maps.cbv_area_ratio(subject["tissue"], subject["aif"], subject["frame_times"])
    np.testing.assert_allclose(cbv, subject["cbv"], rtol=0.02)
    np.testing.assert_allclose(subject["cbf"], 60 * subject["cbv"] / subject["mtt"])
    acquisition = subject["acquisition"]
    assert acquisition["Frames"] == 120 and acquisition["RepetitionTime"] == 1.0
    assert acquisition["AIFArrival"] == 8.0 and subject["tissue"].shape == (32, 120)
    delayed = _subject(seed=3, delay=(3.0, 3.0), mtt=(2.0, 6.0), recirculation_fraction=(0, 0))
    peak = np.argmax(subject["tissue"], axis=1)
    assert np.all(np.argmax(delayed["tissue"], axis=1) - peak == 3)
    again = _subject(seed=3, delay=(3.0, 3.0), mtt=(2.0, 6.0), recirculation_fraction=(0, 0))
    np.testing.assert_array_equal(again["tissue"], delayed["tissue"])


def test_synthetic_arrays_are_encoder_inputs():
    values = phae_synthetic.synthetic_arrays(TINY, 2, 8, seed=5)
    assert values["tissue"].shape == (16, TINY.window) == values["aif"].shape
    assert values["tissue"].dtype == np.float32 and np.all(np.isfinite(values["tissue"]))
    np.testing.assert_allclose(values["aif"].max(axis=1), 1.0)
    low, high = phae_synthetic.CurveRanges().mtt
    assert np.all((values["mtt"] >= low) & (values["mtt"] <= high))


def test_outside_ranges_names_the_quantity_value_and_range(caplog):
    ranges = {"RepetitionTime": [1.0, 2.0], "EchoTime": [0.02, 0.045], "Frames": [50, 120]}
    inside = {"RepetitionTime": 1.5, "EchoTime": 0.045, "Frames": 121, "AIFPeak": 40.0}
    assert training_ranges.outside_ranges(inside, ranges) == []  # 2 % slack; AIFPeak unknown
    outside = training_ranges.outside_ranges({"RepetitionTime": 2.5, "EchoTime": 0.06,
                                              "Frames": float("nan")}, ranges)
    assert outside == ["RepetitionTime 2.5 s outside [1, 2]",
                       "EchoTime 0.06 s outside [0.02, 0.045]"]
    with caplog.at_level(logging.WARNING, logger="bids_perfusion.nn"):
        flagged = training_ranges.check_input({"training_ranges": ranges},
                                              {"RepetitionTime": 2.5}, "PHAE")
    assert flagged == ["RepetitionTime 2.5 s outside [1, 2]"]
    assert "PHAE: input RepetitionTime 2.5 s outside" in caplog.text
    assert training_ranges.check_input({}, {"RepetitionTime": 9.0}, "old card") == []
    assert training_ranges.envelope([{"Frames": 55}, {"Frames": [50, 120]}, {"SNR": 10}]) == {
        "Frames": [50, 120], "SNR": [10, 10]}


def test_dsc_acquisition_of_an_aif():
    times = 0.9 + np.arange(70) * 1.5
    aif = 6.0 * kinetics.gamma_variate(times, 18.0, 3.0, 1.5)
    acquisition = training_ranges.dsc_acquisition(aif, times, 3.0, 0.03)
    assert acquisition["RepetitionTime"] == pytest.approx(1.5)
    assert acquisition["Frames"] == 70 and acquisition["AIFPeak"] == aif.max()
    assert acquisition["AIFArrival"] == pytest.approx(18.0, abs=1.0)
    assert acquisition["MagneticFieldStrength"] == 3.0 and acquisition["EchoTime"] == 0.03


@pytest.mark.parametrize("method", sorted(weights.BUNDLED))
def test_every_bundled_model_card_states_its_training_ranges(method):
    card = json.loads(weights.card_path(weights.bundled_weights(method)).read_text())
    ranges = card["training_ranges"]
    assert ranges and set(ranges) <= set(training_ranges.QUANTITIES)
    assert all(low <= high for low, high in ranges.values())


def test_supervised_term_counts_only_the_rows_with_truth(network):
    tissue, aif = torch.rand(4, TINY.window), torch.rand(TINY.window).expand(4, -1)
    batch = {"tissue": tissue, "aif": aif}
    truth = {"mtt": torch.tensor([np.nan, np.nan, 2.0, 8.0]),
             "delay": torch.tensor([np.nan, np.nan, 0.0, 3.0])}
    plain = phae.loss(network, batch)
    with torch.no_grad():
        mtt, delay = network.encode(tissue, aif)
    error = sum(abs(np.log(mtt[i].item() / truth["mtt"][i].item()))
                + abs(delay[i].item() - truth["delay"][i].item()) / phae.DELAY_SCALE
                for i in (2, 3))
    got = phae.loss(network, {**batch, **truth}, truth_weight=0.5)
    assert got.item() == pytest.approx(plain.item() + 0.5 * error / 4, rel=1e-5)
    assert phae.loss(network, {**batch, **truth}).item() == plain.item()  # weight 0
