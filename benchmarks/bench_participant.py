"""Benchmark: the participant level from the command line on one 128 × 128 × 24 × 80 series.

Issue 17, item 3 (target ≤ 10 s). Writes a one-subject phantom (DSC only, 128 × 128 × 24
voxels, 80 frames, seed 0) unless ``--bids-dir`` names one, gives the run its brain and
arterial masks (a derivatives folder holding only the phantom's ``label-brain`` and
``label-arteries`` masks), and runs

    bids-perfusion BIDS OUT participant --dsc-methods osvd --derivatives MASKS -w WORK

(oSVD, the default BSW leakage correction, the HTML report) in a fresh interpreter with a
fresh work folder. It prints the wall time of the command and the time of each nipype
node, read from the ``runtime.duration`` of the node results in the work folder (the
nodes of one run overlap when ``--nprocs`` > 1, so their sum can exceed the wall time),
and the CPU time of the command and all its processes (user + system: a figure that
other load on the machine changes less than the wall time). From the run's log it splits
the wall time into start-up (to the log's "Processing" line), nodes (to the last node's
completion) and the end (citation, report, summary).

    NIPYPE_NO_ET=1 .venv/bin/python benchmarks/bench_participant.py [--nprocs 2] \\
        [--keep DIR] [--bids-dir DIR] [--no-motion-correction] [--repeats N]

The exit status is 0 whether or not the target is met; read the figures.
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

TARGET_S = 10.0
SHAPE = ("128", "128", "24")
FRAMES = "80"
MASKS = ("brain", "arteries")


def write_phantom(root):
    """The benchmark's dataset under ``root/bids``, its two masks under ``root/masks``."""
    bids = root / "bids"
    subprocess.run([sys.executable, "-m", "bids_perfusion.cli.phantom", str(bids),
                    "--n-subjects", "1", "--matrix", *SHAPE, "--n-frames", FRAMES,
                    "--no-asl", "--seed", "0", "-q"], check=True)
    return bids


def mask_folder(bids, root):
    """A derivatives folder with only the brain and arterial masks of the phantom."""
    masks = root / "masks"
    for path in (bids / "derivatives" / "phantom-truth").glob("sub-*/perf/*_mask.nii.gz"):
        if any(f"_label-{name}_" in path.name for name in MASKS):
            target = masks / path.relative_to(bids / "derivatives" / "phantom-truth")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    return masks


def node_times(work):
    """``{node: seconds}`` from the ``result_<node>.pklz`` files under ``work``."""
    from nipype.utils.filemanip import loadpkl

    times = {}
    for path in Path(work).rglob("result_*.pklz"):
        runtime = getattr(loadpkl(path), "runtime", None)
        duration = getattr(runtime, "duration", None)
        if duration is not None:
            times[path.parent.relative_to(work).as_posix()] = float(duration)
    return times


def log_phases(out, started, ended):
    """Seconds of start-up, nodes and end of the run, from the time stamps of its log."""
    def stamp(line):
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()

    lines = [line for log in (out / "logs").glob("bids-perfusion-*.log")
             for line in log.read_text().splitlines() if line[:2] == "20"]
    first = next(stamp(line) for line in lines if "Processing" in line)
    # MultiProc logs "[Job N] Completed", the Linear plugin (--nprocs 1) "[Node] Finished"
    last = max(stamp(line) for line in lines if "Completed" in line or "Finished" in line)
    return first - started, last - first, ended - last


def cpu_seconds():
    """User + system seconds of the finished child processes of this one (all of them)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--bids-dir", type=Path, help="a dataset written by this script "
                        "before (with --keep); default: write a new one")
    parser.add_argument("--keep", type=Path, help="keep dataset, outputs and work here")
    parser.add_argument("--top", type=int, default=15, help="nodes listed (slowest first)")
    parser.add_argument("--no-motion-correction", action="store_true",
                        help="pass --no-motion-correction to the run")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of the command (fresh outputs and work each); the "
                             "figures of the fastest are printed")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_participant_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        bids = args.bids_dir or write_phantom(root)
        masks = mask_folder(bids, root)
        out, work = root / "derivatives", root / "work"
        command = [sys.executable, "-m", "bids_perfusion.cli.run", str(bids), str(out),
                   "participant", "--dsc-methods", "osvd", "--derivatives", str(masks),
                   "-w", str(work), "--nprocs", str(args.nprocs),
                   "--skip-bids-validation"]
        if args.no_motion_correction:
            command.append("--no-motion-correction")
        runs = []
        for _ in range(max(args.repeats, 1)):
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
            cpu, started = cpu_seconds(), time.time()
            subprocess.run(command, check=True, capture_output=True,
                           env={**os.environ, "NIPYPE_NO_ET": "1"})
            ended = time.time()
            runs.append((ended - started, cpu_seconds() - cpu,
                         log_phases(out, started, ended), node_times(work)))
        walls = [run[0] for run in runs]
        wall, cpu, phases, times = min(runs, key=lambda run: run[0])
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"participant run, 128 x 128 x 24 x 80, oSVD + BSW leakage + report, "
          f"--nprocs {args.nprocs}"
          + (", --no-motion-correction" if args.no_motion_correction else ""))
    if len(runs) > 1:
        print("wall times of the runs: " + ", ".join(f"{w:.2f} s" for w in walls)
              + "; CPU: " + ", ".join(f"{run[1]:.2f} s" for run in runs)
              + "; the fastest below")
    print(f"wall time {wall:7.2f} s  (target <= {TARGET_S:g} s, "
          f"{'meets' if wall <= TARGET_S else 'misses'} it)")
    print(f"cpu time  {cpu:7.2f} s  (user + system, every process)")
    print("phases    start-up {:.2f} s, nodes {:.2f} s, citation + report {:.2f} s"
          .format(*phases))
    print(f"nodes     {sum(times.values()):7.2f} s in {len(times)} nodes; slowest:")
    for name, seconds in sorted(times.items(), key=lambda item: -item[1])[:args.top]:
        print(f"  {seconds:7.2f} s  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
