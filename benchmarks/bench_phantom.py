"""Benchmark: generate digital phantom cohorts, with and without the population anatomy.

Two cohorts, each built through the Python API into a temporary folder that is deleted
afterwards, with the template anatomy (today's default) and with ``--population``:

- ``demo``: the command line's default, ``bids-perfusion-phantom OUT --n-subjects 4
  --seed 42`` (2 HGG + 2 LGG, 64x64x16 grid, DSC at one dose and single-PLD PCASL), as
  ``make demo`` runs it; target 30 s;
- ``training``: 48 subjects (24 HGG + 24 LGG), DSC only, the cohort the stU-Net and PHAE
  benchmarks train on; target "minutes", taken as 300 s.

Imports are torch-free (checked). For each run it prints the generation wall time, the
time per subject (from the generator's progress log), the files written and the ratio
to the target (below 1 passes); then the population/template ratio of each cohort. Also
the import time, the peak resident memory of the process (``ru_maxrss``, which only
grows) and the CPU cores and BLAS / OpenMP threads available. Thread counts are not
changed here: set OMP_NUM_THREADS / OPENBLAS_NUM_THREADS to limit them. To measure on 2
cores, as the targets state::

    NIPYPE_NO_ET=1 taskset -c 0,1 .venv/bin/python benchmarks/bench_phantom.py

Options: ``--cohorts demo training`` (default both), ``--anatomy template population``
(default both), ``--seed S`` (default 42). The exit status is 0 whether or not the
targets are met; read the ratios.
"""

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

#: Cohorts: subjects, PhantomConfig changes, target wall time (s).
COHORTS = {"demo": (4, {}, 30.0), "training": (48, {"asl": None}, 300.0)}
ANATOMIES = ("template", "population")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class _SubjectClock(logging.Handler):
    """Records when the generator starts each subject ('Simulating sub-XX ...')."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.starts = []

    def emit(self, record):
        if record.getMessage().startswith("Simulating sub-"):
            self.starts.append((record.args[0], time.perf_counter()))


def _peak_rss_mb():
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _thread_report():
    import threadpoolctl

    pools = threadpoolctl.threadpool_info()
    blas = ", ".join(f"{p['internal_api']}={p['num_threads']}" for p in pools) or "none loaded"
    env = ", ".join(f"{v}={os.environ.get(v, 'unset')}" for v in THREAD_VARIABLES)
    return f"{len(os.sched_getaffinity(0))} CPU cores available; thread pools: {blas}; {env}"


def _run(config):
    """Write ``config`` into a temporary folder: wall time, per-subject times, files, MB."""
    from bids_perfusion.phantom import write_dataset

    clock = _SubjectClock()
    logger = logging.getLogger("bids_perfusion.phantom")
    logger.addHandler(clock)
    logger.setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="bench-phantom-") as tmp:
        start = time.perf_counter()
        out_dir = write_dataset(Path(tmp) / "phantom", config)
        end = time.perf_counter()
        files = [p for p in out_dir.rglob("*") if p.is_file()]
        size_mb = sum(p.stat().st_size for p in files) / 1e6
    logger.removeHandler(clock)
    times = [(clock.starts[i + 1][1] if i + 1 < len(clock.starts) else end) - t
             for i, (_, t) in enumerate(clock.starts)]
    return end - start, times, len(files), size_mb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", nargs="+", choices=tuple(COHORTS), default=list(COHORTS))
    parser.add_argument("--anatomy", nargs="+", choices=ANATOMIES, default=list(ANATOMIES))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    os.environ.setdefault("NIPYPE_NO_ET", "1")

    start = time.perf_counter()
    from bids_perfusion.phantom import PhantomConfig

    import_s = time.perf_counter() - start
    rss_before = _peak_rss_mb()
    print("digital phantom generation benchmark")
    print(_thread_report())
    walls = {}
    for cohort in args.cohorts:
        n_subjects, changes, target_s = COHORTS[cohort]
        for anatomy in args.anatomy:
            config = PhantomConfig.cohort(n_subjects, seed=args.seed,
                                          population=anatomy == "population").with_(**changes)
            wall_s, times, n_files, size_mb = _run(config)
            walls[cohort, anatomy] = wall_s
            print(f"\ndigital phantom, {cohort} cohort, {anatomy} anatomy: {n_subjects} "
                  f"subjects, seed {args.seed}, matrix {config.matrix}, "
                  f"DSC {'yes' if config.dsc else 'no'}, ASL {'yes' if config.asl else 'no'}")
            print(f"  generation wall time      {wall_s:8.2f} s  ({n_files} files, "
                  f"{size_mb:.1f} MB)")
            print(f"  time per subject          {wall_s / n_subjects:8.2f} s  "
                  f"(fastest {min(times):.2f} s, slowest {max(times):.2f} s)")
            print(f"  wall time / {target_s:.0f} s target {wall_s / target_s:8.2f}  "
                  f"({'meets' if wall_s < target_s else 'misses'} the target)")
    print()
    for cohort in args.cohorts:
        if all((cohort, a) in walls for a in ANATOMIES):
            print(f"digital phantom, {cohort} cohort: population / template wall time "
                  f"{walls[cohort, 'population'] / walls[cohort, 'template']:.2f}")
    print(f"torch imported: {'torch' in sys.modules}")
    print(f"import time                 {import_s:8.2f} s")
    print(f"peak RSS after imports      {rss_before:8.0f} MB")
    print(f"peak RSS after generation   {_peak_rss_mb():8.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
