"""The ASL workflow run through nipype on small datasets: files, sidecars, accuracy.

Phantom runs (single-PLD PCASL, multi-PLD PCASL) are collected with
:func:`collect_asl_runs` and quantified by :func:`init_asl_wf`. An external check uses
the ``asldro`` package (independent implementation of the general kinetic model and MRI
signal): skipped when asldro is not installed, a failure in CI (``helpers.require``).
"""

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from asldro_data import ASLDRO_PLDS, ASLDRO_TISSUES, TAU, asldro_generate
from helpers import load, read_tsv, small_config, truth
from niworkflows.engine.workflows import LiterateWorkflow as Workflow
from scipy import ndimage

from bids_perfusion.asl import consensus, kinetics
from bids_perfusion.collect import collect_asl_runs, layout_of
from bids_perfusion.phantom import write_dataset
from bids_perfusion.stats.roi import COLUMNS
from bids_perfusion.workflows.asl import init_asl_wf
from bids_perfusion.workflows.asl_options import ASLOptions


def _run(runs, options, tmp, name="asl"):
    out = tmp / f"out_{name}"
    workflow = Workflow(name=f"top_{name}", base_dir=str(tmp / "work"))
    workflow.add_nodes([init_asl_wf(run, options, str(out)) for run in runs])
    workflow.config["execution"].update({"crashdump_dir": str(tmp / "work"),
                                         "stop_on_first_crash": False})
    try:
        workflow.run(plugin="Linear")
        failed = False
    except RuntimeError:
        failed = True
    return out, failed


def _exact(root):
    tissue = (truth(root, "01", "label-GM_mask") + truth(root, "01", "label-WM_mask")) > 0
    return tissue & (truth(root, "01", "label-CSF_probseg") < 0.01)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("asl_single")
    root = write_dataset(tmp / "bids", small_config(grades=("HGG",), dsc=None,
                                                    asl={"snr": float("inf")}))
    runs, errors = collect_asl_runs(layout_of(root), None, None, {}, [])
    assert not errors and len(runs) == 1
    # a still phantom: the quantification alone (tests/test_motion.py: the realignment)
    out, failed = _run(runs, ASLOptions(m0_scale=1.0, motion_correction=False), tmp)
    assert not failed
    return root, out / "sub-01" / "perf", runs[0]


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("asl_multi")
    root = write_dataset(tmp / "bids", small_config(
        grades=("LGG",), dsc=None,
        asl={"snr": float("inf"), "plds": (0.25, 0.5, 1.0, 1.5, 2.0, 2.5), "n_pairs": (1,)}))
    runs, errors = collect_asl_runs(layout_of(root), None, None, {}, [])
    assert not errors
    out, failed = _run(runs, ASLOptions(motion_correction=False), tmp)  # a still phantom
    assert not failed
    return root, out / "sub-01" / "perf"


def test_single_pld_files_and_accuracy(single):
    root, perf, _ = single
    names = sorted(p.name for p in perf.iterdir())
    assert names == sorted([
        "sub-01_desc-brain_mask.json", "sub-01_desc-brain_mask.nii.gz",
        "sub-01_desc-consensus_cbf.json", "sub-01_desc-consensus_cbf.nii.gz",
        "sub-01_desc-excluded_mask.json", "sub-01_desc-excluded_mask.nii.gz",
        "sub-01_desc-meanCbf_timeseries.json", "sub-01_desc-meanCbf_timeseries.tsv",
        "sub-01_desc-mean_deltam.json",
        "sub-01_desc-mean_deltam.nii.gz", "sub-01_desc-reference_m0scan.json",
        "sub-01_desc-reference_m0scan.nii.gz", "sub-01_desc-roi_roistats.json",
        "sub-01_desc-roi_roistats.tsv"])
    cbf = load(perf / "sub-01_desc-consensus_cbf.nii.gz")
    exact = _exact(root)
    np.testing.assert_allclose(cbf[exact], truth(root, "01", "desc-truth_cbf")[exact],
                               rtol=0.005)


