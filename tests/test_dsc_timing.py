"""Timing of DSC series: steady state, baseline window, bolus arrival, time to peak.

Closed-form curves first (a geometric approach to steady state, a gamma-variate bolus,
a quadratic onset), then the phantom's ground truth (desc-truth_bat = 12 TR + delay).
"""

import numpy as np
import pytest
from helpers import raw, truth

from bids_perfusion.dsc import kinetics, timing

TR = 1.5


def _signal(n_frames=60, transient=(80.0, 0.3), baseline=12, drop=0.3, noise=0.0, seed=0):
    """Mean brain signal: 300 + a·r^n transient, then a gamma-variate bolus drop."""
    n = np.arange(n_frames)
    t = n * TR
    amplitude, ratio = transient
    s = 300.0 + amplitude * ratio**n
    s *= 1.0 - drop * kinetics.gamma_variate(t, baseline * TR, 3.0, 1.5)
    return s + np.random.default_rng(seed).normal(0.0, noise, n_frames)


def test_noise_sd_of_white_noise():
    rng = np.random.default_rng(1)
    estimates = [timing.estimate_noise_sd(rng.normal(0.0, 2.0, 80)) for _ in range(200)]
    assert np.mean(estimates) == pytest.approx(2.0, rel=0.05)


def test_steady_state_frames_closed_form():
    """Noise-free: the transient 80·0.3^n falls below 1e-4 · 300 = 0.03 at n = 7."""
    assert timing.steady_state_frames(_signal()) == 7
    # No transient: nothing to discard.
    assert timing.steady_state_frames(_signal(transient=(0.0, 0.3))) == 0


def test_steady_state_frames_with_noise():
    """With σ = 0.5 the tolerance is 3σ-ish: 80·0.3^n < 1.5 from n = 4."""
    counts = [timing.steady_state_frames(_signal(noise=0.5, seed=s)) for s in range(20)]
    assert set(counts) <= {3, 4, 5}
    assert np.median(counts) == 4


def test_baseline_window_closed_form():
    """The window runs from the end of the transient to the last frame before the drop."""
    assert timing.baseline_window(_signal()) == (7, 13)
    assert timing.baseline_window(_signal(), n_discard=9) == (9, 13)
    for seed in range(10):
        start, stop = timing.baseline_window(_signal(noise=0.5, seed=seed))
        assert 3 <= start <= 5 and stop == 13


def test_baseline_window_keeps_a_rising_drift_in_the_baseline():
    """A signal drift of +0.5 % over the 13 pre-bolus frames (a hundred times the noise of
    the curve) leaves the first frames below the plateau next to the bolus; they are
    baseline, not the bolus arrival, which stays at frame 13."""
    drift = 1.0 + 0.005 * np.minimum(np.arange(60), 12) / 12
    for seed in range(10):
        signal = _signal(transient=(0.0, 0.3), noise=0.01, seed=seed) * drift
        assert timing.baseline_window(signal) == (0, 13)
    # Two noise excursions in a row within the baseline do not end it either.
    signal = _signal(transient=(0.0, 0.3))
    signal[5:7] -= 1.0
    assert timing.baseline_window(signal) == (0, 13)


def test_baseline_window_trades_transient_bias_for_s0_noise():
    """S0 over [k, 13) has squared error e(k)² + σ_v²/(13 − k), e(k) = Σ 80·0.3^n / (13 − k).

    σ_v = 6 (SNR 50 on 300): k = 2, 3, 4 give 4.15, 3.70, 4.01, so the window starts at
    3, four frames before the end of the transient; without voxel noise it stays at 7.
    """
    assert timing.baseline_window(_signal(), voxel_noise_sd=6.0) == (3, 13)
    assert timing.baseline_window(_signal(), voxel_noise_sd=0.0) == (7, 13)
    assert timing.baseline_window(_signal(), n_discard=9, voxel_noise_sd=6.0) == (9, 13)


def test_baseline_window_rejects_short_baselines():
    with pytest.raises(ValueError, match="too few baseline frames"):
        timing.baseline_window(_signal(baseline=5, transient=(80.0, 0.5)))
    with pytest.raises(ValueError, match="too few baseline frames"):
        timing.baseline_window(_signal(baseline=1, transient=(0.0, 0.3)))
    with pytest.raises(ValueError, match="NaN"):
        timing.baseline_window(np.full(60, np.nan))


def test_bolus_end():
    curve = kinetics.gamma_variate(np.arange(60) * TR, 18.0, 3.0, 1.5)
    end = timing.bolus_end(curve, fraction=0.01)
    assert curve[end - 1] < 0.01 <= curve[end - 2]
    plateau = np.where(np.arange(60) > 15, np.maximum(curve, 0.2), curve)  # blood pool
    assert timing.bolus_end(plateau) == 60
    with pytest.raises(ValueError, match="no positive peak"):
        timing.bolus_end(-curve)


