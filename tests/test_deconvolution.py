"""Tests of the vectorised DSC deconvolution core against closed forms and a per-voxel reference.

The reference is :func:`bids_perfusion.testing.references.deconvolve`, a plain loop over
voxels with numpy.linalg written from the papers without the vectorised code's shortcuts;
``benchmarks/bench_deconvolution.py`` times it too.
"""

import numpy as np
import pytest

from bids_perfusion.dsc import deconvolution, kinetics, truncated_svd
from bids_perfusion.dsc.deconvolution import DeconvolutionModel
from bids_perfusion.dsc.tikhonov import Tikhonov
from bids_perfusion.dsc.truncated_svd import oscillation_index
from bids_perfusion.testing import references

#: (method, parameters) of every method and criterion, for parametrised tests.
ALL_METHODS = [
    ("ssvd", {}),
    ("csvd", {}),
    ("osvd", {}),
    ("tikhonov", {"criterion": "fixed"}),
    ("tikhonov", {"criterion": "gcv"}),
    ("tikhonov", {"criterion": "lcurve"}),
]
METHOD_IDS = ["ssvd", "csvd", "osvd", "tikhonov-fixed", "tikhonov-gcv", "tikhonov-lcurve"]


# --- fixtures ------------------------------------------------------------------------------

DT = 1.5


def _aif(t):
    return 5.0 * kinetics.gamma_variate(t, t0=6.0, alpha=3.0, beta=1.5)


def _tissue(aif, cbf, mtt, dt, delay=0.0):
    """Noise-free ``C_tis = dt · A(shifted AIF) k`` with ``k = CBF · exp(−t/MTT)``; CBF in s⁻¹."""
    t = np.arange(aif.size) * dt
    k = np.asarray(cbf)[..., None] * kinetics.residue_exponential(t, np.asarray(mtt)[..., None])
    arterial = np.broadcast_to(kinetics.shift(aif, delay, dt), k.shape)
    return kinetics.convolve(arterial, k, dt)


@pytest.fixture(scope="module")
def noisy_batch():
    """16 voxels, 40 frames: CBF 10-80 mL/100 mL/min, MTT 10-2 s, noise 0-8 % of the peak."""
    rng = np.random.default_rng(1)
    aif = _aif(np.arange(40) * DT)
    cbf = np.linspace(10, 80, 16) / 6000
    tissue = _tissue(aif, cbf, np.linspace(10, 2, 16), DT)
    tissue += rng.normal(size=tissue.shape) * np.linspace(0, 0.08, 16)[:, None] * tissue.max()
    return aif, tissue


# --- vectorised == per-voxel reference -----------------------------------------------------


@pytest.mark.parametrize(("method", "params"), ALL_METHODS, ids=METHOD_IDS)
def test_vectorised_equals_per_voxel_reference(noisy_batch, method, params):
    aif, tissue = noisy_batch
    fit = DeconvolutionModel(aif, DT, method, chunk_size=5, **params).fit(tissue)
    residue, regularisation = references.deconvolve(aif, DT, tissue, method, **params)
    np.testing.assert_array_equal(fit.regularisation, regularisation)
    np.testing.assert_allclose(fit.residue, residue, rtol=1e-8, atol=1e-8 * np.abs(residue).max())


@pytest.mark.parametrize(("method", "params"), [ALL_METHODS[2], *ALL_METHODS[4:]])
def test_per_voxel_choice_is_exercised(noisy_batch, method, params):
    """The batch makes the adaptive methods pick at least three different values."""
    aif, tissue = noisy_batch
    fit = DeconvolutionModel(aif, DT, method, **params).fit(tissue)
    assert np.unique(fit.regularisation).size >= 3


def test_lcurve_curvature_matches_second_derivative_formula(noisy_batch):
    aif, tissue = noisy_batch
    grid = np.logspace(-3, 0, 13)
    solver = Tikhonov(aif, DT, "lcurve", 0.2, grid)
    beta2 = (tissue[8] @ solver._u) ** 2
    a = references.causal_matrix(aif, DT)
    s_max = np.linalg.norm(a, 2)
    expected = [
        references.lcurve_curvature(a, tissue[8], lam * s_max,
                                    references.tikhonov_path(a, lam * s_max)[0])
        for lam in grid
    ]
    np.testing.assert_allclose(solver.lcurve_curvature(beta2[None])[0], expected, rtol=1e-6)