def test_cbf_sidecar_records_m0_and_every_constant(single):
    perf = single[1]
    sidecar = json.loads((perf / "sub-01_desc-consensus_cbf.json").read_text())
    assert sidecar["Units"] == "mL/100 g/min"
    expected = {"M0Type": "Separate", "M0Scale": 1.0, "LabelingEfficiency": 0.85,
                "T1Blood": 1.65, "BloodBrainPartitionCoefficient": 0.9,
                "PostLabelingDelay": 1.8, "LabelingDuration": 1.8, "M0RepetitionTime": 10.0,
                "M0Source": "bids:raw:sub-01/perf/sub-01_m0scan.nii.gz"}
    assert {k: sidecar[k] for k in expected} == expected
    for key in ("M0T1Tissue", "M0RecoveryFactor", "Equation", "EstimationMethod",
                "LabelingEfficiencySource", "Sources"):
        assert sidecar[key] not in (None, "")


def test_roi_table_and_time_series(single):
    _, perf, run = single
    rows = read_tsv(perf / "sub-01_desc-roi_roistats.tsv")
    assert tuple(rows[0]) == COLUMNS
    assert [(r["roi"], r["measure"]) for r in rows] == [("brain", "cbf_consensus")]
    series = read_tsv(perf / "sub-01_desc-meanCbf_timeseries.tsv")
    assert len(series) == run.metadata.n_pairs == 8
    assert float(series[0]["cbf"]) == pytest.approx(float(rows[0]["mean"]), rel=1e-4)


def test_multi_pld_outputs_and_accuracy(multi):
    root, perf = multi
    cbf = load(perf / "sub-01_desc-gkm_cbf.nii.gz")
    att = load(perf / "sub-01_desc-gkm_att.nii.gz")
    exact = _exact(root)
    np.testing.assert_allclose(cbf[exact], truth(root, "01", "desc-truth_cbf")[exact],
                               rtol=0.02)
    np.testing.assert_allclose(att[exact], truth(root, "01", "desc-truth_att")[exact],
                               atol=0.05)
    deltam = nib.load(perf / "sub-01_desc-mean_deltam.nii.gz")
    assert deltam.shape[-1] == 6
    sidecar = json.loads((perf / "sub-01_desc-mean_deltam.json").read_text())
    assert sidecar["PostLabelingDelay"] == [0.25, 0.5, 1.0, 1.5, 2.0, 2.5]
    measures = {r["measure"] for r in read_tsv(perf / "sub-01_desc-roi_roistats.tsv")}
    assert measures == {"cbf_gkm", "att_gkm"}


def test_failed_run_writes_nothing(single, tmp_path):
    """A run that fails at run time (M0 replaced after validation) leaves no file."""
    run = single[2]
    broken = tmp_path / "m0.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((5, 5, 5), np.float32), np.eye(4)), broken)
    meta = run.metadata
    bad = type(run)(run.subject, run.session, run.file,
                    type(meta)(**{**meta.__dict__, "m0_file": str(broken)}), {})
    out, failed = _run([bad], ASLOptions(), tmp_path, name="broken")
    assert failed
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


def test_bad_runs_are_reported_and_skipped(single, tmp_path):
    root, _, _ = single
    copy = tmp_path / "bids"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("derivatives"))
    sidecar_path = copy / "sub-01" / "perf" / "sub-01_asl.json"
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["RepetitionTimePreparation"] = 0
    sidecar_path.write_text(json.dumps(sidecar))
    runs, errors = collect_asl_runs(layout_of(copy), None, None, {}, [])
    assert runs == []
    assert len(errors) == 1 and "sub-01_asl.json: field 'RepetitionTimePreparation'" in errors[0]


# --- external check: asldro -------------------------------------------------------------

