"""``bids-perfusion bids_dir output_dir {participant,group}``: the BIDS App's entry point.

The request is validated (dataset, subjects, metadata of every run) before the workflow
is built; runs that fail validation are reported and skipped, the others are processed,
and the exit code says what happened (docs/usage.md, "Exit status"). The input dataset
is only read.
"""

import json
import logging
import os
import re
import sys
import time
from pathlib import Path

from bids_perfusion import __version__, guards
from bids_perfusion.cli.parser import asl_options, build_parser, dsc_options
from bids_perfusion.errors import EXIT_INTERNAL, EXIT_OK, EXIT_SKIPPED
from bids_perfusion.naming import subject_of

LOGGER = logging.getLogger("bids_perfusion")


def main(argv=None):
    """Run the App; the exit status is one of :mod:`bids_perfusion.errors`' codes."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s bids-perfusion %(levelname)s: "
                                           "%(message)s", datefmt="%y%m%d-%H:%M:%S"))
    if not LOGGER.handlers:
        LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    bids_dir, output_dir = guards.resolved(args.bids_dir), guards.resolved(args.output_dir)
    if not bids_dir.is_dir():
        parser.error(f"bids_dir {args.bids_dir}: no such folder.")
    if problem := guards.output_problem(args.output_dir, bids_dir):
        parser.error(problem)
    try:
        if args.analysis_level == "group":
            from bids_perfusion.cli.group import run_group

            if args.n_bootstrap < 0:
                parser.error(f"--n-bootstrap {args.n_bootstrap}: give 0 (no CIs) or more.")
            return run_group(bids_dir, output_dir, grade_column=args.grade_column,
                             positive=args.positive_class, roi=args.grading_roi,
                             seed=args.bootstrap_seed, n_bootstrap=args.n_bootstrap,
                             participant_label=getattr(args, "participant_label", None))
        if problem := guards.work_problem(args.work_dir, bids_dir, output_dir):
            parser.error(problem)
        args.work_dir = guards.resolved(args.work_dir)
        if args.omp_nthreads:
            for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[variable] = str(args.omp_nthreads)
        return participant(args, bids_dir, output_dir, parser)
    except Exception:  # a bug or the machine, not the user's data: say so, with the trace
        LOGGER.exception("Internal error of bids-perfusion %s; please report it with the "
                         "message above.", __version__)
        return EXIT_INTERNAL


def participant(args, bids_dir, output_dir, parser):
    from bids_perfusion.cli.asl_inputs import collect_asl_runs
    from bids_perfusion.cli.inputs import (
        InputError,
        collect_dsc_runs,
        layout_of,
        usable_weights,
    )

    if not args.skip_bids_validation:
        validate_bids(bids_dir)
    filters = {}
    if args.bids_filter_file:
        try:
            filters = json.loads(args.bids_filter_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            parser.error(f"--bids-filter-file {args.bids_filter_file}: {error}")
        if not isinstance(filters, dict) or not all(isinstance(v, dict)
                                                    for v in filters.values()):
            parser.error(f"--bids-filter-file {args.bids_filter_file}: give a JSON object "
                         'such as {"dsc": {"acquisition": null}, "asl": {}}.')
    subjects = getattr(args, "participant_label", None)
    sessions = getattr(args, "session_label", None)
    asl_opts = asl_options(args)
    try:
        layout = layout_of(bids_dir)
        if not layout.get_subjects():
            raise InputError(f"{bids_dir}: the dataset has no subject (no sub-* folder with "
                             "data); there is nothing to process.")
        runs, errors = collect_dsc_runs(layout, subjects, sessions, filters.get("dsc", {}),
                                        args.derivatives, field_strength=args.field_strength)
        asl_runs, asl_errors = collect_asl_runs(layout, subjects, sessions,
                                                filters.get("asl", {}), args.derivatives,
                                                options=asl_opts)
    except InputError as error:
        parser.error(str(error))
    except ValueError as error:  # pybids refuses a filter of --bids-filter-file
        if not args.bids_filter_file or "entity" not in str(error):
            raise
        parser.error(f"--bids-filter-file {args.bids_filter_file}: {error}")
    errors += asl_errors
    found = {run.subject for run in (*runs, *asl_runs)}
    if without := sorted(set(subjects or layout.get_subjects()) - found - {
            subject_of(message) for message in errors}):
        parser.error(f"{bids_dir}: no DSC (perf/*_dsc.nii[.gz]) or ASL (perf/*_asl.nii[.gz]) "
                     f"run for subject(s) {without}; check --participant-label and "
                     "--bids-filter-file.")
    for message in errors:
        LOGGER.error("Skipping a run: %s", message)
    if not runs and not asl_runs:
        LOGGER.error("No run can be processed.")
        return EXIT_SKIPPED

    options = dsc_options(args)
    if runs:
        options, weight_errors = usable_weights(options)
        for message in weight_errors:
            LOGGER.error("%s", message)
        errors += weight_errors

    from bids_perfusion.derivatives import write_dataset_files
    from bids_perfusion.workflows.base import init_bids_perfusion_wf
    from bids_perfusion.workflows.citations import write_citation

    output_dir.mkdir(parents=True, exist_ok=True)
    write_dataset_files(output_dir, bids_dir)
    workflow = init_bids_perfusion_wf(runs, options, output_dir, args.work_dir,
                                      asl_runs=asl_runs, asl_options=asl_opts)
    LOGGER.info("Processing %d DSC and %d ASL run(s) of %d subject(s)", len(runs),
                len(asl_runs), len(found))
    sources = {run.name: run.files[0] for run in runs}
    sources.update({run.name: run.file for run in asl_runs})
    run_errors, internal = run_workflow(workflow, args, sources)
    write_citation(output_dir)  # the methods of every run with a completion record

    from bids_perfusion.reports.html import write_reports

    reports = write_reports(output_dir, sorted(found), errors=[*errors, *run_errors],
                            derivatives=args.derivatives)
    print(f"Derivatives: {output_dir}")
    for report in reports:
        print(f"Report: {report}")
    if internal:
        return EXIT_INTERNAL
    return EXIT_SKIPPED if run_errors or errors else EXIT_OK


def run_workflow(workflow, args, sources=None):
    """Run with MultiProc (or Linear for one process).

    Returns ``(messages, internal)``: one message per failed node, and whether any failure
    was internal rather than caused by the input (:func:`input_error_of`). ``sources``
    maps each run's name (the prefix of its sub-workflow's name) to its raw file, named in
    messages.
    """
    from bids_perfusion.workflows.engine import MultiProcPlugin

    workflow.config["execution"].update({"crashdump_dir": str(args.work_dir),
                                         "stop_on_first_crash": False,
                                         "crashfile_format": "txt",
                                         "poll_sleep_duration": 0.05})
    nprocs = args.nprocs or os.cpu_count()
    plugin_args = {"n_procs": nprocs, "raise_insufficient": False}
    if args.mem:
        plugin_args["memory_gb"] = args.mem
    started = time.time()
    try:
        if nprocs > 1:
            workflow.run(plugin=MultiProcPlugin(plugin_args=plugin_args))
        else:
            workflow.run(plugin="Linear", plugin_args=plugin_args)
    except RuntimeError as error:
        crashes = [path for path in Path(args.work_dir).glob("crash-*.txt")
                   if path.stat().st_mtime >= started - 1]
        if not crashes:
            LOGGER.error("The workflow failed: %s", error)
            return [str(error)], True
        messages, internal = [], False
        for crash in sorted(crashes):
            text = crash.read_text(errors="replace")
            node = re.search(r"^Node: (\S+)", text, flags=re.MULTILINE)
            node = node.group(1) if node else "?"
            message = input_error_of(text, _source_of(node, sources or {}))
            if message is None:
                internal = True
                message = f"internal error in step {node}: see {crash}; please report it"
            LOGGER.error("A run was not written: %s", message)
            messages.append(message)
        return messages, internal
    return [], False


#: Exceptions raised for the user's data: their message names the file and the fix.
INPUT_ERRORS = ("InputDataError", "MetadataError", "WeightsError")
#: Packages of the numeric cores, whose ValueErrors are checks of the data (their
#: docstrings say when they raise) rather than bugs.
CORE_PACKAGES = ("dsc", "asl", "stats")


def input_error_of(crash_text, source=None):
    """The message of an input error in a nipype crash report, or None if it was another.

    Input errors are the :data:`INPUT_ERRORS`, which name their file, and the ValueErrors
    raised by a data check of a numeric core, which are prefixed with ``source`` (the
    run's raw file).
    """
    pattern = rf"(?:^|\.)({'|'.join(INPUT_ERRORS)}): (.+)$"
    if matches := re.findall(pattern, crash_text, flags=re.MULTILINE):
        return matches[-1][1].strip()
    frames = re.findall(r'^\s*File "([^"]+)"', crash_text, flags=re.MULTILINE)
    check = re.findall(r"^\s*ValueError: (.+)$", crash_text, flags=re.MULTILINE)
    core = f"({'|'.join(CORE_PACKAGES)})"
    if check and frames and re.search(rf"bids_perfusion/{core}/", frames[-1]):
        return f"{source or 'a run'}: {check[-1].strip()}"
    return None


def _source_of(node, sources):
    """The raw file of the run whose sub-workflow holds ``node`` (the longest run name
    that prefixes the sub-workflow's name), or None."""
    parts = node.split(".")
    workflow = parts[1] if len(parts) > 2 else ""
    names = [name for name in sources if workflow.startswith(name)]
    return sources[max(names, key=len)] if names else None


def validate_bids(bids_dir):
    """Run ``bids-validator-deno`` when installed; errors are reported, not fatal for DSC."""
    import shutil
    import subprocess

    validator = shutil.which("bids-validator-deno") or str(
        Path(sys.executable).with_name("bids-validator-deno"))
    if not Path(validator).exists():
        LOGGER.warning("bids-validator-deno not found; skipping BIDS validation")
        return
    result = subprocess.run([validator, str(bids_dir), "--format", "json"],
                            capture_output=True, text=True, check=False)
    try:
        issues = json.loads(result.stdout)["issues"]["issues"]
    except (json.JSONDecodeError, KeyError):
        LOGGER.warning("BIDS validator gave no readable report: %s", result.stderr[-500:])
        return
    for issue in issues:
        if issue.get("severity") == "error":
            LOGGER.warning("BIDS validator: %s %s", issue.get("code"), issue.get("location"))


if __name__ == "__main__":
    sys.exit(main())
