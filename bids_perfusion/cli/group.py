"""``bids-perfusion bids_dir output_dir group``: the tidy group table and glioma grading.

Reads the participant ROI tables of the derivatives dataset ``output_dir`` and
``participants.tsv`` of ``bids_dir``, and writes into ``output_dir/group/``:

- ``group_desc-roi_stats.tsv`` (+ ``.json`` data dictionary): one row per subject,
  session, run, method, ROI and measure, joined with participants.tsv
  (:mod:`bids_perfusion.stats.group_table`);
- ``group_desc-ratio_stats.tsv`` (+ ``.json``): per subject, the tumour/NAWM ratio of every
  CBF and CBV method, with its grade;
- ``group_desc-grading_stats.tsv`` (+ ``.json``): per acquisition and method, ROC AUC,
  Youden cut-off (bootstrap CIs), sensitivity, specificity, accuracy and the Mann-Whitney
  p-value (:mod:`bids_perfusion.stats.grading`);
- ``group_[<entities>_]desc-roc_<quantity>.svg``: ROC curves of every method and the
  ratios by grade with the cut-offs, one figure per acquisition and quantity.

Only the ROI tables whose runs have a complete record (:mod:`bids_perfusion.records`) are
read, after checking their content; damaged outputs stop the group level with a message
naming the files and the subjects to re-run, files listed by no record are left out with
a warning. Only the tidy table is needed for the others; it is written even when grading
is not possible (no tumour ROI, no grade column, one class), in which case the exit
status is 1. A class of one subject is graded without bootstrap intervals (NaN, with a
warning).
See docs/group.md. Heavy imports (pandas, scikit-learn, matplotlib) happen inside the
functions.
"""

import json
import logging
import warnings
from pathlib import Path

LOGGER = logging.getLogger("bids_perfusion")

#: Sub-folder of the derivatives dataset that holds the group-level outputs.
GROUP_DIR = "group"
#: Entities of a stratum written into figure names (column, BIDS key), in BIDS order.
_NAME_ENTITIES = (("task", "task"), ("acquisition", "acq"), ("ceagent", "ce"),
                  ("reconstruction", "rec"))

RATIO_DICTIONARY = {
    "roi": {"Description": "ROI of the numerator (--grading-roi)"},
    "reference_roi": {"Description": "ROI of the denominator (normal-appearing white "
                                     "matter)"},
    "statistic": {"Description": "ROI statistic whose ratio is taken (mean: the ratio of "
                                 "the ROI means, as the PHAE paper after Hakyemez et al. 2005)"},
    "ratio": {"Description": "statistic in roi divided by statistic in reference_roi of the "
                             "absolute map, averaged over the subject's runs and sessions",
              "Units": "1"},
    "n_runs": {"Description": "runs (and sessions) of the subject averaged into ratio"},
}

GRADING_DICTIONARY = {
    "grade_column": {"Description": "column of participants.tsv holding the class"},
    "positive_class": {"Description": "class called positive (higher ratio expected)"},
    "negative_class": {"Description": "the other classes of grade_column, comma-separated"},
    "n_positive": {"Description": "subjects of the positive class with a ratio"},
    "n_negative": {"Description": "subjects of the negative class(es) with a ratio"},
    "auc": {"Description": "area under the ROC curve of the ratio (sklearn roc_auc_score); "
                           "= P(ratio of a positive > ratio of a negative), ties counting "
                           "one half"},
    "auc_ci_low": {"Description": "lower bound of the 95 % percentile bootstrap CI of auc "
                                  "(classes resampled separately; scipy.stats.bootstrap)"},
    "auc_ci_high": {"Description": "upper bound of the 95 % bootstrap CI of auc"},
    "cutoff": {"Description": "Youden-optimal cut-off of the ratio: a subject is called "
                              "positive when its ratio is above it; midpoint between the "
                              "optimal and the next lower observed ratio", "Units": "1"},
    "cutoff_ci_low": {"Description": "lower bound of the 95 % bootstrap CI of cutoff",
                      "Units": "1"},
    "cutoff_ci_high": {"Description": "upper bound of the 95 % bootstrap CI of cutoff",
                       "Units": "1"},
    "youden_index": {"Description": "Youden's J = sensitivity + specificity - 1 at cutoff"},
    "sensitivity": {"Description": "true-positive fraction at cutoff (apparent: same "
                                   "subjects as the cut-off)"},
    "specificity": {"Description": "true-negative fraction at cutoff (apparent)"},
    "accuracy": {"Description": "fraction of subjects classified correctly at cutoff "
                                "(apparent)"},
    "mannwhitney_u": {"Description": "Mann-Whitney U statistic of the positive sample "
                                     "(auc = U / (n_positive n_negative))"},
    "p_value": {"Description": "two-sided Mann-Whitney U test p-value (scipy.stats."
                               "mannwhitneyu, method auto: exact for small samples without "
                               "ties)"},
    "median_positive": {"Description": "median ratio of the positive class", "Units": "1"},
    "median_negative": {"Description": "median ratio of the negative class(es)",
                        "Units": "1"},
    "n_bootstrap": {"Description": "bootstrap resamples of the CIs"},
    "seed": {"Description": "seed of the bootstrap random generator (numpy default_rng)"},
}


