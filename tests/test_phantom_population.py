"""The DSC population of the phantom: per-subject AIF, acquisition and nuisance draws.

Each effect is checked against a closed form (gamma-variate area and its box-convolved
shape, Ernst steady state, AR(1) statistics), each draw against its range and its files
(sidecar, truth JSON, truth AIF), and a phantom without population against the numbers
it gave before the population existed.
"""

import json
import math
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import raw, read_tsv, truth
from scipy import special

from bids_perfusion import constants
from bids_perfusion.cli.phantom import build_parser, config_from_args
from bids_perfusion.dsc import relaxivity
from bids_perfusion.dsc.metadata import DSCRunMetadata
from bids_perfusion.phantom import DSCAcquisition, PhantomConfig, write_dataset
from bids_perfusion.phantom.bids import TRUTH
from bids_perfusion.phantom.config import NORMAL_TISSUES, RECEIVER_GAIN, T1_RATIO_1P5T
from bids_perfusion.phantom.dsc import (
    arterial_input,
    compartment_curves,
    injection_box,
)
from bids_perfusion.phantom.dsc_population import RANGES, DSCPopulation, draw_dsc_acquisition
from bids_perfusion.phantom.mr import spoiled_gre_factor, spoiled_gre_steady_state
from bids_perfusion.phantom.nuisance import ar1_noise, nuisance_factor, polynomial_drift

#: Population without nuisance: the baseline of a noise-free series is then exact.
QUIET = DSCPopulation(drift_linear=(0.0, 0.0), drift_quadratic=(0.0, 0.0),
                      physiological_noise=(0.0, 0.0))


def _gamma_area(alpha, beta):
    """∫ g dt of the unit-peak gamma variate: β (e/α)^α Γ(α + 1)."""
    return beta * (math.e / alpha) ** alpha * math.gamma(alpha + 1.0)


def _gamma_cumulative(x, alpha, beta):
    """∫_0^x g dt = β (e/α)^α Γ(α + 1) P(α + 1, x/β), P the regularised lower incomplete
    gamma function; 0 for x <= 0."""
    x = np.clip(x, 0.0, None)
    return _gamma_area(alpha, beta) * special.gammainc(alpha + 1.0, x / beta)


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """Two noise-free population subjects (DSC only, no drift or physiological noise);
    seed 7 draws sub-01 at 3 T (52 frames, flip 36°) and sub-02 at 1.5 T (flip 72°)."""
    config = PhantomConfig(grades=("HGG", "LGG"), matrix=(24, 24, 8), fov_mm=220.0,
                           slab_mm=132.0, population=True, asl=None, dsc_population=QUIET,
                           seed=7).with_(dsc={"snr": float("inf")})
    return write_dataset(tmp_path_factory.mktemp("population") / "bids", config), config


def _draw(root, subject):
    path = (Path(root) / TRUTH / f"sub-{subject}" / "perf"
            / f"sub-{subject}_desc-truth_parameters.json")
    return json.loads(path.read_text())["dsc_acquisition"]


def _sidecar(root, subject):
    path = Path(root) / f"sub-{subject}" / "perf" / f"sub-{subject}_ce-gadolinium_dsc.json"
    return json.loads(path.read_text())


# --- arterial input: closed forms -----------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_drawn_aif_integrates_to_the_gamma_variate_closed_form(seed):
    """∫C_a = d A (1 + f) β (e/α)^α Γ(α+1) for every draw: the injection box and the
    dispersion kernels keep the area, the second pass adds the fraction f."""
    acq, drawn = draw_dsc_acquisition(np.random.default_rng(seed), DSCAcquisition(),
                                      DSCPopulation())
    t = np.arange(30000) * 0.01  # 300 s: every tail has returned to 0
    dose = 0.5
    expected = (dose * drawn["aif_peak_mM"] * (1.0 + drawn["recirculation_fraction"])
                * _gamma_area(drawn["aif_alpha"], drawn["aif_beta"]))
    assert 0.01 * arterial_input(t, acq, dose).sum() == pytest.approx(expected, rel=1e-4)


