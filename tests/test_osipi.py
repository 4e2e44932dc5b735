"""External reference: the OSIPI DSC test curves (van Houdt et al., MRM 2024;91:1774).

14 noisy tissue curves with known CBV and CBF; see ``tests/data/osipi-dsc/README.md``
for the format, provenance and OSIPI's tolerance rule, applied here unchanged:
``CBV = 100 ∫C_tis / ∫C_aif`` (mL/100 mL), ``CBF = 6000 · max k`` (mL/100 mL/min),
``|CBV − cbv| ≤ 1 + 0.1 cbv`` and ``|CBF − cbf| ≤ 15 + 0.1 cbf``, no kH or density factor.
"""

import csv
from pathlib import Path

import numpy as np
import pytest

from bids_perfusion.dsc.deconvolution import DeconvolutionModel

#: A verbatim copy (Apache-2.0, notice beside it), so that the test needs nothing outside
#: the repository.
DATA = Path(__file__).parent / "data" / "osipi-dsc" / "dsc_data.csv"


@pytest.fixture(scope="module")
def osipi_rows():
    with DATA.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 14
    return [
        {
            "label": row["label"],
            "tissue": np.array(row["C_tis"].split(), dtype=float),
            "aif": np.array(row["C_aif"].split(), dtype=float),
            "cbv": float(row["cbv"]),
            "cbf": float(row["cbf"]),
            "dt": float(row["tr"]),
        }
        for row in rows
    ]


def test_cbv_within_osipi_tolerance(osipi_rows):
    failures = []
    for row in osipi_rows:
        cbv = 100 * row["tissue"].sum() / row["aif"].sum()  # same Δt in both integrals
        if abs(cbv - row["cbv"]) > 1 + 0.1 * row["cbv"]:
            failures.append(f"{row['label']}: CBV {cbv:.2f} vs {row['cbv']}")
    assert not failures, failures


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("ssvd", {"threshold": 0.2}),
        ("csvd", {"threshold": 0.1}),
        ("osvd", {"oi_threshold": 0.035}),
        ("tikhonov", {"criterion": "fixed"}),
        ("tikhonov", {"criterion": "gcv"}),
        ("tikhonov", {"criterion": "lcurve"}),
    ],
    ids=["ssvd-0.2", "csvd-0.1", "osvd-0.035", "tikhonov-fixed", "tikhonov-gcv", "tikhonov-lc"],
)
def test_cbf_within_osipi_tolerance(osipi_rows, method, params):
    failures = []
    for row in osipi_rows:
        fit = DeconvolutionModel(row["aif"], row["dt"], method, **params).fit(row["tissue"])
        if abs(fit.cbf - row["cbf"]) > 15 + 0.1 * row["cbf"]:
            failures.append(f"{row['label']}: CBF {fit.cbf:.1f} vs {row['cbf']}")
    assert not failures, f"{14 - len(failures)}/14 within tolerance; {failures}"


def test_csvd_threshold_0_2_fails_the_fastest_row(osipi_rows):
    """The data are sharp enough to tell thresholds apart: OSIPI report that cSVD at 0.2
    misses the CBF = 70 row (README); so must we."""
    row = max(osipi_rows, key=lambda r: r["cbf"])
    fit = DeconvolutionModel(row["aif"], row["dt"], "csvd", threshold=0.2).fit(row["tissue"])
    assert abs(fit.cbf - row["cbf"]) > 15 + 0.1 * row["cbf"]
