"""Outputs that are atomic and traceable, and a group level that validates what it reads.

One three-subject phantom (HGG, LGG, HGG; DSC and PCASL, tumour masks given) is processed
twice into the same folder, as users do: first every subject with sSVD and oSVD, then
sub-01 again with oSVD only. The first run's sSVD maps of sub-01 are then stale. Each test
that damages the outputs (a truncated ROI table, a deleted map, a run killed while
writing) works on a copy.
"""

import json
import logging
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import small_config, tumour_derivatives

from bids_perfusion import records
from bids_perfusion.cli.run import main
from bids_perfusion.group import run_group
from bids_perfusion.interfaces.bids import RunBarrier
from bids_perfusion.phantom import write_dataset
from bids_perfusion.stats.roi import COLUMNS

pytestmark = pytest.mark.slow
GRADES = ("HGG", "LGG", "HGG")  # one LGG subject: a class of one
SSVD_CBF = "sub-01/perf/sub-01_ce-gadolinium_desc-ssvd_cbf.nii.gz"


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hardening")
    root = write_dataset(tmp / "bids", small_config(grades=GRADES))
    masks = tumour_derivatives(root, tmp / "masks")
    out = tmp / "out"
    common = [str(root), str(out), "participant", "--nprocs", "1", "--skip-bids-validation",
              "--derivatives", str(masks)]
    first = main([*common, "-w", str(tmp / "work"), "--dsc-methods", "ssvd,osvd"])
    citation_first = (out / "logs" / "CITATION.md").read_text()
    second = main([*common, "-w", str(tmp / "work2"), "--dsc-methods", "osvd",
                   "--participant-label", "01"])
    return root, out, (first, second), citation_first


@pytest.fixture
def copy(processed, tmp_path):
    """A copy of the processed folder that a test may damage."""
    target = tmp_path / "out"
    shutil.copytree(processed[1], target)
    return target


def _read(path):
    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)


def _group(root, out, caplog, **options):
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="bids_perfusion")
    return run_group(root, out, n_bootstrap=options.pop("n_bootstrap", 0), **options)


def test_runs_succeed_and_write_one_record_per_run(processed):
    _root, out, statuses, _ = processed
    assert statuses == (0, 0)
    written = sorted(p.name for p in (out / "logs" / "runs").iterdir())
    assert written == sorted([f"sub_0{s}_{kind}_wf.json" for s in (1, 2, 3)
                              for kind in ("ce_gadolinium_acquired", "asl")])
    record = json.loads((out / "logs" / "runs" / "sub_02_ce_gadolinium_acquired_wf.json")
                        .read_text())
    assert record["Options"]["methods"] == ["ssvd", "osvd"]
    assert "standard truncated SVD (sSVD)" in record["Methods"]
    assert SSVD_CBF.replace("01", "02") in record["Files"]
    assert all(path.startswith("sub-02/perf/") for path in record["Files"])
    for relative, digest in record["Files"].items():
        assert records.sha256(out / relative) == digest
    later = json.loads((out / "logs" / "runs" / "sub_01_ce_gadolinium_acquired_wf.json")
                       .read_text())
    assert later["Options"]["methods"] == ["osvd"] and SSVD_CBF not in later["Files"]


def test_every_nifti_has_a_sidecar_and_masks_say_what_they_are(processed):
    _root, out, _, _ = processed
    images = sorted(out.glob("sub-*/perf/*.nii.gz"))
    assert len(images) > 40
    for image in images:
        assert image.with_name(image.name.replace(".nii.gz", ".json")).is_file(), image
    masks = sorted(out.glob("sub-*/perf/*_mask.json"))
    assert {p.name.split("_desc-")[1] for p in masks} == {
        "brain_mask.json", "NAWM_mask.json", "aif_mask.json", "excluded_mask.json"}
    asl_brain = json.loads((out / "sub-01" / "perf" / "sub-01_desc-brain_mask.json")
                           .read_text())
    assert asl_brain["Type"] == "Brain"
    assert asl_brain["Sources"] == ["bids:raw:sub-01/perf/sub-01_asl.nii.gz"]
    for path in masks:
        sidecar = json.loads(path.read_text())
        assert sidecar["Type"] in ("Brain", "ROI") and sidecar["Description"], path
        assert sidecar["Sources"], path