def test_bolus_arrival_of_a_quadratic_onset_is_exact():
    """C = b (t − BAT)² up to the peak: the fit recovers BAT to the grid step (TR/10)."""
    t = np.arange(40) * TR
    bat = np.array([[17.3], [20.0], [24.65]])
    curves = np.where(t > bat, 0.1 * (t - bat) ** 2, 0.0)
    curves = np.where(t < bat + 9.0, curves, 0.0)  # drop after the peak
    np.testing.assert_allclose(timing.bolus_arrival_time(curves, t), bat[:, 0], atol=TR / 10)
    # Shift invariance: the clock may start anywhere.
    np.testing.assert_allclose(timing.bolus_arrival_time(curves, t + 100.0),
                               bat[:, 0] + 100.0, atol=TR / 10)


def test_bolus_arrival_of_a_gamma_variate_within_a_frame():
    """A bare gamma variate (α = 3) starts cubic, steeper than the quadratic model: the
    estimate is early, by less than one frame (tissue curves, smoother, fare better)."""
    t = np.arange(50) * TR
    arrivals = np.linspace(15.0, 25.0, 9)
    curves = kinetics.gamma_variate(t, arrivals[:, None], 3.0, 1.5)
    error = timing.bolus_arrival_time(curves, t) - arrivals
    assert np.all((error > -TR) & (error <= TR / 10))


def test_bolus_arrival_without_bolus_is_nan_and_bad_input_is_refused():
    t = np.arange(20) * TR
    assert np.isnan(timing.bolus_arrival_time(np.zeros((2, 20)), t)).all()
    with pytest.raises(ValueError, match="frames of frame_times"):
        timing.bolus_arrival_time(np.zeros((2, 19)), t)
    with pytest.raises(ValueError, match="strictly increasing"):
        timing.bolus_arrival_time(np.zeros(20), t[::-1])
    with pytest.raises(ValueError, match="NaN"):
        timing.bolus_arrival_time(np.full(20, np.nan), t)


def test_time_to_peak_parabolic_refinement():
    """A parabola's vertex is recovered exactly; a skewed gamma variate's within TR / 7."""
    t = np.arange(30) * TR
    vertex = np.array([10.2, 20.0, 30.7])
    parabola = 50.0 - (t - vertex[:, None]) ** 2
    np.testing.assert_allclose(timing.time_to_peak(parabola, t), vertex, atol=1e-9)
    np.testing.assert_allclose(timing.time_to_peak(parabola, t, refine=False), [10.5, 19.5, 30.0])
    gamma = kinetics.gamma_variate(t, np.array([[15.0], [16.0]]), 3.0, 1.5)
    np.testing.assert_allclose(timing.time_to_peak(gamma, t), [19.5, 20.5], atol=TR / 7)
    # A maximum on the last frame is not refined.
    assert timing.time_to_peak(t, t) == t[-1]


# --- phantom ground truth ---------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["noise_free", "noisy"])
def test_baseline_window_of_the_phantom(dataset, request):
    """Transient of 6-8 frames, bolus arrival at frame 12 (+ 0.5-1 s tissue delay)."""
    root, config = request.getfixturevalue(dataset)
    for subject in ("01", "02"):
        signal = raw(root, subject, "ce-gadolinium_dsc")
        brain = truth(root, subject, "label-brain_mask") > 0
        start, stop = timing.baseline_window(signal[brain].mean(axis=0))
        assert 3 <= start <= 7
        assert stop == config.dsc.baseline_frames + 1


@pytest.mark.parametrize("dataset", ["noise_free_dsc", "noisy_dsc"])
def test_bolus_arrival_matches_phantom_truth(dataset, request):
    """Median error within a fifth of a frame noise-free and half a frame at SNR 50; most
    voxels (noise-free: all; SNR 50: ≥ 95 % of GM and ≥ 80 % of WM) within one frame."""
    noise_free = dataset == "noise_free_dsc"
    for curves in request.getfixturevalue(dataset).values():
        for tissue, mask in curves["normal"].items():
            bat = timing.bolus_arrival_time(curves["concentration"][mask], curves["times"])
            error = bat - truth(curves["root"], curves["subject"], "desc-truth_bat")[mask]
            assert abs(np.median(error)) < (0.2 if noise_free else 0.5) * TR
            within = np.mean(np.abs(error) < TR)
            assert within >= (1.0 if noise_free else {"GM": 0.95, "WM": 0.8}[tissue])
