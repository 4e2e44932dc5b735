"""Group level: the participant ROI tables of a derivatives dataset as one tidy table.

Every ``sub-X[/ses-Y]/perf/*_desc-roi_roistats.tsv`` written by the participant level
(columns ``roi``, ``measure``, ``n_voxels``, ``mean``, ``sd``, ``median``, ``q1``, ``q3``)
becomes rows of one long ("tidy", Wickham 2014) table: one row per subject, session, run,
method, ROI and measure, with the BIDS entities of the run as columns, the measure parsed
into quantity, method and relative/absolute, its units (from the map's sidecar), and the
columns of ``participants.tsv`` joined on ``participant_id``. :data:`DICTIONARY` describes
every column; :func:`data_dictionary` adds the participants' columns (from
``participants.json`` when present) for the JSON sidecar of the table.

Pure table functions (:func:`parse_entities`, :func:`parse_measure`, :func:`tidy_table`,
:func:`join_participants`) take strings and DataFrames; the two readers
(:func:`read_roi_table`, :func:`read_participants`) only read files, never write.

Reference: Wickham H, Tidy Data, J Stat Softw 2014;59(10).
"""

import json
import math
import re
from pathlib import Path

import numpy as np

from bids_perfusion import records
from bids_perfusion.errors import InputDataError
from bids_perfusion.naming import parse_name
from bids_perfusion.stats.roi import COLUMNS as ROI_COLUMNS

#: BIDS entities of a run's file name (key in the name, column of the table), in BIDS order.
ENTITIES = (("sub", "participant_id"), ("ses", "session_id"), ("task", "task"),
            ("acq", "acquisition"), ("ce", "ceagent"), ("rec", "reconstruction"),
            ("run", "run"))
#: Quantities a measure name may start with (``r`` prefix: relative to NAWM).
QUANTITIES = ("cbf", "cbv", "mtt", "tmax", "ttp", "bat", "att", "k2")
#: Method of a measure without a ``_method`` suffix (``cbv`` is the area-ratio CBV,
#: written as ``desc-areaRatio_cbv``).
DEFAULT_METHOD = {"cbv": "areaRatio"}
#: Units used when a map's sidecar cannot be read (DESIGN.md, section 4).
DEFAULT_UNITS = {"cbf": "mL/100 g/min", "cbv": "mL/100 g", "mtt": "s", "tmax": "s",
                 "ttp": "s", "bat": "s", "att": "s", "k2": "1/s"}
#: Units of a relative measure.
RELATIVE_UNITS = "1 (ratio to the NAWM median)"
#: Statistics columns of the participant ROI tables (after roi and measure).
STATISTICS = ROI_COLUMNS[2:]
#: Columns of :func:`tidy_table`, in order (participants' columns follow).
COLUMNS = (*(column for _key, column in ENTITIES), "dose", "modality", "roi", "measure",
           "quantity", "method", "relative", "units", *STATISTICS, "source")
_DOSE = re.compile(r"dose(\d+)$")

