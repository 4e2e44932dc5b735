"""SLURM batch scripts for a dataset: one array task per participant, then the group level.

:func:`write_jobs` writes into ``job_dir``:

- ``participants.txt``, one label a line; array task ``i`` processes line ``i + 1``;
- ``participant.sbatch``, the array job: ``bids-perfusion BIDS OUT participant
  --participant-label <label>`` with the task's CPUs (``--nprocs``) and memory (``--mem``,
  1 GB below the SLURM limit for Python's own use), a work directory of its own
  (``WORK/sub-<label>``: on scratch, kept, so that a task re-run after pre-emption
  or a failure resumes the nipype steps it had finished), ``--requeue`` so that a
  pre-empted task goes back to the queue, and the log of each task in ``job_dir/logs``;
- ``group.sbatch``, the group level, submitted with ``--dependency=afterok:<array id>``
  (it starts once every task has ended with exit status 0; ``afterany`` runs it anyway);
- ``submit.sh``, the two ``sbatch`` calls, which :func:`submit` runs.

The App runs from a virtual environment (``VENV/bin/bids-perfusion``) or an Apptainer
image (``apptainer run --cleanenv`` with the input bound read-only, the output and work
folders bound at the same paths, ``--nv`` for a GPU). One process per subject with
nipype's MultiProc inside is chosen over nipype's SLURM plugin, which submits every node
as a job of its own (docs/hpc.md). Pure Python: no SLURM is needed to write the scripts.
"""

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: Memory (GB) left to the Python process outside nipype's budget (``--mem``).
MEMORY_MARGIN_GB = 1
#: Environment of every job (``apptainer run --cleanenv`` passes it as ``APPTAINERENV_*``).
CONTAINER_ENV = {"NIPYPE_NO_ET": "1"}


@dataclass(frozen=True)
class SlurmOptions:
    """What :func:`write_jobs` writes; paths absolute (the command line resolves them).

    ``cpus``, ``mem_gb`` and ``time`` size each participant task (docs/hpc.md gives the
    measured figures), ``group_*`` the group job; ``max_parallel`` caps the tasks that
    run at once (``--array=...%N``); ``sbatch_args`` go to both ``sbatch`` calls
    (partition, account, QOS...); ``participant_args`` and ``group_args`` to the App;
    ``binds`` are more Apptainer binds (``SRC[:DEST[:ro]]``).
    """

    bids_dir: Path
    output_dir: Path
    participants: tuple
    job_dir: Path
    work_dir: Path
    venv: Path | None = None
    container: Path | None = None
    gpu: bool = False
    cpus: int = 4
    mem_gb: int = 8
    time: str = "04:00:00"
    group_mem_gb: int = 4
    group_time: str = "01:00:00"
    max_parallel: int = 0
    group_dependency: str = "afterok"
    sbatch_args: tuple = ()
    participant_args: tuple = ()
    group_args: tuple = ()
    binds: tuple = ()

    def app(self, gpu=False):
        """The shell words that start ``bids-perfusion`` (virtualenv or container; with
        the GPU when ``gpu``)."""
        if self.container is None:
            return [str(self.venv / "bin" / "bids-perfusion")]
        binds = [f"{self.bids_dir}:{self.bids_dir}:ro", str(self.output_dir),
                 str(self.work_dir), *self.binds]
        words = ["apptainer", "run", "--cleanenv"]
        if gpu:
            words.append("--nv")
        for bind in binds:
            words += ["-B", bind]
        return [*words, str(self.container)]


def participants_of(bids_dir):
    """Labels of the ``sub-*`` folders of ``bids_dir``, sorted."""
    return tuple(sorted(p.name.removeprefix("sub-") for p in Path(bids_dir).glob("sub-*")
                        if p.is_dir()))


def _header(name, *, cpus, mem_gb, time, log, gpu=False):
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --cpus-per-task={cpus}",
             f"#SBATCH --mem={mem_gb}G", f"#SBATCH --time={time}", f"#SBATCH --output={log}",
             "#SBATCH --open-mode=append"]
    if gpu:
        lines.append("#SBATCH --gres=gpu:1")
    return lines


