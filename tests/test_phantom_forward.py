"""The phantom's DSC forward models (issue 16): closed forms of the ``realistic`` physics
(bids_perfusion/phantom/forward.py) and the ``simple`` model bit for bit as before.

One tiny subject (24 × 24 × 8 voxels, one HGG) is drawn once per module; its series have
30 frames.
"""

import hashlib
import json

import numpy as np
import pytest
from helpers import read_tsv, truth

from bids_perfusion import constants
from bids_perfusion.cli.phantom import build_parser, config_from_args
from bids_perfusion.dsc import relaxivity
from bids_perfusion.phantom import PhantomConfig, write_dataset
from bids_perfusion.phantom.anatomy import make_grid
from bids_perfusion.phantom.dsc import simulate_dsc, tofts_concentration
from bids_perfusion.phantom.forward import (
    GAMMA,
    REALISTIC,
    RealisticSignals,
    extravascular_dephasing,
    spgr_t1_gain,
    two_compartment_magnitude,
    vessel_field_shift,
)
from bids_perfusion.phantom.mr import rician, spoiled_gre_steady_state
from bids_perfusion.phantom.subject import make_subject

TINY = PhantomConfig(grades=("HGG",), matrix=(24, 24, 8), fov_mm=220.0, slab_mm=132.0,
                     asl=None, grade_ranges="separated").with_(
    dsc={"echo_times": (0.02, 0.04), "doses": (1.0, 0.5), "n_frames": 30,
         "baseline_frames": 6})
#: sha256 of the float32 signals (sorted by dose, echo) of TINY's subject, written by the
#: phantom before the forward models existed (commit 6406101, whose default grade ranges,
#: ``separated``, TINY names), per leakage model. The
#: float64 arithmetic is rounded to float32 before hashing, so a last-bit difference of
#: another BLAS or libm changes the digest only in the rare value on a rounding edge.
SIMPLE_SHA256 = {"bsw": "ce92605ad77c82e45363988e4aad6a311f5a0c835cbd604c416968e8e9ba3c76",
                 "tofts": "58b1fd4349c884993267cd3bbdf0f90e2d5379f47cc4a51e2d2717623d4d8ef1"}


def _rngs(config):
    return [np.random.default_rng(s)
            for s in np.random.SeedSequence([config.seed, 0]).spawn(2)]


@pytest.fixture(scope="module")
def subject():
    grid = make_grid(TINY.matrix, TINY.fov_mm, TINY.slab_mm)
    return make_subject("01", "HGG", TINY, _rngs(TINY)[0], grid)


def _curves(sim, dose=1.0, echo=0):
    return sim.signals[(dose, echo)].reshape(-1, sim.frame_times.size).astype(float)


@pytest.mark.parametrize("leakage", ["bsw", "tofts"])
def test_simple_model_reproduces_the_former_data_bit_for_bit(subject, leakage):
    acq = TINY.with_(dsc={"leakage": leakage}).dsc
    sim = simulate_dsc(subject, acq, _rngs(TINY)[1], "simple")
    digest = hashlib.sha256()
    for key in sorted(sim.signals):
        digest.update(sim.signals[key].tobytes())
    assert digest.hexdigest() == SIMPLE_SHA256[leakage]
    assert sim.cbv is None and sim.r2star_ev is None


def test_complex_sum_of_two_compartments():
    tissue, blood = np.array([1.0, 1.0, 2.0, 0.3]), np.array([1.0, 1.0, 0.5, 0.7])
    phase = np.array([np.pi, 0.0, 1.2, -2.5])
    magnitude = two_compartment_magnitude(tissue, blood, phase)
    assert magnitude[0] == pytest.approx(0.0, abs=1e-7)  # equal, opposed: cancel
    assert magnitude[1] == pytest.approx(2.0)  # in phase: add
    np.testing.assert_allclose(magnitude, np.abs(tissue + blood * np.exp(1j * phase)),
                               atol=1e-12)


def test_small_phase_and_small_delta_r2star_recover_the_linear_mix():
    a, te, rate_t, rate_b = 0.4, 0.03, np.array([0.1, 0.2]), np.array([0.5, 1.0])
    signal = two_compartment_magnitude((1 - a) * np.exp(-te * rate_t),
                                       a * np.exp(-te * rate_b), 1e-4)
    measured = -np.log(signal) / te
    linear = (1 - a) * rate_t + a * rate_b
    np.testing.assert_allclose(measured, linear, rtol=1e-2)
    # and the next term of the cumulant expansion: − TE a (1 − a) (R_b − R_t)² / 2
    np.testing.assert_allclose(measured, linear - te * a * (1 - a) * (rate_b - rate_t) ** 2
                               / 2.0, rtol=1e-5)
    # blood in opposition (φ = π) cancels tissue signal: far above the linear mix
    opposed = -np.log(two_compartment_magnitude(0.5 * np.exp(-te * 10.0),
                                                0.5 * np.exp(-te * 30.0), np.pi)) / te
    assert opposed > 2.5 * (0.5 * 10.0 + 0.5 * 30.0)


