"""Timers shared by the benchmark scripts (imported from this folder, which Python puts
first on the path of a script run as ``python benchmarks/bench_X.py``)."""

import time
import tracemalloc


def best_of(function, repeats=3):
    """``(fastest wall time in s, result of the last call)`` of ``repeats`` calls."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def traced_peak_mb(function):
    """Peak of the memory Python and numpy allocate (tracemalloc) during one call, MiB."""
    tracemalloc.start()
    function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20
