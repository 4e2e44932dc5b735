"""DSC relaxivities follow the magnetic field (issue 12, item 3).

``MagneticFieldStrength`` of the DSC sidecar (or ``--field-strength``) selects the tissue
and blood relaxivities of :data:`bids_perfusion.constants.DSC_RELAXIVITY`; a run without
it is refused. Absolute CBV and CBF scale with the ratio of blood to tissue relaxivity;
maps relative to normal-appearing white matter do not change.
"""

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_perfusion import constants
from bids_perfusion.cli.parser import build_parser, dsc_options
from bids_perfusion.collect import collect_dsc_runs, layout_of
from bids_perfusion.dsc import kinetics, relaxivity
from bids_perfusion.dsc.metadata import DSCRunMetadata, MetadataError
from bids_perfusion.interfaces.aif import ArterialInputFunction
from bids_perfusion.interfaces.deconvolution import Deconvolve
from bids_perfusion.interfaces.maps import BloodVolume, RelativeMaps

NAME = "sub-01/perf/sub-01_ce-gadolinium_dsc.nii.gz"
SHAPE = (4, 4, 2, 40)


def _metadata(field=None, override=None, **extra):
    sidecar = {"EchoTime": 0.03, "RepetitionTime": 1.5, **extra}
    if field is not None:
        sidecar["MagneticFieldStrength"] = field
    return DSCRunMetadata.from_sidecars([NAME], [sidecar], [SHAPE], field_strength=override)


# --- (a) the field is read, and refused when missing or absurd ------------------------------

def test_missing_field_strength_is_refused_naming_file_field_and_fix():
    with pytest.raises(MetadataError) as error:
        _metadata()
    message = str(error.value)
    assert message.startswith(NAME)
    assert "'MagneticFieldStrength' is missing" in message
    assert "--field-strength" in message and "\n" not in message


@pytest.mark.parametrize("override, field, expected, source", [
    (3.0, None, 3.0, "--field-strength"),       # fills a missing field
    (3.0, 1.5, 3.0, "--field-strength"),        # replaces the sidecar's
    (None, 1.5, 1.5, "sidecar"),
    (None, 2.89, 2.89, "sidecar"),              # Siemens' nominal 3 T
])
def test_field_strength_from_sidecar_or_override(override, field, expected, source):
    metadata = _metadata(field, override)
    assert metadata.magnetic_field_strength == expected
    assert metadata.field_strength_source == source


@pytest.mark.parametrize("field, match", [
    (3000, "'MagneticFieldStrength' is 3000; it must be in tesla"),   # millitesla
    (0.0, "it must be in tesla, between 0.1 and 11.7"),
    (7, "'MagneticFieldStrength' is 7 T; DSC relaxivities are tabulated at"),
    ("3T", "must be a JSON number in tesla"),
    (True, "must be a JSON number in tesla"),
])
def test_implausible_field_strength_is_refused(field, match):
    with pytest.raises(MetadataError, match=match):
        _metadata(field)


def test_echoes_must_agree_on_the_field():
    sidecars = [{"EchoTime": te, "RepetitionTime": 1.5, "MagneticFieldStrength": b}
                for te, b in ((0.02, 1.5), (0.04, 3))]
    with pytest.raises(MetadataError, match="'MagneticFieldStrength' differs between echoes"):
        DSCRunMetadata.from_sidecars([NAME, NAME], sidecars, [SHAPE, SHAPE])


def test_nominal_field_rule():
    """Within 0.25 T of a tabulated field: that field's constants; beyond: refused."""
    assert relaxivity.at_field(2.89).nominal_field == 3.0
    assert relaxivity.at_field(1.494).nominal_field == 1.5
    for tesla in (2.0, 7.0, 0.55):
        with pytest.raises(ValueError, match="tabulated"):
            relaxivity.at_field(tesla)


def test_command_line_option():
    parser = build_parser()
    base = ["/data", "/out", "participant"]
    assert dsc_options(parser.parse_args(base)).field_strength is None
    assert dsc_options(parser.parse_args([*base, "--field-strength", "2.89"])).field_strength \
        == 2.89
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--field-strength", "7"])