#: JSON data dictionary of :data:`COLUMNS` (BIDS tabular-file sidecar).
DICTIONARY = {
    "participant_id": {"Description": "subject, as in participants.tsv (sub-<label>)"},
    "session_id": {"Description": "session (ses-<label>); n/a when the dataset has none"},
    "task": {"Description": "BIDS entity task of the run (task-<label>); n/a if absent"},
    "acquisition": {"Description": "BIDS entity acq of the run; n/a if absent"},
    "ceagent": {"Description": "BIDS entity ce (contrast agent) of the run; n/a for ASL"},
    "reconstruction": {"Description": "BIDS entity rec; rec-doseNN marks a simulated dose "
                                      "of NN % (--simulate-dose); n/a if absent"},
    "run": {"Description": "BIDS entity run (index); n/a if absent"},
    "dose": {"Description": "contrast-agent dose as a fraction of the acquired dose: NN/100 "
                            "for rec-doseNN, 1 otherwise; n/a for ASL", "Units": "1"},
    "modality": {"Description": "perfusion technique of the run: dsc (file name with a ce "
                                "entity) or asl",
                 "Levels": {"dsc": "dynamic susceptibility contrast",
                            "asl": "arterial spin labelling"}},
    "roi": {"Description": "region of interest (participant level): brain, NAWM, and tumor, "
                           "GM, WM when masks were given"},
    "measure": {"Description": "name of the map in the participant ROI table: "
                               "[r]<quantity>[_<method>], r for the ratio to NAWM"},
    "quantity": {"Description": "perfusion quantity of the measure",
                 "Levels": {"cbf": "cerebral blood flow", "cbv": "cerebral blood volume",
                            "mtt": "mean transit time", "tmax": "time to maximum of the "
                            "residue function", "ttp": "time to peak", "bat": "bolus "
                            "arrival time", "att": "arterial transit time",
                            "k2": "leakage constant K2"}},
    "method": {"Description": "estimation method, the desc label of the map: areaRatio, "
                              "bsw (leakage-corrected) or stunet for CBV; ssvd, csvd, osvd, "
                              "tikhonov, phae... for CBF/MTT/Tmax; scanner, gkm, consensus "
                              "for ASL; n/a for TTP and BAT"},
    "relative": {"Description": "true: the map divided by its NAWM median (rCBV, rCBF)",
                 "Levels": {"true": "relative", "false": "absolute"}},
    "units": {"Description": "units of mean, sd, median, q1 and q3 (from the map's JSON "
                             "sidecar)"},
    "n_voxels": {"Description": "number of ROI voxels with a finite value"},
    "mean": {"Description": "mean over the ROI (units: column units)"},
    "sd": {"Description": "standard deviation over the ROI (ddof 1; units: column units)"},
    "median": {"Description": "median over the ROI (units: column units)"},
    "q1": {"Description": "first quartile over the ROI (units: column units)"},
    "q3": {"Description": "third quartile over the ROI (units: column units)"},
    "source": {"Description": "participant ROI table of the row, relative to the "
                              "derivatives dataset"},
}


def parse_entities(filename):
    """``{column: value}`` of the BIDS entities of ``filename`` (columns of :data:`ENTITIES`).

    ``participant_id`` and ``session_id`` keep their prefix (``sub-01``, ``ses-1``) as in
    participants.tsv and sessions.tsv; the others are bare labels; absent ones are None.
    """
    pairs = parse_name(filename)[0]
    values = {column: pairs.get(key) for key, column in ENTITIES}
    if values["participant_id"] is None:
        raise ValueError(f"{filename}: not a BIDS file name (no sub- entity)")
    values["participant_id"] = f"sub-{values['participant_id']}"
    if values["session_id"] is not None:
        values["session_id"] = f"ses-{values['session_id']}"
    return values


def parse_measure(measure):
    """``(quantity, method, relative)`` of a measure name ``[r]<quantity>[_<method>]``.

    ``rcbf_osvd`` → ``('cbf', 'osvd', True)``; ``cbv`` → ``('cbv', 'areaRatio', False)``;
    ``ttp`` → ``('ttp', None, False)``. A name outside :data:`QUANTITIES` keeps its head
    as the quantity.
    """
    head, _, method = str(measure).partition("_")
    relative = head not in QUANTITIES and head.startswith("r") and head[1:] in QUANTITIES
    quantity = head[1:] if relative else head
    return quantity, (method or DEFAULT_METHOD.get(quantity)), relative


def dose_of(reconstruction, modality):
    """Dose fraction of a run: ``rec-doseNN`` → NN/100, else 1 for DSC, None for ASL."""
    if modality != "dsc":
        return None
    match = _DOSE.match(reconstruction or "")
    return int(match.group(1)) / 100 if match else 1.0


