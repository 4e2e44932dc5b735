"""``bids-perfusion bids_dir output_dir {participant,group}``: the BIDS App's entry point.

Parses the command line into one :class:`~bids_perfusion.config.RunConfig`, refuses
folders that would write into the input dataset (:mod:`bids_perfusion.guards`), and hands
the configuration to the participant level (:mod:`bids_perfusion.participant`) or the
group level (:mod:`bids_perfusion.group`). A request they cannot serve is a usage error
(exit status 2); the other exit statuses are docs/usage.md's "Exit status".
"""

import logging
import os
import shlex
import sys

from bids_perfusion import __version__, console, guards
from bids_perfusion.cli.parser import build_parser, run_config
from bids_perfusion.errors import EXIT_INTERNAL

LOGGER = logging.getLogger("bids_perfusion")


def main(argv=None):
    """Run the App; the exit status is one of :mod:`bids_perfusion.errors`' codes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    console.setup_console(args.verbose)
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    command = shlex.join(["bids-perfusion", *map(str, argv)])
    bids_dir, output_dir = guards.resolved(args.bids_dir), guards.resolved(args.output_dir)
    if not bids_dir.is_dir():
        parser.error(f"bids_dir {args.bids_dir}: no such folder.")
    if problem := guards.output_problem(args.output_dir, bids_dir):
        parser.error(problem)
    try:
        if args.analysis_level == "group":
            from bids_perfusion.group import run_group_level

            if args.n_bootstrap < 0:
                parser.error(f"--n-bootstrap {args.n_bootstrap}: give 0 (no CIs) or more.")
            return run_group_level(run_config(args, bids_dir, output_dir, args.work_dir),
                                   command)
        if problem := guards.work_problem(args.work_dir, bids_dir, output_dir):
            parser.error(problem)
        config = run_config(args, bids_dir, output_dir, guards.resolved(args.work_dir))
        if problem := _device_problem(args.device):
            parser.error(problem)
        if args.omp_nthreads:
            for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[variable] = str(args.omp_nthreads)
        from bids_perfusion.collect import InputError
        from bids_perfusion.participant import run_participant

        try:
            return run_participant(config, command)
        except InputError as error:
            parser.error(str(error))
    except Exception:  # a bug or the machine, not the user's data: say so, with the trace
        LOGGER.exception("Internal error of bids-perfusion %s; please report it with the "
                         "message above.", __version__)
        return EXIT_INTERNAL


def _device_problem(request):
    """Why ``--device request`` cannot be served here (``cuda`` or ``cuda:N`` without that
    GPU), or None; checked before any processing. ``auto`` and ``cpu`` are always served
    (``auto`` falls back to the CPU, saying so in the nodes' log), so they cost no torch
    import here."""
    if not request.startswith("cuda"):
        return None
    from bids_perfusion.nn.device import DeviceError, select_device

    try:
        select_device(request)
    except DeviceError as error:
        return str(error)
    return None


if __name__ == "__main__":
    sys.exit(main())
