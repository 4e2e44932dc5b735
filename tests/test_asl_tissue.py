"""Tissue-aware ASL: voxelwise tissue T1 in the multi-delay fit, Asllani's partial-volume
correction, and the GM/WM partial-volume maps given with ``--derivatives``.

Closed forms (piecewise-constant tissue CBF), ASLDRO's noise-free multi-delay data (an
independent implementation of the kinetic model: skipped without asldro, a failure in CI),
and the workflow on a small noise-free phantom with its truth probsegs.
"""

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from asldro_data import ASLDRO_PLDS, ASLDRO_TISSUES, TAU, asldro_generate
from helpers import load, small_config, truth
from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from bids_perfusion import constants
from bids_perfusion.asl import partial_volume, tissue
from bids_perfusion.asl.multi_delay import MultiDelayModel
from bids_perfusion.collect import collect_asl_runs, layout_of
from bids_perfusion.phantom import write_dataset
from bids_perfusion.phantom.bids import TRUTH
from bids_perfusion.workflows.asl import init_asl_wf
from bids_perfusion.workflows.asl_options import ASLOptions

PLDS = (0.25, 0.5, 1.0, 1.5, 2.0, 2.5)


def _fractions(shape, seed=0):
    """Random GM and WM fractions with CSF in between: GM + WM <= 1, not proportional."""
    rng = np.random.default_rng(seed)
    tissue_share = rng.uniform(0.3, 1.0, shape)
    gm_share = rng.uniform(0.0, 1.0, shape)
    return tissue_share * gm_share, tissue_share * (1.0 - gm_share)


# --- partial-volume correction: closed forms ------------------------------------------------


def test_pvc_recovers_piecewise_constant_tissue_cbf_exactly():
    shape = (20, 20, 3)
    gm, wm = _fractions(shape)
    gm_cbf = np.array([60.0, 50.0, 40.0])  # one value per slice: the kernel is n x n x 1
    wm_cbf = np.array([20.0, 25.0, 15.0])
    cbf = gm * gm_cbf + wm * wm_cbf
    mask = np.ones(shape, bool)
    mask[0, 0, 0] = False  # voxels out of the mask do not enter the sums
    cbf[0, 0, 0] = 1e6
    result = partial_volume.linear_regression_pvc(cbf, gm, wm, mask, kernel=5)
    assert not result.undetermined.any()
    np.testing.assert_allclose(result.gm[mask], np.broadcast_to(gm_cbf, shape)[mask],
                               rtol=1e-9)
    np.testing.assert_allclose(result.wm[mask], np.broadcast_to(wm_cbf, shape)[mask],
                               rtol=1e-9)
    assert result.gm[0, 0, 0] == 0 and result.wm[0, 0, 0] == 0


def test_pvc_kernel_size_sets_the_width_of_the_error_at_a_boundary():
    shape = (24, 8, 1)
    gm, wm = _fractions(shape, seed=1)
    gm_cbf = np.where(np.arange(24) < 12, 60.0, 30.0)[:, None, None]
    cbf = gm * gm_cbf + wm * 20.0
    mask = np.ones(shape, bool)
    for kernel in (3, 5, 7):
        result = partial_volume.linear_regression_pvc(cbf, gm, wm, mask, kernel)
        half = kernel // 2
        x = np.arange(24)
        clean = (x + half <= 11) | (x - half >= 12)  # the kernel stays on one side
        error = np.abs(result.gm - np.broadcast_to(gm_cbf, shape)).max(axis=(1, 2))
        assert error[clean].max() < 1e-9
        assert error[~clean].min() > 0.1
        assert (~clean).sum() == 2 * half