def test_injection_box_gives_the_closed_form_curve():
    """A gamma variate convolved with a unit box of length D is
    ``A/D [G(t − t0) − G(t − t0 − D)]``, G its integral (incomplete gamma function)."""
    acq = DSCAcquisition(aif_arrival=18.0, injection_duration=4.37, recirculation_fraction=0.0,
                         aif_alpha=2.6, aif_beta=1.3, aif_peak_mM=7.0)
    dt = 0.005
    t = np.arange(16000) * dt
    curve = arterial_input(t, acq, 1.0)
    g = lambda x: _gamma_cumulative(x, acq.aif_alpha, acq.aif_beta)  # noqa: E731
    expected = acq.aif_peak_mM / acq.injection_duration * (
        g(t - acq.aif_arrival) - g(t - acq.aif_arrival - acq.injection_duration))
    assert np.abs(curve - expected).max() < 2e-3 * expected.max()
    assert dt * injection_box(t, acq.injection_duration).sum() == pytest.approx(1.0, abs=1e-12)
    # The box lowers the peak at fixed area: the injection matters.
    instantaneous = arterial_input(t, replace(acq, injection_duration=0.0), 1.0)
    assert instantaneous.max() == pytest.approx(acq.aif_peak_mM, rel=1e-3)
    assert curve.max() < 0.9 * instantaneous.max()


def test_extra_dispersion_keeps_tissue_area_and_delays_its_peak():
    """The common transport kernel has unit area: CBV (∝ ∫C_k) is unchanged, the peak
    comes later."""
    acq = DSCAcquisition()
    t = np.arange(1500) * 0.1
    aif = arterial_input(t, acq, 1.0)
    tissues = (NORMAL_TISSUES["GM"], NORMAL_TISSUES["WM"])
    plain, _ = compartment_curves(t, aif, tissues, acq)
    dispersed, _ = compartment_curves(t, aif, tissues, replace(acq, extra_dispersion=2.0))
    np.testing.assert_allclose(dispersed.sum(axis=1), plain.sum(axis=1), rtol=1e-3)
    assert np.all(t[dispersed.argmax(axis=1)] > t[plain.argmax(axis=1)] + 0.5)


# --- draws within their ranges --------------------------------------------------------------


def test_acquisition_draws_lie_within_their_ranges_and_are_valid():
    population = DSCPopulation()
    rng = np.random.default_rng(7)
    draws = [draw_dsc_acquisition(rng, DSCAcquisition(echo_times=(0.02, 0.05)), population)
             for _ in range(300)]
    for acq, drawn in draws:
        for name in RANGES:
            if name in drawn:
                low, high = getattr(population, name)
                assert low <= drawn[name] <= high, name
        assert 5.0 <= acq.aif_arrival <= 25.0
        assert acq.aif_arrival >= population.min_baseline_frames * acq.tr
        assert acq.dummy_scans == population.dummy_scans
        assert 1.0 <= acq.tr <= 2.0 and 30 <= acq.flip_angle <= 90
        assert 50 <= acq.n_frames <= 120
        low, high = population.echo_time(acq.field_strength)
        assert low <= acq.echo_times[0] <= high
        assert acq.echo_times[1] - acq.echo_times[0] == pytest.approx(0.03)  # spacing kept
        assert acq.baseline_frames == math.floor(acq.aif_arrival / acq.tr) >= 6
        assert acq.n_frames * acq.tr >= acq.aif_arrival + population.min_frames_after_arrival_s
        PhantomConfig(dsc=acq).validate()
    fields = [acq.field_strength for acq, _ in draws]
    assert set(fields) == {1.5, 3.0} and 0.4 < fields.count(3.0) / len(fields) < 0.6
    frames = [acq.n_frames for acq, _ in draws]
    assert min(frames) < 60 and max(frames) > 110  # the range is covered


def test_population_option_of_the_command_line():
    parser = build_parser()
    assert not config_from_args(parser.parse_args(["out"])).population
    config = config_from_args(parser.parse_args(["out", "--population"]))
    assert config.population and config.dsc_population == DSCPopulation()
    narrowed = config.with_(dsc_population={"tr": (1.0, 1.2)})
    assert narrowed.dsc_population.tr == (1.0, 1.2) and narrowed.dsc_population.n_frames == (
        50, 120)


