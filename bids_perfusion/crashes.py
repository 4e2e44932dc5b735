"""Which nipype crash reports were caused by the user's data, and which by a bug.

A node that fails writes a crash report (``crash-*.txt``). The runner
(:func:`bids_perfusion.workflows.engine.run_workflow`) reads them to say, per failed run,
either what to fix in the input (the message of an input error, naming the file) or that
it is an internal error to report (exit status 3, docs/usage.md "Exit status").
"""

import re

#: Exceptions raised for the user's data: their message names the file and the fix.
INPUT_ERRORS = ("InputDataError", "MetadataError", "WeightsError")
#: Packages of the numeric cores, whose ValueErrors are checks of the data (their
#: docstrings say when they raise) rather than bugs.
CORE_PACKAGES = ("dsc", "asl", "stats")


def input_error_of(crash_text, source=None):
    """The message of an input error in a nipype crash report, or None if it was another.

    Input errors are the :data:`INPUT_ERRORS`, which name their file, and the ValueErrors
    raised by a data check of a numeric core, which are prefixed with ``source`` (the
    run's raw file).
    """
    pattern = rf"(?:^|\.)({'|'.join(INPUT_ERRORS)}): (.+)$"
    if matches := re.findall(pattern, crash_text, flags=re.MULTILINE):
        return matches[-1][1].strip()
    frames = re.findall(r'^\s*File "([^"]+)"', crash_text, flags=re.MULTILINE)
    check = re.findall(r"^\s*ValueError: (.+)$", crash_text, flags=re.MULTILINE)
    core = f"({'|'.join(CORE_PACKAGES)})"
    if check and frames and re.search(rf"bids_perfusion/{core}/", frames[-1]):
        return f"{source or 'a run'}: {check[-1].strip()}"
    return None


def node_of(crash_text):
    """The full name of the node of a crash report (``wf.run_wf.node``), or '?'."""
    node = re.search(r"^Node: (\S+)", crash_text, flags=re.MULTILINE)
    return node.group(1) if node else "?"


def source_of(node, sources):
    """The raw file of the run whose sub-workflow holds ``node`` (the longest run name
    that prefixes the sub-workflow's name), or None."""
    parts = node.split(".")
    workflow = parts[1] if len(parts) > 2 else ""
    names = [name for name in sources if workflow.startswith(name)]
    return sources[max(names, key=len)] if names else None
