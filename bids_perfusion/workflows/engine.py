"""nipype's MultiProc plugin with workers that die with the process that started them.

A ``kill -9`` of ``bids-perfusion`` gives its worker processes no chance to be told: with
the stock plugin they run on as orphans, holding memory and CPUs. Here each worker asks
the Linux kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``, see
prctl(2)); on other systems a thread polls the parent's pid instead.
"""

import ctypes
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor

from nipype.pipeline.plugins.multiproc import MultiProcPlugin as _MultiProcPlugin
from nipype.pipeline.plugins.multiproc import mp, process_initializer

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
    stock pool is replaced before any of them exists).
    """

    def __init__(self, plugin_args=None):
        super().__init__(plugin_args=plugin_args)
        self.pool.shutdown(wait=True)
        self.pool = ProcessPoolExecutor(
            max_workers=self.processors,
            initializer=_initialise_worker,
            initargs=(self._cwd, os.getpid()),
            mp_context=mp.get_context(self.plugin_args.get("mp_context")),
        )