def test_impossible_population_ranges_are_refused():
    config = PhantomConfig(population=True,
                           dsc_population=DSCPopulation(aif_arrival=(5.0, 10.0)))
    with pytest.raises(ValueError, match=r"dsc_population\.aif_arrival"):
        config.validate()
    with pytest.raises(ValueError, match=r"dsc_population\.flip_angle"):
        replace(config, dsc_population=DSCPopulation(flip_angle=(60.0, 30.0))).validate()


# --- the written population -----------------------------------------------------------------


@pytest.mark.parametrize("subject", ["01", "02"])
def test_sidecar_and_series_follow_the_subjects_draw(population, subject):
    root, _ = population
    drawn, sidecar = _draw(root, subject), _sidecar(root, subject)
    assert sidecar["RepetitionTime"] == drawn["tr"]
    assert sidecar["EchoTime"] == drawn["echo_time"]
    assert sidecar["FlipAngle"] == drawn["flip_angle"]
    assert sidecar["MagneticFieldStrength"] == drawn["field_strength"]
    assert sidecar["NumberOfBaselineFrames"] == drawn["baseline_frames"]
    assert sidecar["NumberOfVolumesDiscardedByScanner"] == drawn["dummy_scans"] == 4
    image = nib.load(Path(root) / f"sub-{subject}" / "perf"
                     / f"sub-{subject}_ce-gadolinium_dsc.nii.gz")
    assert image.shape[3] == drawn["n_frames"]
    assert image.header["pixdim"][4] == pytest.approx(drawn["tr"])
    # What the pipeline reads back: the run's metadata and the relaxivities of its field.
    meta = DSCRunMetadata.from_sidecars(["x.nii.gz"], [sidecar], [image.shape])
    assert (meta.repetition_time, meta.echo_times, meta.n_frames) == (
        drawn["tr"], (drawn["echo_time"],), drawn["n_frames"])
    assert relaxivity.at_field(meta.magnetic_field_strength) == relaxivity.at_field(
        drawn["field_strength"])


def test_subjects_get_different_draws(population):
    root, _ = population
    first, second = _draw(root, "01"), _draw(root, "02")
    assert all(first[k] != second[k] for k in ("aif_alpha", "aif_arrival", "tr", "echo_time",
                                                "field_strength", "flip_angle", "n_frames"))


@pytest.mark.parametrize("subject", ["01", "02"])
def test_truth_aif_is_the_draw_recomputed(population, subject):
    """The truth JSON holds every parameter of the AIF: recomputing it from them gives the
    truth AIF TSV, sampled at the subject's frames."""
    root, config = population
    drawn = _draw(root, subject)
    acq = replace(config.dsc, **{k: v for k, v in drawn.items() if k != "echo_time"},
                  echo_times=(drawn["echo_time"],))
    step = acq.time_oversampling
    t = np.arange(acq.n_frames * step) * acq.tr / step
    rows = read_tsv(Path(root) / TRUTH / f"sub-{subject}" / "perf"
                    / f"sub-{subject}_desc-truth_aif.tsv")
    assert len(rows) == drawn["n_frames"]  # the TSV holds 6 significant digits
    np.testing.assert_allclose([float(r["time"]) for r in rows],
                               drawn["tr"] * np.arange(drawn["n_frames"]))
    np.testing.assert_allclose([float(r["concentration"]) for r in rows],
                               arterial_input(t, acq, 1.0)[::step], rtol=1e-5, atol=1e-6)
    relax = relaxivity.at_field(drawn["field_strength"], acq.blood_relaxivity)
    expected_r2 = relaxivity.blood_delta_r2star(
        np.array([float(r["concentration"]) for r in rows]), relax.blood_linear,
        relax.blood_quadratic)
    np.testing.assert_allclose([float(r["delta_r2star"]) for r in rows], expected_r2,
                               rtol=1e-5, atol=1e-6)


