"""Benchmark of the DSC numeric core chain on one 128 × 128 × 24 × 80 series (issue 17).

The chain runs through the public functions of :mod:`bids_perfusion.dsc` on the brain
voxels: signal → ΔR2* (:func:`brain_delta_r2star`) → AIF from a given mask
(:func:`aif_from_mask`) → concentration → oSVD CBF (:class:`DeconvolutionModel`) →
area-ratio CBV (:func:`cbv_area_ratio`, integrated to :func:`bolus_end`) → MTT; the
pipeline nodes' front end, which writes the ΔR2* volume (:func:`series_to_delta_r2star`),
is timed beside it. Separately:
bolus arrival and time to peak (:func:`bolus_arrival_time`, :func:`time_to_peak`) of every
brain voxel, the floor of oSVD (the pure float32 matrix products it performs, timed with
the same BLAS), the scaling table (time and peak resident memory in a fresh process per
case at 1×, 2×, 4× the voxels and 2× the frames) and, with ``--osipy-python``, osipy's
DSC pipeline (oSVD) on the same arrays in that interpreter, restricted to the same CPUs.

Synthetic series (not the phantom): an ellipsoidal brain of about 156 500 voxels, tissue
curves from a gamma-variate AIF and exponential residues (CBF 10–80 mL/100 mL/min, MTT
2–8 s, delays 0–3 s), a steady-state transient over the first frames, Gaussian noise at
SNR 50, float32 as the pipeline loads it; 8 arterial voxels. BLAS and OpenMP are limited
to ``--threads`` (default 2) before numpy is imported; times are the best of
``--repeats`` runs, wall and CPU (user + system of the process, osipy's too), with the
load average printed: on a shared machine the wall times vary several-fold and the CPU
times are the figures to compare (with 2 BLAS threads on a loaded machine, OpenBLAS's
waiting threads also inflate them; ``--threads 1`` there). Needs only numpy and scipy
(no nipype, no pybids)::

    python benchmarks/bench_core.py
    python benchmarks/bench_core.py --osipy-python /path/to/py312/bin/python
    python benchmarks/bench_core.py --no-scaling --repeats 5
    taskset -c 0,1 python benchmarks/bench_core.py --threads 1 --osipy-python WRAPPER
"""

import os
import sys

THREADS = next((sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == "--threads"), "2")
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = THREADS

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from timers import best_of, traced_peak_mb  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from bids_perfusion.dsc import (  # noqa: E402
    DeconvolutionModel,
    aif_from_mask,
    at_field,
    blood_concentration,
    blood_delta_r2star,
    bolus_arrival_time,
    bolus_end,
    brain_delta_r2star,
    cbf_from_fit,
    cbv_area_ratio,
    kinetics,
    mean_transit_time,
    series_to_delta_r2star,
    time_to_peak,
    tissue_concentration,
    truncated_svd,
)

SHAPE = (128, 128, 24)
FRAMES = 80
TR = 1.5
TE = 0.03
FIELD = 3.0
TARGETS_S = {"chain": 0.5, "timing": 0.3}
MEMORY_TARGET_MB = 1536
SCALING = [("1x voxels", 1, 1), ("2x voxels", 2, 1), ("4x voxels", 4, 1), ("2x frames", 1, 2)]


