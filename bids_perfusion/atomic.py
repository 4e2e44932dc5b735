"""Atomic file writes, for files that several processes write into one output folder.

Subjects run in parallel (one SLURM array task each, docs/hpc.md) share
``dataset_description.json``, ``logs/CITATION.md`` and ``logs/runs/``. A file written in
place can be read half-written, or interleave two writers' bytes; :func:`write_text`
writes a temporary file in the same folder and renames it over the target
(:func:`os.replace`, atomic on POSIX within one file system), so a reader sees the old
file or the new one, never a mixture. The temporary file is opened like any other file,
so the result has the permissions the umask gives (not the 0600 of ``mkstemp``).
"""

import os
import uuid
from pathlib import Path


def write_text(path, text):
    """Write ``text`` to ``path`` atomically (its folder must exist); returns the path."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "x") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
