"""Per-subject HTML reports, made after the participant level from the derivatives on disk.

Three steps, one module each: :mod:`bids_perfusion.reports.derivatives` reads a
subject's derivatives (runs checked against their completion records, maps, masks,
sidecars and tables), :mod:`bids_perfusion.reports.sections` draws each run's figures
with :mod:`bids_perfusion.reports.figures` (pure functions from arrays to SVG) into
``sub-X/figures/``, and :func:`bids_perfusion.reports.html.write_reports` renders
``output_dir/sub-X.html``. The input dataset is never read. Nothing here is imported by the
command line until the reports are written (matplotlib and jinja2 stay out of
``bids-perfusion --help``).
"""