def test_oscillation_index_by_hand():
    # Second differences of [0, 1, 0, 1, 0]: |0-2+0|, |1-0+1|, |0-2+0| -> 6; N=5, max|f|=1.
    assert oscillation_index(np.array([0.0, 1.0, 0.0, 1.0, 0.0])) == pytest.approx(6 / 5)
    assert oscillation_index(np.linspace(0, 3, 7)) == pytest.approx(0.0)
    assert oscillation_index(np.zeros((2, 6))).tolist() == [0.0, 0.0]
    assert oscillation_index(-2 * np.array([0.0, 1.0, 0.0, 1.0, 0.0])) == pytest.approx(6 / 5)


def test_oscillation_index_along_any_axis_equals_the_definition():
    rng = np.random.default_rng(3)
    curves = rng.standard_normal((7, 30))
    expected = np.abs(np.diff(curves, n=2, axis=-1)).sum(axis=-1) / (30 * np.abs(curves).max(-1))
    np.testing.assert_allclose(oscillation_index(curves), expected, rtol=1e-12)
    single = curves.astype(np.float32)
    np.testing.assert_array_equal(oscillation_index(single.T, axis=0), oscillation_index(single))
    assert oscillation_index(single).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_osvd_sweep_in_small_blocks_equals_per_voxel_reference(noisy_batch, monkeypatch, dtype):
    """Sweep blocks of 3 voxels (the last one partial, fewer as voxels leave the sweep)
    reuse one block's scratch: the thresholds are still the per-voxel reference's."""
    aif, tissue = noisy_batch
    monkeypatch.setattr(truncated_svd, "_SWEEP_BLOCK", 3)
    fit = DeconvolutionModel(aif, DT, "osvd").fit(tissue.astype(dtype))
    residue, regularisation = references.deconvolve(aif, DT, tissue, "osvd")
    np.testing.assert_array_equal(fit.regularisation, regularisation)
    tolerance = 1e-8 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(fit.residue, residue, rtol=tolerance,
                               atol=tolerance * np.abs(residue).max())