def test_pvc_one_tissue_kernels_and_proportional_fractions():
    shape = (12, 12, 1)
    gm = np.zeros(shape)
    gm[:6] = np.linspace(0.5, 1.0, 6)[:, None, None]  # GM only, varying: one-tissue fit
    wm = np.zeros(shape)
    wm[6:] = 0.4  # 0.3 GM + 0.4 WM everywhere on the right: the split is undetermined
    gm[6:] = 0.3
    cbf = gm * 55.0 + wm * 20.0
    result = partial_volume.linear_regression_pvc(cbf, gm, wm, np.ones(shape, bool), 3)
    np.testing.assert_allclose(result.gm[:5], 55.0, rtol=1e-9)
    assert (result.wm[:6] == 0).all()
    assert result.undetermined[7:].all() and not result.undetermined[:5].any()
    assert (result.gm[7:] == 0).all() and (result.wm[7:] == 0).all()
    # WM only, then GM only along the filters' direction: the running sums leave ~1e-17 of
    # WM in the GM-only kernels; both tissues stay exact and determined.
    rng = np.random.default_rng(2)
    gm, wm = np.zeros((30, 30, 1)), np.zeros((30, 30, 1))
    wm[:12], gm[12:] = rng.uniform(0.2, 1.0, (12, 30, 1)), rng.uniform(0.2, 1.0, (18, 30, 1))
    result = partial_volume.linear_regression_pvc(gm * 70.0 + wm * 25.0, gm, wm,
                                                  np.ones(gm.shape, bool), 5)
    np.testing.assert_allclose(result.gm[12:], 70.0, rtol=1e-9)
    np.testing.assert_allclose(result.wm[:12], 25.0, rtol=1e-9)
    assert not result.undetermined.any()


def test_pvc_refuses_bad_fractions_and_kernels():
    shape = (6, 6, 2)
    gm, wm = _fractions(shape)
    mask = np.ones(shape, bool)
    with pytest.raises(ValueError, match=r"grey-matter fractions range from .* outside \[0, 1\]"):
        partial_volume.linear_regression_pvc(gm, gm * 100, wm, mask, 3)
    with pytest.raises(ValueError, match=r"sum to more than 1 .* one segmentation"):
        partial_volume.linear_regression_pvc(gm, np.full(shape, 0.6), np.full(shape, 0.6),
                                             mask, 3)
    with pytest.raises(ValueError, match="odd number of voxels"):
        partial_volume.linear_regression_pvc(gm, gm, wm, mask, 4)


# --- tissue T1 and grids ---------------------------------------------------------------------


def test_tissue_t1_is_the_fraction_weighted_relaxation_rate():
    gm = np.array([1.0, 0.0, 0.5, 0.3, 0.0])
    wm = np.array([0.0, 1.0, 0.5, 0.0, 0.0])
    t1 = tissue.tissue_t1(gm, wm, 1.33, 0.83)
    np.testing.assert_allclose(t1, [1.33, 0.83, 1.0 / (0.5 / 1.33 + 0.5 / 0.83), 1.33, 1.33])


def test_resample_linear_by_world_coordinates():
    """A map linear in world coordinates, on a finer and shifted grid of the same space,
    comes back exactly on the ASL grid (trilinear interpolation of a linear function)."""
    target_affine = np.diag([3.0, 3.0, 4.0, 1.0])
    target_affine[:3, 3] = [-30.0, -30.0, -20.0]
    source_affine = np.diag([1.5, 1.5, 2.0, 1.0])
    source_affine[:3, 3] = [-33.0, -33.0, -24.0]
    source_shape, target_shape = (46, 46, 24), (20, 20, 10)

    def ramp(affine, shape):
        ijk = np.indices(shape).reshape(3, -1)
        xyz = affine[:3, :3] @ ijk + affine[:3, 3:]
        return (0.5 + 0.004 * xyz[0] - 0.003 * xyz[1] + 0.002 * xyz[2]).reshape(shape)

    resampled = tissue.resample_linear(ramp(source_affine, source_shape), source_affine,
                                       target_affine, target_shape)
    np.testing.assert_allclose(resampled, ramp(target_affine, target_shape), atol=1e-12)
    with pytest.raises(ValueError, match="does not cover the ASL grid"):
        tissue.resample_linear(np.zeros((10, 10, 10)), source_affine, target_affine,
                               target_shape)


# --- voxelwise tissue T1 in the multi-delay fit ---------------------------------------------


