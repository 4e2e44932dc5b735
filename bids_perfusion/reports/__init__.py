"""Per-subject HTML reports, made after the participant level from the derivatives on disk.

:mod:`bids_perfusion.reports.figures` holds pure functions from arrays to SVG;
:func:`bids_perfusion.reports.html.write_reports` reads ``output_dir/sub-X/``, draws the
figures into ``sub-X/figures/`` and writes ``output_dir/sub-X.html``. Nothing here is
imported by the command line until the reports are written (matplotlib and jinja2 stay
out of ``bids-perfusion --help``).
"""
