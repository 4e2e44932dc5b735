"""Bad input to ``bids-perfusion``: a clear message, the other runs complete, exit status.

Each case breaks subject 01 of a copy of a two-subject phantom; subject 02 must still be
written, subject 01 must leave nothing in the output folder, and the input is unchanged.
"""

import json
import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import small_config

from bids_perfusion.cli.run import main
from bids_perfusion.phantom import write_dataset

pytestmark = pytest.mark.slow
DSC = "sub-01/perf/sub-01_ce-gadolinium_dsc"
FAST = ["--skip-bids-validation", "--no-leakage-correction", "--nprocs", "1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors") / "bids"
    return write_dataset(root, small_config(asl=None))


def _edit_sidecar(root, **changes):
    path = root / f"{DSC}.json"
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))


def _edit_image(root, function):
    path = root / f"{DSC}.nii.gz"
    image = nib.load(path)
    data = function(np.asarray(image.dataobj, dtype=np.float32))
    nib.Nifti1Image(data, image.affine).to_filename(path)


def _with_mask(root, tmp, shape=None, empty=False):
    folder = tmp / "masks" / "sub-01" / "perf"
    folder.mkdir(parents=True)
    grid = nib.load(root / f"{DSC}.nii.gz")
    data = np.zeros(shape or grid.shape[:3], dtype=np.uint8)
    if not empty:
        data[10:20, 10:20, 3:6] = 1
    nib.Nifti1Image(data, grid.affine).to_filename(folder / "sub-01_label-tumor_mask.nii.gz")
    return ["--derivatives", str(tmp / "masks")]


CASES = {
    "missing EchoTime": (lambda root, tmp: _edit_sidecar(root, EchoTime=None) or [],
                         "'EchoTime' is missing"),
    "EchoTime in ms": (lambda root, tmp: _edit_sidecar(root, EchoTime=30) or [],
                       "write 0.03"),
    "missing RepetitionTime": (lambda root, tmp: _edit_sidecar(root, RepetitionTime=None)
                               or [], "'RepetitionTime' is missing"),
    "missing MagneticFieldStrength": (
        lambda root, tmp: _edit_sidecar(root, MagneticFieldStrength=None) or [],
        "'MagneticFieldStrength' is missing from the JSON sidecar; the relaxivities depend "
        "on it. Add it in tesla (e.g. 3), or give --field-strength."),
    "MagneticFieldStrength in mT": (
        lambda root, tmp: _edit_sidecar(root, MagneticFieldStrength=1500) or [],
        "'MagneticFieldStrength' is 1500; it must be in tesla"),
    "3-D file": (lambda root, tmp: _edit_image(root, lambda d: d[..., 0]) or [],
                 "must be 4-D"),
    "NaN in the brain": (lambda root, tmp: _edit_image(
        root, lambda d: np.where(np.arange(d.shape[0])[:, None, None, None] == 24,
                                 np.nan, d)) or [], "NaN"),
    "too few baseline frames": (lambda root, tmp: _edit_image(root, lambda d: d[..., 11:]) or [],
                                "baseline"),
    "empty mask": (lambda root, tmp: _with_mask(root, tmp, empty=True), "mask is empty"),
    "mask of another shape": (lambda root, tmp: _with_mask(root, tmp, shape=(20, 20, 5)),
                              "does not match"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_run_is_reported_and_others_complete(dataset, tmp_path, caplog, case):
    root = tmp_path / "bids"
    shutil.copytree(dataset, root)
    break_it, message = CASES[case]
    extra = break_it(root, tmp_path)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR):
        status = main([str(root), str(out), "participant", "-w", str(tmp_path / "work"),
                       *FAST, *extra])
    assert status == 1
    logged = caplog.text + "".join(p.read_text() for p in (tmp_path / "work").rglob("crash*"))
    assert message in logged and "sub-01" in logged
    assert not list((out / "sub-01").rglob("*")) if (out / "sub-01").exists() else True
    assert (out / "sub-02" / "perf" / "sub-02_ce-gadolinium_desc-osvd_cbf.nii.gz").exists()
    assert before == {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_field_strength_option_replaces_a_missing_field(dataset, tmp_path):
    """``--field-strength`` makes a run without MagneticFieldStrength usable, and the maps
    record where the field came from (issue 12, item 3)."""
    root = tmp_path / "bids"
    shutil.copytree(dataset, root)
    _edit_sidecar(root, MagneticFieldStrength=None)
    out = tmp_path / "out"
    status = main([str(root), str(out), "participant", "-w", str(tmp_path / "work"), *FAST,
                   "--participant-label", "01", "--field-strength", "1.5"])
    assert status == 0
    sidecar = json.loads((out / "sub-01" / "perf"
                          / "sub-01_ce-gadolinium_desc-osvd_cbf.json").read_text())
    assert sidecar["MagneticFieldStrength"] == 1.5
    assert sidecar["MagneticFieldStrengthSource"] == "--field-strength"
    assert sidecar["TissueRelaxivity"] == 87.0


def test_subject_without_dsc_is_refused_before_processing(dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(dataset), str(tmp_path / "out"), "participant", "--participant-label",
              "07", *FAST])
    assert exit_.value.code == 2
    assert "no subject(s) ['07']" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_output_inside_the_input_is_refused(dataset, capsys):
    with pytest.raises(SystemExit):
        main([str(dataset), str(Path(dataset) / "sub-01"), "participant", *FAST])
    assert "is inside the input dataset" in capsys.readouterr().err
