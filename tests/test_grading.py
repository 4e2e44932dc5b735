"""Grading statistics and the group table on known cases (fast, no files but tmp TSVs)."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu
from sklearn.metrics import roc_auc_score

from bids_perfusion.stats import grading, group_table
from bids_perfusion.stats.grading import grade, youden_cutoff


def _labelled(positive, negative):
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    return (np.r_[np.ones(positive.size, bool), np.zeros(negative.size, bool)],
            np.r_[positive, negative])


# --- grade(): closed-form cases ----------------------------------------------------------


def test_perfectly_separated_groups():
    labels, scores = _labelled([2.0, 2.5, 3.1, 4.0], [1.0, 1.2, 1.4])
    result = grade(labels, scores, n_bootstrap=500, seed=1)
    assert result.auc == 1.0
    assert result.cutoff == pytest.approx(0.5 * (1.4 + 2.0))  # halfway between the groups
    assert (result.youden_index, result.sensitivity, result.specificity,
            result.accuracy) == (1.0, 1.0, 1.0, 1.0)
    assert (result.n_positive, result.n_negative) == (4, 3)
    assert result.mannwhitney_u == 12.0
    # exact two-sided p: only 1 of C(7, 3) = 35 orderings is as extreme on each side
    assert result.p_value == pytest.approx(2 / 35)
    assert result.auc_ci_low == result.auc_ci_high == 1.0
    # every resample is separated too: its cut-off lies between the two observed groups
    assert 1.0 < result.cutoff_ci_low <= result.cutoff <= result.cutoff_ci_high < 4.0
    assert (result.median_positive, result.median_negative) == (2.8, 1.2)


def test_reversed_groups_give_auc_zero_and_call_everyone_negative():
    labels, scores = _labelled([1.0, 1.2], [2.0, 3.0])
    result = grade(labels, scores, n_bootstrap=0)
    assert result.auc == 0.0
    assert result.youden_index == 0.0
    assert result.cutoff == 3.0  # the largest score: no subject is above it
    assert (result.sensitivity, result.specificity, result.accuracy) == (0.0, 1.0, 0.5)
    assert np.isnan(result.auc_ci_low) and np.isnan(result.cutoff_ci_high)


def test_ties_count_one_half_and_youden_ties_take_the_higher_cutoff():
    labels, scores = _labelled([2.0, 3.0], [1.0, 2.0])
    result = grade(labels, scores, n_bootstrap=0)
    # pairs (2,1) 1, (2,2) ½, (3,1) 1, (3,2) 1
    assert result.auc == pytest.approx(3.5 / 4)
    # J = 0.5 at both "> 2.5" (sens ½, spec 1) and "> 1.5" (sens 1, spec ½): the higher
    assert result.cutoff == 2.5
    assert (result.sensitivity, result.specificity, result.accuracy) == (0.5, 1.0, 0.75)


def test_worked_youden_example():
    labels, scores = _labelled([0.5, 2.0, 3.0, 4.0], [1.0, 1.5, 2.5])
    cutoff, j, sensitivity, specificity = youden_cutoff(labels, scores)
    # J by threshold: 4: .25, 3: .5, 2.5: .17, 2: .42, 1.5: .08, 1: -.25, 0.5: 0
    assert (cutoff, j, sensitivity, specificity) == (2.75, 0.5, 0.5, 1.0)
    result = grade(labels, scores, n_bootstrap=0)
    assert result.auc == pytest.approx(8 / 12)
    assert result.accuracy == pytest.approx(5 / 7)


def test_auc_and_p_value_agree_with_scipy_and_sklearn():
    rng = np.random.default_rng(7)
    positive = rng.normal(1.0, 1.0, 15).round(1)  # rounding makes ties
    negative = rng.normal(0.0, 1.0, 11).round(1)
    labels, scores = _labelled(positive, negative)
    result = grade(labels, scores, n_bootstrap=0)
    test = mannwhitneyu(positive, negative, alternative="two-sided")
    assert result.p_value == test.pvalue
    assert result.mannwhitney_u == test.statistic
    assert result.auc == pytest.approx(test.statistic / (15 * 11))
    assert result.auc == pytest.approx(roc_auc_score(labels, scores))
    predicted = scores > result.cutoff
    assert result.sensitivity == predicted[labels].mean()
    assert result.specificity == (~predicted[~labels]).mean()
    assert result.youden_index == pytest.approx(result.sensitivity + result.specificity - 1)


def test_bootstrap_statistic_matches_sklearn_on_resamples_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(50):
        positive = rng.integers(0, 6, rng.integers(1, 8)).astype(float)
        negative = rng.integers(0, 5, rng.integers(1, 8)).astype(float)
        labels, scores = _labelled(positive, negative)
        auc, cutoff = grading._auc_and_cutoff(positive, negative)
        assert auc == pytest.approx(roc_auc_score(labels, scores))
        assert cutoff == youden_cutoff(labels, scores)[0]


def test_bootstrap_is_reproducible_from_its_seed_and_holds_the_estimate():
    rng = np.random.default_rng(11)
    labels, scores = _labelled(rng.normal(1.2, 1.0, 12), rng.normal(0.0, 1.0, 12))
    first = grade(labels, scores, n_bootstrap=400, seed=5)
    assert grade(labels, scores, n_bootstrap=400, seed=5) == first
    other = grade(labels, scores, n_bootstrap=400, seed=6)
    assert (other.auc_ci_low, other.auc_ci_high) != (first.auc_ci_low, first.auc_ci_high)
    assert other.auc == first.auc and other.cutoff == first.cutoff
    assert 0.0 <= first.auc_ci_low < first.auc < first.auc_ci_high <= 1.0
    assert first.cutoff_ci_low < first.cutoff < first.cutoff_ci_high


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="both classes"):
        grade([True, True], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        grade([True, False], [np.nan, 2.0])
    with pytest.raises(ValueError, match="2 labels for 3 scores"):
        youden_cutoff([True, False], [1.0, 2.0, 3.0])


# --- tables ------------------------------------------------------------------------------


@pytest.mark.parametrize(("measure", "parsed"), [
    ("rcbf_osvd", ("cbf", "osvd", True)),
    ("cbf_tikhonov", ("cbf", "tikhonov", False)),
    ("cbv", ("cbv", "areaRatio", False)),
    ("rcbv", ("cbv", "areaRatio", True)),
    ("cbv_bsw", ("cbv", "bsw", False)),
    ("rcbv_bsw", ("cbv", "bsw", True)),
    ("ttp", ("ttp", None, False)),
    ("att_gkm", ("att", "gkm", False)),
    ("cbf_phae", ("cbf", "phae", False)),
])
def test_parse_measure(measure, parsed):
    assert group_table.parse_measure(measure) == parsed


def test_parse_entities_and_dose():
    entities = group_table.parse_entities(
        "sub-07_ses-pre_acq-fast_ce-gadolinium_rec-dose25_run-2_desc-roi_roistats.tsv")
    assert entities == {"participant_id": "sub-07", "session_id": "ses-pre", "task": None,
                        "acquisition": "fast", "ceagent": "gadolinium",
                        "reconstruction": "dose25", "run": "2"}
    assert group_table.dose_of("dose25", "dsc") == 0.25
    assert group_table.dose_of(None, "dsc") == 1.0
    assert group_table.dose_of(None, "asl") is None
    with pytest.raises(ValueError, match="no sub- entity"):
        group_table.parse_entities("desc-roi_roistats.tsv")


def _roi_table(tumour_cbf, nawm_cbf, tumour_cbv=6.0, nawm_cbv=2.0):
    rows = []
    for roi, cbf, cbv in (("tumor", tumour_cbf, tumour_cbv), ("NAWM", nawm_cbf, nawm_cbv)):
        for measure, value in (("cbf_osvd", cbf), ("rcbf_osvd", cbf / nawm_cbf),
                               ("cbv", cbv), ("ttp", 20.0)):
            rows.append({"roi": roi, "measure": measure, "n_voxels": 10, "n_excluded": 0,
                         "mean": value,
                         "sd": 1.0, "median": value, "q1": value, "q3": value})
    return pd.DataFrame(rows)


def _tidy(values, **entities):
    """A tidy table of one DSC run per ``(subject, tumour CBF)`` (NAWM CBF 20)."""
    frames = []
    for subject, cbf in values:
        name = "_".join([f"sub-{subject}", *[f"{k}-{v}" for k, v in entities.items()],
                         "ce-gd_desc-roi_roistats.tsv"])
        frames.append(group_table.tidy_rows(_roi_table(cbf, 20.0), name))
    return group_table.tidy_table(frames)


def test_tidy_rows_columns_and_units():
    table = _tidy([("01", 40.0)])
    assert list(table.columns) == list(group_table.COLUMNS)
    assert len(table) == 8
    row = table[(table["roi"] == "tumor") & (table["measure"] == "rcbf_osvd")].iloc[0]
    assert (row["quantity"], row["method"], row["relative"], row["modality"],
            row["dose"], row["ceagent"]) == ("cbf", "osvd", True, "dsc", 1.0, "gd")
    assert row["units"] == group_table.RELATIVE_UNITS
    assert table.loc[table["measure"] == "cbf_osvd", "units"].unique().tolist() == [
        "mL/100 g/min"]
    with pytest.raises(ValueError, match="missing columns"):
        group_table.tidy_rows(pd.DataFrame({"roi": ["x"]}), "sub-01_desc-roi_roistats.tsv")


def test_tumour_ratios_average_runs_and_skip_relative_measures():
    first = _tidy([("01", 40.0), ("02", 30.0)], run="1")
    second = _tidy([("01", 60.0)], run="2")
    ratios = grading.tumour_ratios(pd.concat([first, second], ignore_index=True))
    cbf = ratios[ratios["measure"] == "cbf_osvd"].set_index("participant_id")
    assert cbf.loc["sub-01", "ratio"] == pytest.approx((2.0 + 3.0) / 2)
    assert cbf.loc["sub-01", "n_runs"] == 2
    assert cbf.loc["sub-02", "ratio"] == pytest.approx(1.5)
    assert sorted(ratios["measure"].unique()) == ["cbf_osvd", "cbv"]  # no rcbf, no ttp
    assert (ratios.loc[ratios["measure"] == "cbv", "ratio"] == 3.0).all()
    assert "session_id" not in ratios


def test_grading_table_rows_classes_and_errors():
    tidy = pd.concat([
        _tidy([("01", 60.0), ("02", 25.0), ("03", 70.0), ("04", 22.0), ("05", 50.0)]),
        _tidy([("01", 55.0)], rec="dose50")], ignore_index=True)  # one class only
    ratios = grading.tumour_ratios(tidy)
    participants = pd.DataFrame({"participant_id": [f"sub-0{i}" for i in range(1, 6)],
                                 "grade": ["HGG", "LGG", "HGG", "grade III", None]})
    table, skipped = grading.grading_table(ratios, participants, n_bootstrap=50, seed=0)
    assert [(s["reconstruction"], s["dose"], s["measure"], s["reason"]) for s in skipped] == [
        ("dose50", 0.5, "cbv", "1 positive and 0 negative subjects"),  # areaRatio first
        ("dose50", 0.5, "cbf_osvd", "1 positive and 0 negative subjects")]
    assert len(table) == 2 and table["reconstruction"].isna().all()
    tied = table[table["measure"] == "cbv"].iloc[0]  # every subject has CBV ratio 3
    assert (tied["auc"], tied["youden_index"], tied["cutoff"]) == (0.5, 0.0, 3.0)
    row = table[table["measure"] == "cbf_osvd"].iloc[0]
    assert (row["n_positive"], row["n_negative"]) == (2, 2)  # sub-05 has no grade
    assert row["negative_class"] == "LGG,grade III"
    assert row["auc"] == 1.0 and row["cutoff"] == pytest.approx((1.25 + 3.0) / 2)
    with pytest.raises(ValueError, match="no column 'who'"):
        grading.grading_table(ratios, participants, grade_column="who")
    with pytest.raises(ValueError, match="positive class 'GBM'"):
        grading.grading_table(ratios, participants, positive="GBM")
    with pytest.raises(ValueError, match="only one class"):
        grading.grading_table(ratios, participants.assign(grade="HGG"))


def test_join_participants_prefixes_clashing_columns(tmp_path):
    tidy = _tidy([("01", 40.0)])
    participants = pd.DataFrame({"participant_id": ["sub-01"], "grade": ["HGG"],
                                 "mean": [3]})
    joined = group_table.join_participants(tidy, participants)
    assert (joined["grade"] == "HGG").all()
    assert (joined["participants_mean"] == 3).all() and "mean" in joined
    dictionary = group_table.data_dictionary(joined.columns, {"grade": {"Levels": {}}})
    assert dictionary["grade"] == {"Levels": {}}
    assert "participants.tsv" in dictionary["participants_mean"]["Description"]
    path = group_table.write_tsv(joined, tmp_path / "t.tsv")
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == list(joined.columns)
    first = dict(zip(lines[0].split("\t"), lines[1].split("\t"), strict=True))
    assert (first["session_id"], first["relative"]) == ("n/a", "false")
