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
    description = read.read_json(output_dir / "dataset_description.json")
    generated = (description.get("GeneratedBy") or [{}])[0]
    context = {
        "subject": subject,
        "version": generated.get("Version", ""),
        "errors": _errors_of(subject, errors),
        "runs": [safe_report_run(name, files, output_dir, figures_dir,
                                 derivatives=derivatives, record=run_records.get(name))
                 for name, files in runs.items()],
        "methods": read.methods(output_dir),
        "unchecked": unchecked,
        "not_shown": problems,
    }
    path = output_dir / f"sub-{subject}.html"
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(render(context))
    return path


def write_reports(output_dir, subjects=None, errors=(), *, derivatives=()):
    """Write ``output_dir/sub-X.html`` and ``sub-X/figures/*.svg`` for each subject.

    ``subjects``: labels with or without ``sub-``; all ``sub-*`` folders of
    ``output_dir`` when None. ``errors``: messages of runs that failed or were skipped;
    each report shows those that name its subject and those that name none.
    ``derivatives``: folders of user-given masks, searched for a ``label-tumor`` mask. A
    subject whose report fails is logged, not raised. Returns the paths of the reports
    written.
    """
    output_dir = Path(output_dir)
    if subjects is None:
        subjects = sorted(p.name for p in output_dir.glob("sub-*") if p.is_dir())
    written = []
    for subject in subjects:
        try:
            written.append(write_report(output_dir, subject, errors,
                                        derivatives=derivatives))
        except Exception as error:  # a broken report must not fail the participant level
            LOGGER.error("Report of sub-%s not written: %s: %s",
                         str(subject).removeprefix("sub-"), type(error).__name__, error)
    return written