def test_later_run_with_other_options_keeps_both_citations(processed):
    _root, out, _, citation_first = processed
    citation = (out / "logs" / "CITATION.md").read_text()
    both = "with standard truncated SVD (sSVD), oscillation-index SVD (oSVD) [@"
    only = "with oscillation-index SVD (oSVD) [@"
    assert both in citation_first and only not in citation_first
    assert both in citation and only in citation  # sub-02/03 (both) and sub-01 (oSVD only)
    assert "CBF was quantified from the PCASL series" in citation
    assert citation.count("### References") == 1 and "Østergaard L" in citation
    assert not re.search(r"\]\.[A-Z]", citation)  # paragraphs apart: no "[@alsop2015].Each"
    assert "seeds/" not in citation  # publications, not files of the source tree


def test_stale_map_of_an_earlier_method_is_ignored_and_reported(processed, copy, caplog):
    root, _out, _, _ = processed
    assert (copy / SSVD_CBF).is_file()
    assert _group(root, copy, caplog) == 0
    assert "no completion record lists" in caplog.text and SSVD_CBF in caplog.text
    assert "different options" in caplog.text and "methods=['osvd']" in caplog.text
    table = _read(copy / "group" / "group_desc-roi_stats.tsv")
    methods = table.groupby("participant_id")["method"].unique().map(set)
    assert "ssvd" not in methods["sub-01"] and "ssvd" in methods["sub-02"]
    page = (copy / "sub-01.html").read_text()
    assert "Outputs not shown" in page and SSVD_CBF in page
    assert "sub-01_ce-gadolinium_desc-osvd_cbf.svg" in page


def test_truncated_roi_table_stops_the_group_and_names_it(processed, copy, caplog):
    root, _out, _, _ = processed
    table = copy / "sub-02" / "perf" / "sub-02_ce-gadolinium_desc-roi_roistats.tsv"
    table.write_text(table.read_text()[:-25])  # killed while writing the last line
    assert _group(root, copy, caplog) == 1
    assert ("sub-02/perf/sub-02_ce-gadolinium_desc-roi_roistats.tsv is truncated"
            in caplog.text)
    assert "--participant-label 02" in caplog.text
    assert not (copy / "group" / "group_desc-roi_stats.tsv").exists()


def test_roi_table_with_a_missing_value_is_refused(processed, copy, caplog):
    root, _out, _, _ = processed
    table = copy / "sub-03" / "perf" / "sub-03_desc-roi_roistats.tsv"
    lines = table.read_text().split("\n")
    fields = lines[1].split("\t")
    fields[COLUMNS.index("mean")] = "n/a"  # the mean of an ROI with voxels
    table.write_text("\n".join([lines[0], "\t".join(fields), *lines[2:]]))
    assert _group(root, copy, caplog) == 1
    assert "sub-03/perf/sub-03_desc-roi_roistats.tsv line 2" in caplog.text
    assert "mean is 'n/a', not a number" in caplog.text


def test_deleted_map_is_noticed(processed, copy, caplog):
    root, _out, _, _ = processed
    deleted = "sub-02/perf/sub-02_ce-gadolinium_desc-osvd_cbf.nii.gz"
    (copy / deleted).unlink()
    assert _group(root, copy, caplog) == 1
    assert f"{deleted} is missing" in caplog.text and "--participant-label 02" in caplog.text
    # a subject left out of the group is not checked (two HGG subjects: no grading)
    _group(root, copy, caplog, participant_label=["01", "03"])
    assert "damaged" not in caplog.text and "only one class" in caplog.text
    assert set(_read(copy / "group" / "group_desc-roi_stats.tsv")["participant_id"]) == {
        "sub-01", "sub-03"}
    page = (copy / "sub-02.html")
    from bids_perfusion.reports.html import write_report

    write_report(copy, "02")
    assert f"{deleted}: is missing" in page.read_text()


