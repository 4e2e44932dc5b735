"""What ``bids-perfusion`` prints, and the log it keeps in ``output_dir/logs/``.

The console shows bids-perfusion's own messages: the runs found, one line per finished
step of each run with the run's progress, the errors, and a summary (runs written, runs
skipped and why, time taken). nipype's log (thousands of lines for a participant) goes in
full to ``output_dir/logs/bids-perfusion-<run id>.log``, beside the run's configuration;
``-v`` shows it on the console too, ``-vv`` adds debug messages to both.
"""

import logging
import sys
from pathlib import Path

LOGGER = logging.getLogger("bids_perfusion")
FORMAT = "%(asctime)s bids-perfusion %(levelname)s: %(message)s"
DATE_FORMAT = "%y%m%d-%H:%M:%S"
#: Name of the console handler, so that a second run in one process adds no other.
CONSOLE = "bids-perfusion console"
#: Modules of the interfaces that move data rather than compute (merges, selections, data
#: sinks, barriers): their nodes are not counted as steps.
PLUMBING = ("nipype.interfaces.utility", "bids_perfusion.interfaces.bids")


class _Stderr(logging.StreamHandler):
    """A handler on the current ``sys.stderr``, which notebooks and tests replace."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def setup_console(verbose=0):
    """Messages of bids-perfusion on stderr: INFO and above, DEBUG with ``-vv``."""
    if not any(handler.name == CONSOLE for handler in LOGGER.handlers):
        handler = _Stderr()
        handler.name = CONSOLE
        handler.setFormatter(logging.Formatter(FORMAT, datefmt=DATE_FORMAT))
        LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)


def log_to_file(path, verbose=0):
    """Send bids-perfusion's and nipype's messages to the file ``path`` (INFO, or DEBUG
    with ``-vv``), and nipype's to the console only with ``-v``; returns the file's
    handler, to be closed with :func:`close_log`."""
    from nipype import config
    from nipype import logging as nipype_logging

    level = logging.DEBUG if verbose >= 2 else logging.INFO
    for name in ("workflow_level", "interface_level", "utils_level"):
        config.set("logging", name, logging.getLevelName(level))
    nipype_logging.update_logging(config)
    nipype = logging.getLogger("nipype")
    for handler in nipype.handlers:  # nipype's own, on stdout
        handler.setLevel(level if verbose else logging.CRITICAL + 1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    for logger in (LOGGER, nipype):
        logger.addHandler(handler)
    return handler


def close_log(handler):
    """Detach and close the file handler of :func:`log_to_file`."""
    for logger in (LOGGER, logging.getLogger("nipype")):
        logger.removeHandler(handler)
    handler.close()


class Progress:
    """nipype status callback: one line per finished step of each run, with its count.

    A run is a sub-workflow of ``workflow`` (named ``<run>_wf``); a step is a node whose
    interface computes (:data:`PLUMBING` excluded). :meth:`written` and :meth:`failed`
    name the runs whose every node finished, and those of which a node failed.
    """

    def __init__(self, workflow):
        self.total, self.steps, self.done = {}, {}, {}
        self.finished, self.broken = {}, set()
        for name in workflow.list_node_names():
            node, run = workflow.get_node(name), name.split(".")[0]
            if type(node.interface).__name__ == "IdentityInterface":
                continue  # nipype removes them when it flattens the graph
            self.total[run] = self.total.get(run, 0) + 1
            self.steps[run] = self.steps.get(run, 0) + _is_step(node)
            self.done[run] = self.finished[run] = 0

    def __call__(self, node, status):
        run = _run_of(node)
        if run not in self.total or status == "start":
            return
        if status == "exception":
            self.broken.add(run)
            LOGGER.warning("%s: step %s failed", _label(run), node.name)
            return
        self.finished[run] += 1
        if _is_step(node):
            self.done[run] += 1
            width = len(str(self.steps[run]))
            LOGGER.info("%s [%*d/%d] %s", _label(run), width, self.done[run],
                        self.steps[run], node.name)

    def written(self):
        """Runs whose every node finished."""
        return [run for run in self.total
                if run not in self.broken and self.finished[run] == self.total[run]]

    def failed(self):
        """Runs of which a node failed."""
        return sorted(self.broken)


def _is_step(node):
    return not type(node.interface).__module__.startswith(PLUMBING)


def _run_of(node):
    """The run (sub-workflow) of a node of the flattened graph: ``top.run_wf.node``."""
    parts = node.fullname.split(".")
    return parts[1] if len(parts) > 2 else None


def _label(run):
    return run.removesuffix("_wf")


def summary(written, skipped, not_made, seconds):
    """Log the final summary: runs written, runs skipped with their reasons, maps not
    made (``not_made``: messages, such as deep methods without valid weights), time."""
    LOGGER.info("Summary: %d run(s) written, %d skipped, in %.0f s", written, len(skipped),
                seconds)
    for message in skipped:
        LOGGER.warning("Skipped: %s", message)
    for message in not_made:
        LOGGER.warning("Not made: %s", message)
