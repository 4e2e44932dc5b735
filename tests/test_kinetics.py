"""Closed-form checks of the forward models: DSC kinetics and relaxivity, ASL kinetics.

Every expected value is computed independently of the function under test: analytic
integrals, geometric series, or numerical quadrature of the model's defining integral.
"""

import numpy as np
import pytest
from scipy import integrate, special

from bids_perfusion import constants
from bids_perfusion.asl import consensus
from bids_perfusion.asl import kinetics as asl_kinetics
from bids_perfusion.dsc import kinetics, relaxivity

T1B = constants.T1_BLOOD[3.0]


# --- DSC: input and residue functions -----------------------------------------------------

@pytest.mark.parametrize(("t0", "alpha", "beta"), [(0.0, 3.0, 1.5), (12.0, 2.5, 1.1),
                                                   (5.0, 4.2, 0.8)])
def test_gamma_variate_peak_is_one_at_t0_plus_alpha_beta(t0, alpha, beta):
    peak_time = t0 + alpha * beta
    assert kinetics.gamma_variate(peak_time, t0, alpha, beta) == pytest.approx(1.0, abs=1e-12)
    t = np.linspace(0.0, t0 + 40.0, 400_001)
    g = kinetics.gamma_variate(t, t0, alpha, beta)
    assert g.max() == pytest.approx(1.0, abs=1e-9)
    assert t[np.argmax(g)] == pytest.approx(peak_time, abs=2e-4)
    assert np.all(g[t <= t0] == 0.0)
    # Area: beta e^alpha Gamma(alpha + 1) / alpha^alpha.
    area = beta * np.exp(alpha) * special.gamma(alpha + 1.0) / alpha**alpha
    assert integrate.trapezoid(g, t) == pytest.approx(area, rel=1e-6)


@pytest.mark.parametrize("mtt", [1.0, 4.0, 9.5])
def test_exponential_residue_starts_at_one_and_integrates_to_mtt(mtt):
    t = np.linspace(0.0, 40.0 * mtt, 400_001)
    residue = kinetics.residue_exponential(t, mtt)
    assert residue[0] == 1.0
    assert np.all(np.diff(residue) <= 0)
    assert integrate.trapezoid(residue, t) == pytest.approx(mtt, rel=1e-6)
    assert kinetics.residue_exponential(-0.1, mtt) == 0.0


@pytest.mark.parametrize("shape", [1.0, 2.0, 5.5])
@pytest.mark.parametrize("mtt", [1.5, 6.0])
def test_gamma_residue_starts_at_one_and_integrates_to_mtt(mtt, shape):
    t = np.linspace(0.0, 40.0 * mtt, 400_001)
    residue = kinetics.residue_gamma(t, mtt, shape)
    assert residue[0] == 1.0
    assert np.all(np.diff(residue) <= 1e-15)
    assert integrate.trapezoid(residue, t) == pytest.approx(mtt, rel=1e-6)
    if shape == 1.0:
        np.testing.assert_allclose(residue, kinetics.residue_exponential(t, mtt), atol=1e-14)


@pytest.mark.parametrize("tau", [0.3, 1.0, 3.0])
def test_dispersion_kernel_has_unit_area(tau):
    t = np.linspace(0.0, 40.0 * tau, 400_001)
    kernel = kinetics.dispersion_kernel(t, tau)
    assert kernel[0] == pytest.approx(1.0 / tau)
    assert integrate.trapezoid(kernel, t) == pytest.approx(1.0, rel=1e-6)


def test_zero_dispersion_is_a_discrete_delta_that_leaves_curves_unchanged():
    dt = 0.25
    t = np.arange(200) * dt
    kernel = kinetics.dispersion_kernel(t, 0.0)
    assert kernel.sum() * dt == pytest.approx(1.0)
    curve = kinetics.gamma_variate(t, 3.0)
    np.testing.assert_allclose(kinetics.convolve(curve, kernel, dt), curve, atol=1e-12)


# --- DSC: discrete convolution and shift ---------------------------------------------------

@pytest.mark.parametrize(("dt", "box", "tau"), [(0.1, 5.0, 2.0), (1.5, 9.0, 4.0)])
def test_convolution_of_box_and_exponential_matches_geometric_series(dt, box, tau):
    """Left-rectangle rule: dt Σ_{j<=i} a_j b_{i-j} with a a unit box of m samples and
    b_k = q^k, q = e^(-dt/tau), is dt (1 - q^(i+1)) / (1 - q) for i < m and
    dt q^(i-m+1) (1 - q^m) / (1 - q) after."""
    n = 120
    i = np.arange(n)
    m = round(box / dt)
    a = (i < m).astype(float)
    q = np.exp(-dt / tau)
    expected = np.where(i < m, dt * (1 - q ** (i + 1)) / (1 - q),
                        dt * q ** (i - m + 1) * (1 - q**m) / (1 - q))
    result = kinetics.convolve(a, q**i, dt)
    np.testing.assert_allclose(result, expected, rtol=1e-10, atol=1e-12)