def add_group_arguments(parser):
    """The group-level options of ``bids-perfusion`` (argparse group 'group level')."""
    group = parser.add_argument_group("group level (glioma grading)")
    group.add_argument("--grade-column", default="grade", metavar="COLUMN",
                       help="column of participants.tsv with the class of each subject")
    group.add_argument("--positive-class", default="HGG", metavar="VALUE",
                       help="value of --grade-column called positive (expected higher "
                            "tumour/NAWM ratio)")
    group.add_argument("--grading-roi", default="tumor", metavar="ROI",
                       help="ROI whose ratio to NAWM is graded")
    group.add_argument("--n-bootstrap", type=int, default=2000, metavar="N",
                       help="bootstrap resamples of the AUC and cut-off CIs (0: none)")
    group.add_argument("--bootstrap-seed", type=int, default=0, metavar="SEED",
                       help="seed of the bootstrap (same seed, same intervals)")
    return group


def run_group(bids_dir, output_dir, *, grade_column="grade", positive="HGG", roi="tumor",
              seed=0, n_bootstrap=2000, participant_label=None):
    """Write the group-level outputs of ``output_dir`` (module docstring); exit status.

    ``participant_label`` (labels without ``sub-``) restricts the group to those subjects,
    as BIDS Apps do. 0: everything written; 1: the tidy table may have been written, but
    something stopped the grading (the error is logged and printed).
    """
    from bids_perfusion.stats import grading, group_table

    bids_dir, output_dir = Path(bids_dir), Path(output_dir)
    wanted = None
    if participant_label:
        wanted = {f"sub-{label.removeprefix('sub-')}" for label in participant_label}
    try:
        table, dictionary, participants, notes = group_table.collect(output_dir, bids_dir,
                                                                     wanted)
    except (FileNotFoundError, ValueError) as error:
        LOGGER.error("Group level: %s", error)
        return 1
    for note in notes:
        LOGGER.warning("Group level: %s", note)
    if wanted and participants is not None:
        participants = participants[participants["participant_id"].isin(wanted)]
    out = output_dir / GROUP_DIR
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("group_*_stats.*"), *out.glob("group_*desc-roc_*.svg")]:
        stale.unlink()  # outputs of an earlier run must not outlive a failed grading
    _write(table, dictionary, out / "group_desc-roi_stats")
    n_subjects = table["participant_id"].nunique()
    LOGGER.info("Group table: %d rows from %d subject(s): %s", len(table), n_subjects,
                out / "group_desc-roi_stats.tsv")

    try:
        if participants is None:
            raise ValueError(f"{bids_dir / 'participants.tsv'} does not exist: it must hold "
                             f"participant_id and the class column {grade_column!r}")
        if grade_column not in participants:
            raise ValueError(f"participants.tsv has no column {grade_column!r} (columns: "
                             f"{', '.join(map(str, participants.columns))}); choose one "
                             "with --grade-column")
        if roi not in set(table["roi"]):
            raise ValueError(f"no ROI {roi!r} in the participant ROI tables (ROIs: "
                             f"{', '.join(sorted(set(table['roi'])))}); give the tumour "
                             "masks with --derivatives at the participant level, or choose "
                             "another ROI with --grading-roi")
        ratios = grading.tumour_ratios(table, roi=roi)
        if ratios.empty:
            raise ValueError(f"no subject has both {roi!r} and 'NAWM' values of CBF or CBV")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", grading.BootstrapWarning)
            result, skipped = grading.grading_table(ratios, participants,
                                                    grade_column=grade_column,
                                                    positive=positive,
                                                    n_bootstrap=n_bootstrap, seed=seed)
    except ValueError as error:
        LOGGER.error("Group level, grading: %s", error)
        print(f"Group table: {out / 'group_desc-roi_stats.tsv'} (grading not done: {error})")
        return 1
    for warning in caught:
        LOGGER.warning("Group level, grading: %s", warning.message)
    for stratum in skipped:
        LOGGER.warning("Not graded (%s): %s", stratum.pop("reason"),
                       ", ".join(f"{k}={v}" for k, v in stratum.items()
                                 if isinstance(v, str)))
    ratios = ratios.merge(participants[["participant_id", grade_column]],
                          on="participant_id", how="left")
    ratio_dictionary = {
        **{c: group_table.DICTIONARY[c] for c in ratios.columns if c in group_table.DICTIONARY},
        **RATIO_DICTIONARY, grade_column: dictionary.get(grade_column, {})}
    _write(ratios, ratio_dictionary, out / "group_desc-ratio_stats")
    if result.empty:
        LOGGER.error("Group level, grading: no acquisition holds subjects of both classes")
        return 1
    grading_dictionary = {**{c: group_table.DICTIONARY[c] for c in result.columns
                             if c in group_table.DICTIONARY},
                          **RATIO_DICTIONARY, **GRADING_DICTIONARY}
    _write(result, grading_dictionary, out / "group_desc-grading_stats")
    figures = write_roc_figures(ratios, result, out, grade_column=grade_column,
                                positive=positive)
    print(f"Group outputs: {out} ({len(result)} grading row(s), {len(figures)} figure(s))")
    return 0