def _environment(options):
    lines = ["set -euo pipefail"]
    if options.container is not None:
        lines += [f"export APPTAINERENV_{k}={shlex.quote(v)}" for k, v in CONTAINER_ENV.items()]
    else:
        lines += [f"export {k}={shlex.quote(v)}" for k, v in CONTAINER_ENV.items()]
    return lines


def participant_script(options):
    """The text of ``participant.sbatch`` (see the module's docstring)."""
    count = len(options.participants)
    array = f"0-{count - 1}" + (f"%{options.max_parallel}" if options.max_parallel else "")
    nipype_mem = max(options.mem_gb - MEMORY_MARGIN_GB, 1)
    app = shlex.join([*options.app(options.gpu), str(options.bids_dir),
                      str(options.output_dir), "participant"])
    extra = shlex.join(options.participant_args)
    lines = [*_header("bids-perfusion-participant", cpus=options.cpus,
                      mem_gb=options.mem_gb, time=options.time, gpu=options.gpu,
                      log=options.job_dir / "logs" / "participant_%A_%a.out"),
             f"#SBATCH --array={array}", "#SBATCH --requeue", "",
             *_environment(options),
             f"label=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" "
             f"{shlex.quote(str(options.job_dir / 'participants.txt'))})",
             ': "${label:?no participant for array task ${SLURM_ARRAY_TASK_ID}}"',
             f"work={shlex.quote(str(options.work_dir))}/sub-${{label}}",
             'mkdir -p "${work}"',
             'echo "sub-${label}: task ${SLURM_ARRAY_TASK_ID} of job ${SLURM_ARRAY_JOB_ID}, '
             'restart ${SLURM_RESTART_COUNT:-0}, work ${work}"',
             f'{app} --participant-label "${{label}}" -w "${{work}}" '
             f'--nprocs "${{SLURM_CPUS_PER_TASK}}" --mem {nipype_mem} {extra}'.rstrip(), ""]
    return "\n".join(lines)


def group_script(options):
    """The text of ``group.sbatch`` (CPU only: the group level is statistics)."""
    app = shlex.join([*options.app(), str(options.bids_dir), str(options.output_dir),
                      "group", *options.group_args])
    lines = [*_header("bids-perfusion-group", cpus=1, mem_gb=options.group_mem_gb,
                      time=options.group_time,
                      log=options.job_dir / "logs" / "group_%j.out"), "",
             *_environment(options), app, ""]
    return "\n".join(lines)


def submit_script(options):
    """The text of ``submit.sh``: submit the array, then the group job that depends on
    it; prints both job ids."""
    sbatch = shlex.join(["sbatch", "--parsable", *options.sbatch_args])
    folder = shlex.quote(str(options.job_dir))
    return "\n".join([
        "#!/bin/bash", "set -euo pipefail",
        f"array=$({sbatch} {folder}/participant.sbatch | cut -d ';' -f 1)",
        f"group=$({sbatch} --dependency={options.group_dependency}:${{array}} "
        f"{folder}/group.sbatch | cut -d ';' -f 1)",
        'echo "participant array job ${array}; group job ${group}"', ""])


@dataclass(frozen=True)
class Jobs:
    """The files :func:`write_jobs` wrote."""

    participants: Path
    participant: Path
    group: Path
    submit: Path


def write_jobs(options):
    """Write the scripts of the module's docstring into ``options.job_dir``; a
    :class:`Jobs`. ValueError when there is no participant."""
    if not options.participants:
        raise ValueError(f"{options.bids_dir}: no participant to process (no sub-* folder "
                         "and no --participant-label).")
    folder = options.job_dir
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    jobs = Jobs(folder / "participants.txt", folder / "participant.sbatch",
                folder / "group.sbatch", folder / "submit.sh")
    jobs.participants.write_text("\n".join(options.participants) + "\n")
    jobs.participant.write_text(participant_script(options))
    jobs.group.write_text(group_script(options))
    jobs.submit.write_text(submit_script(options))
    jobs.submit.chmod(0o755)
    return jobs


def submit(jobs):
    """Run ``submit.sh`` (``sbatch`` must be on PATH); returns what it printed."""
    result = subprocess.run(["bash", str(jobs.submit)], capture_output=True, text=True,
                            check=True)
    return result.stdout.strip()
