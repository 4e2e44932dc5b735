"""Gamma-variate first pass: closed-form curves with a known recirculation."""

import numpy as np
import pytest
from scipy import integrate, special

from bids_perfusion.dsc import kinetics
from bids_perfusion.dsc.first_pass import fit_gamma_variate, gamma_variate_area

#: A fine grid for the curves' construction; frames every 1.5 s for 60 frames.
STEP = 10
TR = 1.5
FINE = np.arange(60 * STEP) * TR / STEP
FRAMES = FINE[::STEP]


def _passes(alpha, beta, delay, t0=18.0, fraction=0.25, dispersion=3.0):
    """First pass ``K s^α e^(−s/β)`` (K = 1) and a recirculation: the same gamma delayed by
    ``delay`` s, dispersed by an exponential of ``dispersion`` s and scaled to
    ``fraction`` of the first pass's area. Returns (first, both) at the frames, and the
    first pass's closed-form area ``β^(α+1) Γ(α+1)``."""
    def gamma(start):
        s = np.clip(FINE - start, 0.0, None)
        return s**alpha * np.exp(-s / beta)

    dt = FINE[1] - FINE[0]
    kernel = kinetics.dispersion_kernel(FINE, dispersion)
    second = kinetics.convolve(gamma(t0 + delay), kernel / (kernel.sum() * dt), dt)
    first = gamma(t0)
    second *= fraction * first.sum() / second.sum()
    area = beta ** (alpha + 1) * special.gamma(alpha + 1)
    return first[::STEP], (first + second)[::STEP], area


#: (α, β, recirculation delay): the phantom's AIF, a sharp and a broad bolus.
CASES = [(3.0, 1.5, 8.0), (4.0, 1.0, 10.0), (2.0, 3.0, 12.0)]


@pytest.mark.parametrize(("alpha", "beta", "delay"), CASES)
def test_fit_recovers_the_first_pass_despite_recirculation(alpha, beta, delay):
    first, both, area = _passes(alpha, beta, delay)
    raw = integrate.trapezoid(both, FRAMES)
    assert raw > 1.2 * area  # the recirculation adds its 25 %
    fit = fit_gamma_variate(both, FRAMES)
    assert fit.area == pytest.approx(area, rel=0.02)
    assert integrate.trapezoid(fit.curves, FRAMES) == pytest.approx(area, rel=0.02)
    assert fit.r_squared > 0.99
    assert np.max(np.abs(fit.curves - first)) < 0.03 * first.max()


def test_fit_is_exact_on_a_pure_gamma_variate():
    first, _, area = _passes(3.0, 1.5, 8.0)
    fit = fit_gamma_variate(first, FRAMES)
    assert (fit.t0, fit.alpha, fit.beta) == pytest.approx((18.0, 3.0, 1.5), rel=1e-3)
    assert fit.area == pytest.approx(area, rel=1e-4)
    assert fit.r_squared == pytest.approx(1.0, abs=1e-8)
    assert gamma_variate_area(fit.peak, fit.time_to_peak, fit.alpha) == pytest.approx(area,
                                                                                      rel=1e-4)


@pytest.mark.parametrize(("alpha", "beta", "delay"), CASES)
def test_fit_at_snr_20(alpha, beta, delay):
    """400 noisy copies (noise SD = peak / 20), fitted at once: median area within 2.5 %
    of the first pass, interquartile range within ±6 %, median R² above 0.95; the raw
    area stays 25 % high."""
    _, both, area = _passes(alpha, beta, delay)
    rng = np.random.default_rng(1)
    noisy = both + both.max() / 20.0 * rng.standard_normal((400, FRAMES.size))
    fit = fit_gamma_variate(noisy, FRAMES)
    ratio = fit.area / area
    assert np.median(ratio) == pytest.approx(1.0, abs=0.025)
    assert np.percentile(ratio, 25) > 0.94 and np.percentile(ratio, 75) < 1.06
    assert np.median(fit.r_squared) > 0.95
    assert np.median(integrate.trapezoid(noisy, FRAMES)) / area > 1.2


def test_flat_curves_give_zero_and_no_quality():
    curves = np.zeros((3, FRAMES.size))
    curves[1] = _passes(3.0, 1.5, 8.0)[1]
    fit = fit_gamma_variate(curves, FRAMES)
    assert np.all(fit.curves[[0, 2]] == 0) and np.isnan(fit.r_squared[[0, 2]]).all()
    assert fit.r_squared[1] > 0.99


def test_mismatched_times_are_refused():
    with pytest.raises(ValueError, match="time axis"):
        fit_gamma_variate(np.ones((2, 10)), np.arange(9.0))