def tidy_rows(table, filename, units=None, source=None):
    """Rows of :data:`COLUMNS` for one participant ROI table (a DataFrame).

    ``units`` maps a measure to its units (default: :data:`DEFAULT_UNITS`, or
    :data:`RELATIVE_UNITS` for relative measures).
    """
    import pandas as pd

    missing = {"roi", "measure", *STATISTICS} - set(table.columns)
    if missing:
        raise ValueError(f"{filename}: not a participant ROI table (missing columns "
                         f"{', '.join(sorted(missing))})")
    entities = parse_entities(filename)
    modality = "dsc" if entities["ceagent"] else "asl"
    units = units or {}
    rows = table.loc[:, ["roi", "measure", *STATISTICS]].copy()
    parsed = [parse_measure(m) for m in rows["measure"]]
    rows["quantity"] = [q for q, _m, _r in parsed]
    rows["method"] = [m for _q, m, _r in parsed]
    rows["relative"] = [r for _q, _m, r in parsed]
    rows["units"] = [units.get(m) or (RELATIVE_UNITS if r else DEFAULT_UNITS.get(q))
                     for m, (q, _method, r) in zip(rows["measure"], parsed, strict=True)]
    for column, value in entities.items():
        rows[column] = value
    rows["dose"] = dose_of(entities["reconstruction"], modality)
    rows["modality"] = modality
    rows["source"] = source if source is not None else str(filename)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def tidy_table(frames):
    """Concatenate :func:`tidy_rows` frames, typed and sorted (subject, session, run, ...)."""
    import pandas as pd

    frames = [frame for frame in frames if len(frame)]
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    table = pd.concat(frames, ignore_index=True)
    table["n_voxels"] = table["n_voxels"].astype(int)
    for column in STATISTICS[1:]:
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    table["relative"] = table["relative"].astype(bool)
    table["dose"] = table["dose"].astype(float)
    order = ["participant_id", "session_id", "task", "acquisition", "ceagent",
             "reconstruction", "run", "roi", "measure"]
    return table.sort_values(order, na_position="first", kind="stable").reset_index(drop=True)


def join_participants(table, participants):
    """Left-join the columns of ``participants`` (a DataFrame) on ``participant_id``.

    A participants column whose name is already a column of ``table`` is prefixed
    ``participants_``.
    """
    if participants is None or "participant_id" not in participants:
        return table
    extra = participants.rename(columns={c: f"participants_{c}" for c in participants
                                         if c in table and c != "participant_id"})
    return table.merge(extra.drop_duplicates("participant_id"), on="participant_id",
                       how="left")


def data_dictionary(columns, participants_sidecar=None):
    """JSON data dictionary of ``columns``: :data:`DICTIONARY` plus participants' columns."""
    participants_sidecar = participants_sidecar or {}
    out = {}
    for column in columns:
        if column in DICTIONARY:
            out[column] = DICTIONARY[column]
        else:
            name = column.removeprefix("participants_")
            out[column] = participants_sidecar.get(
                name, {"Description": f"column {name!r} of participants.tsv"})
    return out


# --- readers ------------------------------------------------------------------------------


def find_roi_tables(derivatives_dir):
    """Participant ROI tables of a derivatives dataset, sorted."""
    root = Path(derivatives_dir)
    found = [*root.glob("sub-*/perf/*_desc-roi_roistats.tsv"),
             *root.glob("sub-*/ses-*/perf/*_desc-roi_roistats.tsv")]
    return sorted(found)


