"""``bids-perfusion bids_dir output_dir {participant,group}``: the BIDS App's entry point.

The request is validated (dataset, subjects, metadata of every run) before the workflow
is built; runs that fail validation are reported and skipped, the others are processed,
and the exit code is 1 when anything failed. The input dataset is only read.
"""

import json
import logging
import os
import re
import sys
from pathlib import Path

from bids_perfusion import __version__
from bids_perfusion.cli.parser import asl_options, build_parser, dsc_options

LOGGER = logging.getLogger("bids_perfusion")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s bids-perfusion %(levelname)s: "
                                           "%(message)s", datefmt="%y%m%d-%H:%M:%S"))
    if not LOGGER.handlers:
        LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    bids_dir, output_dir = args.bids_dir.absolute(), args.output_dir.absolute()
    inside = bids_dir in output_dir.parents and (
        "derivatives" not in output_dir.relative_to(bids_dir).parts)
    if output_dir == bids_dir or inside:
        parser.error(f"output_dir {output_dir} must not be inside the input dataset "
                     "(except under its derivatives/ folder)")
    if args.analysis_level == "group":
        from bids_perfusion.cli.group import run_group

        return run_group(bids_dir, output_dir, grade_column=args.grade_column,
                         positive=args.positive_class, roi=args.grading_roi,
                         seed=args.bootstrap_seed, n_bootstrap=args.n_bootstrap,
                         participant_label=getattr(args, "participant_label", None))
    if args.omp_nthreads:
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[variable] = str(args.omp_nthreads)
    return participant(args, bids_dir, output_dir, parser)


def participant(args, bids_dir, output_dir, parser):
    from bids_perfusion.cli.asl_inputs import collect_asl_runs
    from bids_perfusion.cli.inputs import InputError, collect_dsc_runs, layout_of

    if not args.skip_bids_validation:
        validate_bids(bids_dir)
    filters = {}
    if args.bids_filter_file:
        try:
            filters = json.loads(args.bids_filter_file.read_text())
        except (OSError, json.JSONDecodeError) as error:
            parser.error(f"--bids-filter-file {args.bids_filter_file}: {error}")
    subjects = getattr(args, "participant_label", None)
    sessions = getattr(args, "session_label", None)
    asl_opts = asl_options(args)
    try:
        layout = layout_of(bids_dir)
        runs, errors = collect_dsc_runs(layout, subjects, sessions, filters.get("dsc", {}),
                                        args.derivatives)
        asl_runs, asl_errors = collect_asl_runs(layout, subjects, sessions,
                                                filters.get("asl", {}), args.derivatives,
                                                options=asl_opts)
    except InputError as error:
        parser.error(str(error))
    errors += asl_errors
    found = {run.subject for run in (*runs, *asl_runs)}
    if without := sorted(set(subjects or layout.get_subjects()) - found - {
            _subject_of(message) for message in errors}):
        parser.error(f"{bids_dir}: no DSC (perf/*_dsc.nii[.gz]) or ASL (perf/*_asl.nii[.gz]) "
                     f"run for subject(s) {without}; check --participant-label and "
                     "--bids-filter-file.")
    for message in errors:
        LOGGER.error("Skipping a run: %s", message)
    if not runs and not asl_runs:
        LOGGER.error("No run can be processed.")
        return 1

    from bids_perfusion.workflows.base import init_bids_perfusion_wf
    from bids_perfusion.workflows.citations import write_citation

    options = dsc_options(args)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_dataset_description(output_dir, bids_dir)
    workflow = init_bids_perfusion_wf(runs, options, output_dir, args.work_dir.absolute(),
                                      asl_runs=asl_runs, asl_options=asl_opts)
    LOGGER.info("Processing %d DSC and %d ASL run(s) of %d subject(s)", len(runs),
                len(asl_runs), len(found))
    failed = run_workflow(workflow, args)
    write_citation(output_dir)  # the methods of every run with a completion record

    from bids_perfusion.reports.html import write_reports

    failures = [f"Some runs failed; their crash files are in {args.work_dir.absolute()}"]
    reports = write_reports(output_dir, sorted(found),
                            errors=[*errors, *(failures if failed else [])],
                            bids_dir=bids_dir, derivatives=args.derivatives)
    print(f"Derivatives: {output_dir}")
    for report in reports:
        print(f"Report: {report}")
    return 1 if failed or errors else 0


def _subject_of(message):
    """The subject label a run's error message names (its file path), or None."""
    match = re.search(r"sub-([A-Za-z0-9]+)", message)
    return match.group(1) if match else None


def run_workflow(workflow, args):
    """Run with MultiProc (or Linear for one process); True if any node failed."""
    workflow.config["execution"].update({"crashdump_dir": str(args.work_dir.absolute()),
                                         "stop_on_first_crash": False,
                                         "crashfile_format": "txt",
                                         "poll_sleep_duration": 0.05})
    nprocs = args.nprocs or os.cpu_count()
    plugin_args = {"n_procs": nprocs, "raise_insufficient": False}
    if args.mem:
        plugin_args["memory_gb"] = args.mem
    try:
        workflow.run(plugin="MultiProc" if nprocs > 1 else "Linear", plugin_args=plugin_args)
    except RuntimeError as error:
        LOGGER.error("Some runs failed; their outputs were not written. %s", error)
        return True
    return False


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


def write_dataset_description(output_dir, bids_dir):
    description = {
        "Name": "bids-perfusion derivatives",
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "bids-perfusion", "Version": __version__,
                         "CodeURL": "https://github.com/bids-perfusion/bids-perfusion",
                         **({"Container": {"Type": "docker"}}
                            if Path("/.dockerenv").exists() else {})}],
        "SourceDatasets": [{"URL": bids_dir.as_uri()}],
        "DatasetLinks": {"raw": bids_dir.as_uri()},
    }
    (output_dir / "dataset_description.json").write_text(json.dumps(description, indent=2))


if __name__ == "__main__":
    sys.exit(main())
