"""The phantom's files obey the physics they claim: checked from the written dataset."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import raw, read_tsv, small_config, truth

from bids_perfusion import constants
from bids_perfusion.asl import consensus
from bids_perfusion.dsc import relaxivity
from bids_perfusion.phantom import write_dataset
from bids_perfusion.phantom.bids import TRUTH
from bids_perfusion.phantom.config import GRADE_MODELS

SUBJECTS = ("01", "02")
#: Frames well after the approach to steady state and before the bolus (baseline 12).
BASELINE = slice(8, 12)
#: Frames from the end of the approach to steady state on.
STEADY = slice(8, None)


def _sidecar(root, subject, name):
    return json.loads((Path(root) / f"sub-{subject}" / "perf" / f"sub-{subject}_{name}.json")
                      .read_text())


def _delta_r2star(root, subject, name):
    signal = raw(root, subject, name)
    te = _sidecar(root, subject, name)["EchoTime"]
    s0 = signal[..., BASELINE].mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return relaxivity.signal_to_delta_r2star(signal, s0, te), s0[..., 0]


def _exact_asl_voxels(root, subject):
    """GM or WM voxels free of CSF, whose M0 recovers fully at the M0 scan's TR (10 s)."""
    tissue = (truth(root, subject, "label-GM_mask") + truth(root, subject, "label-WM_mask")) > 0
    return tissue & (truth(root, subject, "label-CSF_probseg") < 0.01)


def _normal_tissue(root, subject, tissue):
    lesion = sum(truth(root, subject, f"label-{n}_probseg") for n in
                 ("enhancing", "necrosis", "edema"))
    return ((truth(root, subject, f"label-{tissue}_mask") > 0)
            & (truth(root, subject, "label-arteries_probseg") == 0) & (lesion == 0))


@pytest.fixture(scope="module")
def noise_free_3t(tmp_path_factory):
    """Noise-free DSC declared and simulated at 3 T (no ASL)."""
    config = small_config(dsc={"snr": float("inf"), "field_strength": 3.0}, asl=None)
    return write_dataset(tmp_path_factory.mktemp("noise_free_3t") / "bids", config), config


@pytest.mark.parametrize("field", [1.5, 3.0])
@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("tissue", ["GM", "WM"])
def test_area_ratio_gives_true_cbv(noise_free, noise_free_3t, field, subject, tissue):
    """100 kH/rho ∫C_tissue / ∫C_AIF equals the ground-truth CBV within 1 % per voxel, with
    the tissue relaxivity of the field the sidecar declares (1.5 T: the default phantom)."""
    root, _ = noise_free if field == 1.5 else noise_free_3t
    sidecar = _sidecar(root, subject, "ce-gadolinium_dsc")
    assert sidecar["MagneticFieldStrength"] == field
    delta_r2star, _ = _delta_r2star(root, subject, "ce-gadolinium_dsc")
    concentration = relaxivity.tissue_concentration(
        delta_r2star[..., STEADY], relaxivity.at_field(field).tissue)
    aif_rows = read_tsv(Path(root) / TRUTH / f"sub-{subject}" / "perf"
                        / f"sub-{subject}_desc-truth_aif.tsv")
    aif = np.array([float(r["concentration"]) for r in aif_rows])[STEADY]
    mask = _normal_tissue(root, subject, tissue)
    assert mask.sum() > 50
    cbv = 100.0 * constants.KH / constants.RHO_BRAIN * (
        concentration[mask].sum(axis=-1) / aif.sum())
    expected = truth(root, subject, "desc-truth_cbv")[mask]
    np.testing.assert_allclose(cbv, expected, rtol=0.01)


def test_aif_of_pure_arterial_voxels_matches_truth(noise_free):
    """Voxels filled with blood carry the AIF: ΔR2* = r_blood C_a (linear default)."""
    root, _ = noise_free
    delta_r2star, _ = _delta_r2star(root, "01", "ce-gadolinium_dsc")
    pure = truth(root, "01", "label-arteries_probseg") == 1.0
    rows = read_tsv(Path(root) / TRUTH / "sub-01" / "perf" / "sub-01_desc-truth_aif.tsv")
    expected = np.array([float(r["delta_r2star"]) for r in rows])
    assert pure.sum() >= 5
    measured = delta_r2star[pure][:, STEADY]
    np.testing.assert_allclose(measured, np.broadcast_to(expected[STEADY], measured.shape),
                               atol=1e-3 * expected.max())


def test_half_dose_halves_delta_r2star_everywhere(noise_free):
    """Dose factor 0.5 halves ΔR2* in every voxel with signal, leakage included."""
    root, _ = noise_free
    for subject in SUBJECTS:
        full, s0 = _delta_r2star(root, subject, "ce-gadolinium_dsc")
        half, _ = _delta_r2star(root, subject, "acq-dose50_ce-gadolinium_dsc")
        voxels = s0 > 1.0
        assert np.abs(full[voxels]).max() > 10.0  # the bolus is there
        np.testing.assert_allclose(half[voxels][:, STEADY], 0.5 * full[voxels][:, STEADY],
                                   rtol=1e-3, atol=1e-2)