def _normal_baseline(root, subject, drawn, t1_field=None):
    """Normal brain voxels (no lesion, no artery) and their noise-free baseline at every
    frame: ``G M0 [E + (sin α − E)(E1 cos α)^n] e^(−TE R2*)``, n counting the dummy
    scans, ``E = sin α (1 − E1)/(1 − E1 cos α)`` (Ernst) at the drawn TR, flip angle and
    TE; M0, T1, R2* the voxel's fraction-weighted tissue values, T1 at ``t1_field``
    (tesla; default the drawn field): the tabulated 3 T value, times
    ``T1_RATIO_1P5T`` at 1.5 T."""
    fractions = {name: truth(root, subject, f"label-{name}_probseg")
                 for name in ("GM", "WM", "CSF", "enhancing", "necrosis", "edema",
                              "arteries")}
    normal = sum(fractions[n] for n in ("enhancing", "necrosis", "edema", "arteries")) == 0
    brain = normal & (fractions["GM"] + fractions["WM"] + fractions["CSF"] > 0.5)
    field = drawn["field_strength"] if t1_field is None else t1_field
    values = {n: {"m0": NORMAL_TISSUES[n].m0, "r2star": NORMAL_TISSUES[n].r2star,
                  "t1": NORMAL_TISSUES[n].t1 * (T1_RATIO_1P5T[n] if field == 1.5 else 1.0)}
              for n in ("GM", "WM", "CSF")}
    mix = {attr: sum(fractions[n][brain] * values[n][attr] for n in values)
           for attr in ("m0", "t1", "r2star")}
    alpha = np.deg2rad(drawn["flip_angle"])
    e1 = np.exp(-drawn["tr"] / mix["t1"])[:, None]
    ernst = np.sin(alpha) * (1 - e1) / (1 - e1 * np.cos(alpha))
    n = drawn["dummy_scans"] + np.arange(drawn["n_frames"])
    return brain, (RECEIVER_GAIN * mix["m0"][:, None]
                   * (ernst + (np.sin(alpha) - ernst) * (e1 * np.cos(alpha)) ** n)
                   * np.exp(-drawn["echo_time"] * mix["r2star"])[:, None])


@pytest.mark.parametrize("subject", ["01", "02"])
def test_baseline_follows_the_spoiled_gradient_echo_of_the_draw(population, subject):
    """Before the bolus a normal voxel reads its closed-form spoiled gradient-echo
    baseline (:func:`_normal_baseline`) at the subject's drawn TR, flip angle and TE."""
    root, _ = population
    drawn = _draw(root, subject)
    brain, baseline = _normal_baseline(root, subject, drawn)
    pre = drawn["baseline_frames"]
    assert brain.sum() > 100
    np.testing.assert_allclose(raw(root, subject, "ce-gadolinium_dsc")[..., :pre][brain],
                               baseline[:, :pre], rtol=1e-5)


def test_dsc_tissue_t1_is_that_of_the_drawn_field(population):
    """sub-02 is drawn at 1.5 T: its DSC series has the 1.5 T tissue T1 (shorter, so a
    brighter baseline), which its truth lists, and not the 3 T T1 of sub-01."""
    root, _ = population
    for subject, field in (("01", 3.0), ("02", 1.5)):
        drawn = _draw(root, subject)
        assert drawn["field_strength"] == field
        parameters = json.loads((Path(root) / TRUTH / f"sub-{subject}" / "perf"
                                 / f"sub-{subject}_desc-truth_parameters.json").read_text())
        ratio = T1_RATIO_1P5T["GM"] if field == 1.5 else 1.0
        assert parameters["dsc_t1"]["GM"] == pytest.approx(NORMAL_TISSUES["GM"].t1 * ratio)
        assert parameters["dsc_t1"]["blood"] == constants.T1_BLOOD[field]
    drawn = _draw(root, "02")
    brain, at_3t = _normal_baseline(root, "02", drawn, t1_field=3.0)
    signal = raw(root, "02", "ce-gadolinium_dsc")[..., :drawn["baseline_frames"]][brain]
    assert np.median(signal / at_3t[:, :drawn["baseline_frames"]]) > 1.05
    # 1.5 T T1 between 3 T and the 1.5 T values measured (GM about 1.1-1.2 s, WM 0.65-0.9 s;
    # Wright et al. 2008, Stanisz et al. 2005)
    assert 0.9 < NORMAL_TISSUES["GM"].t1 * T1_RATIO_1P5T["GM"] < NORMAL_TISSUES["GM"].t1
    assert 0.6 < NORMAL_TISSUES["WM"].t1 * T1_RATIO_1P5T["WM"] < NORMAL_TISSUES["WM"].t1


