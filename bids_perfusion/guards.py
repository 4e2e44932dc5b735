"""Where the App may write: never into the input dataset, whatever paths a user gives.

Paths are resolved (symbolic links and ``..``) before they are compared, so that
``/x/../dataset``, a link to the dataset or a folder inside it cannot pass for somewhere
else. Inside the input only ``dataset/derivatives/<name>`` may be written (BIDS keeps
derivatives there); the output folder must not hold links that lead out of it, so that
nothing is written through them. Each check returns a message naming the path and the
fix, or None; the command line turns a message into a usage error before any processing.
"""

import os
from pathlib import Path

#: The one folder of a BIDS dataset under which derivatives (and work) may be written.
DERIVATIVES = "derivatives"
#: Links listed in a message before "and N more".
MAX_LISTED = 5


def resolved(path):
    """``path`` made absolute with links and ``..`` resolved (it need not exist)."""
    return Path(os.path.expanduser(path)).resolve(strict=False)


def inside_input(path, bids_dir):
    """True if ``path`` is ``bids_dir`` or inside it, except under ``derivatives/<name>``."""
    path, bids_dir = resolved(path), resolved(bids_dir)
    if path != bids_dir and bids_dir not in path.parents:
        return False
    parts = path.relative_to(bids_dir).parts
    return not (len(parts) >= 2 and parts[0] == DERIVATIVES)


def output_problem(output_dir, bids_dir):
    """Why ``output_dir`` cannot receive derivatives of ``bids_dir``, or None."""
    target = resolved(output_dir)
    if inside_input(target, bids_dir):
        return (f"output_dir {output_dir} (resolved: {target}) is inside the input dataset "
                f"{resolved(bids_dir)}; write derivatives elsewhere or under its "
                f"{DERIVATIVES}/<name>/ folder.")
    if target.exists() and not target.is_dir():
        return f"output_dir {output_dir} is a file, not a folder; give a folder."
    writable = _unwritable(target)
    if writable:
        return f"output_dir {output_dir}: {writable}"
    links = links_leaving(target)
    if links:
        shown = ", ".join(f"{link} -> {os.readlink(link)}" for link in links[:MAX_LISTED])
        more = f" and {len(links) - MAX_LISTED} more" if len(links) > MAX_LISTED else ""
        return (f"output_dir {output_dir} holds symbolic links that lead out of it ({shown}"
                f"{more}); files would be written through them. Remove the links or "
                "choose an empty output folder.")
    return None


def work_problem(work_dir, bids_dir, output_dir):
    """Why ``work_dir`` cannot hold the intermediate files, or None."""
    target = resolved(work_dir)
    if inside_input(target, bids_dir):
        return (f"work directory {work_dir} (resolved: {target}) is inside the input "
                f"dataset {resolved(bids_dir)}; give another folder with -w (the default "
                "'work' is relative to the current folder: run from outside the dataset).")
    if target == resolved(output_dir) or resolved(output_dir) in target.parents:
        return (f"work directory {work_dir} is inside output_dir {output_dir}; intermediate "
                "files would mix with the derivatives. Give another folder with -w.")
    if target.exists() and not target.is_dir():
        return f"work directory {work_dir} is a file, not a folder; give a folder with -w."
    writable = _unwritable(target)
    return f"work directory {work_dir}: {writable}" if writable else None


def links_leaving(folder):
    """Symbolic links under ``folder`` whose targets are outside it (or do not exist)."""
    folder = resolved(folder)
    if not folder.is_dir():
        return []
    found = []
    for root, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            path = Path(root, name)
            if path.is_symlink():
                target = path.resolve(strict=False)
                if folder not in target.parents:
                    found.append(path)
    return sorted(found)


def _unwritable(path):
    """Why ``path`` (or the folder that would hold it) cannot be written, or None."""
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        return (f"{existing} is not writable by this user; choose a folder you can write "
                "or fix its permissions.")
    return None
