"""The participant level of ``bids-perfusion``: collect, validate, build, run, report.

Runs that fail validation are reported and skipped, the others are processed, and the
returned exit status says what happened (docs/usage.md, "Exit status"). A request that
cannot be served (no subject, a bad filter file) raises
:class:`~bids_perfusion.collect.InputError`, which the command line reports as a usage
error; nothing is written then. The input dataset is only read; the configuration and the
full log of the run go to ``output_dir/logs/`` (:mod:`bids_perfusion.config`,
:mod:`bids_perfusion.console`).
"""

import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from bids_perfusion import console
from bids_perfusion.collect import InputError
from bids_perfusion.config import LOGS_DIR
from bids_perfusion.errors import EXIT_INTERNAL, EXIT_OK, EXIT_SKIPPED
from bids_perfusion.naming import subject_of

LOGGER = logging.getLogger("bids_perfusion")


def run_participant(config, command):
    """Process the runs that ``config`` (:class:`~bids_perfusion.config.RunConfig`)
    selects; ``command`` is the command line, saved with the configuration."""
    from bids_perfusion.collect import collect_asl_runs, collect_dsc_runs, layout_of

    started = time.time()
    execution = config.execution
    bids_dir, output_dir = execution.bids_dir, execution.output_dir
    if not execution.skip_bids_validation:
        validate_bids(bids_dir)
    filters = read_filters(execution.bids_filter_file)
    subjects, sessions = execution.participant_label, execution.session_label
    layout = layout_of(bids_dir)
    if not layout.get_subjects():
        raise InputError(f"{bids_dir}: the dataset has no subject (no sub-* folder with "
                         "data); there is nothing to process.")
    try:
        runs, errors = collect_dsc_runs(layout, subjects, sessions, filters.get("dsc", {}),
                                        execution.derivatives,
                                        field_strength=config.dsc.field_strength)
        asl_runs, asl_errors = collect_asl_runs(layout, subjects, sessions,
                                                filters.get("asl", {}),
                                                execution.derivatives, options=config.asl)
    except ValueError as error:  # pybids refuses a filter of --bids-filter-file
        if isinstance(error, InputError) or not execution.bids_filter_file or (
                "entity" not in str(error)):
            raise
        raise InputError(f"--bids-filter-file {execution.bids_filter_file}: {error}") from None
    errors += asl_errors
    runs, asl_runs, anatomy = _with_anatomy(layout, runs, asl_runs, execution, errors)
    found = {run.subject for run in (*runs, *asl_runs)}
    if without := sorted(set(subjects or layout.get_subjects()) - found - {
            subject_of(message) for message in errors}):
        raise InputError(f"{bids_dir}: no DSC (perf/*_dsc.nii[.gz]) or ASL "
                         f"(perf/*_asl.nii[.gz]) run for subject(s) {without}; check "
                         "--participant-label and --bids-filter-file.")
    for message in errors:
        LOGGER.error("Skipping a run: %s", message)
    if not runs and not asl_runs:
        LOGGER.error("No run can be processed.")
        return EXIT_SKIPPED

    options, weight_errors = config.dsc, []
    if runs:
        from bids_perfusion.collect import usable_weights

        options, weight_errors = usable_weights(options)
    if asl_runs and config.asl.denoise:
        from bids_perfusion.collect import usable_denoiser

        asl_options, denoise_errors = usable_denoiser(config.asl, asl_runs)
        config = replace(config, asl=asl_options)
        weight_errors += denoise_errors
    for message in weight_errors:
        LOGGER.error("%s", message)

    config_file, run_id = config.save(command)
    log = console.log_to_file(output_dir / LOGS_DIR / f"bids-perfusion-{run_id}.log",
                              execution.verbose)
    try:
        status, written, run_errors, reports = _process(config, options, runs, asl_runs,
                                                        found, [*errors, *weight_errors],
                                                        anatomy)
        console.summary(written, [*errors, *run_errors], weight_errors,
                        time.time() - started)
    finally:
        console.close_log(log)
    print(f"Derivatives: {output_dir}")
    for report in reports:
        print(f"Report: {report}")
    print(f"Log: {log.baseFilename}")
    print(f"Configuration: {config_file}")
    return status


def _with_anatomy(layout, runs, asl_runs, execution, errors):
    """The DSC and ASL runs that the output spaces can serve, and the subjects' T1w
    (:func:`~bids_perfusion.collect.anat.collect_anatomy`); the messages of the runs
    skipped for want of a T1w are added to ``errors``."""
    from bids_perfusion.collect.anat import collect_anatomy

    anatomy, usable, anat_errors = collect_anatomy(layout, [*runs, *asl_runs],
                                                   execution.spatial, execution.derivatives)
    errors += anat_errors
    return ([run for run in runs if run in usable],
            [run for run in asl_runs if run in usable], anatomy)


def _process(config, options, runs, asl_runs, found, errors, anatomy=None):
    """Build and run the workflow, write the citation and the reports; returns the exit
    status, the number of runs written, the messages of the runs that failed and the
    reports."""
    from bids_perfusion.derivatives import write_dataset_files
    from bids_perfusion.reports.html import write_reports
    from bids_perfusion.workflows.base import init_bids_perfusion_wf
    from bids_perfusion.workflows.citations import write_citation
    from bids_perfusion.workflows.engine import run_workflow

    execution = config.execution
    output_dir = execution.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    write_dataset_files(output_dir, execution.bids_dir)
    workflow = init_bids_perfusion_wf(runs, options, output_dir, execution.work_dir,
                                      asl_runs=asl_runs, asl_options=config.asl,
                                      spatial=execution.spatial, anatomy=anatomy)
    LOGGER.info("Processing %d DSC and %d ASL run(s) of %d subject(s)", len(runs),
                len(asl_runs), len(found))
    sources = {run.name: run.files[0] for run in runs}
    sources.update({run.name: run.file for run in asl_runs})
    sources.update({f"{anat.name}_wf": anat.t1w for anat in (anatomy or {}).values()})
    progress = console.Progress(workflow)
    run_errors, internal = run_workflow(workflow, execution, sources, progress)
    write_citation(output_dir)  # the methods of every run with a completion record
    reports = write_reports(output_dir, sorted(found), errors=[*errors, *run_errors],
                            derivatives=execution.derivatives,
                            nprocs=execution.nprocs or os.cpu_count())
    if internal:
        status = EXIT_INTERNAL
    else:
        status = EXIT_SKIPPED if run_errors or errors else EXIT_OK
    return status, len(progress.written()), run_errors, reports


def read_filters(path):
    """The pybids filters of ``--bids-filter-file`` (``{}`` without one); InputError when
    the file is not a JSON object of objects."""
    if not path:
        return {}
    try:
        filters = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"--bids-filter-file {path}: {error}") from None
    if not isinstance(filters, dict) or not all(isinstance(v, dict)
                                                for v in filters.values()):
        raise InputError(f"--bids-filter-file {path}: give a JSON object such as "
                         '{"dsc": {"acquisition": null}, "asl": {}}.')
    return filters


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