def test_interfaces_record_the_fit_in_the_sidecar(tmp_path, monkeypatch):
    """FirstPassFit on a small volume of scaled copies of the AIF: CBV by the area ratio is
    the scale either way; the sidecar says FirstPass gamma with its R², or none."""
    import nibabel as nib

    from bids_perfusion.interfaces.aif import AIF_COLUMNS
    from bids_perfusion.interfaces.first_pass import FirstPassFit
    from bids_perfusion.interfaces.maps import BloodVolume
    from bids_perfusion.interfaces.nifti import load
    from bids_perfusion.tsv import write_tsv

    monkeypatch.chdir(tmp_path)
    _, both, _ = _passes(3.0, 1.5, 8.0)
    aif = 5.0 * both / both.max()
    scales = np.linspace(0.01, 0.05, 4 * 4 * 3).reshape(4, 4, 3)
    nib.Nifti1Image((scales[..., None] * aif).astype(np.float32), np.eye(4)).to_filename(
        "delta.nii.gz")
    nib.Nifti1Image(np.ones((4, 4, 3), np.uint8), np.eye(4)).to_filename("brain.nii.gz")
    rows = [dict(zip(AIF_COLUMNS, (t, c, c), strict=True)) for t, c in zip(FRAMES, aif,
                                                                          strict=True)]
    aif_tsv = write_tsv(rows, AIF_COLUMNS, "aif.tsv")
    fit = FirstPassFit(delta_r2star="delta.nii.gz", brain_mask="brain.nii.gz",
                       aif_tsv=aif_tsv).run().outputs
    assert fit.metadata["FirstPass"] == "gamma"
    assert fit.metadata["FirstPassAIFRSquared"] > 0.99
    assert fit.metadata["FirstPassMedianRSquared"] > 0.99
    from bids_perfusion.dsc.relaxivity import at_field

    scaling = {"kh": 1.0, "rho": 1.0, "relaxivity": at_field(1.5).sidecar()}
    gamma = BloodVolume(delta_r2star=fit.delta_r2star, brain_mask="brain.nii.gz",
                        aif_tsv=fit.aif_tsv, first_pass=fit.metadata, **scaling).run()
    none = BloodVolume(delta_r2star="delta.nii.gz", brain_mask="brain.nii.gz",
                       aif_tsv=aif_tsv, **scaling).run()
    assert gamma.outputs.metadata["FirstPassMedianRSquared"] > 0.99
    assert none.outputs.metadata["FirstPass"] == "none"
    # ΔR2* of tissue is r2* C: the area ratio of the copies is scale / r2* (× 100).
    for result in (gamma, none):
        ratio = load(result.outputs.cbv) / (100.0 * scales)
        np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-3)
    np.testing.assert_allclose(load(gamma.outputs.cbv), load(none.outputs.cbv), rtol=2e-3)


@pytest.mark.slow
def test_participant_run_with_gamma_first_pass(tmp_path):
    """The command line with ``--first-pass gamma``: the CBV and CBF sidecars carry the fit
    and its quality; the automatic NAWM is white matter on the side opposite the tumour."""
    import json

    import nibabel as nib
    from helpers import load, small_config, truth, tumour_derivatives

    from bids_perfusion.cli.run import main
    from bids_perfusion.dsc.normalisation import world_x
    from bids_perfusion.phantom import write_dataset

    root = write_dataset(tmp_path / "bids", small_config(asl=None, grades=("HGG",)))
    out = tmp_path / "out"
    # --nprocs 2 with a simulated dose (two runs, so MultiProc is chosen): the suite's
    # participant run through nipype's MultiProc plugin (spawned workers: every node's
    # inputs pickled, the dose reading the acquired run's motion correction); the other
    # pipeline tests run in one process
    status = main([str(root), str(out), "participant", "--skip-bids-validation",
                   "-w", str(tmp_path / "work"), "--nprocs", "2", "--dsc-methods", "osvd",
                   "--simulate-dose", "0.5",
                   "--no-leakage-correction", "--first-pass", "gamma",
                   "--derivatives", str(tumour_derivatives(root, tmp_path / "masks"))])
    assert status == 0
    [log] = (out / "logs").glob("bids-perfusion-*.log")
    assert "nipype plugin: MultiProc" in log.read_text()
    perf = out / "sub-01" / "perf"
    assert (perf / "sub-01_ce-gadolinium_rec-dose50_desc-confounds_timeseries.tsv").is_file()
    for name in ("desc-areaRatio_cbv", "desc-osvd_cbf", "desc-areaRatioNawm_cbv"):
        sidecar = json.loads((perf / f"sub-01_ce-gadolinium_{name}.json").read_text())
        assert sidecar["FirstPass"] == "gamma", name
        assert sidecar["FirstPassMedianRSquared"] > 0.9
        assert sidecar["FirstPassAIFRSquared"] > 0.95
    path = perf / "sub-01_ce-gadolinium_desc-NAWM_mask.nii.gz"
    nawm = load(path) > 0
    assert truth(root, "01", "label-WM_probseg")[nawm].mean() > 0.75
    x = world_x(nawm.shape, nib.load(path).affine)
    brain = truth(root, "01", "label-brain_mask") > 0
    tumour = truth(root, "01", "label-tumor_mask") > 0
    centre = x[brain].mean()
    assert np.all(np.sign(x[nawm] - centre) == -np.sign(x[tumour].mean() - centre))
