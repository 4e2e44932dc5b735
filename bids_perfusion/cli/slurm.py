"""``bids-perfusion-slurm BIDS OUT [options]``: write, and submit, the SLURM jobs of a
dataset (one array task per participant, then the group level): :mod:`bids_perfusion.slurm`.

Argument parsing only; ``--dry-run`` writes the scripts and prints them without calling
``sbatch``.
"""

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from bids_perfusion.errors import EXIT_USAGE


def _positive(value):
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value}: give a whole number of 1 or more")
    return number


def build_parser():
    parser = argparse.ArgumentParser(
        prog="bids-perfusion-slurm",
        description="Write a SLURM array job (one participant per task) and a group-level "
                    "job that waits for it (--dependency=afterok), then submit both with "
                    "sbatch. Re-running it with the same --work-dir resumes the steps that "
                    "had finished (after a pre-emption or a failure). docs/hpc.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("bids_dir", type=Path, help="the input BIDS dataset (read only)")
    parser.add_argument("output_dir", type=Path, help="where derivatives are written")
    parser.add_argument("--participant-label", nargs="+", metavar="LABEL",
                        help="participants to process (default: every sub-* folder)")
    parser.add_argument("--work-dir", type=Path,
                        help="work folder on scratch, one sub-<label> folder per task; keep "
                             "it to resume (default: OUTPUT_DIR/../work)")
    parser.add_argument("--job-dir", type=Path,
                        help="where the scripts and the task logs go "
                             "(default: OUTPUT_DIR/logs/slurm)")
    runtime = parser.add_mutually_exclusive_group()
    runtime.add_argument("--container", type=Path, metavar="IMAGE.sif",
                         help="run the App with apptainer run --cleanenv from this image")
    runtime.add_argument("--venv", type=Path, metavar="PATH",
                         help="run VENV/bin/bids-perfusion (default: this Python's "
                              "environment)")
    parser.add_argument("--bind", nargs="+", default=[], metavar="SRC[:DEST[:ro]]",
                        help="more Apptainer binds (e.g. --derivatives folders)")
    parser.add_argument("--gpu", action="store_true",
                        help="one GPU per task (--gres=gpu:1; apptainer --nv)")

    group = parser.add_argument_group("sizing (docs/hpc.md has measured figures)")
    group.add_argument("--cpus", type=_positive, default=4, help="CPUs per participant task")
    group.add_argument("--mem", type=_positive, default=8, metavar="GB",
                       help="memory per participant task")
    group.add_argument("--time", default="04:00:00", help="time limit per participant task")
    group.add_argument("--group-mem", type=_positive, default=4, metavar="GB",
                       help="memory of the group job")
    group.add_argument("--group-time", default="01:00:00", help="time limit of the group job")
    group.add_argument("--max-parallel", type=int, default=0, metavar="N",
                       help="tasks running at once (0: as many as SLURM allows)")
    group.add_argument("--group-dependency", choices=("afterok", "afterany"),
                       default="afterok",
                       help="afterany: run the group level even if a participant failed")

    group = parser.add_argument_group("passed on")
    group.add_argument("--sbatch-args", default="", metavar="'ARGS'",
                       help="more sbatch options for both jobs, e.g. '--partition=gpu "
                            "--account=lab'")
    group.add_argument("--participant-args", default="", metavar="'ARGS'",
                       help="more bids-perfusion options of the participant level, e.g. "
                            "'--dsc-methods osvd,ssvd --skip-bids-validation'")
    group.add_argument("--group-args", default="", metavar="'ARGS'",
                       help="more bids-perfusion options of the group level")
    parser.add_argument("--dry-run", action="store_true",
                        help="write and print the scripts, do not submit")
    return parser


def slurm_options(args):
    """The :class:`~bids_perfusion.slurm.SlurmOptions` of parsed arguments."""
    from bids_perfusion.guards import resolved
    from bids_perfusion.slurm import SlurmOptions, participants_of

    bids_dir, output_dir = resolved(args.bids_dir), resolved(args.output_dir)
    labels = args.participant_label or participants_of(bids_dir)
    return SlurmOptions(
        bids_dir=bids_dir, output_dir=output_dir,
        participants=tuple(label.removeprefix("sub-") for label in labels),
        job_dir=resolved(args.job_dir or output_dir / "logs" / "slurm"),
        work_dir=resolved(args.work_dir or output_dir.parent / "work"),
        venv=None if args.container else resolved(args.venv or sys.prefix),
        container=resolved(args.container) if args.container else None,
        gpu=args.gpu, cpus=args.cpus, mem_gb=args.mem, time=args.time,
        group_mem_gb=args.group_mem, group_time=args.group_time,
        max_parallel=args.max_parallel, group_dependency=args.group_dependency,
        sbatch_args=tuple(shlex.split(args.sbatch_args)),
        participant_args=tuple(shlex.split(args.participant_args)),
        group_args=tuple(shlex.split(args.group_args)), binds=tuple(args.bind))


def main(argv=None):
    """Write the jobs, submit them unless ``--dry-run``; the exit status."""
    from bids_perfusion.slurm import submit, write_jobs

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.bids_dir.is_dir():
        parser.error(f"bids_dir {args.bids_dir}: no such folder.")
    try:
        jobs = write_jobs(slurm_options(args))
    except ValueError as error:
        parser.error(str(error))
    if args.dry_run:
        for path in (jobs.participant, jobs.group, jobs.submit):
            print(f"# {path}\n{path.read_text()}")
        print(f"Dry run: submit with bash {jobs.submit}")
        return 0
    try:
        print(submit(jobs))
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"bids-perfusion-slurm: sbatch failed: {getattr(error, 'stderr', '') or error}"
              f"\nThe scripts are in {jobs.submit.parent}.", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
