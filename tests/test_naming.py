"""BIDS names and TSV tables: the one home of each helper."""

import numpy as np

from bids_perfusion import naming
from bids_perfusion.tsv import read_tsv, read_tsv_columns, write_tsv


def test_parse_name_keeps_entity_order_and_suffix():
    entities, suffix = naming.parse_name("/d/sub-01/perf/sub-01_ses-a_rec-dose50_desc-osvd_cbf"
                                         ".nii.gz")
    assert list(entities.items()) == [("sub", "01"), ("ses", "a"), ("rec", "dose50"),
                                      ("desc", "osvd")]
    assert suffix == "cbf"
    assert naming.entities("sub-01_label-tumor_mask.nii.gz") == {"sub": "01",
                                                                 "label": "tumor"}
    assert naming.join_entities({"sub": "01", "ses": "a"}) == "sub-01_ses-a"


def test_subject_labels():
    assert naming.subject_of("/bids/sub-07/perf/sub-07_dsc.nii.gz: EchoTime missing") == "07"
    assert naming.subject_of("no subject here") is None
    assert naming.names_subject("sub-01_dsc.nii.gz: bad", "01")
    assert not naming.names_subject("sub-010_dsc.nii.gz: bad", "01")


def test_dose_label_is_percent_with_two_digits():
    assert [naming.dose_label(d) for d in (0.5, 0.25, 0.05, 1.0)] == [
        "dose50", "dose25", "dose05", "dose100"]


def test_tsv_round_trip(tmp_path):
    rows = [{"time": 0.0, "value": np.float32(1 / 3), "label": "a"},
            {"time": 1.5, "value": float("nan"), "label": None}]
    path = write_tsv(rows, ["time", "value", "label", "missing"], tmp_path / "t.tsv")
    assert (tmp_path / "t.tsv").read_text() == (
        "time\tvalue\tlabel\tmissing\n0\t0.333333\ta\tn/a\n1.5\tn/a\tn/a\tn/a\n")
    assert read_tsv(path)[0] == {"time": "0", "value": "0.333333", "label": "a",
                                 "missing": "n/a"}
    write_tsv([{"t": 0.5, "c": 2.0}], ["t", "c"], tmp_path / "n.tsv")
    columns = read_tsv_columns(tmp_path / "n.tsv")
    assert list(columns) == ["t", "c"] and columns["c"].tolist() == [2.0]