def synthetic_series(voxel_factor=1, frame_factor=1, seed=0):
    """float32 series (x, y, z, T), brain and AIF masks; ``voxel_factor`` stacks slices."""
    rng = np.random.default_rng(seed)
    shape = (SHAPE[0], SHAPE[1], SHAPE[2] * voxel_factor)
    n_frames = FRAMES * frame_factor
    t = np.arange(n_frames) * TR
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij"))
    radii = np.array([0.898, 0.898, 1.0])[:, None, None, None]
    brain = ((grid / radii) ** 2).sum(axis=0) <= 1.0
    relax = at_field(FIELD)
    aif = 5.0 * kinetics.gamma_variate(t, t0=22.0, alpha=3.0, beta=1.5)
    # 512 tissue classes, drawn per voxel: CBF, MTT and a delay of the input.
    classes = 512
    cbf = rng.uniform(10, 80, classes)
    mtt = rng.uniform(2, 8, classes)
    delay = rng.uniform(0, 3, classes)
    inputs = np.stack([kinetics.shift(aif, d, TR) for d in delay])
    k = cbf[:, None] / 6000 * kinetics.residue_exponential(t, mtt[:, None])
    tissue = kinetics.convolve(inputs, k, TR)
    delta = (relax.tissue * tissue).astype(np.float32)
    n_brain = int(brain.sum())
    s0 = rng.uniform(800, 1200, n_brain).astype(np.float32)
    transient = (1 + 0.08 * 0.5 ** np.arange(n_frames)).astype(np.float32)
    signal = (s0[:, None] * transient) * np.exp(-TE * delta[rng.integers(0, classes, n_brain)])
    signal += rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(1000 / 50)
    arteries = np.flatnonzero(brain.reshape(-1))[n_brain // 2: n_brain // 2 + 8]
    brain_index = np.searchsorted(np.flatnonzero(brain.reshape(-1)), arteries)
    blood = blood_delta_r2star(aif, relax.blood_linear, relax.blood_quadratic)
    signal[brain_index] = (s0[brain_index, None] * transient
                           * np.exp(-TE * blood)).astype(np.float32)
    series = np.abs(rng.standard_normal((*shape, n_frames), dtype=np.float32)) * 20
    series[brain] = signal
    aif_mask = np.zeros(shape, dtype=bool)
    aif_mask.reshape(-1)[arteries] = True
    return series, brain, aif_mask


def core_chain(series, brain, aif_mask, stages=None):
    """The maps of the brain voxels through the public functions; ``stages`` collects times."""
    clock, cpu = time.perf_counter(), time.process_time()

    def lap(name):
        nonlocal clock, cpu
        now, cpu_now = time.perf_counter(), time.process_time()
        if stages is not None:
            stages[name] = min(stages.get(name, np.inf), now - clock)
            stages_cpu = stages.setdefault("cpu", {})
            stages_cpu[name] = min(stages_cpu.get(name, np.inf), cpu_now - cpu)
        clock, cpu = now, cpu_now

    relax = at_field(FIELD)
    curves, start, _stop = brain_delta_r2star([series], [TE], brain)
    times = TR * (start + np.arange(curves.shape[-1]))
    lap("delta_r2star")
    selection = aif_from_mask(curves, aif_mask[brain], times)
    aif = blood_concentration(selection.curve, relax.blood_linear, relax.blood_quadratic)
    lap("aif")
    tissue = tissue_concentration(curves, relax.tissue)
    lap("concentration")
    fit = DeconvolutionModel(aif, TR, "osvd").fit(tissue)
    cbf = cbf_from_fit(fit)
    lap("osvd_cbf")
    end = bolus_end(tissue.mean(axis=0, dtype=np.float64))
    cbv = cbv_area_ratio(tissue[:, :end], aif[:end], times[:end])
    lap("cbv")
    mtt = mean_transit_time(cbv, cbf)
    lap("mtt")
    return {"cbf": cbf, "cbv": cbv, "mtt": mtt, "tissue": tissue, "times": times, "aif": aif,
            "fit": fit}


def volume_front_end(series, brain, aif_mask):
    """The pipeline nodes' route: the ΔR2* volume (written as NIfTI), AIF, brain curves."""
    delta, start, _stop = series_to_delta_r2star([series], [TE], brain)
    times = TR * (start + np.arange(delta.shape[-1]))
    aif_from_mask(delta, aif_mask, times)
    return tissue_concentration(delta[brain], at_field(FIELD).tissue)


def osvd_floor(fit, tissue, repeats):
    """Time of the float32 matrix products that oSVD performs, with this process's BLAS.

    :class:`~bids_perfusion.dsc.truncated_svd.OscillationIndexSVD` computes ``Yᵀ = Pᵀ Cᵀ``
    for every voxel, then at each grid threshold that changes the kept modes one product
    ``Qᵀ[:, :m] Yᵀ[:m]`` of the voxels still undecided, in blocks of its sweep block. The
    number undecided at a threshold is read from the thresholds the fit chose (a voxel is
    undecided until its own). Returns (the floor, the products as ``(columns, voxels)``,
    its CPU time, the time of one ``(V, T) (T, 2T)`` product, the plain cSVD).
    """
    solver = fit.model._solver
    forward, inverse = solver._matrices(np.float32)
    inverse_t = np.ascontiguousarray(inverse.T)
    chosen = np.asarray(fit.regularisation).reshape(-1)
    grid = solver.threshold_grid
    products, previous = [], -1
    for threshold in grid:
        columns = solver._columns(threshold)
        if columns != previous or threshold == grid[-1]:
            products.append((columns, int(np.count_nonzero(chosen >= threshold))))
        previous = columns
    chunk, block = fit.model.chunk_size, truncated_svd._SWEEP_BLOCK
    projected = np.ones((forward.shape[1], block), dtype=np.float32)
    out = np.empty((inverse_t.shape[0], block), dtype=np.float32)

    def sweep():
        for start in range(0, len(tissue), chunk):
            np.matmul(forward.T, tissue[start:start + chunk].T)
        for columns, voxels in products:
            for start in range(0, voxels, block):
                size = min(block, voxels - start)
                np.matmul(inverse_t[:, :columns], projected[:columns, :size], out=out[:, :size])

    matrix = np.ones((tissue.shape[-1], 2 * tissue.shape[-1]), dtype=np.float32)
    floor_cpu = np.inf

    def timed_sweep():
        nonlocal floor_cpu
        cpu = time.process_time()
        sweep()
        floor_cpu = min(floor_cpu, time.process_time() - cpu)

    floor, _ = best_of(timed_sweep, repeats)
    single, _ = best_of(lambda: [tissue[start:start + chunk] @ matrix
                                 for start in range(0, len(tissue), chunk)], repeats)
    return floor, floor_cpu, products, single


def measure_case(voxel_factor, frame_factor, repeats):
    """Times of the chain and of bolus timing, the memory numpy allocates while they run
    (tracemalloc, above the input) and the process's peak resident memory."""
    series, brain, aif_mask = synthetic_series(voxel_factor, frame_factor)
    chain, maps = best_of(lambda: core_chain(series, brain, aif_mask), repeats)
    tissue, times = maps["tissue"], maps["times"]
    timing, _ = best_of(lambda: (bolus_arrival_time(tissue, times), time_to_peak(tissue, times)),
                        repeats)
    traced = traced_peak_mb(lambda: core_chain(series, brain, aif_mask))
    return {"voxels": int(brain.sum()), "frames": int(series.shape[-1]),
            "series_mb": series.nbytes / 2**20, "chain_s": chain, "timing_s": timing,
            "traced_mb": traced,
            "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def scaling_table(repeats):
    print("\nscaling: a fresh process per case; chain peak = numpy allocations during the "
          "chain above its input (tracemalloc); process peak RSS includes the simulation")
    print(f"{'case':<11}{'voxels':>9}{'frames':>8}{'chain s':>9}{'timing s':>10}"
          f"{'series MB':>11}{'chain peak MB':>15}{'peak RSS MB':>13}")
    rows = []
    for name, voxel_factor, frame_factor in SCALING:
        output = subprocess.run(
            [sys.executable, __file__, "--threads", THREADS, "--case", str(voxel_factor),
             str(frame_factor), "--repeats", str(repeats)],
            check=True, capture_output=True, text=True).stdout
        row = json.loads(output.strip().splitlines()[-1])
        rows.append((name, row))
        print(f"{name:<11}{row['voxels']:>9}{row['frames']:>8}{row['chain_s']:>9.3f}"
              f"{row['timing_s']:>10.3f}{row['series_mb']:>11.0f}{row['traced_mb']:>15.0f}"
              f"{row['rss_peak_mb']:>13.0f}")
    return rows


#: osipy's DSC pipeline on the same arrays: ΔR2* with 10 baseline frames, the AIF as the
#: mean of the same arterial voxels, oSVD, CBV and MTT; no leakage correction (the core
#: chain has none); CPU only (OSIPY_FORCE_CPU). Only ``DSCPipeline.run`` is timed.
OSIPY_SCRIPT = r"""
import json, os, sys, time
os.environ["OSIPY_FORCE_CPU"] = "1"
import numpy as np
from osipy.dsc.deconvolution.config import OSVDConfig
from osipy.pipeline import DSCPipeline, DSCPipelineConfig
series = np.load(sys.argv[1]); brain = np.load(sys.argv[2]); aif_mask = np.load(sys.argv[3])
te, tr, repeats = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
times = np.arange(series.shape[-1]) * tr
config = DSCPipelineConfig(te=te * 1000.0, baseline_frames=10, apply_leakage_correction=False,
                           deconvolution=OSVDConfig())
best = best_cpu = float("inf")
for _ in range(repeats):
    start, cpu = time.perf_counter(), time.process_time()
    result = DSCPipeline(config).run(series, times, aif_voxels=aif_mask, mask=brain)
    best = min(best, time.perf_counter() - start)
    best_cpu = min(best_cpu, time.process_time() - cpu)
cbf = np.asarray(result.perfusion_maps.cbf.values)[brain]
import osipy
print(json.dumps({"seconds": best, "cpu_seconds": best_cpu, "version": osipy.__version__,
                  "median_cbf": float(np.median(cbf))}))
"""


def run_osipy(python, series, brain, aif_mask, repeats):
    """osipy's DSC pipeline (oSVD) on the same arrays in ``python``, on the same CPUs."""
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for name, array in (("series", series), ("brain", brain), ("aif_mask", aif_mask)):
            paths.append(str(Path(folder) / f"{name}.npy"))
            np.save(paths[-1], array)
        command = [python, "-c", OSIPY_SCRIPT, *paths, str(TE), str(TR), str(repeats)]
        if shutil.which("taskset") and hasattr(os, "sched_getaffinity"):
            cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
            command = ["taskset", "-c", cpus, *command]
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
        if done.returncode:
            return None, done.stderr.strip().splitlines()[-1:] or ["failed"]
        return json.loads(done.stdout.strip().splitlines()[-1]), []


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default=THREADS, help="BLAS/OpenMP threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--osipy-python", help="a Python >= 3.12 interpreter with osipy")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling table")
    parser.add_argument("--case", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(measure_case(*args.case, args.repeats)))
        return

    series, brain, aif_mask = synthetic_series()
    print(f"series {series.shape} float32, {int(brain.sum())} brain voxels, TR {TR} s, "
          f"TE {TE} s; threads {THREADS}, numpy {np.__version__}, "
          f"CPUs {len(os.sched_getaffinity(0))}")
    print(f"load average {os.getloadavg()[0]:.1f} (wall times are noisy on a loaded machine: "
          "compare the CPU times, user + system of this process)")
    stages = {}
    chain_cpu = np.inf

    def timed_chain():
        nonlocal chain_cpu
        cpu = time.process_time()
        maps = core_chain(series, brain, aif_mask, stages)
        chain_cpu = min(chain_cpu, time.process_time() - cpu)
        return maps

    chain, maps = best_of(timed_chain, args.repeats)
    stages_cpu = stages.pop("cpu")
    peak = traced_peak_mb(lambda: core_chain(series, brain, aif_mask))
    print(f"\ncore chain {chain:.3f} s wall, {chain_cpu:.3f} s CPU (target <= "
          f"{TARGETS_S['chain']} s), numpy peak {peak:.0f} MB above the input (target < "
          f"{MEMORY_TARGET_MB} MB); best stage times, wall and CPU:")
    for name, seconds in stages.items():
        print(f"  {name:<14}{seconds:>8.3f} s{stages_cpu[name]:>8.3f} s")

    floor, floor_cpu, products, single = osvd_floor(maps["fit"], maps["tissue"], args.repeats)
    print(f"\noSVD {stages['osvd_cbf']:.3f} s wall, {stages_cpu['osvd_cbf']:.3f} s CPU; floor "
          f"(its float32 matrix products: Pᵀ Cᵀ of {len(maps['tissue'])} voxels, then "
          f"(columns, undecided voxels) {', '.join(f'({c}, {v})' for c, v in products)}): "
          f"{floor:.3f} s wall, {floor_cpu:.3f} s CPU; ratio {stages['osvd_cbf'] / floor:.2f} "
          f"wall, {stages_cpu['osvd_cbf'] / floor_cpu:.2f} CPU (target <= 2); for scale, one "
          f"(V, T) x (T, 2T) product of all voxels {single:.3f} s")
    volume, _ = best_of(lambda: volume_front_end(series, brain, aif_mask), args.repeats)
    print(f"the nodes' front end (ΔR2* volume, AIF, brain curves) {volume:.3f} s against "
          f"{stages['delta_r2star'] + stages['aif'] + stages['concentration']:.3f} s on the "
          "brain curves")

    timing, _ = best_of(lambda: (bolus_arrival_time(maps["tissue"], maps["times"]),
                                 time_to_peak(maps["tissue"], maps["times"])), args.repeats)
    print(f"bolus arrival + time to peak {timing:.3f} s (target <= {TARGETS_S['timing']} s)")

    if args.osipy_python:
        osipy, errors = run_osipy(args.osipy_python, series, brain, aif_mask, args.repeats)
        if osipy is None:
            print(f"\nosipy failed: {' '.join(errors)}")
        else:
            print(f"\nosipy {osipy['version']} DSCPipeline (oSVD, CPU, no leakage correction) "
                  f"{osipy['seconds']:.3f} s wall, {osipy['cpu_seconds']:.3f} s CPU; core chain "
                  f"{chain:.3f} s wall, {chain_cpu:.3f} s CPU: {osipy['seconds'] / chain:.1f}x "
                  f"wall, {osipy['cpu_seconds'] / chain_cpu:.1f}x CPU (target >= 8x); "
                  "median CBF in the brain: "
                  f"osipy {osipy['median_cbf']:.1f}, core "
                  f"{float(np.median(maps['cbf'])):.1f} (units and scaling differ)")
    else:
        print("\nosipy: skipped: no Python >= 3.12 with osipy (give --osipy-python PATH)")

    if not args.no_scaling:
        scaling_table(args.repeats)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    print(f"process peak resident memory "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