def test_voxelwise_t1_equal_to_the_global_value_reproduces_the_fit():
    rng = np.random.default_rng(3)
    model = MultiDelayModel("PCASL", np.array(PLDS), 1.65, 0.85, labeling_duration=1.8,
                            t1_tissue=1.33)
    cbf, att = rng.uniform(10, 90, (6, 5, 4)), rng.uniform(0.3, 2.0, (6, 5, 4))
    ratio = model.predict(cbf, att) + rng.normal(0, 2e-4, (6, 5, 4, len(PLDS)))
    mask = rng.uniform(size=(6, 5, 4)) > 0.2
    voxelwise = MultiDelayModel("PCASL", np.array(PLDS), 1.65, 0.85, labeling_duration=1.8,
                                t1_tissue=np.full((6, 5, 4), 1.33))
    for given in (mask, None):
        one, many = model.fit(ratio, mask=given), voxelwise.fit(ratio, mask=given)
        np.testing.assert_array_equal(many.cbf, one.cbf)
        np.testing.assert_array_equal(many.att, one.att)
        assert many.iterations == one.iterations
    with pytest.raises(ValueError, match="t1_tissue of shape"):
        MultiDelayModel("PCASL", np.array(PLDS), 1.65, 0.85, labeling_duration=1.8,
                        t1_tissue=np.ones(3)).fit(ratio)


def test_voxelwise_t1_makes_the_fit_of_asldro_exact(tmp_path):
    """ASLDRO's noise-free multi-PLD GM | WM blocks (T1 1.33 s | 0.83 s): T1' = T1 of blood
    reads CBF far too low in both tissues (GM -18.5 %, WM -55 %); the tissue T1 built from
    the GM/WM fractions brings both within 1 %."""
    dro = asldro_generate(tmp_path)
    ratios = []
    for path in sorted((dro / "asl").glob("*_asl.nii.gz"))[1:]:  # the first is PLD 1.8 only
        series = load(path)
        ratios.append((series[..., 1] - series[..., 2]) / np.maximum(series[..., 0], 1e-9))
    ratio = np.stack(ratios, axis=-1)
    seg = np.rint(load(next((dro / "ground_truth").glob("*_seg_label.nii.gz"))))
    gm, wm = (seg == 1).astype(float), (seg == 2).astype(float)
    brain = seg > 0
    field_t1 = (constants.T1_GREY_MATTER[3.0], constants.T1_WHITE_MATTER[3.0])
    assert field_t1 == (ASLDRO_TISSUES[1][2], ASLDRO_TISSUES[2][2])
    fits = {}
    for name, t1 in (("blood", None), ("voxelwise", tissue.tissue_t1(gm, wm, *field_t1))):
        model = MultiDelayModel("PCASL", np.array(ASLDRO_PLDS), constants.T1_BLOOD[3.0],
                                0.85, labeling_duration=TAU, t1_tissue=t1)
        fits[name] = model.fit(ratio, mask=brain)
    for label, (flow, att, *_rest) in ASLDRO_TISSUES.items():
        voxels = seg == label
        biased = fits["blood"].cbf[voxels].mean() / flow - 1
        assert biased < {1: -0.15, 2: -0.4}[label]
        np.testing.assert_allclose(fits["voxelwise"].cbf[voxels], flow, rtol=0.01)
        np.testing.assert_allclose(fits["voxelwise"].att[voxels], att, atol=0.01)


# --- the workflow with partial-volume maps given -----------------------------------------


def _probseg_derivatives(root, dest):
    """A derivatives folder holding only the phantom's truth GM and WM probsegs."""
    for path in (Path(root) / TRUTH).glob("sub-*/perf/*_label-[GW]M_probseg.nii.gz"):
        target = dest / path.relative_to(Path(root) / TRUTH)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return dest


def _run(run, options, tmp, name):
    out = tmp / f"out_{name}"
    workflow = Workflow(name=f"top_{name}", base_dir=str(tmp / "work"))
    workflow.add_nodes([init_asl_wf(run, options, str(out))])
    workflow.run(plugin="Linear")
    return out / "sub-01" / "perf"


@pytest.fixture(scope="module")
def tissue_phantom(tmp_path_factory):
    """A noise-free multi-PLD phantom whose label decays with each tissue's T1, and the
    derivatives folder of its truth GM and WM probsegs."""
    tmp = tmp_path_factory.mktemp("asl_tissue")
    root = write_dataset(tmp / "bids", small_config(
        grades=("LGG",), dsc=None, asl={"snr": float("inf"), "plds": PLDS, "n_pairs": (1,),
                                        "t1_tissue_decay": True}))
    return root, _probseg_derivatives(root, tmp / "probsegs"), tmp