@pytest.mark.parametrize("subject", ["01", "02"])
def test_area_ratio_gives_true_cbv_with_the_drawn_acquisition(population, subject):
    """``100 kH/ρ ∫C_t / ∫C_a`` from the written series (ΔR2* at the drawn TE, tissue
    relaxivity of the sidecar's field) and the truth AIF equals the truth CBV in normal
    tissue: the draw changes the data, never the definition of the truth."""
    root, _ = population
    drawn, sidecar = _draw(root, subject), _sidecar(root, subject)
    brain, baseline = _normal_baseline(root, subject, drawn)
    signal = raw(root, subject, "ce-gadolinium_dsc")[brain]
    delta = relaxivity.signal_to_delta_r2star(signal, baseline, sidecar["EchoTime"])
    concentration = relaxivity.tissue_concentration(
        delta, relaxivity.at_field(sidecar["MagneticFieldStrength"]).tissue)
    rows = read_tsv(Path(root) / TRUTH / f"sub-{subject}" / "perf"
                    / f"sub-{subject}_desc-truth_aif.tsv")
    aif = np.array([float(r["concentration"]) for r in rows])
    cbv = 100.0 * constants.KH / constants.RHO_BRAIN * concentration.sum(axis=-1) / aif.sum()
    expected = truth(root, subject, "desc-truth_cbv")[brain]
    perfused = expected > 0.5
    # 1 %, as for the default phantom: sub-01's 52 frames cut the tail by up to 0.3 %.
    np.testing.assert_allclose(cbv[perfused], expected[perfused], rtol=0.01)


# --- spoiled gradient echo ------------------------------------------------------------------


@pytest.mark.parametrize("t1", [0.8, 1.33, 4.0])
@pytest.mark.parametrize("tr", [1.0, 2.0])
def test_spoiled_gradient_echo_reaches_the_ernst_steady_state(t1, tr):
    """After many pulses the signal is the Ernst steady state
    ``sin α (1 − E1)/(1 − E1 cos α)``; it is largest at the Ernst angle ``arccos E1``,
    where it equals ``sqrt((1 − E1)/(1 + E1))``."""
    e1 = np.exp(-tr / t1)
    for flip in (30.0, 60.0, 90.0):
        alpha = np.deg2rad(flip)
        series = spoiled_gre_factor(np.array(t1), tr, flip, 400)
        assert series[0] == pytest.approx(np.sin(alpha))  # the first pulse sees M0
        assert series[-1] == pytest.approx(np.sin(alpha) * (1 - e1) / (1 - e1 * np.cos(alpha)),
                                           rel=1e-12)
    flips = np.linspace(1.0, 90.0, 8901)
    steady = spoiled_gre_steady_state(t1, tr, flips)
    assert flips[steady.argmax()] == pytest.approx(np.rad2deg(np.arccos(e1)), abs=0.01)
    assert steady.max() == pytest.approx(np.sqrt((1 - e1) / (1 + e1)), rel=1e-6)


# --- nuisance -------------------------------------------------------------------------------


@pytest.mark.parametrize("phi", [0.0, 0.3, 0.6, 0.9])
def test_ar1_noise_has_unit_variance_and_its_lag1_autocorrelation(phi):
    noise = ar1_noise(np.random.default_rng(1), (8000, 120), phi)
    assert noise.var() == pytest.approx(1.0, abs=0.03)
    assert noise[:, 0].var() == pytest.approx(1.0, abs=0.06)  # stationary from the start
    lag1 = np.mean(noise[:, 1:] * noise[:, :-1]) / noise.var()
    lag2 = np.mean(noise[:, 2:] * noise[:, :-2]) / noise.var()
    assert lag1 == pytest.approx(phi, abs=0.01)
    assert lag2 == pytest.approx(phi**2, abs=0.01)