@pytest.mark.parametrize("method", ["osvd", "csvd", "tikhonov"])
def test_blocks_on_two_threads_equal_blocks_in_order(noisy_batch, monkeypatch, method):
    """The fit's voxel blocks on two threads (one BLAS thread each) write the same residues
    and thresholds as the same blocks one after the other."""
    aif, tissue = noisy_batch
    data = np.tile(tissue.astype(np.float32), (5, 1))
    model = DeconvolutionModel(aif, DT, method, chunk_size=max(1, len(data) // 7))
    fits = {}
    for workers in (1, 2):
        monkeypatch.setattr(deconvolution, "block_workers", lambda workers=workers: workers)
        fits[workers] = model.fit(data)
    np.testing.assert_array_equal(fits[2].residue, fits[1].residue)
    np.testing.assert_array_equal(fits[2].regularisation, fits[1].regularisation)


# --- noise-free closed forms ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("dt", "n_frames"), [(DT, 60), (0.1, 900)], ids=["frame-grid", "fine-grid"]
)
@pytest.mark.parametrize(
    ("method", "params"),
    [("ssvd", {"threshold": 1e-6}), ("tikhonov", {"criterion": "fixed", "lam": 1e-6})],
    ids=["ssvd", "tikhonov"],
)
def test_noise_free_inversion_is_exact(dt, n_frames, method, params):
    """Barely regularised, the left-rectangle model inverts exactly: Δt and A[i, j] are right."""
    t = np.arange(n_frames) * dt
    aif = _aif(t)
    cbf = np.array([10, 60, 90]) / 6000
    fit = DeconvolutionModel(aif, dt, method, **params).fit(_tissue(aif, cbf, 4.0, dt))
    np.testing.assert_allclose(fit.cbf, 6000 * cbf, rtol=1e-6)
    np.testing.assert_array_equal(fit.tmax, 0.0)


@pytest.mark.parametrize(("method", "params"), ALL_METHODS, ids=METHOD_IDS)
def test_noise_free_defaults_recover_cbf(method, params):
    """Literature defaults on the frame grid (Δt 1.5 s), CBF 60, MTT 6-12 s: within 20 %.

    The truncated methods underestimate, less as MTT grows (Ostergaard et al. 1996):
    CBF / truth is ≤ 1 and non-decreasing in MTT for them.
    """
    aif = _aif(np.arange(60) * DT)
    mtt = np.array([6.0, 8.0, 12.0])
    ratio = DeconvolutionModel(aif, DT, method, **params).fit(
        _tissue(aif, np.full(3, 0.01), mtt, DT)
    ).cbf / 60.0
    np.testing.assert_array_less(np.abs(ratio - 1), 0.2)
    if method != "tikhonov" or params["criterion"] == "fixed":
        assert np.all(ratio <= 1 + 1e-9)
        assert np.all(np.diff(ratio) >= -1e-9)


# --- delay, Tmax, Δt -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def delayed_fits():
    """Noise-free CBF 60, MTT 4 s, fitted without and with a 3 s tissue delay, every method."""
    aif = _aif(np.arange(60) * DT)
    curves = np.stack([_tissue(aif, 0.01, 4.0, DT), _tissue(aif, 0.01, 4.0, DT, delay=3.0)])
    return {
        name: DeconvolutionModel(aif, DT, method, **params).fit(curves)
        for name, (method, params) in zip(METHOD_IDS, ALL_METHODS, strict=True)
    }


@pytest.mark.parametrize("name", ["csvd", "osvd"])
def test_block_circulant_cbf_is_delay_insensitive(delayed_fits, name):
    cbf = delayed_fits[name].cbf
    assert abs(cbf[1] / cbf[0] - 1) < 0.05


def test_standard_svd_underestimates_delayed_tissue(delayed_fits):
    """Known sSVD bias (Wu et al. 2003): a 3 s delay lowers CBF by more than 10 % (here 17 %)."""
    cbf = delayed_fits["ssvd"].cbf
    assert cbf[1] / cbf[0] < 0.9


@pytest.mark.parametrize("name", ["csvd", "osvd", "tikhonov-gcv", "tikhonov-lcurve"])
def test_tmax_shifts_by_the_delay(delayed_fits, name):
    tmax = delayed_fits[name].tmax
    assert abs(tmax[1] - tmax[0] - 3.0) <= DT


def test_tmax_is_signed_for_a_tissue_curve_leading_the_aif():
    """With the AIF measured 6 s after the tissue curve, cSVD puts the peak at a lag of −6 s."""
    aif = _aif(np.arange(60) * DT)
    late_aif = kinetics.shift(aif, 6.0, DT)
    fit = DeconvolutionModel(late_aif, DT, "csvd").fit(_tissue(aif, 0.01, 4.0, DT))
    assert abs(fit.tmax + 6.0) <= DT


@pytest.mark.parametrize(("method", "params"), ALL_METHODS, ids=METHOD_IDS)
def test_same_samples_at_twice_the_interval_halve_cbf(noisy_batch, method, params):
    """``C_tis = Δt A k``: reading the same samples with 2Δt must give exactly half of k."""
    aif, tissue = noisy_batch
    once = DeconvolutionModel(aif, DT, method, **params).fit(tissue)
    twice = DeconvolutionModel(aif, 2 * DT, method, **params).fit(tissue)
    np.testing.assert_allclose(twice.residue, once.residue / 2, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("method", "params"), ALL_METHODS, ids=METHOD_IDS)
def test_resampling_does_not_change_cbf(method, params):
    """A smooth truth sampled at Δt 0.5 s and 1 s gives the same CBF within 12 %.

    Forgetting Δt in the matrix would make the two differ by a factor 2.
    """
    fine_dt = 0.02
    t = np.arange(0, 120, fine_dt)
    aif = _aif(t)
    tissue = kinetics.convolve(aif, 0.01 * kinetics.residue_gamma(t, 8.0, 3.0), fine_dt)
    cbf = []
    for dt in (0.5, 1.0):
        step = round(dt / fine_dt)
        model = DeconvolutionModel(aif[::step], dt, method, **params)
        cbf.append(model.fit(tissue[::step]).cbf)
    assert abs(cbf[1] / cbf[0] - 1) < 0.12


# --- shapes, dtypes, chunks ----------------------------------------------------------------


@pytest.mark.parametrize(("method", "params"), ALL_METHODS, ids=METHOD_IDS)
def test_volume_shapes_dtypes_and_chunks(noisy_batch, method, params):
    aif, tissue = noisy_batch
    volume = tissue.reshape(2, 4, 2, -1)
    model = DeconvolutionModel(aif, DT, method, **params)
    fit = model.fit(volume)
    flat = DeconvolutionModel(aif, DT, method, chunk_size=3, **params).fit(tissue)
    n = 2 * aif.size if method in ("csvd", "osvd") else aif.size
    assert fit.residue.shape == (2, 4, 2, n)
    for name in ("cbf", "tmax", "regularisation"):
        assert getattr(fit, name).shape == (2, 4, 2)
        np.testing.assert_allclose(getattr(fit, name).ravel(), getattr(flat, name), rtol=1e-12)
    single = model.fit(volume.astype(np.float32))
    assert single.residue.dtype == np.float32
    np.testing.assert_allclose(single.cbf, fit.cbf, rtol=1e-3, atol=1e-3 * fit.cbf.max())


# --- bad input -----------------------------------------------------------------------------


def test_bad_input_raises_clear_errors(noisy_batch):
    aif, tissue = noisy_batch
    with pytest.raises(ValueError, match="AIF is all zeros"):
        DeconvolutionModel(np.zeros(40), DT)
    with pytest.raises(ValueError, match="AIF contains NaN"):
        DeconvolutionModel(np.where(np.arange(40) == 3, np.nan, aif), DT)
    with pytest.raises(ValueError, match="one curve"):
        DeconvolutionModel(np.ones((2, 40)), DT)
    with pytest.raises(ValueError, match="frame interval"):
        DeconvolutionModel(aif, 0.0)
    with pytest.raises(ValueError, match="AIF's 40 frames"):
        DeconvolutionModel(aif, DT).fit(tissue[:, :39])
    bad = tissue.copy()
    bad[[2, 5], 7] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values in 2 voxel"):
        DeconvolutionModel(aif, DT).fit(bad)


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("svd", {}, "unknown deconvolution method"),
        ("ssvd", {"lam": 0.1}, "takes parameters"),
        ("ssvd", {"threshold": 0.0}, "threshold must be in"),
        ("csvd", {"threshold": 1.5}, "threshold must be in"),
        ("osvd", {"oi_threshold": -1.0}, "oi_threshold"),
        ("osvd", {"threshold_grid": ()}, "threshold_grid"),
        ("tikhonov", {"criterion": "discrepancy"}, "criterion"),
        ("tikhonov", {"lambda_grid": (0.1, 2.0)}, "lambda_grid"),
    ],
)
def test_bad_parameters_raise(noisy_batch, method, params, message):
    with pytest.raises(ValueError, match=message):
        DeconvolutionModel(noisy_batch[0], DT, method, **params)


def test_bad_chunk_size_raises(noisy_batch):
    with pytest.raises(ValueError, match="chunk_size"):
        DeconvolutionModel(noisy_batch[0], DT, chunk_size=0)


@pytest.mark.parametrize(("method", "params"), ALL_METHODS, ids=METHOD_IDS)
def test_zero_and_empty_input_give_zero_cbf_without_warnings(noisy_batch, method, params):
    """Background voxels (all zeros) and empty masks are legal; the config turns our
    RuntimeWarnings into errors, so a 0/0 in a criterion would fail here."""
    model = DeconvolutionModel(noisy_batch[0], DT, method, **params)
    np.testing.assert_array_equal(model.fit(np.zeros((3, 40))).cbf, 0.0)
    assert model.fit(np.zeros((0, 40))).cbf.shape == (0,)