def test_convolution_of_box_and_exponential_converges_to_the_continuous_integral():
    """∫_0^t box(s) e^(-(t-s)/tau) ds = tau (1 - e^(-t/tau)) for t < T and
    tau (e^(T/tau) - 1) e^(-t/tau) after; the left-rectangle error is O(dt)."""
    tau, box = 2.0, 5.0
    errors = []
    for dt in (0.01, 0.005):
        t = np.arange(round(20.0 / dt)) * dt
        a = (t < box).astype(float)
        result = kinetics.convolve(a, np.exp(-t / tau), dt)
        exact = np.where(t < box, tau * (1 - np.exp(-t / tau)),
                         tau * (np.exp(box / tau) - 1) * np.exp(-t / tau))
        errors.append(np.abs(result - exact).max())
        assert errors[-1] <= dt * (1 + 1e-9)  # the largest error is dt b(0) a(0), at t = 0
    assert errors[1] == pytest.approx(errors[0] / 2.0, rel=0.05)  # first order in dt


def test_convolution_scales_with_the_sampling_interval_and_broadcasts():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 50)), rng.random((1, 50))
    np.testing.assert_allclose(kinetics.convolve(a, b, 2.0), 2.0 * kinetics.convolve(a, b, 1.0))
    np.testing.assert_allclose(kinetics.convolve(a, b, 1.0)[1],
                               np.convolve(a[1], b[0])[:50], rtol=1e-10)


def test_shift_by_whole_frames_moves_samples_and_zero_fills():
    rng = np.random.default_rng(1)
    dt = 0.7
    curve = rng.random(40)
    shifted = kinetics.shift(curve, 3 * dt, dt)
    np.testing.assert_allclose(shifted[3:], curve[:-3], rtol=1e-12)
    assert np.all(shifted[:3] == 0.0)
    np.testing.assert_array_equal(kinetics.shift(curve, 0.0, dt), curve)


def test_shift_by_a_fractional_frame_interpolates_linearly():
    rng = np.random.default_rng(2)
    dt = 1.5
    curve = rng.random(40)
    shifted = kinetics.shift(curve, 2.25 * dt, dt)
    # Sample i reads the curve at frame i - 2.25 = (i - 3) + 0.75: 0.25 c[i-3] + 0.75 c[i-2].
    expected = 0.25 * curve[:-3] + 0.75 * curve[1:-2]
    np.testing.assert_allclose(shifted[3:], expected, rtol=1e-12)
    assert np.all(shifted[:3] == 0.0)  # before the (shifted) first sample


# --- DSC: relaxivity -----------------------------------------------------------------------

def test_signal_and_delta_r2star_round_trip():
    delta_r2star = np.linspace(-2.0, 60.0, 101)
    s0, te = 850.0, 0.03
    signal = relaxivity.delta_r2star_to_signal(delta_r2star, s0, te)
    assert signal[np.argmin(np.abs(delta_r2star - 10.0))] == pytest.approx(
        s0 * np.exp(-te * delta_r2star[np.argmin(np.abs(delta_r2star - 10.0))]))
    np.testing.assert_allclose(relaxivity.signal_to_delta_r2star(signal, s0, te),
                               delta_r2star, atol=1e-12)


def test_tissue_relaxivity_round_trip_and_value():
    concentration = np.linspace(0.0, 2.0, 21)
    delta = relaxivity.tissue_delta_r2star(concentration)
    np.testing.assert_allclose(delta, constants.R2STAR_TISSUE * concentration)
    np.testing.assert_allclose(relaxivity.tissue_concentration(delta), concentration)


@pytest.mark.parametrize("quadratic", [constants.R2STAR_BLOOD_QUADRATIC, 0.0])
def test_blood_concentration_inverts_blood_delta_r2star(quadratic):
    concentration = np.linspace(-0.2, 15.0, 200)  # small negative values: noise
    delta = relaxivity.blood_delta_r2star(concentration, quadratic=quadratic)
    expected = constants.R2STAR_BLOOD_LINEAR * concentration + quadratic * concentration**2
    np.testing.assert_allclose(delta, expected)
    np.testing.assert_allclose(relaxivity.blood_concentration(delta, quadratic=quadratic),
                               concentration, rtol=1e-12, atol=1e-14)


def test_quadratic_blood_relaxivity_at_1_mm():
    """Kjølby et al. 2006: a + b at C = 1 mM; the quadratic model inverts to 1 mM."""
    delta = relaxivity.blood_delta_r2star(1.0)
    assert delta == pytest.approx(7.6 + 0.574)
    assert relaxivity.blood_concentration(delta) == pytest.approx(1.0)
    # Read with the linear model only, the same ΔR2* overestimates the concentration.
    assert relaxivity.blood_concentration(delta, quadratic=0.0) == pytest.approx(
        (7.6 + 0.574) / 7.6)


# --- ASL: kinetic model vs the consensus formulas ----------------------------------------

def _voxels():
    """CBF (mL/100 g/min) x ATT (s) grid, and M0."""
    cbf, att = np.meshgrid(np.array([5.0, 20.0, 45.0, 60.0, 110.0]),
                           np.array([0.3, 0.7, 1.0, 1.2, 1.49]), indexing="ij")
    return cbf, att, np.full(cbf.shape, 1234.5)