def _map_units(table_path, measures):
    """``{measure: Units}`` from the sidecars of the maps beside a participant ROI table."""
    prefix = table_path.name.removesuffix("_desc-roi_roistats.tsv")
    units = {}
    for measure in measures:
        quantity, method, relative = parse_measure(measure)
        desc = f"_desc-{method}{'Nawm' if relative else ''}" if method else ""
        sidecar = table_path.with_name(f"{prefix}{desc}_{quantity}.json")
        try:
            units[measure] = json.loads(sidecar.read_text())["Units"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return units


def read_roi_table(path, root=None):
    """:func:`tidy_rows` of the participant ROI table at ``path`` (units from sidecars)."""
    import pandas as pd

    path = Path(path)
    table = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False,
                        dtype={"roi": str, "measure": str})
    source = str(path.relative_to(root)) if root is not None else str(path)
    return tidy_rows(table, path.name, _map_units(path, table["measure"].unique()), source)


def read_participants(bids_dir):
    """``(participants DataFrame or None, participants.json dict)`` of a BIDS dataset.

    Every column is read as text (``n/a`` as missing), as BIDS defines them by their
    sidecar, not by their look.
    """
    import pandas as pd

    bids_dir = Path(bids_dir)
    tsv, sidecar = bids_dir / "participants.tsv", bids_dir / "participants.json"
    table = None
    if tsv.exists():
        table = pd.read_csv(tsv, sep="\t", dtype=str, na_values=["n/a"],
                            keep_default_na=False)
        for column in table.columns:
            if column != "participant_id":
                numbers = pd.to_numeric(table[column], errors="coerce")
                if numbers.notna().sum() == table[column].notna().sum():
                    table[column] = numbers
    description = {}
    if sidecar.exists():
        try:
            description = json.loads(sidecar.read_text())
        except ValueError:
            description = {}
    return table, description


def _roi_table_problem(path):
    """What is wrong with a participant ROI table (a sentence), or None.

    The table must hold exactly the columns of :data:`bids_perfusion.stats.roi.COLUMNS`,
    end with a newline (a truncated last line does not), and every row must hold an ROI,
    a measure, a non-negative integer ``n_voxels`` and numbers; ``n/a`` only where the
    statistic is undefined: every statistic of an ROI without voxels, ``sd`` of one voxel.
    """
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        return f"cannot be read ({error})"
    if not text.endswith("\n"):
        return "is truncated (its last line does not end with a newline)"
    lines = text.split("\n")[:-1]
    header = lines[0].split("\t") if lines else []
    if tuple(header) != ROI_COLUMNS:
        return (f"has the columns {', '.join(header) or 'none'}, not "
                f"{', '.join(ROI_COLUMNS)}")
    if len(lines) < 2:
        return "holds no row"
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(ROI_COLUMNS):
            return f"line {number} has {len(fields)} fields instead of {len(ROI_COLUMNS)}"
        row = dict(zip(ROI_COLUMNS, fields, strict=True))
        if not row["roi"] or not row["measure"]:
            return f"line {number} has no ROI or no measure"
        if not row["n_voxels"].isdigit():
            return f"line {number}: n_voxels {row['n_voxels']!r} is not a voxel count"
        voxels = int(row["n_voxels"])
        for column in STATISTICS[1:]:
            value = row[column]
            undefined = voxels == 0 or (voxels == 1 and column == "sd")
            if value == "n/a" and undefined:
                continue
            try:
                number_ok = math.isfinite(float(value))
            except ValueError:
                number_ok = False
            if not number_ok:
                return (f"line {number} ({row['roi']}, {row['measure']}, {voxels} voxels): "
                        f"{column} is {value!r}, not a number")
    return None