def _write(table, dictionary, stem):
    from bids_perfusion.stats.group_table import write_tsv

    write_tsv(table, stem.with_suffix(".tsv"))
    described = {c: dictionary.get(c, {"Description": c}) for c in table.columns}
    stem.with_suffix(".json").write_text(json.dumps(described, indent=2) + "\n")


def _is_missing(value):
    return value is None or (isinstance(value, float) and value != value)


def figure_name(stratum, quantity):
    """``group_[task-X_][acq-X_][ce-X_][rec-X_]desc-roc_<quantity>.svg`` of a stratum."""
    parts = [f"{key}-{stratum[column]}" for column, key in _NAME_ENTITIES
             if not _is_missing(stratum.get(column))]
    return "_".join(["group", *parts, f"desc-roc_{quantity}.svg"])


def write_roc_figures(ratios, result, out, *, grade_column, positive, fmt="svg"):
    """One figure per stratum and quantity: ROC curves (left), ratios by class (right).

    SVG by default, deterministic to the byte (fixed hash salt, no date); ``fmt`` 'png'
    or 'pdf' for slides.
    """
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure

    from bids_perfusion.reports.figures import RC
    from bids_perfusion.stats.grading import STRATUM, roc_points

    written = []
    keys = [*STRATUM, "quantity"]
    for key, rows in result.groupby(keys, dropna=False, sort=True):
        stratum = dict(zip(keys, key, strict=True))
        with matplotlib.rc_context(RC):
            figure = Figure(figsize=(7.0, 3.2), layout="constrained")
            roc, dots = figure.subplots(1, 2, width_ratios=(1, 1.2))
            roc.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
            positions = []
            for index, row in enumerate(rows.itertuples()):
                data = ratios[(ratios["measure"] == row.measure)
                              & _same(ratios, stratum, STRATUM)].dropna(subset=[grade_column])
                labels = data[grade_column].astype(str).eq(str(positive)).to_numpy()
                fpr, tpr = roc_points(labels, data["ratio"].to_numpy())
                colour = f"C{index % 10}"
                roc.plot(fpr, tpr, color=colour, lw=1.2, drawstyle="default",
                         label=f"{row.method}: AUC {row.auc:.2f} "
                               f"({row.auc_ci_low:.2f}-{row.auc_ci_high:.2f})")
                roc.plot(1 - row.specificity, row.sensitivity, "o", color=colour, ms=4)
                for offset, cls in ((-0.17, False), (0.17, True)):
                    values = data["ratio"].to_numpy()[labels == cls]
                    jitter = np.linspace(-0.06, 0.06, values.size) if values.size > 1 else 0
                    dots.plot(index + offset + jitter, values, "o" if cls else "s",
                              ms=3.5, color=colour, alpha=0.9 if cls else 0.5,
                              mfc=colour if cls else "none")
                dots.hlines(row.cutoff, index - 0.35, index + 0.35, color=colour, lw=1,
                            ls=":")
                positions.append(row.method)
            first = rows.iloc[0]
            roc.set(xlabel="1 − specificity", ylabel="sensitivity", xlim=(-0.02, 1.02),
                    ylim=(-0.02, 1.02), aspect="equal", title="ROC (dot: Youden cut-off)")
            figure.suptitle(
                f"{stratum['quantity'].upper()} {first['roi']}/{first['reference_roi']} "
                f"ratio of the ROI {first['statistic']}s — {_label(stratum)}, "
                f"{first['n_positive']} {positive} vs {first['n_negative']} "
                f"{first['negative_class']}", fontsize=8)
            roc.legend(loc="lower right", frameon=False)
            dots.set_xticks(range(len(positions)), positions)
            dots.set(ylabel=f"{first['roi']}/{first['reference_roi']} ratio",
                     xlim=(-0.6, len(positions) - 0.4),
                     title=f"● {positive}  □ {rows['negative_class'].iloc[0]}   "
                           "··· Youden cut-off")
            name = figure_name(stratum, stratum["quantity"]).replace(".svg", f".{fmt}")
            figure.savefig(out / name, format=fmt,
                           metadata={"Date": None} if fmt == "svg" else None)
            figure.clear()
        written.append(out / name)
    return written


def _label(stratum):
    """Readable name of a stratum: its entities, and the dose when simulated."""
    parts = [f"{key}-{stratum[column]}" for column, key in _NAME_ENTITIES
             if not _is_missing(stratum.get(column))]
    return " ".join([str(stratum["modality"]).upper(), *parts])


def _same(table, stratum, columns):
    """Rows of ``table`` whose ``columns`` equal those of ``stratum`` (missing = missing)."""
    import numpy as np

    mask = np.ones(len(table), dtype=bool)
    for column in columns:
        value = stratum[column]
        if _is_missing(value):
            mask &= table[column].isna().to_numpy()
        else:
            mask &= (table[column] == value).to_numpy()
    return mask
