"""ROC figures of the group level: per acquisition and quantity, the ROC curves of every
method (left) and the tumour/NAWM ratios by class with the Youden cut-offs (right).

Drawn from the tables of :mod:`bids_perfusion.group` (ratios and grading rows,
:mod:`bids_perfusion.stats.grading`); matplotlib is imported inside the functions.
"""

#: Entities of a stratum written into figure names (column, BIDS key), in BIDS order.
_NAME_ENTITIES = (("task", "task"), ("acquisition", "acq"), ("ceagent", "ce"),
                  ("reconstruction", "rec"))


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
