"""bids-perfusion-slurm: the array job, the dependent group job and their submission,
checked by running the scripts with stand-ins for sbatch, the App and apptainer (no SLURM
needed; ``make test-hpc`` runs them on a real single-node cluster)."""

import os
import subprocess

import pytest

from bids_perfusion.cli.slurm import main


def _stub(folder, name, body):
    """An executable ``folder/name`` running the shell ``body``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def dataset(tmp_path):
    for label in ("01", "02", "03"):
        (tmp_path / "bids" / f"sub-{label}" / "perf").mkdir(parents=True)
    return tmp_path / "bids"


def _run_task(script, task, tmp_path, path=None):
    """Run an array task of ``script`` as SLURM would; the words the App was called with."""
    environ = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_JOB_ID": "7",
               "SLURM_CPUS_PER_TASK": "3", "ARGS_FILE": str(tmp_path / "args")}
    if path:
        environ["PATH"] = f"{path}:{environ['PATH']}"
    subprocess.run(["bash", str(script)], env=environ, check=True, capture_output=True)
    return (tmp_path / "args").read_text().split("\n")[:-1]


def test_array_task_runs_its_participant_with_its_own_work_dir(dataset, tmp_path, capsys):
    venv = tmp_path / "venv"
    _stub(venv / "bin", "bids-perfusion", 'printf "%s\\n" "$@" > "$ARGS_FILE"')
    out = tmp_path / "out"
    assert main([str(dataset), str(out), "--venv", str(venv), "--cpus", "3", "--mem", "6",
                 "--max-parallel", "2", "--participant-args", "--dsc-methods osvd,ssvd",
                 "--work-dir", str(tmp_path / "scratch"), "--dry-run"]) == 0
    assert "Dry run" in capsys.readouterr().out
    jobs = out / "logs" / "slurm"
    assert (jobs / "participants.txt").read_text() == "01\n02\n03\n"
    script = (jobs / "participant.sbatch").read_text()
    for line in ("#SBATCH --array=0-2%2", "#SBATCH --cpus-per-task=3", "#SBATCH --mem=6G",
                 "#SBATCH --requeue", f"#SBATCH --output={jobs}/logs/participant_%A_%a.out"):
        assert line in script.splitlines()
    assert _run_task(jobs / "participant.sbatch", 1, tmp_path) == [
        str(dataset), str(out), "participant", "--participant-label", "02",
        "-w", str(tmp_path / "scratch" / "sub-02"), "--nprocs", "3", "--mem", "5",
        "--dsc-methods", "osvd,ssvd"]
    assert (tmp_path / "scratch" / "sub-02").is_dir()
    assert "--nv" not in script and "gres" not in script


def test_a_task_without_a_participant_fails(dataset, tmp_path):
    venv = tmp_path / "venv"
    _stub(venv / "bin", "bids-perfusion", "exit 0")
    main([str(dataset), str(tmp_path / "out"), "--venv", str(venv), "--dry-run",
          "--participant-label", "sub-01"])
    with pytest.raises(subprocess.CalledProcessError):
        _run_task(tmp_path / "out" / "logs" / "slurm" / "participant.sbatch", 1, tmp_path)


def test_container_tasks_bind_the_input_read_only_and_use_the_gpu(dataset, tmp_path):
    bin_dir = tmp_path / "bin"
    _stub(bin_dir, "apptainer", 'printf "%s\\n" "$@" > "$ARGS_FILE"')
    out, image = tmp_path / "out", tmp_path / "bids-perfusion.sif"
    main([str(dataset), str(out), "--container", str(image), "--gpu", "--participant-label",
          "03", "--bind", "/masks:/masks:ro", "--dry-run"])
    jobs = out / "logs" / "slurm"
    work = tmp_path / "work" / "sub-03"
    assert _run_task(jobs / "participant.sbatch", 0, tmp_path, bin_dir) == [
        "run", "--cleanenv", "--nv", "-B", f"{dataset}:{dataset}:ro", "-B", str(out),
        "-B", str(tmp_path / "work"), "-B", "/masks:/masks:ro", str(image), str(dataset),
        str(out), "participant", "--participant-label", "03", "-w", str(work),
        "--nprocs", "3", "--mem", "7"]
    assert "#SBATCH --gres=gpu:1" in (jobs / "participant.sbatch").read_text()
    group = (jobs / "group.sbatch").read_text()
    assert "--nv" not in group and "gres" not in group  # the group level is statistics
    assert "export APPTAINERENV_NIPYPE_NO_ET=1" in group


def test_group_job_waits_for_the_array(dataset, tmp_path, capsys, monkeypatch):
    bin_dir = tmp_path / "bin"
    log = tmp_path / "sbatch.log"
    _stub(bin_dir, "sbatch", f'echo "$@" >> {log}\n'
          'if [[ "$*" == *group.sbatch ]]; then echo "43;cluster"; else echo "42;cluster"; fi')
    out = tmp_path / "out"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert main([str(dataset), str(out), "--sbatch-args", "--partition=debug -A lab",
                 "--group-args", "--n-bootstrap 0", "--group-dependency", "afterany"]) == 0
    assert capsys.readouterr().out.strip() == "participant array job 42; group job 43"
    jobs = out / "logs" / "slurm"
    assert log.read_text().splitlines() == [
        f"--parsable --partition=debug -A lab {jobs}/participant.sbatch",
        f"--parsable --partition=debug -A lab --dependency=afterany:42 {jobs}/group.sbatch"]
    assert (jobs / "group.sbatch").read_text().splitlines()[-1].endswith(
        f"{dataset} {out} group --n-bootstrap 0")


def test_failed_submission_and_empty_dataset_are_reported(tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as raised:
        main([str(tmp_path / "empty"), str(tmp_path / "out"), "--dry-run"])
    assert raised.value.code == 2
    assert "no participant" in capsys.readouterr().err
    (tmp_path / "bids" / "sub-01").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    _stub(bin_dir, "sbatch", 'echo "sbatch: error: invalid partition" >&2; exit 1')
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert main([str(tmp_path / "bids"), str(tmp_path / "out")]) == 2
    assert "invalid partition" in capsys.readouterr().err