@pytest.mark.parametrize("pld", [1.5, 1.8, 2.5])
@pytest.mark.parametrize("tau", [1.0, 1.8])
def test_pcasl_consensus_inverts_kinetic_model_when_att_below_pld(pld, tau):
    cbf, att, m0 = _voxels()
    assert np.all(att < pld)
    efficiency = constants.LABEL_EFFICIENCY["PCASL"]
    delta_m = asl_kinetics.pcasl_delta_m(pld, cbf, att, m0, tau, T1B, efficiency)
    recovered = consensus.pcasl_cbf(delta_m, m0, pld, tau, T1B, efficiency)
    np.testing.assert_allclose(recovered, cbf, rtol=1e-12)


@pytest.mark.parametrize(("ti", "ti1"), [(1.8, 0.8), (2.5, 0.7), (2.0, 0.5)])
def test_pasl_consensus_inverts_kinetic_model_when_att_below_ti_minus_ti1(ti, ti1):
    cbf, att, m0 = _voxels()
    att = att * (ti - ti1) / att.max()  # ATT <= TI - TI1: the whole bolus has arrived
    efficiency = constants.LABEL_EFFICIENCY["PASL"]
    delta_m = asl_kinetics.pasl_delta_m(ti, cbf, att, m0, ti1, T1B, efficiency)
    recovered = consensus.pasl_cbf(delta_m, m0, ti, ti1, T1B, efficiency)
    np.testing.assert_allclose(recovered, cbf, rtol=1e-12)


def test_pasl_consensus_underestimates_while_the_bolus_is_arriving():
    """For TI - TI1 < ATT < TI only (TI - ATT) / TI1 of the bolus has arrived."""
    ti, ti1, efficiency = 1.8, 0.8, 0.98
    att = np.array([1.1, 1.4, 1.7])
    delta_m = asl_kinetics.pasl_delta_m(ti, 50.0, att, 1000.0, ti1, T1B, efficiency)
    recovered = consensus.pasl_cbf(delta_m, 1000.0, ti, ti1, T1B, efficiency)
    np.testing.assert_allclose(recovered, 50.0 * (ti - att) / ti1, rtol=1e-12)


@pytest.mark.parametrize("t1_tissue", [None, 1.3])
def test_no_asl_signal_before_the_label_arrives(t1_tissue):
    att = np.array([2.0, 3.0, 4.5])
    # PCASL: the label arrives at ATT after the start of labelling, t = tau + PLD.
    assert np.all(asl_kinetics.pcasl_delta_m(0.1, 60.0, att, 1000.0, 1.8, T1B, 0.85,
                                             t1_tissue=t1_tissue) == 0.0)
    assert np.all(asl_kinetics.pasl_delta_m(1.9, 60.0, att, 1000.0, 0.8, T1B, 0.98,
                                            t1_tissue=t1_tissue) == 0.0)
    assert asl_kinetics.pcasl_delta_m(0.21, 60.0, 2.0, 1000.0, 1.8, T1B, 0.85) > 0.0


def _buxton_integral(t, cbf, att, m0, tau, t1_tissue, efficiency, pulsed):
    """ΔM(t) = 2 α (M0/λ) f ∫_ATT^min(t, ATT+τ) decay(s) e^(-(t-s)/T1') ds by quadrature,
    with decay e^(-ATT/T1b) for continuous and e^(-s/T1b) for pulsed labelling."""
    f = cbf / constants.PER_SECOND_TO_PER_100G_MIN
    lam = constants.BLOOD_BRAIN_PARTITION
    t1p = 1.0 / (1.0 / t1_tissue + f / lam)
    end = min(t, att + tau)
    if end <= att:
        return 0.0

    def integrand(s):
        transit = np.exp(-(s if pulsed else att) / T1B)
        return transit * np.exp(-(t - s) / t1p)

    return 2.0 * efficiency * m0 / lam * f * integrate.quad(integrand, att, end)[0]


@pytest.mark.parametrize("pulsed", [False, True], ids=["PCASL", "PASL"])
@pytest.mark.parametrize("t", [1.0, 2.1, 2.9, 4.0])
def test_kinetic_model_with_tissue_t1_matches_quadrature(t, pulsed):
    """The analytic two-T1 model equals numerical integration of its definition, in the
    arrival, filling and wash-out phases (ATT 1.1 s, bolus 1.5 s)."""
    cbf, att, m0, tau, t1_tissue, efficiency = 55.0, 1.1, 1000.0, 1.5, 1.3, 0.9
    if pulsed:
        value = asl_kinetics.pasl_delta_m(t, cbf, att, m0, tau, T1B, efficiency,
                                          t1_tissue=t1_tissue)
    else:
        value = asl_kinetics.pcasl_delta_m(t - tau, cbf, att, m0, tau, T1B, efficiency,
                                           t1_tissue=t1_tissue)
    expected = _buxton_integral(t, cbf, att, m0, tau, t1_tissue, efficiency, pulsed)
    assert value == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert (value > 0) == (t > att)