def usable_roi_tables(derivatives_dir, subjects=None):
    """``(paths, warnings)``: the participant ROI tables the group level may read.

    A table is usable when the completion record of its run (:mod:`bids_perfusion.records`)
    lists it and every other file of the run unchanged, and its content is whole
    (:func:`_roi_table_problem`). Files of ``sub-*`` listed by no record (an interrupted
    run, or an earlier run with other options) are left out, with a warning naming them.
    ``subjects`` (``sub-<label>``) restricts everything to those subjects. Raises
    FileNotFoundError when no table is usable, and
    :class:`~bids_perfusion.errors.InputDataError` naming each damaged file (a record's
    file missing or changed, a malformed table) and the subjects to re-run.
    """
    root = Path(derivatives_dir)

    def wanted(relative):
        return subjects is None or relative.split("/", 1)[0] in subjects

    found = [path for path in find_roi_tables(root)
             if wanted(path.relative_to(root).as_posix())]
    if not found:
        raise FileNotFoundError(
            f"no participant ROI table (sub-*/[ses-*/]perf/*_desc-roi_roistats.tsv) in "
            f"{derivatives_dir}: run the participant level into this folder first")
    checked = records.audit(root)
    stale = sorted(relative for relative in checked.stale if wanted(relative))
    problems = {}
    for path in found:
        relative = path.relative_to(root).as_posix()
        if relative not in stale and (problem := _roi_table_problem(path)):
            problems[relative] = problem
    for run_problems in checked.damaged.values():
        for relative, problem in run_problems.items():
            if wanted(relative):
                problems.setdefault(relative, problem)
    if problems:
        damaged = sorted({relative.split("/", 1)[0] for relative in problems})
        raise InputDataError(
            f"damaged participant outputs in {derivatives_dir}: "
            + "; ".join(f"{relative} {problem}" for relative, problem in
                        sorted(problems.items()))
            + ". Re-run the participant level for " + ", ".join(damaged)
            + " (--participant-label "
            + " ".join(s.removeprefix("sub-") for s in damaged) + ").")
    warnings = []
    if stale:
        warnings.append(
            f"ignored {len(stale)} file(s) that no completion record lists (an interrupted "
            "run, or an earlier run with other options; re-run the participant level of "
            "those subjects, or delete the files): " + ", ".join(stale))
    usable = [path for path in found if path.relative_to(root).as_posix() in checked.files]
    if not usable:
        raise FileNotFoundError(
            f"no participant ROI table of {derivatives_dir} has a completion record "
            "(logs/runs/): re-run the participant level into this folder")
    used = {checked.files[path.relative_to(root).as_posix()] for path in usable}
    warnings += _option_differences({run: checked.complete[run] for run in sorted(used)})
    return usable, warnings


def _option_differences(complete):
    """Warnings naming the options that differ between runs of the same kind."""
    kinds = {}
    for run, record in complete.items():
        options = record.get("Options") or {}
        kinds.setdefault(tuple(sorted(options)), {})[run] = options
    warnings = []
    for runs in kinds.values():
        keys = sorted({key for options in runs.values() for key in options
                       if len({json.dumps(o.get(key), sort_keys=True)
                               for o in runs.values()}) > 1})
        if keys:
            values = "; ".join(
                f"{run}: " + ", ".join(f"{key}={runs[run].get(key)}" for key in keys)
                for run in sorted(runs))
            warnings.append("runs were processed with different options (see "
                            f"logs/runs/<run>.json), compare with care: {values}")
    return warnings


def collect(derivatives_dir, bids_dir, subjects=None):
    """``(tidy table joined with participants.tsv, data dictionary, participants table,
    warnings)`` of the usable ROI tables of ``subjects`` (``sub-<label>``; default all)
    (:func:`usable_roi_tables`, whose errors it raises).
    """
    paths, warnings = usable_roi_tables(derivatives_dir, subjects)
    table = tidy_table(read_roi_table(path, derivatives_dir) for path in paths)
    participants, sidecar = read_participants(bids_dir)
    table = join_participants(table, participants)
    return table, data_dictionary(table.columns, sidecar), participants, warnings


def write_tsv(table, path):
    """Write a table as BIDS TSV: tab-separated, ``n/a`` for missing, booleans lower-case."""
    out = table.copy()
    for column in out.columns:
        if out[column].dtype == bool:
            out[column] = np.where(out[column], "true", "false")
    out.to_csv(path, sep="\t", index=False, na_rep="n/a", float_format="%.6g",
               lineterminator="\n")
    return Path(path)
