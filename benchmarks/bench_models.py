"""Benchmark: CPU inference time of each model on one 128 × 128 × 24 × 80 series.

Issue 17, item 4. The series is the phantom of ``bench_participant.py`` (one subject,
128 × 128 × 24 voxels, 80 frames, seed 0; or ``--bids-dir``). Its ΔR2*, AIF (from the
phantom's arterial mask) and area-ratio CBV are computed first (not timed), then each
model's interface runs once as the pipeline runs it (file reading, pre- and
post-processing and writing included), on the CPU with ``--threads`` threads, on a slab
of ``--slices`` slices through the middle of the series (and of its brain mask): every
model's cost is linear in the slices (voxels, strips of slices, or slices each resolved
or denoised on their own), so the times are scaled to the 24 slices of the series. It
prints the wall time and the CPU time of the process (all its threads):

- PHAE (``PHAEInference``): CBF and MTT of every brain voxel;
- stU-Net (``StUNetInference``): CBV from the raw series;
- super-resolution (``SuperResolve``, node-liif, 2× in plane, 4 frames per TR);
- DeepASL (``DenoiseDeltaM``): the denoised mean ΔM (a synthetic ΔM, 1 % of the
  series' baseline image with noise; M0 the baseline image: the time does not depend
  on the values).

    NIPYPE_NO_ET=1 .venv/bin/python benchmarks/bench_models.py [--threads 2] \\
        [--bids-dir DIR] [--slices 4]

The figures are measured on the phantom; read them against the PHAE paper's timings per
patient on a Xeon 8253 (oSVD 11.8 s, Tikhonov 33.6 s, PHAE 8.4 s; docs/performance.md).
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "2")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCHMARKS.parent), str(BENCHMARKS)]

from bench_participant import write_phantom  # noqa: E402

from bids_perfusion import constants  # noqa: E402
from bids_perfusion.dsc.relaxivity import at_field  # noqa: E402
from bids_perfusion.interfaces.aif import ArterialInputFunction  # noqa: E402
from bids_perfusion.interfaces.deepasl import DenoiseDeltaM  # noqa: E402
from bids_perfusion.interfaces.maps import BloodVolume  # noqa: E402
from bids_perfusion.interfaces.phae import PHAEInference  # noqa: E402
from bids_perfusion.interfaces.signal import SignalToDeltaR2Star  # noqa: E402
from bids_perfusion.interfaces.stunet import StUNetInference  # noqa: E402
from bids_perfusion.interfaces.superres import SuperResolve  # noqa: E402

TR, TE, SLICES = 1.5, 0.03, 24


def timed(interface, folder):
    """Wall and CPU seconds (all threads of this process) of ``interface.run()`` in
    ``folder``, and its outputs."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(folder)
    start, cpu = time.perf_counter(), time.process_time()
    result = interface.run(cwd=str(folder))
    return (time.perf_counter() - start, time.process_time() - cpu), result.outputs


def slab(path, n_slices, out):
    """``n_slices`` slices through the middle of the image ``path``, written to ``out``."""
    image = nib.load(path)
    first = (image.shape[2] - n_slices) // 2
    nib.Nifti1Image(np.asarray(image.dataobj)[:, :, first:first + n_slices],
                    image.affine, image.header).to_filename(out)
    return str(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (BLAS: "
                        "OMP_NUM_THREADS, default 2)")
    parser.add_argument("--bids-dir", type=Path, help="a dataset of bench_participant.py")
    parser.add_argument("--slices", type=int, default=4, help="slices timed (of 24)")
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        choices=("PHAE", "stU-Net", "DeepASL", "super-resolution"),
                        help="models timed (default: all)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="bench_models_"))
    bids = args.bids_dir or write_phantom(root)
    perf = bids / "sub-01" / "perf"
    truth = bids / "derivatives" / "phantom-truth" / "sub-01" / "perf"
    series = str(perf / "sub-01_ce-gadolinium_dsc.nii.gz")
    brain = str(truth / "sub-01_label-brain_mask.nii.gz")
    relax = at_field(1.5, "linear").sidecar()
    scaling = {"kh": constants.KH, "rho": constants.RHO_BRAIN, "relaxivity": relax}
    _, full = timed(SignalToDeltaR2Star(in_files=[series], echo_times=[TE],
                                        repetition_time=TR, brain_mask=brain), root / "full")
    _, aif = timed(ArterialInputFunction(
        delta_r2star=full.delta_r2star, brain_mask=brain, frame_times=full.frame_times,
        signal_metadata=full.metadata, relaxivity=relax,
        aif_mask=str(truth / "sub-01_label-arteries_mask.nii.gz")), root / "aif")
    series = slab(series, args.slices, root / "series.nii")
    brain = slab(brain, args.slices, root / "brain.nii")
    _, signal = timed(SignalToDeltaR2Star(in_files=[series], echo_times=[TE],
                                          repetition_time=TR, brain_mask=brain),
                      root / "signal")
    curves = {"delta_r2star": signal.delta_r2star, "brain_mask": brain,
              "aif_tsv": aif.aif_tsv}
    _, cbv = timed(BloodVolume(**curves, **scaling), root / "cbv")
    baseline = nib.load(signal.baseline_image)
    m0 = np.asarray(baseline.dataobj, dtype=np.float32)
    noise = np.random.default_rng(0).normal(0.0, 0.002, m0.shape)
    for name, data in (("m0", m0), ("deltam", 0.01 * m0 * (1.0 + noise)),
                       ("excluded", np.zeros(m0.shape, np.uint8))):
        nib.Nifti1Image(data, baseline.affine).to_filename(root / f"{name}.nii")
    models = {
        "PHAE": PHAEInference(**curves, **scaling, device="cpu"),
        "stU-Net": StUNetInference(in_files=[series], brain_mask=brain, cbv=cbv.cbv,
                                   device="cpu"),
        "DeepASL": DenoiseDeltaM(mean_deltam=str(root / "deltam.nii"),
                                 m0=str(root / "m0.nii"), brain_mask=brain,
                                 excluded_mask=str(root / "excluded.nii"),
                                 method="deepasl"),
        "super-resolution": SuperResolve(in_files=[series], method="node-liif",
                                         repetition_time=TR, device="cpu"),
    }
    figures = {}
    for name, interface in models.items():
        if args.models and name not in args.models:
            continue
        seconds, _ = timed(interface, root / name)
        figures[name] = tuple(value * SLICES / args.slices for value in seconds)
        print(f"{name}: {seconds[0]:.2f} s wall, {seconds[1]:.2f} s CPU on {args.slices} "
              "slices", flush=True)
    print(f"CPU inference per 128 x 128 x 24 x 80 series (phantom; {args.slices} slices "
          f"timed, x {SLICES / args.slices:g}), {args.threads} threads, torch "
          f"{torch.__version__}")
    print(f"{'':<17}{'wall':>8}  {'CPU':>8}")
    for name, (wall, cpu) in figures.items():
        print(f"{name:<17}{wall:8.2f}  {cpu:8.2f} s")
    os.chdir(BENCHMARKS)
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
