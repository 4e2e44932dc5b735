"""The public core API: package exports, the Model/Fit shape with masks, and docs/api.md.

Every model's ``fit(data, mask)`` must equal its functional core on ``data[mask]``, placed
back in the full voxel shape with 0 outside the mask (what the interfaces write), whatever
the values outside the mask are.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate

import bids_perfusion.asl
import bids_perfusion.dsc
from bids_perfusion.asl import MultiDelayModel
from bids_perfusion.constants import KH, RHO_BRAIN
from bids_perfusion.dsc import (
    DeconvolutionModel,
    LeakageModel,
    convolve,
    gamma_variate,
    leakage,
    residue_exponential,
)

ROOT = Path(__file__).resolve().parents[1]
DT = 1.5
TIMES = np.arange(50) * DT
AIF = 5.0 * gamma_variate(TIMES, t0=10.0)


def _volume(rng, shape=(5, 4, 3)):
    """Tissue curves of random CBF and MTT with a little T1 leakage, and a mask with NaN
    curves outside it."""
    cbf = rng.uniform(0.004, 0.015, shape)
    mtt = rng.uniform(2.0, 7.0, shape)
    curves = np.array([convolve(AIF, f * residue_exponential(TIMES, m), DT)
                       for f, m in zip(cbf.ravel(), mtt.ravel(), strict=True)])
    curves = curves.reshape(*shape, TIMES.size)
    curves -= rng.uniform(0, 2e-3, shape)[..., None] * integrate.cumulative_trapezoid(
        curves, TIMES, axis=-1, initial=0.0)
    curves += rng.normal(0, 1e-3, curves.shape)
    mask = rng.random(shape) < 0.7
    curves[~mask] = np.nan
    return curves, mask


def _assert_scattered(volume, voxels, mask):
    np.testing.assert_array_equal(volume[mask], voxels)
    assert volume.shape[:mask.ndim] == mask.shape and not np.any(volume[~mask])


# --- exports -------------------------------------------------------------------------------


@pytest.mark.parametrize("package", [bids_perfusion.dsc, bids_perfusion.asl])
def test_every_exported_name_resolves_to_its_submodule(package):
    tree = ast.parse(Path(package.__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If))
    homes = {alias.name: statement.module for statement in block.body
             for alias in statement.names}
    assert sorted(homes) == sorted(package.__all__)
    for name, module in homes.items():
        value = getattr(package, name)
        assert value is getattr(sys.modules[module], name)
        assert name in dir(package)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        package.nothing  # noqa: B018


def test_importing_the_packages_loads_no_submodule():
    """``import bids_perfusion.dsc`` (e.g. for dsc.relaxivity on the command line) stays
    cheap: scipy and scikit-image are loaded by the first use of a name that needs them."""
    code = ("import sys, bids_perfusion.dsc, bids_perfusion.asl, bids_perfusion.dsc.relaxivity\n"
            "heavy = [m for m in ('scipy', 'skimage', 'torch', 'bids_perfusion.dsc.aif') "
            "if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "from bids_perfusion.dsc import select_aif\n"
            "assert 'scipy' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_py_typed_marker_is_shipped():
    assert (ROOT / "bids_perfusion" / "py.typed").is_file()
    assert "py.typed" in (ROOT / "setup.cfg").read_text()


# --- Model.fit(data, mask) ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["ssvd", "csvd", "osvd", "tikhonov"])
def test_deconvolution_fit_with_a_mask(method):
    curves, mask = _volume(np.random.default_rng(1))
    model = DeconvolutionModel(AIF, DT, method)
    full = model.fit(curves.astype(np.float32), mask=mask)
    voxels = model.fit(curves[mask].astype(np.float32))
    for name in ("cbf", "tmax", "residue", "regularisation"):
        _assert_scattered(getattr(full, name), getattr(voxels, name), mask)
    assert full.cbf.dtype == np.float32
    with pytest.raises(ValueError, match="does not match"):
        model.fit(curves, mask=mask[:-1])
    with pytest.raises(ValueError, match="NaN"):
        model.fit(curves)


@pytest.mark.parametrize("kind", leakage.MODELS)
def test_leakage_fit_with_a_mask(kind):
    curves, mask = _volume(np.random.default_rng(2))
    reference = np.nanmean(curves[mask], axis=0)
    full = LeakageModel(reference, TIMES, kind).fit(curves, mask=mask)
    voxels = leakage.correct(kind, curves[mask], reference, TIMES)
    for name in ("k1", "k2", "corrected", "kep"):
        if voxels.kep is None and name == "kep":
            assert full.kep is None
            continue
        _assert_scattered(getattr(full, name), getattr(voxels, name), mask)
    without_mask = LeakageModel(reference, TIMES, kind).fit(curves[mask])
    np.testing.assert_array_equal(without_mask.k2, voxels.k2)
    with pytest.raises(ValueError, match="unknown leakage model"):
        LeakageModel(reference, TIMES, "weisskoff")


def test_multi_delay_fit_with_a_mask_and_slice_timing():
    """Delays (Z, K) broadcast over a volume (X, Y, Z, K); truth recovered in every slice."""
    from bids_perfusion.asl import pcasl_delta_m

    rng = np.random.default_rng(3)
    shape, plds = (4, 3, 5), np.array([0.5, 1.0, 1.5, 2.0, 2.5])
    delays = plds + 0.04 * np.arange(shape[-1])[:, None]  # (Z, K)
    cbf, att = rng.uniform(20, 80, shape), rng.uniform(0.6, 2.0, shape)
    ratio = pcasl_delta_m(delays, cbf[..., None], att[..., None], 1.0, 1.8, 1.65, 0.85)
    mask = rng.random(shape) < 0.6
    ratio[~mask] = np.nan
    model = MultiDelayModel("PCASL", delays, 1.65, 0.85, labeling_duration=1.8)
    fit = model.fit(ratio, mask=mask)
    np.testing.assert_allclose(fit.cbf[mask], cbf[mask], rtol=1e-4)
    np.testing.assert_allclose(fit.att[mask], att[mask], atol=1e-3)
    assert not np.any(fit.cbf[~mask]) and not np.any(fit.att[~mask])
    rows = np.broadcast_to(delays, ratio.shape)[mask]
    voxels = MultiDelayModel("PCASL", rows, 1.65, 0.85, labeling_duration=1.8).fit(ratio[mask])
    _assert_scattered(fit.cbf, voxels.cbf, mask)
    _assert_scattered(fit.rms_residual, voxels.rms_residual, mask)


def test_phae_fit_with_a_mask():
    phae = pytest.importorskip("bids_perfusion.nn.phae")
    curves, mask = _volume(np.random.default_rng(4))
    network, _ = phae.load_model()
    model = phae.PHAEModel(network, AIF, TIMES, cbv_end=30, device="cpu")
    fit = model.fit(curves.astype(np.float32), mask=mask)
    maps = phae.estimate_maps(network, curves[mask].astype(np.float32), AIF, TIMES,
                              cbv_end=30, device="cpu")
    for name in ("cbf", "mtt", "cbv"):
        _assert_scattered(getattr(fit, name), maps[name], mask)
    flat = model.fit(curves[mask].astype(np.float32))
    np.testing.assert_array_equal(flat.mtt, maps["mtt"])


# --- docs/api.md -----------------------------------------------------------------------------


def test_api_page_runs_and_quantifies_its_phantom(tmp_path, monkeypatch):
    """The code blocks of docs/api.md, run in order as one script, recover the truth of
    their synthetic series: CBV exactly (area ratio), oSVD CBF with its known
    underestimation, PHAE MTT, and ASL CBF and ATT."""
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    ns = {}
    for index, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md block {index}", "exec"), ns)
    assert (tmp_path / "sub-01_cbf.nii.gz").is_file()
    tissue = ns["brain"] & ~ns["selection"].mask & (ns["delta_truth"].max(axis=-1) < 50)
    assert tissue.sum() > 200
    cbv_truth = (100 * KH / RHO_BRAIN * np.trapezoid(ns["tissue_mM"], ns["times"])
                 / np.trapezoid(ns["arterial"], ns["times"]))
    cbf_truth = 6000 * ns["true_cbf"] * KH / RHO_BRAIN
    assert 0.97 < np.median(ns["cbv"][tissue] / cbv_truth[tissue]) < 1.03
    assert 0.7 < np.median(ns["cbf"][tissue] / cbf_truth[tissue]) < 1.0
    # The series samples exp(-t/MTT) from t = 0, half a frame ahead of the mid-point rule:
    # PHAE, trained on delays >= 0, reads such early curves short (0.75; docs/phae.md).
    assert 0.65 < np.median(ns["phae"].mtt[tissue] / ns["true_mtt"][tissue]) < 1.15
    assert abs(np.median(ns["k2"][tissue])) < 1e-3
    np.testing.assert_allclose(ns["cbf_asl"], ns["true_asl_cbf"], rtol=1e-9)
    np.testing.assert_allclose(ns["asl_fit"].cbf, ns["true_asl_cbf"], rtol=1e-6)
    np.testing.assert_allclose(ns["asl_fit"].att, ns["true_att"], atol=1e-4)
