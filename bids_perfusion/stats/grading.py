"""Glioma grading from a perfusion ratio: ROC analysis, Youden cut-off and Mann-Whitney U.

The feature is, per subject, the ratio of a perfusion measure in the tumour to the same
measure in normal-appearing white matter (NAWM), e.g. mean tumour CBF / mean NAWM CBF, as
in the physics-informed autoencoder (PHAE) paper (seed of issue 5, section 2.3, after
Hakyemez et al. 2005) and in most DSC grading studies. A higher ratio is taken to point
to the positive class (high grade); nothing here flips the direction, so a measure that is
lower in the positive class shows an AUC below 0.5.

Statistics, for the labels ``y`` (1: positive class) and the scores ``s`` (the ratios):

- ROC AUC = P(s⁺ > s⁻) + ½ P(s⁺ = s⁻) (Hanley & McNeil 1982), from
  :func:`sklearn.metrics.roc_auc_score`; it equals U⁺/(n⁺ n⁻) with U⁺ the Mann-Whitney
  statistic of the positive sample.
- Youden index J = max over thresholds of sensitivity + specificity − 1 (Youden 1950;
  Ruopp et al. 2008), over the thresholds of :func:`sklearn.metrics.roc_curve`. The
  cut-off is the midpoint between the score at which J is reached and the next lower
  observed score, as pROC reports it (Robin et al. 2011); a subject is called positive
  when its score is above the cut-off. Ties in J go to the higher cut-off (the more
  specific one). When no threshold separates the classes at all (J = 0), the cut-off is
  the largest score (everyone called negative).
- Sensitivity, specificity and accuracy of that rule on the same subjects, from
  :func:`sklearn.metrics.confusion_matrix` (apparent, i.e. optimistic, performance).
- Two-sided Mann-Whitney U test of the positive against the negative scores,
  :func:`scipy.stats.mannwhitneyu` (exact p-value for small samples without ties,
  normal approximation with tie and continuity correction otherwise).
- 95 % confidence intervals of the AUC and of the cut-off: percentile bootstrap
  (Efron & Tibshirani 1993) with :func:`scipy.stats.bootstrap`, resampling the positive
  and the negative subjects separately, with replacement, each to its own size
  (stratified bootstrap, so that every resample holds both classes), from a seeded
  :class:`numpy.random.Generator`: the same data and seed give the same intervals.
  A class of one subject has no bootstrap distribution (every resample repeats that
  subject): its intervals are NaN, with a :class:`BootstrapWarning` saying why.

References: Hanley JA, McNeil BJ, Radiology 1982;143:29-36. Youden WJ, Cancer
1950;3:32-35. Ruopp MD et al., Biom J 2008;50:419-430. Robin X et al., BMC Bioinformatics
2011;12:77. Efron B, Tibshirani RJ, An Introduction to the Bootstrap, 1993. Hakyemez B
et al., Clin Radiol 2005;60:493-502.
"""

import warnings
from dataclasses import asdict, dataclass

import numpy as np

#: Columns of :func:`grading_table`, in order (the per-stratum columns come first).
RESULT_FIELDS = ("n_positive", "n_negative", "auc", "auc_ci_low", "auc_ci_high", "cutoff",
                 "cutoff_ci_low", "cutoff_ci_high", "youden_index", "sensitivity",
                 "specificity", "accuracy", "mannwhitney_u", "p_value", "median_positive",
                 "median_negative")


class BootstrapWarning(UserWarning):
    """The bootstrap intervals could not be computed (a class of one subject)."""


@dataclass(frozen=True)
class Grading:
    """ROC, Youden and Mann-Whitney summary of one score (see the module docstring)."""

    n_positive: int
    n_negative: int
    auc: float
    auc_ci_low: float
    auc_ci_high: float
    cutoff: float
    cutoff_ci_low: float
    cutoff_ci_high: float
    youden_index: float
    sensitivity: float
    specificity: float
    accuracy: float
    mannwhitney_u: float
    p_value: float
    median_positive: float
    median_negative: float

    def as_dict(self):
        return asdict(self)


def _labels_scores(labels, scores):
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=float).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.size} labels for {scores.size} scores")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite; drop subjects without a value first")
    if labels.all() or not labels.any():
        raise ValueError("both classes are needed: found "
                         f"{int(labels.sum())} positive and {int((~labels).sum())} negative")
    return labels, scores


def youden_cutoff(labels, scores):
    """``(cutoff, J, sensitivity, specificity)`` of the Youden-optimal rule ``score > cutoff``.

    ``labels`` are booleans (True: positive class). J = max(TPR − FPR) over the thresholds
    of :func:`sklearn.metrics.roc_curve` (every distinct score); the cut-off is the midpoint
    between the optimal threshold and the next lower distinct score, so perfectly
    separated classes give a cut-off halfway between the lowest positive and the highest
    negative score. Ties in J are resolved towards the higher cut-off.
    """
    from sklearn.metrics import roc_curve

    labels, scores = _labels_scores(labels, scores)
    return _youden(*roc_curve(labels, scores, drop_intermediate=False))


