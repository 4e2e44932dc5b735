"""The DSC participant level through the command line, checked against phantom truth.

One phantom (an HGG and an LGG subject, SNR 50, full and truly half dose) is quantified
with every method and a simulated half dose, the acquired half dose left out with
``--bids-filter-file``; a second phantom, identical but with the
tissue bolus delayed 3 s relative to the AIF, is quantified with the SVD methods. Only
the tumour mask is given (``--derivatives``): brain mask, AIF and NAWM are automatic.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import load, read_tsv, small_config, truth, tumour_derivatives

from bids_perfusion.cli.run import main
from bids_perfusion.phantom import write_dataset

pytestmark = pytest.mark.slow
SUBJECTS = ("01", "02")  # HGG, LGG
TR = 1.5
#: 30 s of pre-bolus baseline (20 frames), the short end of clinical protocols (Boxerman
#: et al., Neuro Oncol 2020;22:1262); the phantom's default of 12 frames is shorter.
PROTOCOL = {"baseline_frames": 20, "n_frames": 68}


def _quantify(tmp, root, *options):
    out = tmp / "out"
    status = main([str(root), str(out), "participant", "--skip-bids-validation",
                   "-w", str(tmp / "work"), "--nprocs", "1",
                   "--derivatives", str(tumour_derivatives(root, tmp / "masks")),
                   *options])
    return status, out


@pytest.fixture(scope="module")
def delivered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dsc_pipeline")
    config = small_config(asl=None, dsc=PROTOCOL | {"doses": (1.0, 0.5)})
    root = write_dataset(tmp / "bids", config)
    # the acquired half dose (acq-dose50) is found and left out, the filter the help of
    # --bids-filter-file gives: no test reads its maps, and they would double the run
    filters = tmp / "filters.json"
    filters.write_text(json.dumps({"dsc": {"acquisition": None}}))
    status, out = _quantify(tmp, root, "--dsc-methods", "ssvd,csvd,osvd,tikhonov,phae",
                            "--simulate-dose", "0.5", "--device", "cpu",
                            "--bids-filter-file", str(filters))
    return root, out, status


@pytest.fixture(scope="module")
def delayed(tmp_path_factory):
    """The phantom of ``delivered`` with the tissue bolus 3 s late; only sub-01 is read."""
    tmp = tmp_path_factory.mktemp("dsc_delayed")
    root = write_dataset(tmp / "bids", small_config(asl=None, dsc=PROTOCOL | {"extra_delay": 3.0}))
    status, out = _quantify(tmp, root, "--dsc-methods", "ssvd,csvd,osvd",
                            "--participant-label", "01")
    return root, out, status


@pytest.fixture(scope="module")
def at_3t(tmp_path_factory):
    """The phantom of ``delivered`` simulated and declared at 3 T, quantified with oSVD.

    TE 20 ms: ΔR2* per mM doubles at 3 T, and at the phantom's default 30 ms the arterial
    signal at the bolus peak falls to about 7 % of S0, where Rician noise flattens the
    automatic AIF and CBV reads 32-36 % high (measured on this phantom); at 20 ms it stays
    at about 16 % (25 % at 1.5 T and 30 ms).
    """
    tmp = tmp_path_factory.mktemp("dsc_3t")
    root = write_dataset(tmp / "bids", small_config(asl=None, dsc=PROTOCOL | {
        "field_strength": 3.0, "echo_times": (0.02,)}))
    status, out = _quantify(tmp, root, "--dsc-methods", "osvd", "--no-leakage-correction")
    return root, out, status


def _map(out, subject, name, prefix="ce-gadolinium"):
    return load(Path(out) / f"sub-{subject}" / "perf" / f"sub-{subject}_{prefix}_{name}.nii.gz")


def _normal(root, subject, tissue):
    lesion = sum(truth(root, subject, f"label-{n}_probseg") for n in
                 ("enhancing", "necrosis", "edema"))
    return ((truth(root, subject, f"label-{tissue}_mask") > 0) & (lesion == 0)
            & (truth(root, subject, "label-arteries_probseg") == 0))


def test_exit_status_and_dataset_description(delivered):
    _, out, status = delivered
    assert status == 0
    assert not list(out.glob("sub-*/perf/*_acq-*")), "the filter left the half dose out"
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert "oscillation-index" in (out / "logs" / "CITATION.md").read_text()


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("tissue", ["GM", "WM"])
def test_cbv_against_truth(delivered, subject, tissue):
    """Median per-voxel |error| under 5 % in GM and WM at SNR 50; regional bias < 2 %.

    The error is dominated by the noise of S0: its error is a constant ΔR2* offset
    integrated over the bolus passage. With 20 baseline frames GM reads 3.0-3.1 % and WM
    3.9-4.3 % (phantom seeds 0 and 1); with the phantom's default 12 (11 used for S0)
    they read 3.4-3.6 % and 4.5-5.0 %.
    """
    root, out, _ = delivered
    mask = _normal(root, subject, tissue)
    cbv = _map(out, subject, "desc-areaRatio_cbv")[mask]
    expected = truth(root, subject, "desc-truth_cbv")[mask]
    assert np.median(np.abs(cbv - expected) / expected) < 0.05
    assert abs(np.median(cbv) / np.median(expected) - 1) < 0.02


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("tissue", ["GM", "WM"])
def test_cbv_against_truth_at_3t(at_3t, subject, tissue):
    """The same tolerances at 3 T: the phantom simulates with the 3 T relaxivities it
    declares and the pipeline reads them back (issue 12, item 3)."""
    root, out, status = at_3t
    assert status == 0
    mask = _normal(root, subject, tissue)
    cbv = _map(out, subject, "desc-areaRatio_cbv")[mask]
    expected = truth(root, subject, "desc-truth_cbv")[mask]
    assert np.median(np.abs(cbv - expected) / expected) < 0.05
    assert abs(np.median(cbv) / np.median(expected) - 1) < 0.02
    sidecar = json.loads((Path(out) / f"sub-{subject}" / "perf"
                          / f"sub-{subject}_ce-gadolinium_desc-areaRatio_cbv.json").read_text())
    assert sidecar["MagneticFieldStrength"] == 3.0 and sidecar["TissueRelaxivity"] == 174.0


@pytest.mark.parametrize("subject", SUBJECTS)
def test_tmax_and_bolus_arrival_within_one_frame(delivered, subject):
    root, out, _ = delivered
    mask = _normal(root, subject, "GM") | _normal(root, subject, "WM")
    tmax = _map(out, subject, "desc-osvd_tmax")[mask]
    assert np.median(np.abs(tmax - truth(root, subject, "desc-truth_tmax")[mask])) < TR
    bat = _map(out, subject, "bat")[mask]
    assert np.median(np.abs(bat - truth(root, subject, "desc-truth_bat")[mask])) < TR


def test_automatic_aif_is_arterial(delivered):
    root, out, _ = delivered
    for subject in SUBJECTS:
        chosen = _map(out, subject, "desc-aif_mask") > 0
        arterial = truth(root, subject, "label-arteries_probseg") > 0
        assert chosen.any() and np.all(arterial[chosen])


def test_rcbv_of_hgg_exceeds_lgg(delivered):
    _, out, _ = delivered

    def tumour_rcbv(subject):
        rows = read_tsv(out / f"sub-{subject}" / "perf"
                        / f"sub-{subject}_ce-gadolinium_desc-roi_roistats.tsv")
        return next(float(r["median"]) for r in rows
                    if r["roi"] == "tumor" and r["measure"] == "rcbv_bsw")

    assert tumour_rcbv("01") > 1.5 * tumour_rcbv("02")


def test_simulated_half_dose_is_written_with_its_label(delivered):
    root, out, _ = delivered
    simulated = _map(out, "01", "rec-dose50_desc-areaRatio_cbv")
    full = _map(out, "01", "desc-areaRatio_cbv")
    mask = _normal(root, "01", "GM")
    # CBV is a ratio to the AIF: the same at any dose, noisier at half dose.
    assert np.median(simulated[mask]) == pytest.approx(np.median(full[mask]), rel=0.1)
    sidecar = json.loads((out / "sub-01" / "perf"
                          / "sub-01_ce-gadolinium_rec-dose50_desc-osvd_cbf.json").read_text())
    assert sidecar["Units"] == "mL/100 g/min"
    assert sidecar["DeconvolutionMethod"] == "osvd"
    # How the dose was simulated: the defaults, the smoother's width at TR 1.5 s.
    assert sidecar["SimulatedDose"] == 0.5
    assert sidecar["LowDoseModel"] == "exponential"
    assert (sidecar["LowDoseSmoother"], sidecar["LowDoseSmootherFrames"]) == ("Savitzky-Golay", 5)


def test_delay_leaves_circulant_cbf_and_biases_ssvd(delivered, delayed):
    """A 3 s tissue delay: cSVD and oSVD CBF change < 5 %; sSVD's changes by > 10 %.

    The block-circulant methods are insensitive to delay by construction; sSVD's
    truncated causal inverse depends on where the residue's peak falls (Wu et al., MRM
    2003;50:164). On this phantom (threshold 0.2, dispersed residues) the 3 s delay
    raises sSVD's median CBF by about 14 %.
    """
    root, out, _ = delivered
    root_delayed, out_delayed, status = delayed
    assert status == 0
    ratios = {}
    for method in ("ssvd", "csvd", "osvd"):
        medians = []
        for base, folder in ((root, out), (root_delayed, out_delayed)):
            mask = _normal(base, "01", "GM") | _normal(base, "01", "WM")
            medians.append(np.median(_map(folder, "01", f"desc-{method}_cbf")[mask]))
        ratios[method] = medians[1] / medians[0]
    assert abs(ratios["csvd"] - 1) < 0.05
    assert abs(ratios["osvd"] - 1) < 0.05
    assert abs(ratios["ssvd"] - 1) > 0.1


@pytest.mark.parametrize("subject", SUBJECTS)
def test_phae_cbf_is_as_close_to_truth_as_osvd(delivered, subject):
    """PHAE's CBF (bundled weights) against oSVD's at SNR 50 in GM: oSVD ~45 % below the
    truth (the phantom's dispersion, 0.5 s in GM, lowers the peak of the effective
    residue to 0.74 of CBF for an MTT of 4 s, and regularisation at TR 1.5 s flattens it
    further); PHAE, whose decoder has a delay and whose training curves are dispersed,
    within 20 % (about 9 %). GM above WM. The sidecar names the weights by their sha256."""
    root, out, _ = delivered
    error, median = {}, {}
    for tissue in ("GM", "WM"):
        mask = _normal(root, subject, tissue)
        expected = truth(root, subject, "desc-truth_cbf")[mask]
        for method in ("phae", "osvd"):
            cbf = _map(out, subject, f"desc-{method}_cbf")[mask]
            error[method, tissue] = np.median(np.abs(cbf - expected) / expected)
            median[method, tissue] = np.median(cbf)
    assert error["phae", "GM"] < min(0.2, error["osvd", "GM"])
    assert median["phae", "GM"] > 1.3 * median["phae", "WM"]
    sidecar = json.loads((out / f"sub-{subject}" / "perf"
                          / f"sub-{subject}_ce-gadolinium_desc-phae_cbf.json").read_text())
    assert len(sidecar["ModelWeightsSHA256"]) == 64


def test_sidecars_and_methods_record_the_field_and_relaxivities(delivered):
    """The phantom declares 1.5 T: every CBV/CBF/AIF sidecar records the field and the
    1.5 T constants used, and the methods text states them (issue 12, item 3)."""
    _, out, _ = delivered
    perf = Path(out) / "sub-01" / "perf"
    expected = {"MagneticFieldStrength": 1.5, "MagneticFieldStrengthSource": "sidecar",
                "RelaxivityFieldStrength": 1.5,
                "TissueRelaxivity": 87.0, "BloodRelaxivity": "linear",
                "BloodRelaxivityLinear": 7.6, "BloodRelaxivityQuadratic": 0.0}
    for name in ("desc-areaRatio_cbv", "desc-bsw_cbv", "desc-osvd_cbf", "desc-phae_cbf",
                 "desc-osvdNawm_cbf", "desc-aif_timeseries"):
        sidecar = json.loads((perf / f"sub-01_ce-gadolinium_{name}.json").read_text())
        assert {key: sidecar.get(key) for key in expected} == expected, name
    citation = (Path(out) / "logs" / "CITATION.md").read_text()
    assert "ΔR2* = 87 C in tissue and ΔR2* = 7.6 C in whole blood" in citation