def test_collected_runs_without_field_are_skipped_unless_given(noisy, tmp_path):
    """A phantom dataset whose sub-01 DSC sidecar lost its field: that run is reported,
    sub-02 is processed; ``--field-strength`` makes both runs usable."""
    root = Path(shutil.copytree(noisy[0], tmp_path / "bids"))
    sidecar = root / "sub-01" / "perf" / "sub-01_ce-gadolinium_dsc.json"
    content = json.loads(sidecar.read_text())
    del content["MagneticFieldStrength"]
    sidecar.write_text(json.dumps(content))
    runs, errors = collect_dsc_runs(layout_of(root))
    assert [run.subject for run in runs] == ["02"]
    assert runs[0].metadata.magnetic_field_strength == 1.5  # as the phantom declares
    assert len(errors) == 1 and "sub-01_ce-gadolinium_dsc" in errors[0]
    assert "'MagneticFieldStrength' is missing" in errors[0] and "--field-strength" in errors[0]
    runs, errors = collect_dsc_runs(layout_of(root), field_strength=3.0)
    assert not errors
    assert [run.metadata.magnetic_field_strength for run in runs] == [3.0, 3.0]
    assert {run.metadata.field_strength_source for run in runs} == {"--field-strength"}


# --- (b) absolute maps scale with the relaxivities, relative maps do not --------------------

def _save(path, data):
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.eye(4)), str(path))
    return str(path)


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    """ΔR2* (s⁻¹) of tissue voxels with a range of blood volumes and one arterial voxel.

    Tissue: ΔR2* = cbv · 40 · gamma variate, convolved with an exponential residue
    (MTT 4 s); artery: peak ΔR2* 100 s⁻¹, where the quadratic term of blood matters.
    """
    folder = tmp_path_factory.mktemp("curves")
    dt = 1.5
    times = np.arange(SHAPE[3]) * dt
    aif = kinetics.gamma_variate(times, t0=6.0, alpha=3.0, beta=1.5)
    aif = 100.0 * aif / aif.max()
    tissue = kinetics.convolve(aif, np.exp(-times / 4.0), dt)
    tissue = tissue / tissue.max()
    delta = np.zeros(SHAPE)
    scale = np.linspace(5.0, 40.0, 16).reshape(4, 4)
    delta[:, :, 0] = scale[..., None] * tissue
    delta[:, :, 1] = 0.5 * scale[..., None] * tissue
    delta[0, 0, 1] = aif
    brain = np.ones(SHAPE[:3])
    arteries = np.zeros(SHAPE[:3])
    arteries[0, 0, 1] = 1
    nawm = np.zeros(SHAPE[:3])
    nawm[1:3, 1:3, 0] = 1
    return {"times": times, "aif": aif, "tissue_brain": delta.reshape(-1, SHAPE[3]),
            "delta": _save(folder / "delta.nii.gz", delta),
            "brain": _save(folder / "brain.nii.gz", brain),
            "arteries": _save(folder / "arteries.nii.gz", arteries),
            "nawm": _save(folder / "nawm.nii.gz", nawm)}


def _maps(curves, relax, folder, monkeypatch):
    """AIF, area-ratio CBV, oSVD CBF and their NAWM-relative maps through the interfaces."""
    folder.mkdir()
    monkeypatch.chdir(folder)
    record = relax.sidecar()
    aif = ArterialInputFunction(delta_r2star=curves["delta"], brain_mask=curves["brain"],
                                frame_times=list(curves["times"]), aif_mask=curves["arteries"],
                                relaxivity=record, signal_metadata={}).run().outputs
    scaling = {"kh": constants.KH, "rho": constants.RHO_BRAIN, "relaxivity": record}
    cbv = BloodVolume(delta_r2star=curves["delta"], brain_mask=curves["brain"],
                      aif_tsv=aif.aif_tsv, **scaling).run().outputs
    cbf = Deconvolve(delta_r2star=curves["delta"], brain_mask=curves["brain"],
                     aif_tsv=aif.aif_tsv, cbv=cbv.cbv, method="osvd", parameters={},
                     **scaling).run().outputs
    relative = RelativeMaps(in_files=[cbv.cbv, cbf.cbf],
                            nawm_mask=curves["nawm"]).run().outputs
    load = lambda path: np.asarray(nib.load(path).dataobj, dtype=float)  # noqa: E731
    return {"cbv": load(cbv.cbv), "cbf": load(cbf.cbf), "rcbv": load(relative.out_files[0]),
            "rcbf": load(relative.out_files[1]), "aif": aif.metadata, "cbv_meta": cbv.metadata,
            "cbf_meta": cbf.metadata}


def _quadratic_root(delta, a, b):
    """C of ΔR2* = a C + b C², written out independently of the package."""
    return delta / a if b == 0 else (-a + np.sqrt(a * a + 4 * b * delta)) / (2 * b)


