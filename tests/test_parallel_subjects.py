"""Subjects run in parallel processes into one output folder (one SLURM array task each,
docs/hpc.md) must not race on the files every subject writes: ``dataset_description.json``,
``README``, ``.bidsignore``, ``logs/CITATION.md`` and the completion records."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import small_config

import bids_perfusion
from bids_perfusion import atomic, records
from bids_perfusion.phantom import write_dataset
from bids_perfusion.workflows import citations

#: The two processes' DSC methods differ, so CITATION.md must hold both methods' texts.
METHODS = {"01": "ssvd", "02": "osvd"}


def _participant(root, out, work, subject):
    """Start one subject's participant level in its own Python process."""
    command = [sys.executable, "-c", "import sys; from bids_perfusion.cli.run import main; "
               "sys.exit(main(sys.argv[1:]))", str(root), str(out), "participant",
               "--participant-label", subject, "--dsc-methods", METHODS[subject],
               "--nprocs", "1", "--skip-bids-validation", "-w", str(work / subject)]
    environ = {**os.environ, "NIPYPE_NO_ET": "1", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(Path(bids_perfusion.__file__).parents[1])}
    return subprocess.Popen(command, env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_two_subjects_in_parallel_processes_share_one_output_folder(tmp_path):
    root = write_dataset(tmp_path / "bids", small_config(matrix=(32, 32, 8), asl=None))
    out = tmp_path / "out"
    processes = [_participant(root, out, tmp_path / "work", s) for s in METHODS]
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs

    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert (out / ".bidsignore").read_text().startswith("# Outputs of bids-perfusion")
    complete = records.audit(out).complete
    assert sorted(complete) == ["sub_01_ce_gadolinium_acquired_wf",
                                "sub_02_ce_gadolinium_acquired_wf"]
    for subject, method in METHODS.items():
        assert (out / f"sub-{subject}" / "perf"
                / f"sub-{subject}_ce-gadolinium_desc-{method}_cbf.nii.gz").is_file()
        assert (out / f"sub-{subject}.html").is_file()
    citation = (out / "logs" / "CITATION.md").read_text()
    assert citation == citations.methods_text("\n\n".join(
        dict.fromkeys(p.strip() for r in complete.values()
                      for p in r["Methods"].split("\n\n") if p.strip())))
    assert "sSVD" in citation and "oSVD" in citation
    assert not list(out.rglob("*.tmp")), "a temporary file of an atomic write was left"


def test_citation_written_while_another_run_completes_lists_both(tmp_path, monkeypatch):
    """The lost update of read-then-write: another process adds its record after this one
    read the records; the citation is rewritten until it lists every record on disk."""
    (tmp_path / "sub-01").mkdir()
    first = tmp_path / "sub-01" / "a.txt"
    first.write_text("a")
    records.write_record(tmp_path, "run_a", [first], options={},
                         methods="First [@ostergaard1996].", version="0")
    written = []
    original = atomic.write_text

    def write_then_complete_another_run(path, text):
        original(path, text)
        if path.name != "CITATION.md":
            return
        written.append(text)
        if len(written) == 1:  # the other process completes between this read and write
            records.write_record(tmp_path, "run_b", [first], options={},
                                 methods="Second [@wu2003].", version="0")

    monkeypatch.setattr(atomic, "write_text", write_then_complete_another_run)
    path = citations.write_citation(tmp_path)
    assert len(written) == 2
    assert "First" in path.read_text() and "Second" in path.read_text()


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "file.json"
    target.write_text("old")
    atomic.write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["file.json"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