def test_drift_and_physiological_noise_statistics():
    """The factor's mean over voxels is the drift polynomial; its relative standard
    deviation the physiological fraction λ; the first frame is not drifted."""
    acq = DSCAcquisition(drift_linear=0.03, drift_quadratic=-0.01, physiological_noise=0.02,
                         physiological_noise_ar=0.5)
    times = np.arange(90) * 1.4
    factor = nuisance_factor(np.random.default_rng(2), acq, 20000, times)
    drift = polynomial_drift(times, 0.03, -0.01)
    assert drift[0] == 1.0 and drift[-1] == pytest.approx(1.02)
    np.testing.assert_allclose(factor.mean(axis=0), drift, atol=0.02 * 4 / np.sqrt(20000))
    relative = factor / drift - 1.0
    assert relative.std() == pytest.approx(0.02, rel=0.02)
    lag1 = np.mean(relative[:, 1:] * relative[:, :-1]) / relative.var()
    assert lag1 == pytest.approx(0.5, abs=0.01)


def test_no_nuisance_draws_nothing():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert nuisance_factor(rng, DSCAcquisition(), 10, np.arange(5.0)) is None
    assert rng.bit_generator.state == state


# --- population off: the phantom of before --------------------------------------------------

#: (sum, sum of squares) of each DSC series, and the sum of the truth AIF, of the two
#: session phantoms of tests/conftest.py. Written by the code before the population
#: existed (commit 6406101) with its default grade ranges, ``separated``; re-pinned when
#: ``overlapping`` became the default (phantom v2), which moves only the tumours' drawn
#: perfusion: with ``grade_ranges="separated"`` the code still gives 6406101's sums
#: (noisy sub-01 173597756.8845617, 49873447764.384544; sub-02 169053695.98908538,
#: 47867803291.61813), and tests/test_phantom_anatomy.py checks that the ranges change
#: nothing outside the tumour. A change of any of them is a change of the default
#: phantom (and of every table measured on it): update these only on purpose.
BEFORE = {
    "noisy": {("01", "ce-gadolinium_dsc"): (173603132.0945188, 49875898037.90848),
              ("02", "ce-gadolinium_dsc"): (169043386.8208267, 47861247807.52781)},
    "noise_free": {
        ("01", "ce-gadolinium_dsc"): (164988895.95045274, 49741571147.64528),
        ("01", "acq-dose50_ce-gadolinium_dsc"): (169079648.336949, 51885441578.926414),
        ("02", "ce-gadolinium_dsc"): (160454632.1327411, 47731697351.62091),
        ("02", "acq-dose50_ce-gadolinium_dsc"): (164324227.28516126, 49764646061.920845)},
}
AIF_SUM_BEFORE = 33.50438303753081


@pytest.mark.parametrize("name", ["noisy", "noise_free"])
def test_population_off_gives_the_phantom_of_before(name, request):
    root, config = request.getfixturevalue(name)
    assert not config.population
    for (subject, series), (total, squares) in BEFORE[name].items():
        data = raw(root, subject, series)
        assert data.sum() == pytest.approx(total, rel=1e-6)
        assert (data**2).sum() == pytest.approx(squares, rel=1e-6)
        rows = read_tsv(Path(root) / TRUTH / f"sub-{subject}" / "perf"
                        / f"sub-{subject}_desc-truth_aif.tsv")
        assert sum(float(r["concentration"]) for r in rows) == pytest.approx(AIF_SUM_BEFORE,
                                                                             rel=1e-9)
    parameters = json.loads((Path(root) / TRUTH / "sub-01" / "perf"
                             / "sub-01_desc-truth_parameters.json").read_text())
    assert "dsc_acquisition" not in parameters
