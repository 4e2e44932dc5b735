"""The per-subject HTML report: figures from arrays, and reports from a pipeline's output.

The reports are written from a copy of the session's participant run (``dsc_cohort`` in
tests/conftest.py: the small four-subject phantom, oSVD, Tikhonov and PHAE) for its first
two subjects; its outputs are copied as a second, ``rec-dose50`` run (what
``--simulate-dose 0.5`` writes, without paying for it), and the reports are written from
these derivatives with the tumour masks as derivatives.
"""

import json
import shutil
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import load, read_tsv

from bids_perfusion.naming import parse_name
from bids_perfusion.reports import figures
from bids_perfusion.reports.html import write_reports
from bids_perfusion.reports.sections import figure_name, format_value

SUBJECTS = ("01", "02")
SVG = "{http://www.w3.org/2000/svg}svg"


class _Report(HTMLParser):
    """Image sources, table cells and text of an HTML page."""

    def __init__(self, text):
        super().__init__()
        self.images, self.rows, self.text, self._row = [], [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag == "tr":
            self._row = []

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._row is not None and data.strip():
            self._row.append(data.strip())


def _valid_svg(path):
    root = ET.parse(path).getroot()
    assert root.tag == SVG
    return root


# --- figures from synthetic arrays ---


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(0)
    data = rng.gamma(2.0, 2.0, (24, 20, 6))
    brain = np.zeros(data.shape, dtype=bool)
    brain[4:20, 3:17, 1:5] = True
    return data, brain


def test_figures_write_valid_deterministic_svg(tmp_path, volume):
    data, brain = volume
    arteries = np.zeros_like(brain)
    arteries[10:12, 8:10, 2] = True
    t = np.arange(30) * 1.5
    curve = np.exp(-((t - 15.0) ** 2) / 8.0)

    def draw(folder):
        folder.mkdir()
        return [
            figures.map_montage(folder / "map.svg", data, brain, title="CBV",
                                units="mL/100 g"),
            figures.map_montage(folder / "k2.svg", data - 4.0, brain, units="1/s",
                                cmap="RdBu_r", symmetric=True),
            figures.mask_overlay(folder / "masks.svg", data, {"AIF": arteries,
                                                              "NAWM": brain & (data > 5)},
                                 brain=brain),
            figures.aif_curve(folder / "aif.svg", t, 10.0 * curve, curve,
                              baseline=(0.0, 9.0)),
            figures.tissue_curves(folder / "tissue.svg", t, {"brain": curve,
                                                             "NAWM": 0.5 * curve}),
        ]

    first, second = draw(tmp_path / "a"), draw(tmp_path / "b")
    for one, two in zip(first, second, strict=True):
        root = _valid_svg(one)
        assert Path(one).read_bytes() == Path(two).read_bytes()
        assert "<dc:date>" not in Path(one).read_text()
        images = root.findall(".//{http://www.w3.org/2000/svg}image")
        assert bool(images) == (not one.endswith(("aif.svg", "tissue.svg")))
    assert "mL/100 g" in Path(first[0]).read_text()  # the colour bar's units, as text
    assert "ΔR2*" in Path(first[3]).read_text()


def test_a_motion_figure_already_drawn_is_copied(tmp_path, monkeypatch):
    """Two runs of one report with the same head-motion table (a simulated dose keeps the
    motion of its acquired run): the figure is drawn once and copied, byte for byte; a
    run with another table gets its own drawing."""
    from bids_perfusion.reports.sections import report_run

    rng = np.random.default_rng(1)
    header = "trans_x\ttrans_y\ttrans_z\trot_x\trot_y\trot_z\tframewise_displacement"

    def table(name, scale):
        values = rng.normal(0.0, scale, (12, 7))
        lines = [header] + ["\t".join(f"{v:.5f}" for v in row) for row in np.abs(values)]
        path = tmp_path / f"{name}_desc-confounds_timeseries.tsv"
        path.write_text("\n".join(lines) + "\n")
        sidecar = path.with_suffix(".json")
        sidecar.write_text(json.dumps({"MotionCorrection":
                                       {"FramewiseDisplacementThreshold": 0.5}}))
        return {("confounds", "timeseries", ".tsv"): path,
                ("confounds", "timeseries", ".json"): sidecar}

    drawing = figures.motion_parameters
    calls = []
    monkeypatch.setattr(figures, "motion_parameters",
                        lambda *args, **kwargs: calls.append(args[0]) or drawing(*args,
                                                                                 **kwargs))
    acquired = table("sub-01_ce-gd", 0.1)
    copied = {key: path.with_name(path.name.replace("_ce-gd", "_ce-gd_rec-dose50"))
              for key, path in acquired.items()}
    for key, path in acquired.items():
        shutil.copy(path, copied[key])
    drawn, figures_dir = {}, tmp_path / "figures"
    figures_dir.mkdir()
    for name, files in (("sub-01_ce-gd", acquired), ("sub-01_ce-gd_rec-dose50", copied),
                        ("sub-01_asl", table("sub-01_asl", 0.3))):
        report_run(name, files, tmp_path, figures_dir, drawn=drawn)
    svgs = {name: (figures_dir / figure_name(name, "motion", "timeseries")).read_bytes()
            for name in ("sub-01_ce-gd", "sub-01_ce-gd_rec-dose50", "sub-01_asl")}
    assert len(calls) == 2
    assert svgs["sub-01_ce-gd"] == svgs["sub-01_ce-gd_rec-dose50"] != svgs["sub-01_asl"]


def test_display_helpers(volume):
    data, brain = volume
    assert figures.robust_range([1.0, 1.0, np.nan]) == (0.95, 1.05)
    assert figures.robust_range([]) == (0.0, 1.0)
    signed = data[brain] - 4.0
    low, high = figures.robust_range(signed, symmetric=True)
    assert (low, high) == (-high, np.percentile(np.abs(signed), 98)) and high > 0
    assert figures.pick_slices(brain, 12) == [1, 2, 3, 4]
    assert len(figures.pick_slices(np.ones((4, 4, 40), bool), 12)) == 12
    assert parse_name("sub-01_ses-a_desc-osvd_cbf.nii.gz") == (
        {"sub": "01", "ses": "a", "desc": "osvd"}, "cbf")
    assert figure_name("sub-01_ce-gd", "aif", "mask") == "sub-01_ce-gd_desc-aif_mask.svg"
    assert format_value(list(range(19))) == "0 … 18 (19 values)"
    assert format_value({"oi": 0.035}) == "oi: 0.035"


# --- reports of a pipeline run ---


@pytest.fixture(scope="module")
def derivatives(dsc_cohort, tmp_path_factory):
    root, shared, masks = dsc_cohort
    tmp = tmp_path_factory.mktemp("reports")
    out, masks = tmp / "out", shutil.copytree(masks, tmp / "masks")
    shutil.copytree(shared, out, ignore=shutil.ignore_patterns("group"))
    (tmp / "bids").symlink_to(root, target_is_directory=True)  # the input, beside the output
    for path in sorted(out.glob("sub-*/perf/*_ce-gadolinium_*")):
        shutil.copy(path, path.with_name(path.name.replace("_ce-gadolinium_",
                                                           "_ce-gadolinium_rec-dose50_")))
    for path in sorted((out / "logs" / "runs").glob("*_acquired_wf.json")):
        # the copies are the complete output of a run: give them its completion record
        path.with_name(path.name.replace("acquired", "dose50")).write_text(
            path.read_text().replace("_ce-gadolinium_", "_ce-gadolinium_rec-dose50_"))
    reports = write_reports(out, SUBJECTS, errors=["sub-02_ce-gadolinium_run-9_dsc.nii.gz: "
                                                   "EchoTime missing"],
                            derivatives=[masks])
    return out, reports


def _figures(out):
    return {p.relative_to(out): p.read_bytes() for p in sorted(out.glob("sub-*/figures/*"))}


@pytest.mark.slow
def test_reports_embed_existing_figures(derivatives):
    out, reports = derivatives
    assert reports == [out / f"sub-{s}.html" for s in SUBJECTS]
    for subject in SUBJECTS:
        page = _Report((out / f"sub-{subject}.html").read_text())
        assert len(page.images) >= 10
        for source in page.images:
            assert not Path(source).is_absolute()
            assert (out / source).is_file(), source
            assert source.startswith(f"sub-{subject}/figures/sub-{subject}_ce-gadolinium")
            _valid_svg(out / source)
        names = {Path(source).name for source in page.images}
        run = f"sub-{subject}_ce-gadolinium"
        for figure in ("desc-osvd_cbf", "desc-areaRatioNawm_cbv", "desc-aif_mask",
                       "desc-rois_mask", "desc-aif_timeseries", "desc-tissue_timeseries"):
            assert f"{run}_{figure}.svg" in names
        # the simulated dose has its maps and its tissue curves (its desc-roi_timeseries)
        assert f"{run}_rec-dose50_desc-osvd_cbf.svg" in names
        assert f"{run}_rec-dose50_desc-tissue_timeseries.svg" in names


@pytest.mark.slow
def test_roi_curves_are_the_mean_delta_r2star_of_the_series(derivatives):
    """``desc-roi_timeseries.tsv``: mean -ln(S/S0)/TE over each ROI of the input series, S0
    the mean of the baseline frames of the AIF sidecar, from its first frame on."""
    out, _ = derivatives
    root = out.parent / "bids"
    for subject in SUBJECTS:
        perf = out / f"sub-{subject}" / "perf"
        run = f"sub-{subject}_ce-gadolinium"
        aif = json.loads((perf / f"{run}_desc-aif_timeseries.json").read_text())
        first, last = aif["BaselineFrames"]
        signal = load(root / f"sub-{subject}" / "perf" / f"{run}_dsc.nii.gz")
        if (perf / f"{run}_desc-confounds_timeseries.tsv").is_file():  # it was realigned
            from bids_perfusion.motion import realign_dsc

            affine = nib.load(root / f"sub-{subject}" / "perf" / f"{run}_dsc.nii.gz").affine
            signal = realign_dsc([signal], affine).series[0].astype(float)
        rows = read_tsv(perf / f"{run}_desc-roi_timeseries.tsv")
        sidecar = json.loads((perf / f"{run}_desc-roi_timeseries.json").read_text())
        # the run was given the tumour masks (``--derivatives``): their curves too
        assert list(rows[0]) == ["time", "brain_delta_r2star", "brain_concentration",
                                 "tumor_delta_r2star", "tumor_concentration",
                                 "NAWM_delta_r2star", "NAWM_concentration"]
        assert sidecar["time"]["Units"] == "s"
        assert sidecar["NAWM_delta_r2star"]["Units"] == "1/s"
        assert sidecar["NAWM_concentration"]["Units"] == "mM"
        times = np.array([float(row["time"]) for row in rows])
        assert times == pytest.approx(aif["RepetitionTime"] * np.arange(first, first + len(rows)))
        for roi in ("brain", "NAWM"):
            mask = load(perf / f"{run}_desc-{roi}_mask.nii.gz") > 0
            s0 = signal[mask][:, first:last + 1].mean(axis=1, keepdims=True)
            with np.errstate(divide="ignore", invalid="ignore"):  # non-finite: 0, as
                delta = -np.log(signal[mask][:, first:] / s0) / aif["EchoTime"][0]  # signal.py
            expected = np.mean(np.nan_to_num(delta, nan=0.0, posinf=0.0, neginf=0.0), axis=0)
            curve = np.array([float(row[f"{roi}_delta_r2star"]) for row in rows])
            assert curve == pytest.approx(expected, rel=1e-4, abs=1e-4 * expected.max())
            concentration = np.array([float(row[f"{roi}_concentration"]) for row in rows])
            assert concentration == pytest.approx(curve / sidecar["TissueRelaxivity"],
                                                  rel=1e-5, abs=1e-9)


@pytest.mark.slow
def test_reports_hold_tables_methods_and_errors(derivatives):
    out, _ = derivatives
    for subject in SUBJECTS:
        page = _Report((out / f"sub-{subject}.html").read_text())
        text = " ".join(page.text)
        nawm_rcbv = [row for row in page.rows if row[:2] == ["NAWM", "rcbv"]]
        assert len(nawm_rcbv) == 2  # acquired and simulated dose
        header = next(row for row in page.rows if row[:2] == ["roi", "measure"])
        for row in nawm_rcbv:
            assert float(row[header.index("median")]) == pytest.approx(1.0, abs=1e-3)
        assert "Methods" in text and "ΔR2*(t) = -ln(S(t)/S0)/TE" in text
        assert "mL/100 g/min" in text and "oscillation-index SVD" in text
        assert ("EchoTime missing" in text) == (subject == "02")
        assert "tumour" in text  # the user's tumour mask is drawn among the ROIs


@pytest.mark.slow
def test_reports_are_reproducible(derivatives):
    out, _ = derivatives
    before = _figures(out)
    pages = [(out / f"sub-{s}.html").read_bytes() for s in SUBJECTS]
    write_reports(out, SUBJECTS, errors=["sub-02_ce-gadolinium_run-9_dsc.nii.gz: "
                                         "EchoTime missing"],
                  derivatives=[derivatives[0].parent / "masks"])
    assert _figures(out) == before
    assert [(out / f"sub-{s}.html").read_bytes() for s in SUBJECTS] == pages


@pytest.mark.slow
def test_reports_survive_missing_files(derivatives, tmp_path):
    out, _ = derivatives
    copy = tmp_path / "out"
    shutil.copytree(out / "sub-01", copy / "sub-01", ignore=shutil.ignore_patterns("figures"))
    for pattern in ("*desc-bsw*", "*desc-aif_timeseries*", "*_ttp.*", "*roistats*",
                    "*desc-confounds_timeseries*"):
        for path in copy.glob(f"sub-01/perf/{pattern}"):
            path.unlink()
    shutil.copytree(out / "sub-02", copy / "sub-02", ignore=shutil.ignore_patterns("figures"))
    (copy / "sub-02" / "perf" / "sub-02_ce-gadolinium_desc-osvd_mtt.nii.gz").write_text("x")
    # no dataset_description.json, no CITATION.md: no input series, no methods
    report, broken = write_reports(copy, errors=())
    assert "the figures of this run failed" in broken.read_text()
    page = _Report(report.read_text())
    assert all((copy / source).is_file() for source in page.images)
    names = {Path(source).name for source in page.images}
    assert "sub-01_ce-gadolinium_desc-osvd_cbf.svg" in names
    assert not any("bsw" in name or "timeseries" in name for name in names)
    # a subject whose runs all failed still gets a report, with its errors
    [empty] = write_reports(tmp_path / "empty", ["sub-07"], errors=["sub-07: no EchoTime"])
    assert empty == tmp_path / "empty" / "sub-07.html"
    assert "No derivatives" in empty.read_text() and "no EchoTime" in empty.read_text()


@pytest.mark.slow
def test_reports_of_sessions(derivatives, tmp_path):
    """Runs in two sessions are two sections, their figures named with the session."""
    out, _ = derivatives
    for session in ("pre", "post"):
        folder = tmp_path / "sub-01" / f"ses-{session}" / "perf"
        folder.mkdir(parents=True)
        for path in (out / "sub-01" / "perf").glob("sub-01_ce-gadolinium_desc-*"):
            shutil.copy(path, folder / path.name.replace("sub-01_", f"sub-01_ses-{session}_"))
    [report] = write_reports(tmp_path, ["01"])
    page = _Report(report.read_text())
    for session in ("pre", "post"):
        run = f"sub-01_ses-{session}_ce-gadolinium"
        assert f"sub-01/figures/{run}_desc-osvd_cbf.svg" in page.images
        # no input dataset here: the tissue curves come from desc-roi_timeseries.tsv
        assert f"sub-01/figures/{run}_desc-tissue_timeseries.svg" in page.images
        assert run in page.text
