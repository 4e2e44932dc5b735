"""Tab-separated tables (BIDS TSV): the one reader and writer of every table of the App.

BIDS tables are UTF-8 text with a header row, tab-separated, ``n/a`` for a missing value
(BIDS specification, "Tabular files"). Floats are written with 6 significant digits;
missing, ``None`` and non-finite values as ``n/a``.
"""

import csv
from pathlib import Path

import numpy as np


def format_cell(value):
    """Text of one cell: ``n/a`` for None and non-finite floats, floats to 6 digits."""
    if value is None:
        return "n/a"
    if isinstance(value, float | np.floating):
        return f"{value:.6g}" if np.isfinite(value) else "n/a"
    return value


def write_tsv(rows, columns, path):
    """Write dict ``rows`` under the header ``columns`` to ``path`` (relative to the cwd);
    a cell missing from a row is ``n/a``. Returns the absolute path as a string."""
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, delimiter="\t", lineterminator="\n",
                                restval="n/a")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: format_cell(v) for k, v in row.items()})
    return str(path)


def read_tsv(path):
    """A TSV file as a list of dict rows (cells as text). OSError when it cannot be read."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def read_tsv_columns(path):
    """A TSV of numbers as ``{column name: float array}``."""
    rows = read_tsv(path)
    return {key: np.array([float(r[key]) for r in rows]) for key in rows[0]}
