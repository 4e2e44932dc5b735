"""Benchmark: start-up of the phantom's command line in a fresh interpreter.

Two figures, each the best of ``--repeats`` fresh ``python`` processes (default 5):

- import: seconds to import ``bids_perfusion.cli.phantom`` and build its parser, measured
  inside the process (target < 0.3 s; the parser imports no numpy, scipy, nibabel, nipype
  or torch, which ``tests/test_phantom_cli.py`` checks);
- help: wall time of ``python -m bids_perfusion.cli.phantom --help``, interpreter start
  included (target < 3 s).

    NIPYPE_NO_ET=1 .venv/bin/python benchmarks/bench_startup.py [--repeats N]

The exit status is 0 whether or not the targets are met; read the figures.
"""

import argparse
import subprocess
import sys
import time

IMPORT_TARGET_S = 0.3
HELP_TARGET_S = 3.0
IMPORT_CODE = ("import time; t = time.perf_counter(); import bids_perfusion.cli.phantom as m; "
               "m.build_parser(); print(time.perf_counter() - t)")


def import_seconds():
    """Import and parser time reported by a fresh interpreter."""
    result = subprocess.run([sys.executable, "-c", IMPORT_CODE], capture_output=True,
                            text=True, check=True, timeout=120)
    return float(result.stdout)


def help_seconds():
    """Wall time of ``--help`` in a fresh interpreter."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bids_perfusion.cli.phantom", "--help"],
                   capture_output=True, check=True, timeout=120)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    figures = [("import + parser", min(import_seconds() for _ in range(args.repeats)),
                IMPORT_TARGET_S),
               ("--help (wall)", min(help_seconds() for _ in range(args.repeats)),
                HELP_TARGET_S)]
    print(f"bids_perfusion.cli.phantom, best of {args.repeats} fresh interpreters")
    for name, seconds, target in figures:
        print(f"{name:<17}{seconds:7.3f} s  (target < {target:g} s, "
              f"{'meets' if seconds < target else 'misses'} it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