def test_field_shift_of_a_cylinder():
    chi, conc, b0 = REALISTIC.molar_susceptibility, 4.0, 3.0
    shift = vessel_field_shift(conc, b0, np.array([1.0, 0.0, 1.0 / np.sqrt(3.0)]))
    np.testing.assert_allclose(shift, [chi * conc * b0 / 3.0, -chi * conc * b0 / 6.0, 0.0],
                               atol=1e-15)


def test_blooming_reaches_the_six_neighbours():
    artery, cos_theta = np.zeros((3, 3, 3)), np.zeros((3, 3, 3))  # vessel across B0
    artery[1, 1, 1] = 1.0
    rate = extravascular_dephasing(artery, cos_theta, np.array([2.0]), 1.5, blooming=0.1)
    rate = rate.reshape(3, 3, 3)
    delta_omega = GAMMA * REALISTIC.molar_susceptibility * 2.0 * 1.5 / 2.0
    assert rate[1, 1, 1] == pytest.approx(delta_omega)
    assert rate[0, 1, 1] == rate[1, 2, 1] == rate[1, 1, 0] == pytest.approx(0.1 * delta_omega)
    assert rate[0, 0, 0] == rate[0, 0, 1] == 0.0


def test_spoiled_gradient_echo_against_the_ernst_angle():
    t1, tr = 1.4, 1.5
    e1 = np.exp(-tr / t1)
    ernst = np.rad2deg(np.arccos(e1))
    peak = spoiled_gre_steady_state(t1, tr, ernst)
    assert peak == pytest.approx(np.sqrt((1 - e1) / (1 + e1)))
    assert peak > spoiled_gre_steady_state(t1, tr, ernst - 5) and \
        peak > spoiled_gre_steady_state(t1, tr, ernst + 5)
    t10, delta_r1 = np.array([t1]), np.array([[0.0, 2.0]])
    gain = spgr_t1_gain(t10, delta_r1, tr, 60.0)
    closed = spoiled_gre_steady_state(1.0 / (1.0 / t1 + 2.0), tr, 60.0) / \
        spoiled_gre_steady_state(t1, tr, 60.0)
    np.testing.assert_allclose(gain, [[1.0, closed]])


def test_tofts_curves_against_closed_forms():
    t = np.arange(0.0, 120.0, 0.01)
    ktrans, ve, c0, m = 0.2 / 60.0, 0.3, 2.0, 0.05
    kep = ktrans / ve
    to_blood = 1.0 - constants.HCT_LARGE_VESSELS  # the function takes whole blood
    step = tofts_concentration(t, np.full(t.size, c0 * to_blood), [ktrans], [ve])[0]
    np.testing.assert_allclose(step, ve * c0 * (1 - np.exp(-kep * t)), atol=1e-3 * ve * c0)
    bolus = tofts_concentration(t, c0 * to_blood * np.exp(-m * t), [ktrans], [ve])[0]
    closed = ktrans * c0 * (np.exp(-m * t) - np.exp(-kep * t)) / (kep - m)
    np.testing.assert_allclose(bolus, closed, atol=2e-3 * closed.max())


def _realistic(subject, acq, **kwargs):
    values = {"aif": np.zeros(acq.n_frames), "tissue_r2": 0.0, "extravascular": None,
              "r1": 4.1, "r2star_ev": 0.0, **kwargs}
    return RealisticSignals(subject, acq, values["aif"], values["tissue_r2"],
                            values["extravascular"], values["r1"], values["r2star_ev"])


def test_extravasated_agent_acts_through_t1_and_t2star(subject):
    """Without blood or intravascular agent, a constant C_e changes the signal of every
    voxel of tissue by g_T1 e^(−TE r2*_ev C_e): T1-dominant below the break-even
    r2*_ev = ln g_T1 / (TE C_e), T2*-dominant (negative K2) above it."""
    acq, c_e = TINY.with_(dsc={"leakage": "tofts"}).dsc, 0.2
    te = acq.echo_times[0]
    tissue = (subject.weights.sum(axis=0).reshape(-1) > 0.5) & (subject.artery.reshape(-1)
                                                                == 0)
    before = _realistic(subject, acq).signal(te)[tissue]
    ratios = {}
    for r2star_ev in (0.0, 300.0):
        after = _realistic(subject, acq, extravascular=np.full((tissue.size, acq.n_frames),
                                                               c_e),
                           r2star_ev=r2star_ev).signal(te)[tissue]
        ratios[r2star_ev] = after[:, -1] / before[:, -1]
    fraction = subject.weights.sum(axis=0).reshape(-1)[tissue]
    t1 = subject.mixture("t1").reshape(-1)[tissue] / fraction
    gain = spgr_t1_gain(t1, np.full((t1.size, 1), 4.1 * c_e), acq.tr, acq.flip_angle)[:, 0]
    np.testing.assert_allclose(ratios[0.0], gain, rtol=1e-9)
    np.testing.assert_allclose(ratios[300.0], gain * np.exp(-te * 300.0 * c_e), rtol=1e-9)
    assert (ratios[0.0] > 1).all() and (ratios[300.0] < 1).all()


