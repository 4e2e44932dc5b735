"""Running a workflow: nipype's MultiProc plugin with workers that die with the process
that started them, and the runner that turns crash reports into messages per run.

A ``kill -9`` of ``bids-perfusion`` gives its worker processes no chance to be told: with
the stock plugin they run on as orphans, holding memory and CPUs. Here each worker asks
the Linux kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``, see
prctl(2)); on other systems a thread polls the parent's pid instead.

Workers are started with the ``spawn`` method (a fresh interpreter), not forked: a fork
copies the parent's thread pools in whatever state they are, and a worker forked after the
parent ran torch (or a threaded BLAS) can wait forever on a lock held by a thread that was
not copied. Fresh interpreters cost about a second each, once per pool.

nipype's MultiProc runs a full garbage collection before each submission and after each
node it runs in the main process; with the objects of a workflow of hundreds of nodes
each one took 0.2 s, 107 s of the 138 s of ``make demo``. The plugin therefore freezes
the objects that exist when it starts (``gc.freeze``: the graph, the interfaces, the
layout, which live for the whole run anyway), so those collections scan only the objects
made since.
"""

import ctypes
import gc
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from nipype.pipeline.plugins.multiproc import MultiProcPlugin as _MultiProcPlugin
from nipype.pipeline.plugins.multiproc import mp, process_initializer

from bids_perfusion.crashes import input_error_of, node_of, source_of

LOGGER = logging.getLogger("bids_perfusion")

#: prctl(2) option: the signal sent to this process when its parent thread exits.
PR_SET_PDEATHSIG = 1
#: Seconds between checks of the parent where prctl is not available.
POLL_INTERVAL = 1.0


def die_with_parent(parent_pid):
    """Make the calling process end when ``parent_pid`` is no longer its parent."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)
            return

    def watch():
        while os.getppid() == parent_pid:
            threading.Event().wait(POLL_INTERVAL)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _initialise_worker(cwd, parent_pid):
    process_initializer(cwd)
    die_with_parent(parent_pid)


class MultiProcPlugin(_MultiProcPlugin):
    """:class:`nipype.pipeline.plugins.multiproc.MultiProcPlugin` whose workers end with it.

    Same ``plugin_args``; only the process pool differs (its workers start lazily, so the
    stock pool is replaced before any of them exists), and ``mp_context`` defaults to
    ``"spawn"`` (see the module's docstring).
    """

    def __init__(self, plugin_args=None):
        super().__init__(plugin_args=plugin_args)
        self.pool.shutdown(wait=True)
        self.pool = ProcessPoolExecutor(
            max_workers=self.processors,
            initializer=_initialise_worker,
            initargs=(self._cwd, os.getpid()),
            mp_context=mp.get_context(self.plugin_args.get("mp_context", "spawn")),
        )

    def run(self, graph, config, updatehash=False):
        """nipype's run, with the objects alive at its start frozen out of the garbage
        collections it runs (see the module's docstring); unfrozen at the end."""
        gc.collect()
        gc.freeze()
        try:
            return super().run(graph, config, updatehash=updatehash)
        finally:
            gc.unfreeze()


def parallel_units(workflow):
    """The sub-workflows at the top of ``workflow``: its runs (one per run and dose) and
    the normalisations of the subjects' T1w, which MultiProc can run side by side."""
    return sum(1 for node in workflow._graph.nodes() if hasattr(node, "_graph"))


def choose_plugin(nprocs, units):
    """``"MultiProc"`` when ``nprocs`` processes can share ``units`` independent
    sub-workflows (at least two of each), else ``"Linear"``: the nodes of one run mostly
    follow each other, and the spawned workers of a pool (about a second each to start,
    with every input and result passed through files) cost one series more than they
    gain (docs/performance.md, "Participant run and demo"). A run's numerical cores still
    use the threads of ``--omp-nthreads``."""
    return "MultiProc" if nprocs > 1 and units > 1 else "Linear"


def run_workflow(workflow, execution, sources=None, status_callback=None):
    """Run with MultiProc or Linear (:func:`choose_plugin`: Linear for one process or
    one run), as ``execution`` asks (:class:`~bids_perfusion.config.ExecutionOptions`:
    ``nprocs``, ``mem``, ``work_dir``, where the crash reports go).

    Returns ``(messages, internal)``: one message per failed node, and whether any failure
    was internal rather than caused by the input
    (:func:`~bids_perfusion.crashes.input_error_of`). ``sources`` maps each run's name
    (the prefix of its sub-workflow's name) to its raw file, named in messages.
    ``status_callback(node, status)`` is nipype's: called with 'start', 'end' or
    'exception' for every node.
    """
    workflow.config["execution"].update({"crashdump_dir": str(execution.work_dir),
                                         "stop_on_first_crash": False,
                                         "crashfile_format": "txt",
                                         "poll_sleep_duration": 0.05})
    nprocs = execution.nprocs or os.cpu_count()
    plugin_args = {"n_procs": nprocs, "raise_insufficient": False}
    if execution.mem:
        plugin_args["memory_gb"] = execution.mem
    if status_callback is not None:
        plugin_args["status_callback"] = status_callback
    started = time.time()
    try:
        plugin = choose_plugin(nprocs, parallel_units(workflow))
        LOGGER.info("nipype plugin: %s (%d process(es) asked, %d run(s) or T1w "
                    "normalisation(s) to process)", plugin, nprocs, parallel_units(workflow))
        if plugin == "MultiProc":
            workflow.run(plugin=MultiProcPlugin(plugin_args=plugin_args))
        else:
            workflow.run(plugin="Linear", plugin_args=plugin_args)
    except RuntimeError as error:
        crashes = [path for path in Path(execution.work_dir).glob("crash-*.txt")
                   if path.stat().st_mtime >= started - 1]
        if not crashes:
            LOGGER.error("The workflow failed: %s", error)
            return [str(error)], True
        messages, internal = [], False
        for crash in sorted(crashes):
            text = crash.read_text(errors="replace")
            node = node_of(text)
            message = input_error_of(text, source_of(node, sources or {}))
            if message is None:
                internal = True
                message = f"internal error in step {node}: see {crash}; please report it"
            LOGGER.error("A run was not written: %s", message)
            messages.append(message)
        return messages, internal
    return [], False

