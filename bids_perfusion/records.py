"""Completion records: which run wrote which derivatives, with which options and methods.

When every output of a run (one DSC run at one dose, or one ASL run) has been written,
the participant level writes ``output_dir/logs/runs/<run>.json`` (:data:`RECORDS_DIR`,
outside the ``sub-*`` folders, where the BIDS validator does not look)::

    {"Run": "sub_01_ce_gadolinium_acquired_wf", "Version": "...", "Completed": "...Z",
     "Options": {... the run's DSCOptions or ASLOptions ...},
     "Methods": "... the methods text of this run, with [@key] citations ...",
     "Files": {"sub-01/perf/sub-01_ce-gadolinium_desc-osvd_cbf.nii.gz": "<sha256>", ...}}

The record is removed just before the run's sinks start writing and written atomically
(:func:`bids_perfusion.atomic.write_text`) after the last one, so a run killed while
writing has no record. Readers (group level, reports) trust a file only when a record
lists it with the same SHA-256: :func:`audit` sorts the files of ``sub-*`` folders into
those of complete runs, those of damaged runs (a listed file missing or changed) and
stale ones (listed by no record: an interrupted run, or an earlier run with other
options whose files the later run did not overwrite). Pure Python: no nipype.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bids_perfusion import atomic

#: Folder of the completion records, relative to the derivatives dataset.
RECORDS_DIR = Path("logs") / "runs"
#: Folders under ``sub-*`` written by the reports, not by runs: never stale.
REPORT_FOLDERS = ("figures",)


def record_path(output_dir, run):
    """``output_dir/logs/runs/<run>.json``."""
    return Path(output_dir) / RECORDS_DIR / f"{run}.json"


def sha256(path):
    """Hexadecimal SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def invalidate(output_dir, run):
    """Remove the record of ``run``: its files are about to be rewritten."""
    record_path(output_dir, run).unlink(missing_ok=True)


def write_record(output_dir, run, files, *, options, methods, version):
    """Write the completion record of ``run`` atomically; its path.

    ``files`` are the paths the run wrote (under ``output_dir``), ``options`` a
    JSON-serialisable dict, ``methods`` the run's methods text.
    """
    output_dir = Path(output_dir).absolute()
    listed = {}
    for path in sorted({Path(f).absolute() for f in files}):
        listed[path.relative_to(output_dir).as_posix()] = sha256(path)
    record = {"Run": run, "Version": version,
              "Completed": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "Options": options, "Methods": methods, "Files": listed}
    target = record_path(output_dir, run)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(target, json.dumps(record, indent=2, default=str) + "\n")
    return target


def read_records(output_dir):
    """``{run: record}`` of every readable record of ``output_dir``, sorted by run.

    An unreadable record (not JSON, no ``Files``) is left out: its run counts as not
    complete.
    """
    records = {}
    for path in sorted((Path(output_dir) / RECORDS_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("Files"), dict):
            records[path.stem] = record
    return records


@dataclass
class Audit:
    """Files of a derivatives dataset sorted by the completion records (:func:`audit`).

    ``complete``: ``{run: record}`` whose every file exists unchanged; ``damaged``:
    ``{run: {relative path: problem}}`` of records with a file missing or changed; ``stale``:
    relative paths under ``sub-*`` (outside ``figures/``) that no record lists; ``files``:
    ``{relative path: run}`` of the files of complete runs.
    """

    complete: dict = field(default_factory=dict)
    damaged: dict = field(default_factory=dict)
    stale: list = field(default_factory=list)
    files: dict = field(default_factory=dict)

    def run_of(self, path, output_dir):
        """The complete run that wrote the file ``path`` of ``output_dir``, or None."""
        relative = Path(path).absolute().relative_to(Path(output_dir).absolute())
        return self.files.get(relative.as_posix())


def audit(output_dir, subject=None):
    """:class:`Audit` of ``output_dir`` (restricted to ``sub-<subject>`` when given)."""
    output_dir = Path(output_dir).absolute()
    prefix = f"sub-{str(subject).removeprefix('sub-')}/" if subject is not None else "sub-"
    result, listed = Audit(), set()
    for run, record in read_records(output_dir).items():
        files = {p: h for p, h in record["Files"].items() if p.startswith(prefix)}
        if not files:
            continue
        listed |= files.keys()
        problems = {}
        for relative, digest in files.items():
            path = output_dir / relative
            if not path.is_file():
                problems[relative] = "is missing"
            elif sha256(path) != digest:
                problems[relative] = "was changed after the run wrote it"
        if problems:
            result.damaged[run] = problems
        else:
            result.complete[run] = record
            result.files.update(dict.fromkeys(files, run))
    folders = (output_dir.glob(prefix.rstrip("/")) if subject is not None
               else output_dir.glob("sub-*"))
    for folder in sorted(p for p in folders if p.is_dir()):
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(output_dir)
            if (path.is_file() and relative.parts[1] not in REPORT_FOLDERS
                    and relative.as_posix() not in listed):
                result.stale.append(relative.as_posix())
    return result
