"""Bad input to ``bids-perfusion``: a clear message, the other runs complete, exit status.

Each case breaks its own copy of subject 01 of a two-subject phantom, all in one dataset
quantified by one participant run: the intact subject 02 must still be written, each
broken subject must leave nothing in the output folder and be named in the message that
says what is wrong, and the input is unchanged.
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
FAST = ["--skip-bids-validation", "--no-leakage-correction", "--nprocs", "1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors") / "bids"
    return write_dataset(root, small_config(asl=None))


def _dsc(subject):
    return f"sub-{subject}/perf/sub-{subject}_ce-gadolinium_dsc"


def _edit_sidecar(root, subject, **changes):
    path = root / f"{_dsc(subject)}.json"
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))


def _edit_image(root, subject, function):
    path = root / f"{_dsc(subject)}.nii.gz"
    image = nib.load(path)
    data = function(np.asarray(image.dataobj, dtype=np.float32))
    nib.Nifti1Image(data, image.affine).to_filename(path)


def _with_mask(root, masks, subject, shape=None, empty=False):
    """A tumour mask of ``subject`` in the derivatives folder ``masks``."""
    folder = masks / f"sub-{subject}" / "perf"
    folder.mkdir(parents=True)
    grid = nib.load(root / f"{_dsc(subject)}.nii.gz")
    data = np.zeros(shape or grid.shape[:3], dtype=np.uint8)
    if not empty:
        data[10:20, 10:20, 3:6] = 1
    nib.Nifti1Image(data, grid.affine).to_filename(
        folder / f"sub-{subject}_label-tumor_mask.nii.gz")


#: case: (how it breaks ``subject`` of the dataset ``root``, masks in ``masks``; the message)
CASES = {
    "missing EchoTime": (lambda root, masks, sub: _edit_sidecar(root, sub, EchoTime=None),
                         "'EchoTime' is missing"),
    "EchoTime in ms": (lambda root, masks, sub: _edit_sidecar(root, sub, EchoTime=30),
                       "write 0.03"),
    "missing RepetitionTime": (lambda root, masks, sub: _edit_sidecar(root, sub,
                                                                      RepetitionTime=None),
                               "'RepetitionTime' is missing"),
    "missing MagneticFieldStrength": (
        lambda root, masks, sub: _edit_sidecar(root, sub, MagneticFieldStrength=None),
        "'MagneticFieldStrength' is missing from the JSON sidecar; the relaxivities depend "
        "on it. Add it in tesla (e.g. 3), or give --field-strength."),
    "MagneticFieldStrength in mT": (
        lambda root, masks, sub: _edit_sidecar(root, sub, MagneticFieldStrength=1500),
        "'MagneticFieldStrength' is 1500; it must be in tesla"),
    "3-D file": (lambda root, masks, sub: _edit_image(root, sub, lambda d: d[..., 0]),
                 "must be 4-D"),
    "NaN in the brain": (lambda root, masks, sub: _edit_image(
        root, sub, lambda d: np.where(np.arange(d.shape[0])[:, None, None, None] == 24,
                                      np.nan, d)), "NaN"),
    "too few baseline frames": (lambda root, masks, sub: _edit_image(root, sub,
                                                                     lambda d: d[..., 11:]),
                                "baseline"),
    "empty mask": (lambda root, masks, sub: _with_mask(root, masks, sub, empty=True),
                   "mask is empty"),
    "mask of another shape": (lambda root, masks, sub: _with_mask(root, masks, sub,
                                                                  shape=(20, 20, 5)),
                              "does not match"),
}
#: the subject each case breaks: sub-01 itself, then copies of it (sub-02 stays intact)
BROKEN = dict(zip(sorted(CASES), ["01", *(f"{n:02d}" for n in range(3, len(CASES) + 2))],
                  strict=True))


def _copy_subject(root, source, target):
    """``sub-<source>`` of ``root`` copied as ``sub-<target>``, files renamed."""
    for path in sorted((root / f"sub-{source}").rglob("*")):
        if path.is_file():
            relative = str(path.relative_to(root)).replace(f"sub-{source}", f"sub-{target}")
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, root / relative)


class _Errors(logging.Handler):
    """The messages of the ERROR records logged while it is attached to the root logger."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages = []

    def emit(self, record):
        self.messages.append(self.format(record))


@pytest.fixture(scope="module")
def broken(dataset, tmp_path_factory):
    """One participant run over a copy of ``dataset`` with every case of :data:`CASES`
    breaking its subject of :data:`BROKEN`: ``(root, out, status, messages, unchanged)``,
    ``messages`` holding each ERROR record and each crash file, ``unchanged`` whether the
    input is byte for byte what it was before the run."""
    tmp = tmp_path_factory.mktemp("broken")
    root, masks, out = tmp / "bids", tmp / "masks", tmp / "out"
    shutil.copytree(dataset, root)
    for subject in BROKEN.values():
        if subject != "01":
            _copy_subject(root, "01", subject)
    for case, subject in BROKEN.items():
        CASES[case][0](root, masks, subject)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    errors, logger = _Errors(), logging.getLogger()
    logger.addHandler(errors)
    try:
        status = main([str(root), str(out), "participant", "-w", str(tmp / "work"), *FAST,
                       "--derivatives", str(masks)])
    finally:
        logger.removeHandler(errors)
    messages = errors.messages + [p.read_text() for p in (tmp / "work").rglob("crash*")]
    unchanged = before == {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return root, out, status, messages, unchanged


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_run_is_reported_and_others_complete(broken, case):
    _root, out, status, messages, unchanged = broken
    subject, message = BROKEN[case], CASES[case][1]
    assert status == 1
    assert any(message in text and f"sub-{subject}" in text for text in messages), messages
    assert not list((out / f"sub-{subject}").rglob("*")) if (out / f"sub-{subject}").exists() \
        else True
    assert (out / "sub-02" / "perf" / "sub-02_ce-gadolinium_desc-osvd_cbf.nii.gz").exists()
    assert unchanged


def test_field_strength_option_replaces_a_missing_field(dataset, tmp_path):
    """``--field-strength`` makes a run without MagneticFieldStrength usable, and the maps
    record where the field came from (issue 12, item 3)."""
    root = tmp_path / "bids"
    shutil.copytree(dataset, root)
    _edit_sidecar(root, "01", MagneticFieldStrength=None)
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