def _asldro_to_bids(dro, root):
    """Two BIDS runs from asldro's series: acq-single (PLD 1.8) and acq-multi (5 PLDs)."""
    files = sorted((dro / "asl").glob("*_asl.nii.gz"))
    perf = root / "sub-01" / "perf"
    perf.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "asldro", "BIDSVersion": "1.10.0"}))
    for acq, chosen, plds in (("single", files[:1], (1.8,)), ("multi", files[1:], ASLDRO_PLDS)):
        volumes, types, delays, trp = [], [], [], []
        for index, (path, pld) in enumerate(zip(chosen, plds, strict=True)):
            image = nib.load(path)
            data = np.asarray(image.dataobj, dtype=np.float32)
            keep = [0, 1, 2] if index == 0 else [1, 2]  # one M0 volume is enough
            volumes += [data[..., k] for k in keep]
            types += [["m0scan", "control", "label"][k] for k in keep]
            delays += [[0.0, pld, pld][k] for k in keep]
            trp += [[10.0, 5.0, 5.0][k] for k in keep]
            affine = image.affine
        stem = perf / f"sub-01_acq-{acq}_asl"
        nib.save(nib.Nifti1Image(np.stack(volumes, -1), affine), f"{stem}.nii.gz")
        Path(f"{stem}context.tsv").write_text("volume_type\n" + "\n".join(types) + "\n")
        Path(f"{stem}.json").write_text(json.dumps({
            "ArterialSpinLabelingType": "PCASL", "PostLabelingDelay": delays,
            "LabelingDuration": TAU, "LabelingEfficiency": 0.85, "M0Type": "Included",
            "RepetitionTimePreparation": trp, "BackgroundSuppression": False,
            "MagneticFieldStrength": 3, "MRAcquisitionType": "3D", "EchoTime": 0.01}))
    return root


def test_agrees_with_asldro(tmp_path):
    dro = asldro_generate(tmp_path)
    root = _asldro_to_bids(dro, tmp_path / "bids")
    runs, errors = collect_asl_runs(layout_of(root), None, None, {}, [])
    assert not errors and len(runs) == 2
    single_run = next(r for r in runs if "acq-single" in r.file)
    multi_run = next(r for r in runs if "acq-multi" in r.file)
    assert not single_run.metadata.multi_delay and multi_run.metadata.multi_delay

    truth_dir = dro / "ground_truth"
    seg = np.rint(load(next(truth_dir.glob("*_seg_label.nii.gz"))))
    pure = {label: ndimage.binary_erosion(seg == label) for label in ASLDRO_TISSUES}
    out, failed = _run([single_run], ASLOptions(motion_correction=False), tmp_path,
                       name="single")
    assert not failed
    cbf = load(out / "sub-01" / "perf" / "sub-01_acq-single_desc-consensus_cbf.nii.gz")
    for label, (flow, att, t1, *_rest) in ASLDRO_TISSUES.items():
        # asldro's ΔM/M0 (T1' from the tissue T1) through the consensus formula.
        ratio = kinetics.pcasl_delta_m(1.8, flow, att, 1.0, TAU, 1.65, 0.85, t1_tissue=t1)
        expected = consensus.pcasl_cbf(ratio, 1.0, 1.8, TAU, 1.65, 0.85)
        assert pure[label].sum() >= 50
        np.testing.assert_allclose(cbf[pure[label]], expected, rtol=0.005)
        assert abs(expected / flow - 1) > 0.01  # the T1' effect is visible, not a tautology

    for label, (flow, att, t1, *_rest) in ASLDRO_TISSUES.items():
        out, failed = _run([multi_run], ASLOptions(t1_tissue=t1, motion_correction=False),
                           tmp_path,
                           name=f"multi{label}")
        assert not failed
        perf = out / "sub-01" / "perf"
        fitted = load(perf / "sub-01_acq-multi_desc-gkm_cbf.nii.gz")[pure[label]]
        fitted_att = load(perf / "sub-01_acq-multi_desc-gkm_att.nii.gz")[pure[label]]
        np.testing.assert_allclose(fitted, flow, rtol=0.02)
        np.testing.assert_allclose(fitted_att, att, atol=0.05)
