"""Benchmark: ``make demo``, its two commands on a fresh folder.

Issue 17, item 4 (target: the processing ≤ 60 s on 2 cores). Runs, in fresh
interpreters, the two commands of the Makefile's ``demo`` target:

    bids-perfusion-phantom DIR/phantom --n-subjects 4 --seed 42 --overwrite
    bids-perfusion DIR/phantom DIR/derivatives participant \\
        --dsc-methods ssvd,csvd,osvd,tikhonov --simulate-dose 0.5 -w DIR/work

(4 subjects of 64 × 64 × 16 voxels with DSC and ASL; 12 runs: 4 acquired DSC, 4
simulated at half dose, 4 ASL; head-motion correction and the HTML reports), and prints
the wall time of each, the CPU time of all their processes (user + system, steadier than
the wall time on a shared machine), the split of the processing into start-up, nodes and
end (from the run's log), the number of nipype nodes and the sum of their times per node
type (the nodes of a run overlap with ``--nprocs`` > 1, so the sums can exceed the wall
time), and the ratio of the processing wall time to the 60 s target.

    NIPYPE_NO_ET=1 .venv/bin/python benchmarks/bench_demo.py [--nprocs 2] [--keep DIR]
        [--phantom DIR]

``--phantom`` reuses a dataset written before (``--keep``) and times the processing
alone. ``--compare DIR`` compares the derivatives with those of an earlier run (DIR, its
``derivatives`` folder, e.g. of the code before a change): the same file names, the data
and affine of every NIfTI, every JSON sidecar and TSV table (the completion records of
``logs/`` hold time stamps and the SHA-256 of the compressed files, and are left out);
it lists each file that differs with its largest difference relative to the largest
value of the earlier file. The exit status is 0 whether or not the target is met and
whatever differs; read the figures.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench_participant import cpu_seconds, log_phases, node_times

TARGET_S = 60.0


def timed(command):
    """``(wall s, cpu s of every process)`` of one command run to completion."""
    cpu, started = cpu_seconds(), time.time()
    subprocess.run(command, check=True, capture_output=True,
                   env={**os.environ, "NIPYPE_NO_ET": "1"})
    return time.time() - started, cpu_seconds() - cpu


def node_type(name):
    """The node's own name, without its workflow path or map-node index (``_sink3``)."""
    return re.sub(r"^_(.+?)\d+$", r"\1", name.rsplit("/", 1)[-1])


def compare(before, after):
    """``(files compared, [(relative path, largest relative difference or a reason)])``
    of the NIfTI, JSON and TSV derivatives of two runs (``logs/`` left out)."""
    import nibabel as nib
    import numpy as np

    def listed(root):
        return {p.relative_to(root) for p in root.rglob("*")
                if p.suffix in (".gz", ".json", ".tsv") and p.parts[len(root.parts)] != "logs"}

    names_before, names_after = listed(before), listed(after)
    differences = [(name, "only before") for name in sorted(names_before - names_after)]
    differences += [(name, "only after") for name in sorted(names_after - names_before)]
    for name in sorted(names_before & names_after):
        a, b = before / name, after / name
        if name.suffix == ".json":
            if json.loads(a.read_text()) != json.loads(b.read_text()):
                differences.append((name, "sidecar differs"))
            continue
        if name.suffix == ".tsv":
            if a.read_text() != b.read_text():
                differences.append((name, _table_difference(a, b)))
            continue
        old, new = nib.load(a), nib.load(b)
        if not np.array_equal(old.affine, new.affine) or old.shape != new.shape:
            differences.append((name, "affine or shape differs"))
            continue
        x, y = (np.asarray(image.dataobj, dtype=float) for image in (old, new))
        if not np.array_equal(x, y, equal_nan=True):
            scale = np.nanmax(np.abs(x)) or 1.0
            differences.append((name, float(np.nanmax(np.abs(x - y))) / scale))
    return len(names_before | names_after), differences


def _table_difference(a, b):
    """Largest relative difference of the numbers of two TSV tables of the same layout."""
    import numpy as np

    rows = [[line.split("\t") for line in path.read_text().splitlines()] for path in (a, b)]
    if [len(r) for r in rows[0]] != [len(r) for r in rows[1]] or rows[0][0] != rows[1][0]:
        return "table layout differs"
    worst = 0.0
    for old, new in zip(rows[0][1:], rows[1][1:], strict=True):
        for x, y in zip(old, new, strict=True):
            if x == y:
                continue
            try:
                x_value, y_value = float(x), float(y)
            except ValueError:
                return f"text differs: {x!r} / {y!r}"
            worst = max(worst, abs(x_value - y_value) / max(abs(x_value), 1e-12))
    return worst if np.isfinite(worst) else "non-finite difference"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--phantom", type=Path, help="a phantom written before "
                        "(DIR/phantom of --keep); default: write a new one")
    parser.add_argument("--keep", type=Path, help="keep phantom, outputs and work here")
    parser.add_argument("--top", type=int, default=25, help="node types listed")
    parser.add_argument("--compare", type=Path, help="derivatives of an earlier run, "
                        "compared with this run's")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_demo_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        phantom, out, work = root / "phantom", root / "derivatives", root / "work"
        phantom_times = None
        if args.phantom is None:
            phantom_times = timed([sys.executable, "-m", "bids_perfusion.cli.phantom",
                                   str(phantom), "--n-subjects", "4", "--seed", "42",
                                   "--overwrite"])
        else:
            phantom = args.phantom
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        started = time.time()
        wall, cpu = timed([sys.executable, "-m", "bids_perfusion.cli.run", str(phantom),
                           str(out), "participant", "--dsc-methods",
                           "ssvd,csvd,osvd,tikhonov", "--simulate-dose", "0.5",
                           "-w", str(work), "--nprocs", str(args.nprocs)])
        phases = log_phases(out, started, started + wall)
        times = node_times(work)
        compared = compare(args.compare, out) if args.compare else None
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    by_type = defaultdict(list)
    for name, seconds in times.items():
        by_type[node_type(name)].append(seconds)
    print(f"make demo: 4 phantom subjects 64 x 64 x 16, 12 runs, --nprocs {args.nprocs}, "
          f"load {os.getloadavg()[0]:.1f}")
    if phantom_times is not None:
        print(f"phantom     wall {phantom_times[0]:7.2f} s  cpu {phantom_times[1]:7.2f} s")
    print(f"processing  wall {wall:7.2f} s  cpu {cpu:7.2f} s  (user + system, every "
          f"process)")
    print("phases      start-up {:.2f} s, nodes {:.2f} s, citation + report {:.2f} s"
          .format(*phases))
    print(f"target      {TARGET_S:g} s of processing: wall / target = "
          f"{wall / TARGET_S:.2f} ({'meets' if wall <= TARGET_S else 'misses'} it)")
    print(f"nodes       {sum(times.values()):7.2f} s in {len(times)} nodes; per node type "
          f"(sum, count), slowest first:")
    for name, seconds in sorted(by_type.items(), key=lambda item: -sum(item[1]))[:args.top]:
        print(f"  {sum(seconds):7.2f} s  {len(seconds):4d}  {name}")
    if compared is not None:
        n_files, differences = compared
        print(f"compared with {args.compare}: {n_files} NIfTI, JSON and TSV files, "
              f"{len(differences)} differ (relative to the largest earlier value):")
        for name, difference in differences:
            shown = f"{difference:.2e}" if isinstance(difference, float) else difference
            print(f"  {shown:>24}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
