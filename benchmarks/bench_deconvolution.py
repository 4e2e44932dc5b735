"""Benchmark of the vectorised DSC deconvolution against the per-voxel reference
(:func:`bids_perfusion.testing.references.deconvolve`).

Synthetic data: a gamma-variate AIF and exponential residues (CBF 10-80 mL/100 mL/min,
MTT 2-8 s), 150 000 voxels × 80 frames at Δt = 1.5 s, Gaussian noise of SD 2 % of the
largest tissue concentration, float32. BLAS is limited to 2 threads. For each method it
prints the best of three wall times, the peak of the memory numpy allocates during the fit
(tracemalloc; the input is allocated before), the per-voxel reference time on a subset
extrapolated to all voxels, their ratio, and the median relative CBF error against the
truth (the known underestimation of truncated SVD in noise); then the process's peak
resident memory.

    NIPYPE_NO_ET=1 .venv/bin/python benchmarks/bench_deconvolution.py
"""

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "2"

import argparse  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from timers import best_of, traced_peak_mb  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from bids_perfusion.dsc import kinetics  # noqa: E402
from bids_perfusion.dsc.deconvolution import DeconvolutionModel  # noqa: E402
from bids_perfusion.testing.references import deconvolve  # noqa: E402

METHODS = [
    ("ssvd", {}),
    ("csvd", {}),
    ("osvd", {}),
    ("tikhonov", {"criterion": "gcv"}),
    ("tikhonov", {"criterion": "lcurve"}),
]
TARGETS_S = {"ssvd": 0.5, "osvd": 2.0}
MEMORY_TARGET_MB = 2048


def synthetic_data(n_voxels, n_frames, dt, seed):
    """AIF (T,), float32 tissue curves (V, T) and the true CBF in mL/100 mL/min (V,)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) * dt
    aif = 8.0 * kinetics.gamma_variate(t, t0=15.0, alpha=3.0, beta=1.5)
    cbf = rng.uniform(10, 80, n_voxels)
    mtt = rng.uniform(2, 8, n_voxels)
    tissue = np.empty((n_voxels, n_frames), dtype=np.float32)
    for start in range(0, n_voxels, 10_000):  # simulation only, in blocks to bound memory
        block = slice(start, start + 10_000)
        k = cbf[block, None] / 6000 * kinetics.residue_exponential(t, mtt[block, None])
        tissue[block] = kinetics.convolve(np.broadcast_to(aif, k.shape), k, dt)
    tissue += rng.normal(0, 0.02 * tissue.max(), tissue.shape).astype(np.float32)
    return aif, tissue, cbf


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=150_000)
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--dt", type=float, default=1.5)
    parser.add_argument("--reference-voxels", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    aif, tissue, true_cbf = synthetic_data(args.voxels, args.frames, args.dt, args.seed)
    subset = tissue[: args.reference_voxels].astype(np.float64)
    print(
        f"{args.voxels} voxels x {args.frames} frames, dt {args.dt} s, float32, "
        f"BLAS threads {os.environ['OPENBLAS_NUM_THREADS']}, numpy {np.__version__}"
    )
    header = (
        f"{'method':<17}{'time s':>8}{'target':>8}{'peak MB':>9}"
        f"{'reference s':>13}{'ratio':>8}{'CBF bias':>10}"
    )
    print(header)
    for method, params in METHODS:
        model = DeconvolutionModel(aif, args.dt, method, **params)
        elapsed, fit = best_of(lambda model=model: model.fit(tissue).cbf)
        peak = traced_peak_mb(lambda model=model: model.fit(tissue).cbf)
        reference, _ = best_of(
            lambda m=method, p=params: deconvolve(aif, args.dt, subset, m, **p),
            repeats=1,
        )
        extrapolated = reference * args.voxels / len(subset)
        bias = np.median(fit / true_cbf - 1)
        name = method + (f"-{params['criterion']}" if params else "")
        target = f"<{TARGETS_S[method]:g}" if method in TARGETS_S else "-"
        print(
            f"{name:<17}{elapsed:>8.3f}{target:>8}{peak:>9.0f}"
            f"{extrapolated:>13.1f}{extrapolated / elapsed:>8.0f}{bias:>+10.1%}"
        )
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"process peak resident memory {max_rss_mb:.0f} MB (target < {MEMORY_TARGET_MB} MB); "
        f"reference timed on {len(subset)} voxels in float64 and extrapolated"
    )


if __name__ == "__main__":
    main()