#: A 3 T table whose blood/tissue ratio differs from 1.5 T's, as measured values may:
#: tissue x2, blood linear x3, quadratic x2 (not the B0² of the scaling rule).
MEASURED_LIKE = {"tissue": 2 * 87.0, "blood_linear": 3 * 7.6, "blood_quadratic": 2 * 0.574}


@pytest.mark.parametrize("table, model", [("scaled", "linear"), ("scaled", "quadratic"),
                                          ("measured-like", "linear"),
                                          ("measured-like", "quadratic")])
def test_absolute_maps_follow_relaxivities_relative_maps_do_not(curves, tmp_path, monkeypatch,
                                                                table, model):
    """CBV(3 T)/CBV(1.5 T) = (r_t,1.5/r_t,3)(∫C_a,1.5/∫C_a,3), in closed form; CBF alike
    with a linear blood model; rCBV and rCBF unchanged.

    With the package's scaled 3 T table every ΔR2* is a function of C·B0, so tissue and
    blood concentrations both halve and the ratio is exactly 1 for both blood models;
    with a table whose blood/tissue ratio differs (``MEASURED_LIKE``) the absolute maps
    change by that ratio (linear blood: 3/2).
    """
    if table == "measured-like":
        monkeypatch.setitem(constants.DSC_RELAXIVITY, 3.0, MEASURED_LIKE)
    low = _maps(curves, relaxivity.at_field(1.5, model), tmp_path / "low", monkeypatch)
    high = _maps(curves, relaxivity.at_field(3.0, model), tmp_path / "high", monkeypatch)
    r15, r3 = constants.DSC_RELAXIVITY[1.5], constants.DSC_RELAXIVITY[3.0]
    b15, b3 = ((r15["blood_quadratic"], r3["blood_quadratic"]) if model == "quadratic"
               else (0.0, 0.0))
    aif15 = _quadratic_root(curves["aif"], r15["blood_linear"], b15)
    aif3 = _quadratic_root(curves["aif"], r3["blood_linear"], b3)
    end = low["cbv_meta"]["IntegrationFrames"]  # the same at both fields
    assert end == high["cbv_meta"]["IntegrationFrames"]
    times = curves["times"][:end]
    expected = (r15["tissue"] / r3["tissue"]) * (np.trapezoid(aif15[:end], times)
                                                 / np.trapezoid(aif3[:end], times))
    if table == "scaled":
        assert expected == pytest.approx(1.0)
    elif model == "linear":
        assert expected == pytest.approx(1.5)
    else:
        assert expected > 1.1
    brain = low["cbv"] > 0
    np.testing.assert_allclose(high["cbv"][brain] / low["cbv"][brain], expected, rtol=1e-4)
    np.testing.assert_allclose(high["rcbv"], low["rcbv"], rtol=1e-4, atol=1e-6)
    # The AIF's shape, and so the deconvolution, scales exactly with a linear blood model,
    # and with the scaled table (C_a halves at every frame).
    if model == "linear" or table == "scaled":
        np.testing.assert_allclose(high["cbf"][brain] / low["cbf"][brain], expected,
                                   rtol=1e-4)
    # Tissue voxels all share one curve shape, so even a reshaped AIF (quadratic blood,
    # measured-like table) changes their CBF by one factor; the arterial voxel, whose
    # curve is the AIF's, is left out.
    tissue = np.ones(SHAPE[:3], dtype=bool)
    tissue[0, 0, 1] = False
    np.testing.assert_allclose(high["rcbf"][tissue], low["rcbf"][tissue], rtol=1e-4,
                               atol=1e-6)


# --- (c) the constants used are recorded --------------------------------------------------

def test_constants_used_are_in_the_sidecars(curves, tmp_path, monkeypatch):
    maps = _maps(curves, relaxivity.at_field(2.89, "quadratic"), tmp_path / "q", monkeypatch)
    expected = {"MagneticFieldStrength": 2.89, "RelaxivityFieldStrength": 3.0,
                "TissueRelaxivity": 174.0, "BloodRelaxivity": "quadratic",
                "BloodRelaxivityLinear": 15.2, "BloodRelaxivityQuadratic": 2.296}
    for key in ("aif", "cbv_meta", "cbf_meta"):
        record = maps[key]
        for name, value in expected.items():
            assert record[name] == (pytest.approx(value) if isinstance(value, float)
                                    else value), (key, name)
        assert "scaled from 1.5 T" in record["RelaxivitySource"]
    linear = relaxivity.at_field(1.5).sidecar()
    assert linear["BloodRelaxivityQuadratic"] == 0.0  # the value used, not the table's
    assert linear["TissueRelaxivity"] == 87.0 and linear["BloodRelaxivityLinear"] == 7.6