def _youden(fpr, tpr, thresholds):
    """Youden cut-off of a full ROC curve (thresholds: +inf, then every distinct score)."""
    j = tpr - fpr
    best = int(np.argmax(j))
    if best == 0:  # no threshold beats chance: call everyone negative
        cutoff = thresholds[1]
    elif best == thresholds.size - 1:  # cannot happen (J = 0 there), kept for safety
        cutoff = thresholds[best] - 0.5 * abs(thresholds[best])
    else:
        cutoff = 0.5 * (thresholds[best] + thresholds[best + 1])
    return float(cutoff), float(j[best]), float(tpr[best]), float(1.0 - fpr[best])


def _auc_and_cutoff(positive, negative):
    """Bootstrap statistic: ``[AUC, Youden cut-off]`` of a positive and a negative sample.

    One :func:`sklearn.metrics.roc_curve` gives both: the AUC is the trapezoidal area
    under the full empirical curve (:func:`sklearn.metrics.auc`), which equals
    :func:`~sklearn.metrics.roc_auc_score` ties included, at a third of its cost.
    """
    from sklearn.metrics import auc, roc_curve

    labels = np.r_[np.ones(positive.size, bool), np.zeros(negative.size, bool)]
    curve = roc_curve(labels, np.r_[positive, negative], drop_intermediate=False)
    return np.array([auc(curve[0], curve[1]), _youden(*curve)[0]])


def grade(labels, scores, *, n_bootstrap=2000, seed=0, confidence_level=0.95):
    """ROC AUC, Youden cut-off (each with a stratified bootstrap CI) and Mann-Whitney U.

    ``labels``: booleans, True for the positive class; ``scores``: finite values, higher
    meaning more likely positive. Returns a :class:`Grading`; see the module docstring for
    every statistic. ``n_bootstrap`` 0 skips the intervals (NaN); so does a class of one
    subject, with a :class:`BootstrapWarning`.
    """
    from scipy.stats import bootstrap, mannwhitneyu
    from sklearn import config_context
    from sklearn.metrics import confusion_matrix, roc_auc_score

    labels, scores = _labels_scores(labels, scores)
    positive, negative = scores[labels], scores[~labels]
    auc = float(roc_auc_score(labels, scores))
    cutoff, youden, _sensitivity, _specificity = youden_cutoff(labels, scores)
    tn, fp, fn, tp = confusion_matrix(labels, scores > cutoff, labels=[False, True]).ravel()
    test = mannwhitneyu(positive, negative, alternative="two-sided")
    auc_low = auc_high = cut_low = cut_high = np.nan
    if n_bootstrap > 0 and min(positive.size, negative.size) < 2:
        warnings.warn(f"no bootstrap CI: {positive.size} positive and {negative.size} "
                      "negative subjects; a class of one subject cannot be resampled "
                      "(every resample repeats it), so the intervals are NaN",
                      BootstrapWarning, stacklevel=2)
    elif n_bootstrap > 0:
        with config_context(assume_finite=True, skip_parameter_validation=True):
            result = bootstrap((positive, negative), _auc_and_cutoff,
                               n_resamples=n_bootstrap, vectorized=False, paired=False,
                               method="percentile", confidence_level=confidence_level,
                               rng=np.random.default_rng(seed))
        (auc_low, cut_low), (auc_high, cut_high) = (result.confidence_interval.low,
                                                    result.confidence_interval.high)
    return Grading(
        n_positive=int(positive.size), n_negative=int(negative.size), auc=auc,
        auc_ci_low=float(auc_low), auc_ci_high=float(auc_high), cutoff=cutoff,
        cutoff_ci_low=float(cut_low), cutoff_ci_high=float(cut_high), youden_index=youden,
        sensitivity=float(tp / (tp + fn)), specificity=float(tn / (tn + fp)),
        accuracy=float((tp + tn) / scores.size), mannwhitney_u=float(test.statistic),
        p_value=float(test.pvalue), median_positive=float(np.median(positive)),
        median_negative=float(np.median(negative)))


def roc_points(labels, scores):
    """``(fpr, tpr)`` of the empirical ROC curve (:func:`sklearn.metrics.roc_curve`)."""
    from sklearn.metrics import roc_curve

    labels, scores = _labels_scores(labels, scores)
    fpr, tpr, _ = roc_curve(labels, scores)
    return fpr, tpr


# --- tables -------------------------------------------------------------------------------

#: Columns that define one grading analysis (one row of the grading table) besides the
#: measure: the acquisition (modality and run entities other than subject/session/run).
STRATUM = ("modality", "task", "acquisition", "ceagent", "reconstruction", "dose")
#: Quantities graded by default (absolute measures only; the ratio is formed here).
GRADED_QUANTITIES = ("cbf", "cbv")