def test_leakage_is_in_the_enhancing_rim_of_high_grade_only(noise_free):
    root, _ = noise_free
    k2_hgg = truth(root, "01", "desc-truth_k2")
    rim = truth(root, "01", "label-enhancing_mask") > 0
    assert k2_hgg[rim].mean() > 0.003
    assert np.all(k2_hgg[_normal_tissue(root, "01", "WM")] == 0)
    # Late signal rises above baseline in the leaky rim (T1 shortening), not in NAWM.
    delta_r2star, _ = _delta_r2star(root, "01", "ce-gadolinium_dsc")
    assert delta_r2star[rim][:, -1].mean() < 0.0
    nawm = truth(root, "01", "label-NAWM_mask") > 0
    assert abs(delta_r2star[nawm][:, -1].mean()) < 0.05


@pytest.mark.parametrize("subject", SUBJECTS)
def test_consensus_pcasl_returns_true_cbf(noise_free, subject):
    """Mean ΔM through the consensus single-PLD formula gives true CBF within 0.5 %."""
    root, _ = noise_free
    series = raw(root, subject, "asl")
    kinds = np.array([r["volume_type"] for r in read_tsv(
        Path(root) / f"sub-{subject}" / "perf" / f"sub-{subject}_aslcontext.tsv")])
    delta_m = series[..., kinds == "control"].mean(-1) - series[..., kinds == "label"].mean(-1)
    m0 = raw(root, subject, "m0scan").mean(axis=-1)
    meta = _sidecar(root, subject, "asl")
    cbf = consensus.pcasl_cbf(delta_m, m0, meta["PostLabelingDelay"], meta["LabelingDuration"],
                              constants.T1_BLOOD[meta["MagneticFieldStrength"]],
                              constants.LABEL_EFFICIENCY["PCASL"])
    exact = _exact_asl_voxels(root, subject)
    assert exact.sum() > 100
    np.testing.assert_allclose(cbf[exact], truth(root, subject, "desc-truth_cbf")[exact],
                               rtol=0.005)


def test_consensus_pasl_returns_true_cbf(tmp_path):
    """PASL QUIPSS II: exact when every transit time is below TI - TI1."""
    config = small_config(grades=("HGG",), dsc=None,
                          asl={"snr": float("inf"), "label_type": "PASL", "plds": (2.6,),
                               "bolus_cutoff": 0.8, "background_suppression": True})
    root = write_dataset(tmp_path / "pasl", config)
    series = raw(root, "01", "asl")
    delta_m = series[..., 0::2].mean(-1) - series[..., 1::2].mean(-1)
    m0 = raw(root, "01", "m0scan").mean(axis=-1)
    efficiency = constants.LABEL_EFFICIENCY["PASL"] * (
        constants.BACKGROUND_SUPPRESSION_PULSE_EFFICIENCY ** 2)
    cbf = consensus.pasl_cbf(delta_m, m0, 2.6, 0.8, constants.T1_BLOOD[3.0], efficiency)
    exact = _exact_asl_voxels(root, "01")
    np.testing.assert_allclose(cbf[exact], truth(root, "01", "desc-truth_cbf")[exact],
                               rtol=0.005)


def test_measured_snr_matches_request(noisy):
    """Mean baseline brain signal over the temporal noise SD is the requested SNR ± 10 %."""
    root, config = noisy
    for subject in SUBJECTS:
        signal = raw(root, subject, "ce-gadolinium_dsc")[..., BASELINE]
        brain = truth(root, subject, "label-brain_mask") > 0
        measured = signal[brain].mean() / signal[brain].std(axis=-1, ddof=1).mean()
        assert measured == pytest.approx(config.dsc.snr, rel=0.10)


def test_ground_truth_is_consistent(noise_free):
    """MTT = CBV/CBF; rim rCBV relative to NAWM within the grade's range (the default,
    overlapping ranges of Law et al. 2003: HGG 2-7, LGG 1-3.5); positive Tmax."""
    root, config = noise_free
    ranges = GRADE_MODELS[config.grade_ranges]
    assert (ranges["HGG"].rcbv, ranges["LGG"].rcbv) == ((2.0, 7.0), (1.0, 3.5))
    participants = {r["participant_id"]: r for r in read_tsv(Path(root) / "participants.tsv")}
    for subject in SUBJECTS:
        cbf, cbv = truth(root, subject, "desc-truth_cbf"), truth(root, subject, "desc-truth_cbv")
        mtt = truth(root, subject, "desc-truth_mtt")
        perfused = cbf > 1
        np.testing.assert_allclose(mtt[perfused], 60 * cbv[perfused] / cbf[perfused], rtol=1e-5)
        grade = participants[f"sub-{subject}"]["grade"]
        rcbv = float(participants[f"sub-{subject}"]["tumor_rcbv"])
        low, high = ranges[grade].rcbv
        assert low <= rcbv <= high
        tmax = truth(root, subject, "desc-truth_tmax")[_normal_tissue(root, subject, "GM")]
        assert 0.4 < np.median(tmax) < 2.5