def test_workflow_fits_voxelwise_t1_and_writes_pv_corrected_maps(tissue_phantom):
    root, probsegs, tmp = tissue_phantom
    runs, errors = collect_asl_runs(layout_of(root), None, None, {}, [str(probsegs)])
    assert not errors and set(runs[0].probsegs) == {"GM", "WM"}
    # a still phantom: no motion correction, whose estimates are not exactly 0
    perf = _run(runs[0], ASLOptions(pvc_kernel=3, motion_correction=False), tmp, "tissue")
    gm, wm = (truth(root, "01", f"label-{t}_probseg") for t in ("GM", "WM"))
    lesion = sum(truth(root, "01", f"label-{n}_probseg") for n in
                 ("enhancing", "necrosis", "edema", "arteries"))
    tissue_voxels = (gm + wm > 0.99) & (lesion == 0)
    pure_wm = tissue_voxels & (wm > 0.99)
    expected = truth(root, "01", "desc-truth_cbf")
    cbf = load(perf / "sub-01_desc-gkm_cbf.nii.gz")
    error = cbf / np.where(tissue_voxels, expected, 1.0) - 1
    # The phantom's label decays with the volume-weighted T1 of all compartments, CSF
    # (4.16 s) included; the model's T1 leaves CSF out: 1-2 % in WM with <= 0.9 % CSF, up to
    # 7 % in GM/WM mixtures (T1' = T1 of blood: WM -44 %, tissue voxels -37 % on average).
    assert pure_wm.sum() > 100 and tissue_voxels.sum() > 1000
    assert np.abs(error[pure_wm]).max() < 0.02
    assert np.abs(error[tissue_voxels]).mean() < 0.05
    sidecar = json.loads((perf / "sub-01_desc-gkm_cbf.json").read_text())
    assert sidecar["T1Tissue"].startswith("voxelwise")
    assert (sidecar["T1TissueGM"], sidecar["T1TissueWM"]) == (1.33, 0.83)
    for name in ("pvGM", "pvWM"):
        meta = json.loads((perf / f"sub-01_desc-{name}_cbf.json").read_text())
        assert meta["PartialVolumeCorrectionKernel"] == [3, 3, 1]
        assert "Asllani" in meta["PartialVolumeCorrectionReference"]
        assert meta["Units"] == "mL/100 g/min" and meta["T1Tissue"].startswith("voxelwise")
    pv_gm = load(perf / "sub-01_desc-pvGM_cbf.nii.gz")
    pv_wm = load(perf / "sub-01_desc-pvWM_cbf.nii.gz")
    # The regression of the written CBF map, done again here, gives the written maps.
    brain = load(perf / "sub-01_desc-brain_mask.nii.gz") > 0
    brain &= load(perf / "sub-01_desc-excluded_mask.nii.gz") == 0
    again = partial_volume.linear_regression_pvc(cbf, gm, wm, brain, 3)
    np.testing.assert_allclose(pv_gm, again.gm, atol=1e-3)
    np.testing.assert_allclose(pv_wm, again.wm, atol=1e-3)
    assert pv_gm[(gm > 0.5) & brain].mean() > 2 * pv_wm[(wm > 0.5) & brain].mean()


def test_pvc_none_and_global_t1_leave_the_tissue_model_out(tissue_phantom):
    root, probsegs, tmp = tissue_phantom
    runs, _ = collect_asl_runs(layout_of(root), None, None, {}, [str(probsegs)])
    workflow = init_asl_wf(runs[0], ASLOptions(pvc="none", t1_tissue=1.2), str(tmp / "x"))
    names = workflow.list_node_names()
    assert not any("partial_volume" in n or "tissue_fractions" in n for n in names)
    fit = workflow.get_node("multi_delay_cbf")
    assert fit.inputs.parameters["T1Tissue"] == 1.2


# --- bad partial-volume maps: refused before processing, file and fix named ----------------


def _bad(tmp_path, root, name, data, affine=None):
    """A derivatives folder with the truth probsegs, ``name`` (GM or WM) replaced."""
    dest = _probseg_derivatives(root, tmp_path / "bad")
    path = next(dest.glob(f"sub-01/perf/*_label-{name}_probseg.nii.gz"))
    reference = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32),
                             reference.affine if affine is None else affine), path)
    return dest, path