def test_partly_written_run_is_not_used(processed, copy, caplog):
    """kill -9 in the sinks: the record was removed, mask and ROI table written, CBF not."""
    root, _out, _, _ = processed
    records.invalidate(copy, "sub_03_ce_gadolinium_acquired_wf")
    for path in (copy / "sub-03" / "perf").glob("sub-03_ce-gadolinium_desc-*_cbf.*"):
        path.unlink()
    assert _group(root, copy, caplog) == 0
    assert "sub-03/perf/sub-03_ce-gadolinium_desc-roi_roistats.tsv" in caplog.text
    table = _read(copy / "group" / "group_desc-roi_stats.tsv")
    runs = set(zip(table["participant_id"], table["modality"], strict=True))
    assert ("sub-03", "dsc") not in runs and ("sub-03", "asl") in runs
    assert ("sub-01", "dsc") in runs
    from bids_perfusion.reports.html import write_report

    page = write_report(copy, "03").read_text()
    assert "sub-03_ce-gadolinium_desc-roi_roistats.tsv: listed by no completion" in page
    assert "sub-03_ce-gadolinium_desc-osvd_cbf.svg" not in page
    assert "sub-03_desc-consensus_cbf.svg" in page


def test_barrier_removes_the_previous_record(tmp_path):
    """Before the sinks write, the run's old record goes: a kill leaves no record."""
    output = tmp_path / "out"
    (output / "sub-01").mkdir(parents=True)
    written = output / "sub-01" / "a.tsv"
    written.write_text("x\n")
    path = records.write_record(output, "run_wf", [written], options={"methods": ["osvd"]},
                                methods="text", version="0")
    assert path == output / "logs" / "runs" / "run_wf.json" and path.is_file()
    assert records.audit(output).complete.keys() == {"run_wf"}
    source = tmp_path / "source.nii.gz"
    source.write_text("")
    RunBarrier(source_file=str(source), in_files=[str(written)], output_dir=str(output),
               run="run_wf").run(cwd=str(tmp_path))
    assert not path.exists()
    checked = records.audit(output)
    assert checked.complete == {} and checked.stale == ["sub-01/a.tsv"]


def test_class_of_one_subject_gets_no_bootstrap_interval(processed, caplog):
    root, out, _, _ = processed
    caplog.set_level(logging.WARNING, logger="bids_perfusion")
    scratch = out.parent / "one_class_out"
    shutil.copytree(out, scratch, ignore=shutil.ignore_patterns("group"))
    assert _group(root, scratch, caplog, n_bootstrap=50) == 0
    assert "no bootstrap CI: 2 positive and 1 negative" in caplog.text
    assert "Traceback" not in caplog.text and "two or more" not in caplog.text
    grading = _read(scratch / "group" / "group_desc-grading_stats.tsv")
    assert len(grading) > 0 and (grading["n_negative"] == 1).all()
    assert grading[["auc_ci_low", "auc_ci_high", "cutoff_ci_low"]].isna().all().all()
    assert np.isfinite(grading["auc"]).all()


def test_bids_validator_reports_no_error_on_the_outputs(processed):
    """BIDS-Derivatives rules where they exist (README, required keys), ``.bidsignore``
    for what the schema has no place for yet."""
    import subprocess
    import sys
    from pathlib import Path

    _root, out, _, _ = processed
    validator = shutil.which("bids-validator-deno") or str(
        Path(sys.executable).with_name("bids-validator-deno"))
    result = subprocess.run([validator, str(out), "--format", "json"], capture_output=True,
                            text=True, check=False, timeout=300)
    issues = json.loads(result.stdout)["issues"]["issues"]
    errors = [(issue["code"], issue.get("location")) for issue in issues
              if issue.get("severity") == "error"]
    assert errors == []
    assert (out / "README").read_text().startswith("# bids-perfusion derivatives")
