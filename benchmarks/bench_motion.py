"""Benchmark of head-motion correction (digital phantom): time and peak memory of the
realignment of a 128×128×24 series of 80 frames on 2 cores, its accuracy against the
known motion, and dipy's mutual-information registration on the same frames.

The series is a DSC-like digital phantom: the MNI152 grey/white matter and CSF fractions
that nilearn ships, on a 220 mm × 132 mm grid, with a bolus that lowers grey matter by
35 %, white matter by 15 % and CSF not at all after frame 12 (so the intensity changes
differently in each tissue), moved by the phantom's rigid motion of amplitude 2
(:mod:`bids_perfusion.phantom.motion`), with Gaussian noise at SNR 50. The demo's grid
(64×64×16, 60 frames) is timed too. ``realign_dsc`` (reference: the mean of the
pre-bolus frames, realigned once; every frame registered coarse to fine and resampled
once, cubic B-spline) is timed best of ``--repeats``; dipy's ``AffineRegistration``
(mutual information, 32 bins, rigid, levels 4/2/1 at 100/10/5 iterations: its tutorial's
settings, with a smaller last level) on ``--dipy-frames`` frames, extrapolated to the
series. BLAS is limited to 2 threads. Wall time is best of ``--repeats``; CPU time
(process time, one run) is printed too, as it depends less on a loaded machine.

    NIPYPE_NO_ET=1 .venv/bin/python benchmarks/bench_motion.py
"""

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "2"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from timers import best_of, traced_peak_mb  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from bids_perfusion.motion import realign_dsc  # noqa: E402
from bids_perfusion.phantom.anatomy import make_grid, tissue_fractions  # noqa: E402
from bids_perfusion.phantom.motion import motion_trajectory, move_series  # noqa: E402

#: Drop of the signal at the bolus peak, per tissue (GM, WM, CSF), and its frames.
DROP, BOLUS_START, BOLUS_FRAMES = (0.35, 0.15, 0.0), 12, 10


def moving_series(matrix, n_frames, seed=0):
    """``(series, affine, true parameters)`` of the module's moving DSC-like phantom."""
    grid = make_grid(matrix, 220.0, 132.0)
    fractions = tissue_fractions(grid)
    baseline = np.tensordot([800.0, 700.0, 1000.0], fractions, axes=1)
    frames = np.arange(n_frames)
    shape = np.clip((frames - BOLUS_START) / BOLUS_FRAMES, 0.0, None)
    bolus = shape * np.exp(1.0 - shape)  # gamma-variate-like, 1 at its peak
    drop = np.tensordot(DROP, fractions, axes=1)
    series = baseline[..., None] * (1.0 - drop[..., None] * bolus)
    rng = np.random.default_rng(seed)
    parameters = motion_trajectory(rng, n_frames, 2.0)
    moved = move_series(series, grid.affine, parameters)
    moved += rng.normal(0.0, 800.0 / 50.0, moved.shape).astype(np.float32)
    return moved, grid.affine, parameters


def dipy_seconds_per_frame(series, affine, frames):
    """Seconds per frame of dipy's rigid mutual-information registration."""
    from dipy.align.imaffine import AffineRegistration, MutualInformationMetric
    from dipy.align.transforms import RigidTransform3D

    reference = series[..., 2:10].mean(axis=-1)
    registration = AffineRegistration(metric=MutualInformationMetric(nbins=32),
                                      level_iters=[100, 10, 5], sigmas=[3.0, 1.0, 0.0],
                                      factors=[4, 2, 1], verbosity=0)
    start = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for index in range(frames):
            registration.optimize(reference, series[..., 20 + index], RigidTransform3D(),
                                  None, static_grid2world=affine, moving_grid2world=affine)
    return (time.process_time() - start) / frames


def report(label, matrix, n_frames, repeats, dipy_frames):
    series, affine, truth = moving_series(matrix, n_frames)
    seconds, corrected = best_of(lambda: realign_dsc([series], affine), repeats)
    cpu = time.process_time()
    realign_dsc([series], affine)
    cpu = time.process_time() - cpu
    peak = traced_peak_mb(lambda: realign_dsc([series], affine))
    expected = truth - truth[list(corrected.reference_frames)].mean(axis=0)
    error = np.abs(corrected.realignment.parameters - expected)
    print(f"{label}: {matrix[0]}x{matrix[1]}x{matrix[2]} x {n_frames} frames (digital phantom)")
    print(f"  realign_dsc      {seconds:7.2f} s ({1000 * seconds / n_frames:5.1f} ms/frame), "
          f"{cpu:.2f} s CPU, peak {peak:.0f} MiB traced (series "
          f"{series.nbytes / 2**20:.0f} MiB)")
    print(f"  max error        {error[:, :3].max():.3f} mm, "
          f"{np.rad2deg(error[:, 3:].max()):.3f} degrees "
          f"(true motion up to {np.abs(truth[:, :3]).max():.2f} mm, "
          f"{np.rad2deg(np.abs(truth[:, 3:]).max()):.2f} degrees)")
    if dipy_frames:
        per_frame = dipy_seconds_per_frame(series, affine, dipy_frames)
        print(f"  dipy MI (rigid)  {per_frame * n_frames:7.2f} s CPU extrapolated "
              f"({1000 * per_frame:5.0f} ms/frame over {dipy_frames} frames, no resampling)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dipy-frames", type=int, default=3,
                        help="frames registered with dipy (0: skip)")
    args = parser.parse_args(argv)
    report("target", (128, 128, 24), 80, args.repeats, args.dipy_frames)
    report("demo", (64, 64, 16), 60, args.repeats, args.dipy_frames)


if __name__ == "__main__":
    main()