def tumour_ratios(tidy, *, roi="tumor", reference="NAWM", statistic="mean",
                  quantities=GRADED_QUANTITIES):
    """Per subject and measure, ``statistic`` in ``roi`` divided by ``statistic`` in ``reference``.

    ``tidy`` is the table of :func:`bids_perfusion.stats.group_table.tidy_table`. Only the
    absolute measures (``relative`` False) of ``quantities`` are used; the ratio of the
    means is the paper's tumour/NAWM ratio. Runs and sessions of one subject in the same
    stratum (:data:`STRATUM`) are averaged (``n_runs`` counts them) so that each subject
    counts once. Rows where either ROI has no voxel are dropped.
    """
    keep = (~tidy["relative"].astype(bool)) & tidy["quantity"].isin(quantities)
    by = ["participant_id", "session_id", "run", *STRATUM, "method", "quantity", "measure"]
    inside = tidy.loc[keep & tidy["roi"].eq(roi), [*by, statistic]]
    outside = tidy.loc[keep & tidy["roi"].eq(reference), [*by, statistic]]
    wide = inside.merge(outside, on=by, suffixes=("_roi", "_reference"))  # NaN keys match
    with np.errstate(divide="ignore", invalid="ignore"):
        wide["ratio"] = (wide[f"{statistic}_roi"].astype(float)
                         / wide[f"{statistic}_reference"].astype(float))
    wide = wide[np.isfinite(wide["ratio"])]
    group = ["participant_id", *STRATUM, "method", "quantity", "measure"]
    out = (wide.groupby(group, dropna=False, sort=True)["ratio"]
           .agg(ratio="mean", n_runs="size").reset_index())
    out.insert(out.columns.get_loc("ratio"), "roi", roi)
    out.insert(out.columns.get_loc("ratio"), "reference_roi", reference)
    out.insert(out.columns.get_loc("ratio"), "statistic", statistic)
    return out


def grading_table(ratios, participants, *, grade_column="grade", positive="HGG",
                  n_bootstrap=2000, seed=0, confidence_level=0.95):
    """One :func:`grade` row per stratum and measure of ``ratios`` (:func:`tumour_ratios`).

    ``participants`` is ``participants.tsv`` as a DataFrame (``participant_id`` and
    ``grade_column``). Subjects whose grade is missing are left out; every grade other than
    ``positive`` is negative. Returns ``(table, skipped)``: ``skipped`` lists the strata
    that could not be graded (one class only) with the reason. A stratum with a class of
    one subject is graded without intervals, with a :class:`BootstrapWarning` naming it.
    Raises ValueError when the
    grade column is missing or the cohort does not hold both classes.
    """
    import pandas as pd

    if grade_column not in participants:
        raise ValueError(f"participants.tsv has no column {grade_column!r} "
                         f"(columns: {', '.join(map(str, participants.columns))})")
    grades = participants[["participant_id", grade_column]].dropna()
    grades = grades[grades[grade_column].astype(str).str.strip().ne("")]
    values = sorted(grades[grade_column].astype(str).unique())
    if str(positive) not in values:
        raise ValueError(f"positive class {positive!r} is not a value of {grade_column!r} "
                         f"(values: {', '.join(values) or 'none'})")
    if len(values) < 2:
        raise ValueError(f"only one class ({positive!r}) in {grade_column!r}: grading needs "
                         "subjects of both classes")
    negative = ",".join(v for v in values if v != str(positive))
    data = ratios.merge(grades, on="participant_id", how="inner")
    rows, skipped = [], []
    keys = [*STRATUM, "method", "quantity", "measure", "roi", "reference_roi", "statistic"]
    for key, frame in data.groupby(keys, dropna=False, sort=True):
        labels = frame[grade_column].astype(str).eq(str(positive)).to_numpy()
        described = dict(zip(keys, key, strict=True))
        if labels.all() or not labels.any():
            skipped.append({**described, "reason": f"{int(labels.sum())} positive and "
                            f"{int((~labels).sum())} negative subjects"})
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BootstrapWarning)
            result = grade(labels, frame["ratio"].to_numpy(), n_bootstrap=n_bootstrap,
                           seed=seed, confidence_level=confidence_level)
        for warning in caught:
            stratum = ", ".join(f"{k}={v}" for k, v in described.items() if isinstance(v, str))
            warnings.warn(f"{stratum}: {warning.message}", BootstrapWarning, stacklevel=2)
        rows.append({**described, "grade_column": grade_column, "positive_class": positive,
                     "negative_class": negative, **result.as_dict(),
                     "n_bootstrap": n_bootstrap, "seed": seed})
    columns = [*keys, "grade_column", "positive_class", "negative_class", *RESULT_FIELDS,
               "n_bootstrap", "seed"]
    return pd.DataFrame(rows, columns=columns), skipped