def test_pure_arterial_voxels_follow_the_quadratic_blood_model(subject):
    acq = TINY.with_(dsc={"leakage": "tofts", "snr": float("inf")}).dsc
    sim = simulate_dsc(subject, acq, _rngs(TINY)[1], "realistic")
    pure = subject.artery.reshape(-1) == 1
    assert pure.sum() > 5
    curves = _curves(sim)[pure]
    measured = -np.log(curves / curves[:, :1]) / acq.echo_times[0]
    relax = relaxivity.at_field(acq.field_strength, "quadratic")
    expected = relaxivity.blood_delta_r2star(sim.aif[1.0], relax.blood_linear,
                                             relax.blood_quadratic)
    np.testing.assert_allclose(measured, np.broadcast_to(expected, measured.shape),
                               atol=1e-3 * expected.max())
    # partial-volume voxels: not the linear mix of the simple model
    simple = simulate_dsc(subject, TINY.with_(dsc={"snr": float("inf")}).dsc,
                          _rngs(TINY)[1], "simple")
    partial = (subject.artery.reshape(-1) > 0) & ~pure
    peak = np.argmax(sim.aif[1.0])

    def delta(curves):
        return -np.log(curves[partial, peak] / curves[partial, 0]) / acq.echo_times[0]

    assert np.median(np.abs(delta(_curves(sim)) / delta(_curves(simple)) - 1.0)) > 0.2
    assert sim.r2star_ev is not None and sim.cbv is not None


def test_arterial_peak_saturates_at_the_noise_floor(subject):
    """3 T, TE 45 ms, full dose: the noise-free arterial peak falls far below the noise,
    so the magnitude reads the Rician floor σ sqrt(π/2), not the signal."""
    acq = TINY.with_(dsc={"leakage": "tofts", "snr": float("inf"), "field_strength": 3.0,
                          "echo_times": (0.045,), "doses": (1.0,)}).dsc
    sim = simulate_dsc(subject, acq, _rngs(TINY)[1], "realistic")
    pure = subject.artery.reshape(-1) == 1
    clean = _curves(sim)[pure]
    peak = np.argmax(sim.aif[1.0])
    sigma = float(clean[:, 0].mean() / 50.0)  # SNR 50 of the arterial baseline
    assert clean[:, peak].max() < 0.05 * sigma
    noisy = rician(np.random.default_rng(3), np.repeat(clean[:, peak], 200), sigma)
    assert noisy.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2.0), rel=0.05)


def test_realistic_truth_counts_the_vessels_blood(tmp_path):
    config = TINY.with_(forward_model="realistic", dsc={"leakage": "tofts",
                                                        "doses": (1.0,),
                                                        "echo_times": (0.03,)})
    root = write_dataset(tmp_path / "bids", config)
    cbv = truth(root, "01", "desc-truth_cbv")
    artery = truth(root, "01", "label-arteries_probseg")
    pure = artery == 1
    np.testing.assert_allclose(cbv[pure], 100.0 / constants.RHO_BRAIN, rtol=1e-5)
    sidecar = json.loads((root / "derivatives" / "phantom-truth" / "sub-01" / "perf"
                          / "sub-01_desc-truth_cbv.json").read_text())
    assert sidecar["ForwardModel"] == "realistic"
    assert set(sidecar["Definition"]) == {"tissue", "mixed", "arterial", "tumour"}
    parameters = json.loads((root / "derivatives" / "phantom-truth" / "sub-01" / "perf"
                             / "sub-01_desc-truth_parameters.json").read_text())
    low, high = REALISTIC.r2star_ev_range
    assert low <= parameters["dsc_r2star_extravascular"] <= high
    rows = read_tsv(root / "derivatives" / "phantom-truth" / "sub-01" / "perf"
                    / "sub-01_desc-truth_aif.tsv")
    concentration = np.array([float(r["concentration"]) for r in rows])
    relax = relaxivity.at_field(1.5, "quadratic")  # the blood of the realistic model
    np.testing.assert_allclose([float(r["delta_r2star"]) for r in rows],
                               relaxivity.blood_delta_r2star(
                                   concentration, relax.blood_linear, relax.blood_quadratic),
                               rtol=1e-4)  # TSV: six significant digits


def test_forward_model_option_and_its_leakage():
    parser = build_parser()
    simple = config_from_args(parser.parse_args(["/tmp/out"]))
    assert (simple.forward_model, simple.dsc.leakage) == ("simple", "bsw")
    realistic = config_from_args(parser.parse_args(["/tmp/out", "--forward-model",
                                                    "realistic"]))
    assert (realistic.forward_model, realistic.dsc.leakage) == ("realistic", "tofts")
    realistic.validate()
    with pytest.raises(ValueError, match=r"forward_model.*tofts"):
        config_from_args(parser.parse_args(["/tmp/out", "--forward-model", "realistic",
                                            "--leakage", "bsw"])).validate()
    with pytest.raises(ValueError, match="forward_model"):
        PhantomConfig(forward_model="exact").validate()