@pytest.mark.parametrize("case, message", [
    ("range", r"GM fractions range from .* to 97.1\d*, outside \[0, 1\]; give a partial-volume"),
    ("sum", r"sum to more than 1 .* give the GM and WM maps of one segmentation"),
    ("shape", r"does not cover the ASL grid .* give the map in the ASL grid"),
    ("volumes", r"2 volumes; a probseg holds one 3-D map"),
    ("missing", r"label-WM_probseg of the same subject is missing"),
])
def test_bad_probsegs_are_refused_naming_file_and_fix(tissue_phantom, tmp_path, case, message):
    root = tissue_phantom[0]
    gm = truth(root, "01", "label-GM_probseg")
    data = {"range": gm * 100, "sum": np.minimum(gm + 0.6, 1.0), "shape": gm[:20, :20],
            "volumes": np.stack([gm, gm], axis=-1), "missing": gm}[case]
    dest, path = _bad(tmp_path, root, "GM", data)
    if case == "missing":
        next(dest.glob("sub-01/perf/*_label-WM_probseg.nii.gz")).unlink()
    runs, errors = collect_asl_runs(layout_of(root), None, None, {}, [str(dest)])
    assert runs == [] and len(errors) == 1
    assert str(path) in errors[0]
    assert re.search(message, errors[0]), errors[0]


def test_probseg_on_a_finer_grid_is_resampled(tissue_phantom, tmp_path):
    """A probseg on a grid twice as fine in-plane, same world space: accepted and brought to
    the ASL grid by world coordinates (constant maps stay constant)."""
    root, _, _ = tissue_phantom
    reference = nib.load(next((Path(root) / TRUTH).glob("sub-01/perf/*_label-GM_probseg.nii.gz")))
    fine = reference.affine @ np.diag([0.5, 0.5, 1.0, 1.0])
    fine[:3, 3] = reference.affine[:3, 3] - reference.affine[:3, :3] @ [0.25, 0.25, 0.0]
    shape = (reference.shape[0] * 2, reference.shape[1] * 2, reference.shape[2])
    dest, _ = _bad(tmp_path, root, "GM", np.full(shape, 0.25), fine)
    wm = next(dest.glob("sub-01/perf/*_label-WM_probseg.nii.gz"))
    nib.save(nib.Nifti1Image(np.full(shape, 0.5, np.float32), fine), wm)
    runs, errors = collect_asl_runs(layout_of(root), None, None, {}, [str(dest)])
    assert not errors
    from bids_perfusion.interfaces.asl_tissue import TissueFractions

    result = TissueFractions(gm_probseg=runs[0].probsegs["GM"], wm_probseg=str(wm),
                             reference=runs[0].file).run(cwd=str(tmp_path))
    np.testing.assert_allclose(load(result.outputs.gm), 0.25, atol=1e-6)
    assert load(result.outputs.gm).shape == reference.shape


def test_command_line_options_of_the_partial_volume_correction(tmp_path, capsys):
    from bids_perfusion.cli.parser import build_parser, run_config

    base = [str(tmp_path / "bids"), str(tmp_path / "out"), "participant"]
    args = build_parser().parse_args(base)
    config = run_config(args, tmp_path / "bids", tmp_path / "out", tmp_path / "work")
    assert (config.asl.pvc, config.asl.pvc_kernel) == ("lr", constants.ASL_PVC_KERNEL)
    args = build_parser().parse_args([*base, "--asl-pvc", "none", "--pvc-kernel", "7"])
    config = run_config(args, tmp_path / "bids", tmp_path / "out", tmp_path / "work")
    assert (config.asl.pvc, config.asl.pvc_kernel) == ("none", 7)
    for bad in ("4", "1"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*base, "--pvc-kernel", bad])
        assert "odd number of voxels, 3 or more" in capsys.readouterr().err


def test_the_denoised_refit_takes_the_voxelwise_t1_too(tissue_phantom):
    from helpers import connections

    root, probsegs, tmp = tissue_phantom
    runs, _ = collect_asl_runs(layout_of(root), None, None, {}, [str(probsegs)])
    workflow = init_asl_wf(runs[0], ASLOptions(denoise="deepasl", device="cpu"),
                           str(tmp / "y"))
    edges = connections(workflow)
    for fit in ("multi_delay_cbf", "multi_delay_cbf_deepasl"):
        assert ("tissue_fractions", fit, ("gm", "gm_fraction")) in edges
        node = workflow.get_node(fit)
        assert (node.inputs.t1_gm, node.inputs.t1_wm) == (1.33, 0.83)
    assert ("multi_delay_cbf", "partial_volume_correction", ("cbf", "cbf")) in edges
