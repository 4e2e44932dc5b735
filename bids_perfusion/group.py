"""The group level of ``bids-perfusion``: the tidy group table and glioma grading.

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
  ratios by grade with the cut-offs, one figure per acquisition and quantity;
- ``group_[<entities>_]space-MNI152NLin2009aSym[_res-N]_desc-<desc>_stat-{mean,sd,n}_
  <measure>.nii.gz`` (+ ``.json``): voxelwise mean, SD and subject count of every map the
  participants wrote in the template (``--output-spaces MNI152NLin2009aSym``), within each
  subject's brain mask (:func:`write_group_maps`).

Only the ROI tables whose runs have a complete record (:mod:`bids_perfusion.records`) are
read, after checking their content; damaged outputs stop the group level with a message
naming the files and the subjects to re-run, files listed by no record are left out with
a warning. Only the tidy table is needed for the others; it is written even when grading
is not possible (no tumour ROI, no grade column, one class), in which case the exit
status is 1. A class of one subject is graded without bootstrap intervals (NaN, with a
warning).
See docs/group.md. No nipype is needed; heavy imports (pandas, scikit-learn, matplotlib)
happen inside the functions, and the figures are drawn by :mod:`bids_perfusion.reports.roc`.
"""

import json
import logging
import warnings
from pathlib import Path

LOGGER = logging.getLogger("bids_perfusion")

#: Sub-folder of the derivatives dataset that holds the group-level outputs.
GROUP_DIR = "group"
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
    for stale in [*out.glob("group_*_stats.*"), *out.glob("group_*desc-roc_*.svg"),
                  *out.glob("group_*_stat-*")]:
        stale.unlink()  # outputs of an earlier run must not outlive a failed grading
    _write(table, dictionary, out / "group_desc-roi_stats")
    write_group_maps(output_dir, out, wanted)
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
    from bids_perfusion.reports.roc import write_roc_figures

    figures = write_roc_figures(ratios, result, out, grade_column=grade_column,
                                positive=positive)
    print(f"Group outputs: {out} ({len(result)} grading row(s), {len(figures)} figure(s))")
    return 0


#: Statistics of the group maps: ``stat`` entity -> description.
GROUP_MAP_STATISTICS = {
    "mean": "voxelwise mean over the subjects whose brain mask holds the voxel",
    "sd": "voxelwise sample standard deviation (n - 1) over the same subjects; 0 where "
          "fewer than 2",
    "n": "number of subjects whose brain mask holds the voxel",
}
#: Outputs in the template that are not averaged: masks and reference images.
NOT_AVERAGED = ("mask", "dscref", "aslref")


def write_group_maps(output_dir, out, subjects=None):
    """Voxelwise mean, SD and count (:func:`bids_perfusion.stats.voxelwise.group_mean_sd`)
    of every map in the template space, written by complete runs (their records,
    :mod:`bids_perfusion.records`), one set per map kind (entities less ``sub``/``ses``);
    a subject's voxels are those of the run's ``desc-brain_mask`` in the same space.
    Returns the files written."""
    import nibabel as nib
    import numpy as np

    from bids_perfusion import records
    from bids_perfusion.naming import parse_name
    from bids_perfusion.spatial.spaces import TEMPLATE
    from bids_perfusion.stats.voxelwise import group_mean_sd

    output_dir = Path(output_dir)
    if not any(output_dir.glob(f"sub-*/**/perf/*_space-{TEMPLATE}_*.nii.gz")):
        return []  # no map in the template: spare the audit's checksums
    groups = {}
    for relative in sorted(records.audit(output_dir).files):
        entities, suffix = parse_name(relative)
        if (entities.get("space") != TEMPLATE or suffix in NOT_AVERAGED
                or not relative.endswith(".nii.gz")
                or (subjects and f"sub-{entities['sub']}" not in subjects)):
            continue
        key = tuple((k, v) for k, v in entities.items() if k not in ("sub", "ses"))
        groups.setdefault((key, suffix), []).append(output_dir / relative)
    written = []
    for (key, suffix), paths in groups.items():
        images = [nib.load(path) for path in paths]
        if len({image.shape for image in images}) > 1 or any(len(image.shape) != 3
                                                              for image in images):
            LOGGER.warning("Group maps: %s: maps of different grids or 4-D; not averaged",
                           paths[0].name)
            continue
        maps = np.stack([np.asarray(image.dataobj, dtype=np.float64) for image in images])
        valid = np.stack([_brain_of(path, image.shape) for path, image in zip(
            paths, images, strict=True)])
        statistics = dict(zip(GROUP_MAP_STATISTICS, group_mean_sd(maps, valid),
                              strict=True))
        sidecar = json.loads(paths[0].with_name(paths[0].name.replace(".nii.gz", ".json"))
                             .read_text()) if paths[0].with_name(
            paths[0].name.replace(".nii.gz", ".json")).exists() else {}
        entities = dict(key)
        desc = entities.pop("desc", None)
        stem = "_".join(["group", *(f"{k}-{v}" for k, v in entities.items()),
                         *([f"desc-{desc}"] if desc else [])])
        for stat, data in statistics.items():
            path = out / f"{stem}_stat-{stat}_{suffix}.nii.gz"
            dtype = np.int16 if stat == "n" else np.float32
            nib.Nifti1Image(data.astype(dtype), images[0].affine).to_filename(path)
            path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps({
                "Description": GROUP_MAP_STATISTICS[stat],
                "Units": "subjects" if stat == "n" else sidecar.get("Units", "unknown"),
                "SpatialReference": sidecar.get("SpatialReference", TEMPLATE),
                "Sources": [p.relative_to(output_dir).as_posix() for p in paths],
                "NumberOfSubjects": len(paths)}, indent=2) + "\n")
            written.append(path)
        LOGGER.info("Group maps: %s (%d maps)", stem, len(paths))
    return written


def _brain_of(path, shape):
    """The brain mask (boolean) of the run of the map ``path`` in the same space: its
    ``desc-brain_mask``, or the map's non-zero voxels without one."""
    import nibabel as nib
    import numpy as np

    from bids_perfusion.naming import parse_name

    entities, _suffix = parse_name(path)
    entities["desc"] = "brain"
    mask = path.with_name("_".join(f"{k}-{v}" for k, v in entities.items())
                          + "_mask.nii.gz")
    if mask.exists():
        return np.asarray(nib.load(mask).dataobj) > 0
    return np.asarray(nib.load(path).dataobj) != 0


def _write(table, dictionary, stem):
    from bids_perfusion.stats.group_table import write_tsv

    write_tsv(table, stem.with_suffix(".tsv"))
    described = {c: dictionary.get(c, {"Description": c}) for c in table.columns}
    stem.with_suffix(".json").write_text(json.dumps(described, indent=2) + "\n")


def run_group_level(config, command):
    """:func:`run_group` with the options of ``config``
    (:class:`~bids_perfusion.config.RunConfig`), which is saved with ``command`` into
    ``output_dir/logs/`` when the derivatives dataset exists (none is created here)."""
    execution, group = config.execution, config.group
    if execution.output_dir.is_dir():
        config.save(command)
    return run_group(execution.bids_dir, execution.output_dir,
                     grade_column=group.grade_column, positive=group.positive_class,
                     roi=group.grading_roi, seed=group.bootstrap_seed,
                     n_bootstrap=group.n_bootstrap,
                     participant_label=execution.participant_label)
