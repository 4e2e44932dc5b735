"""CPU against GPU (``--device cuda``) for the classical deconvolution and every model's
inference on subject-sized series (issue 18).

Cases (synthetic data made here, no phantom written; :mod:`bids_perfusion.testing.curves`):

- ``osvd`` (and ``ssvd``, ``csvd``, ``tikhonov`` GCV): a 128 × 128 × 24 × 80 series whose
  brain has 156 000 voxels, the DeconvolutionModel's numpy path on the CPU against
  :func:`~bids_perfusion.dsc.deconvolution_torch.fit_on_device` on the GPU (chunks from
  :func:`~bids_perfusion.nn.device.batch_size`; host-device copies included);
- ``phae``: the PHAE encoder on the same 156 000 brain curves (bundled weights); on the
  CPU, timed on the first ``--phae-cpu-voxels`` (20 000) and scaled to all of them
  (inference is linear in the voxels: fixed batches of ``phae.CPU_BATCH_SIZE`` on the CPU);
- ``stunet``: the stU-Net CBV of the 128 × 128 × 24 × 80 series (preparation included);
- ``superres``: node-liif super-resolution of a small 32 × 32 × 2 × 10 series, × 2 in
  plane and × 4 in time;
- ``deepasl``: DeepASL denoising of a 128 × 128 × 24 mean ΔM.

Each case runs once untimed (warm-up: CUDA context, cuDNN plans, caches; on the CPU on a
small part of the data), then ``--repeats`` timed runs (median; ``--cpu-repeats`` on the
CPU), with ``torch.cuda.synchronize`` before and after each
timed run on the GPU. The CPU runs with torch's and BLAS's default threads (all cores)
unless ``OMP_NUM_THREADS`` says otherwise; the report names the count. Printed: per case
the CPU and GPU seconds, the CPU/GPU ratio and the largest difference of the GPU result
from the CPU one (relative to the CPU result's largest magnitude); without CUDA the GPU
columns say "unmeasured". ``--quick`` shrinks every case (a smoke test of the script).

    python benchmarks/bench_gpu.py [--repeats 3] [--json bench_gpu.json] [--quick]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from bids_perfusion.dsc.deconvolution import DeconvolutionModel  # noqa: E402
from bids_perfusion.dsc.deconvolution_torch import bytes_per_voxel, fit_on_device  # noqa: E402
from bids_perfusion.nn import device as devices  # noqa: E402
from bids_perfusion.testing.curves import brain_curves  # noqa: E402

#: Series shape (x, y, z, T) and brain voxels of the full-size cases, and of --quick.
FULL = {"shape": (128, 128, 24, 80), "brain": 156_000, "superres": (32, 32, 2, 10)}
QUICK = {"shape": (32, 32, 4, 40), "brain": 3_000, "superres": (16, 16, 2, 6)}
DT = 1.5


def _timed(run, data, device, repeats):
    """Median seconds of ``repeats`` runs of ``run(data)`` after one untimed warm-up, and
    the last result. The warm-up runs on all of ``data`` on the GPU (CUDA context, cuDNN
    plans, memory pool) and on a small part of it on the CPU (the CPU path has no state
    to build that depends on the size, and the full size would double the CPU time)."""
    synchronize = torch.cuda.synchronize if torch.device(device).type == "cuda" else None
    run(data if synchronize else _part(data))
    seconds = []
    for _ in range(repeats):
        if synchronize:
            synchronize()
        started = time.perf_counter()
        result = run(data)
        if synchronize:
            synchronize()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def _part(data):
    """A small piece of a case's data for the CPU warm-up: the first 2 % of the voxels
    (curves), or the middle slice (images)."""
    if data.ndim == 2:
        return data[: max(1, len(data) // 50)]
    return _middle_slice(data)


def _middle_slice(volume):
    """The middle slice of (x, y, z, ...) as (x, y, 1, ...)."""
    middle = volume.shape[2] // 2
    return volume[:, :, middle:middle + 1]


def _difference(gpu, cpu):
    gpu, cpu = np.asarray(gpu, dtype=np.float64), np.asarray(cpu, dtype=np.float64)
    return float(np.abs(gpu - cpu).max() / max(np.abs(cpu).max(), 1e-30))


def _brain(shape, voxels):
    """A centred ellipsoid of about ``voxels`` voxels in a grid of ``shape``."""
    centres = [(2 * np.arange(n) + 1) / n - 1 for n in shape]
    grid = np.stack(np.meshgrid(*centres, indexing="ij"))
    radius = (voxels / np.prod(shape) / (np.pi / 6)) ** (1 / 3)
    return (grid**2).sum(axis=0) <= radius**2


def _series(shape, brain, seed=0):
    """A gradient-echo DSC series S = S0 · exp(−TE · r2 · C) of synthetic curves."""
    _aif, tissue, _truth = brain_curves(int(brain.sum()), n_frames=shape[3], dt=DT,
                                        seed=seed)
    concentration = np.zeros(shape, np.float32)
    concentration[brain] = tissue
    return (500.0 * np.exp(-0.03 * 87.0 * concentration)).astype(np.float32)


def deconvolution_cases(size):
    """oSVD (the issue's case) and the other classical methods: numpy on the CPU against
    the torch path on the GPU; the result compared is CBF."""
    aif, tissue, _truth = brain_curves(size["brain"], n_frames=size["shape"][3], dt=DT)
    for method, params in (("osvd", {}), ("ssvd", {}), ("csvd", {}),
                           ("tikhonov", {"criterion": "gcv"})):
        model = DeconvolutionModel(aif, DT, method, **params)

        def on(device, model=model):
            if device == "cpu":
                return lambda curves: model.fit(curves).cbf
            chunk = devices.batch_size(device, bytes_per_voxel(model), model.chunk_size)
            return lambda curves: fit_on_device(model, curves, device=device,
                                                chunk_size=chunk).cbf

        label = method if method != "tikhonov" else "tikhonov (GCV)"
        yield label, f"{size['brain']} voxels × {size['shape'][3]} frames", tissue, on


def phae_case(size):
    from bids_perfusion.nn import phae

    aif, tissue, _truth = brain_curves(size["brain"], n_frames=size["shape"][3], dt=DT)
    times = np.arange(size["shape"][3]) * DT

    def on(device):
        model, _card = phae.load_model(device=device)
        batch = devices.batch_size(device, devices.INFERENCE_BYTES["phae"] * len(times),
                                      phae.CPU_BATCH_SIZE)
        return lambda curves: phae.estimate_maps(model, curves, aif, times, batch_size=batch,
                                                 device=device)["mtt"]

    return "phae", f"{size['brain']} voxels × {size['shape'][3]} frames", tissue, on


def stunet_case(size):
    from bids_perfusion.nn import cbv_models

    brain = _brain(size["shape"][:3], size["brain"])
    series = _series(size["shape"], brain)

    def on(device):
        model, preprocessing, _card = cbv_models.load_model(device=device)
        values = preprocessing.strip_width * preprocessing.size * size["shape"][3]
        batch = devices.batch_size(device, devices.INFERENCE_BYTES["stunet"] * values, 64)
        return lambda dsc: cbv_models.predict_standardised(
            model, preprocessing, dsc, brain if dsc.shape == series.shape
            else _middle_slice(brain), batch_size=batch, device=device)[1]

    return "stunet", " × ".join(map(str, size["shape"])), series, on


def superres_case(size):
    from bids_perfusion.nn import superres, superres_inference

    shape = size["superres"]
    series = _series(shape, _brain(shape[:3], int(0.4 * np.prod(shape[:3]))))

    def on(device):
        model, card = superres.load_model(device=device)
        queries = devices.batch_size(device, devices.INFERENCE_BYTES["superres"], 65536)
        baseline = card["configuration"]["degradation"]["baseline_frames"]
        return lambda dsc: superres_inference.super_resolve(model, dsc, 2.0, 4, baseline,
                                                            device=device,
                                                            max_queries=queries)

    return ("superres", " × ".join(map(str, shape)) + " → × 2 in plane, × 4 in time",
            series, on)


def deepasl_case(size):
    from bids_perfusion.nn import deepasl

    shape = size["shape"][:3]
    delta_m = np.random.default_rng(0).normal(1.0, 0.3, shape) * _brain(shape, size["brain"])

    def on(device):
        model, _card = deepasl.load_model("deepasl")
        slices = devices.batch_size(device, devices.INFERENCE_BYTES["deepasl"]
                                    * shape[0] * shape[1], 8)
        return lambda volume: deepasl.denoise(model, volume, 0.05, device, slices)

    return "deepasl", " × ".join(map(str, shape)), delta_m, on


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpu-repeats", type=int, default=1,
                        help="timed CPU runs (the CPU is slow: 1 by default)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--phae-cpu-voxels", type=int, default=20_000,
                        help="time PHAE on the CPU on this many of the curves and scale the "
                             "time to all of them (0: all; on 1 CPU thread all 156 000 take "
                             "about 15 min)")
    parser.add_argument("--cases", nargs="+",
                        default=["deconvolution", "phae", "deepasl", "superres", "stunet"])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    gpu = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
        else None
    print(f"python {platform.python_version()}, torch {torch.__version__}, numpy "
          f"{np.__version__}; CPU: {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}; GPU: "
          f"{devices.describe(gpu) if gpu else 'none (GPU unmeasured)'}", flush=True)
    builders = {"deconvolution": deconvolution_cases,
                "phae": lambda s: [phae_case(s)], "stunet": lambda s: [stunet_case(s)],
                "superres": lambda s: [superres_case(s)],
                "deepasl": lambda s: [deepasl_case(s)]}
    rows = []
    header = f"{'case':16} {'size':44} {'CPU s':>9} {'GPU s':>11} {'CPU/GPU':>10} {'max diff':>9}"
    print(header, flush=True)
    for name in args.cases:
        for label, description, data, on in builders[name](size):
            cpu_data = data
            if label == "phae" and 0 < args.phae_cpu_voxels < len(data):
                cpu_data = data[:args.phae_cpu_voxels]
                description += f" (CPU: {len(cpu_data)}, time scaled)"
            cpu_seconds, cpu_result = _timed(on("cpu"), cpu_data, "cpu", args.cpu_repeats)
            cpu_seconds *= len(data) / len(cpu_data)
            row = {"case": label, "size": description, "cpu_s": round(cpu_seconds, 4),
                   "gpu_s": None, "ratio": None, "max_difference": None}
            if gpu is not None:
                run = on(gpu)
                gpu_seconds, gpu_result = _timed(run, data, gpu, args.repeats)
                if cpu_data is not data:  # PHAE normalises by a quantile of the curves given
                    gpu_result = run(cpu_data)
                row.update(gpu_s=round(gpu_seconds, 4), ratio=round(cpu_seconds / gpu_seconds, 1),
                           max_difference=_difference(gpu_result, cpu_result))
            rows.append(row)
            print(f"{label:16} {description:44} {row['cpu_s']:9.3f} "
                  + (f"{row['gpu_s']:11.4f} {row['ratio']:10.1f} {row['max_difference']:9.1e}"
                     if gpu is not None else f"{'unmeasured':>11} {'':>10} {'':>9}"),
                  flush=True)
            if args.json:  # after every case, so that an interrupted run keeps its figures
                args.json.write_text(json.dumps({
                    "torch": torch.__version__, "cpu_cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(),
                    "gpu": devices.describe(gpu) if gpu else None, "quick": args.quick,
                    "repeats": {"cpu": args.cpu_repeats, "gpu": args.repeats},
                    "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
