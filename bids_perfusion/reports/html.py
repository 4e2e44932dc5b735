"""``output_dir/sub-X.html``: the subject's report, rendered from its derivatives.

:func:`write_reports` runs after the participant level. For each subject it reads the
runs of ``sub-X[/ses-Y]/perf/`` (:mod:`bids_perfusion.reports.derivatives`), draws each
run's section (:mod:`bids_perfusion.reports.sections`, figures into ``sub-X/figures/``)
and renders the template ``templates/report.html`` with jinja2. Every derivative is
optional: a figure or table whose files are missing is left out, never an error.

Only files that a run's completion record lists unchanged are shown
(:mod:`bids_perfusion.records`); the others (stale files of an earlier run with other
options, files of an interrupted run, files missing or changed since their run) are
listed, not drawn, and each run shows the options of its record. A derivatives folder
without any record (written by hand, or by a version before records) is shown whole,
with a note that its completeness could not be checked.
"""

import logging
from pathlib import Path

from bids_perfusion.naming import names_subject, subject_of
from bids_perfusion.reports import derivatives as read
from bids_perfusion.reports.sections import safe_report_run

LOGGER = logging.getLogger("bids_perfusion")
TEMPLATES = Path(__file__).parent / "templates"


def _errors_of(subject, errors):
    """The messages about ``subject`` (naming ``sub-<label>``) and those naming no subject."""
    return [str(e) for e in errors if names_subject(e, subject) or subject_of(e) is None]


def render(context):
    """The report's HTML from its context (see :func:`write_report`)."""
    import jinja2

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                                     autoescape=True, trim_blocks=True, lstrip_blocks=True,
                                     keep_trailing_newline=True)
    return environment.get_template("report.html").render(**context)


def write_report(output_dir, subject, errors=(), *, derivatives=()):
    """Draw the figures of ``subject`` and write ``output_dir/sub-<subject>.html``."""
    output_dir = Path(output_dir)
    subject = str(subject).removeprefix("sub-")
    subject_dir = output_dir / f"sub-{subject}"
    figures_dir = subject_dir / "figures"
    runs, run_records, unchecked, problems = read.checked_runs(output_dir, subject_dir,
                                                               subject)
    if runs:
        figures_dir.mkdir(parents=True, exist_ok=True)
    drawn = {}  # figures drawn for one run and copied for the others (sections.py)
    description = read.read_json(output_dir / "dataset_description.json")
    generated = (description.get("GeneratedBy") or [{}])[0]
    context = {
        "subject": subject,
        "version": generated.get("Version", ""),
        "errors": _errors_of(subject, errors),
        "runs": [safe_report_run(name, files, output_dir, figures_dir,
                                 derivatives=derivatives, record=run_records.get(name),
                                 drawn=drawn)
                 for name, files in runs.items()],
        "methods": read.methods(output_dir),
        "unchecked": unchecked,
        "not_shown": problems,
    }
    path = output_dir / f"sub-{subject}.html"
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(render(context))
    return path


def _write_one(output_dir, subject, errors, derivatives):
    """:func:`write_report`, or None and the message of why it failed (a broken report must
    not fail the participant level)."""
    try:
        return write_report(output_dir, subject, errors, derivatives=derivatives), None
    except Exception as error:
        return None, (f"Report of sub-{str(subject).removeprefix('sub-')} not written: "
                      f"{type(error).__name__}: {error}")


def _write_in_worker(output_dir, subject, errors, derivatives):
    """:func:`_write_one` in a worker process, with the log records it made (formatted),
    for the parent to log."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    LOGGER.addHandler(handler)
    LOGGER.propagate = False
    try:
        result = _write_one(output_dir, subject, errors, derivatives)
    finally:
        LOGGER.removeHandler(handler)
    for record in records:
        record.msg, record.args, record.exc_info = record.getMessage(), None, None
    return result, records


def write_reports(output_dir, subjects=None, errors=(), *, derivatives=(), nprocs=1):
    """Write ``output_dir/sub-X.html`` and ``sub-X/figures/*.svg`` for each subject.

    ``subjects``: labels with or without ``sub-``; all ``sub-*`` folders of
    ``output_dir`` when None. ``errors``: messages of runs that failed or were skipped;
    each report shows those that name its subject and those that name none.
    ``derivatives``: folders of user-given masks, searched for a ``label-tumor`` mask. A
    subject whose report fails is logged, not raised. ``nprocs`` > 1 draws the reports of
    several subjects at once in as many processes (each report is drawn once, by one
    process; a fresh interpreter each, as the workflow's workers). Returns the paths of
    the reports written, in the order of ``subjects``.
    """
    output_dir = Path(output_dir)
    if subjects is None:
        subjects = sorted(p.name for p in output_dir.glob("sub-*") if p.is_dir())
    jobs = [(output_dir, subject, list(map(str, errors)), tuple(derivatives))
            for subject in subjects]
    workers = min(nprocs, len(jobs))
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) \
                as pool:
            results = []
            for result, records in pool.map(_write_in_worker, *zip(*jobs, strict=True)):
                results.append(result)
                for record in records:
                    LOGGER.handle(record)
    else:
        results = [_write_one(*job) for job in jobs]
    for _, problem in results:
        if problem:
            LOGGER.error("%s", problem)
    return [path for path, _ in results if path is not None]
