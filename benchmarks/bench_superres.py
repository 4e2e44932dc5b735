"""Spatio-temporal super-resolution of DSC on held-out phantom subjects: the comparison of
Lee et al. (ISMRM 2024, abstract 0658), measured on the phantom.

Each held-out cohort is a phantom generated here (when its folder is missing) with seeds
and acquisitions of its own: by default seed 202 at the training acquisition (TR 1.0 s,
80 frames, 64 × 64 × 16) and seed 303 at TR 0.75 s (100 frames), a frame interval outside
the training range (the bundled weights were trained on seed 101 at TR 1.0 s; their card
says so); two subjects each (an LGG and an HGG), their 6 central slices (``--n-subjects``,
``--slices``: the networks' inference dominates the run time). Every native series (the
high-resolution reference, HR) is under-sampled as in training
(:func:`bids_perfusion.nn.superres_data.make_pair` with the degradation of the model
card: 2 × 2 in plane by k-space truncation, every 4th frame) and brought back to the HR
grid (:mod:`bids_perfusion.nn.superres_inference`) by

- ``linear``: bilinear in plane + linear in time (the slices are not under-sampled, so
  this is the trilinear + linear baseline of the abstract);
- ``cubic``: cubic B-spline in plane + cubic spline in time;
- ``ablation``: the same encoder and LIIF decoder with the temporal feature interpolated
  linearly between the two frames' features (``SuperResConfig(temporal="linear")``,
  VideoINR-style; weights given by ``--ablation-weights``);
- ``node-liif``: the bi-directional neural ODE + LIIF model (``--weights``, default the
  bundled weights).

Image metrics over the phantom's brain mask, all frames: NMSE = Σ(x − y)² / Σy² (%),
PSNR = 10 log₁₀(R² / MSE) (dB, R the largest HR intensity in the brain) and SSIM
(``skimage.metrics.structural_similarity`` of every slice and frame, 7 × 7 windows,
``data_range`` R, averaged over brain pixels). Perfusion: the public DSC core
(:mod:`bids_perfusion.dsc`) on each series: ΔR2* with the baseline window that the
pipeline's detection finds on the HR series' mean brain curve, for every method (run on
the cubic spline's series the detection fails: the spline rings after the phantom's
steady-state transient, 401 → 272 over the first frames, and leaves no flat baseline),
the AIF as the mean ΔR2* over the
phantom's arterial voxels (as the pipeline does with a
given arterial mask), concentrations with the relaxivities of the sidecar's field, oSVD
CBF and first-pass area-ratio CBV; errors are the mean absolute difference over the brain
(arteries excluded) divided by the mean reference value (%), against the maps of the HR
series (what super-resolution should recover) and against the phantom's ground truth
(the HR series' own error is the floor). Inference seconds per series and peak memory
(growth of the resident set above its level before the method, sampled every 2 ms; peak
CUDA allocation on a GPU) on ``--device`` with ``OMP_NUM_THREADS`` threads (1 by default).

``--timing REPEATS`` only times the inference (CPU seconds of one 128 × 128 slice, scaled
to a 128 × 128 × 24 × 80 series; docs/superres.md, *Inference time*).

Printed: per cohort, mean (SD) over subjects of every metric and method, then the ratio of
each method's NMSE and CBV/CBF errors to those of linear interpolation. ``--out`` keeps
the per-subject values (JSON). The command of the table in ``docs/superres.md``:

    NIPYPE_NO_ET=1 .venv/bin/python benchmarks/bench_superres.py \\
        --work-dir /tmp/superres-bench --ablation-weights ABLATION/superres.safetensors
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from bids_perfusion.dsc import (  # noqa: E402
    DeconvolutionModel,
    aif_from_mask,
    at_field,
    blood_concentration,
    bolus_end,
    cbf_from_fit,
    cbv_area_ratio,
    series_to_delta_r2star,
    signal_to_delta_r2star,
    tissue_concentration,
)
from bids_perfusion.errors import InputDataError  # noqa: E402
from bids_perfusion.phantom.bids import TRUTH  # noqa: E402

#: Default held-out cohorts: name -> (seed, TR s, frames, baseline frames).
COHORTS = {"tr1.0-seed202": (202, 1.0, 80, 16), "tr0.75-seed303": (303, 0.75, 100, 20)}
METHODS = ("linear", "cubic", "ablation", "node-liif")
LABELS = {"native": "native HR", "linear": "bilinear + linear", "cubic": "cubic spline",
          "ablation": "ablation (linear features)", "node-liif": "neural ODE + LIIF"}
IMAGE_METRICS = ("NMSE %", "PSNR dB", "SSIM")
MAP_METRICS = ("CBV vs HR %", "CBF vs HR %", "CBV vs truth %", "CBF vs truth %")
COST_METRICS = ("seconds", "peak MiB")


class PeakMemory:
    """Peak growth of the resident set (MiB) while the ``with`` block runs, sampled from
    ``/proc/self/statm`` every ``interval`` s; on CUDA, also the peak allocation."""

    def __init__(self, device="cpu", interval=0.002):
        self.cuda = str(device).startswith("cuda")
        self.interval, self.page = interval, os.sysconf("SC_PAGE_SIZE") / 2 ** 20

    def _rss(self):
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self.page

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self):
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.before = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.cuda_mib = torch.cuda.max_memory_allocated() / 2 ** 20
        self._stop.set()
        self._thread.join()
        self.growth = max(self.peak, self._rss()) - self.before
        return False


def make_cohort(root, seed, tr, n_frames, baseline_frames, n_subjects):
    """Write a DSC-only phantom cohort (alternating LGG/HGG) unless ``root`` holds one."""
    from bids_perfusion.phantom import PhantomConfig, write_dataset

    if not (Path(root) / "dataset_description.json").is_file():
        grades = tuple(("LGG", "HGG")[i % 2] for i in range(n_subjects))
        config = PhantomConfig(grades=grades, seed=seed, grade_ranges="separated").with_(
            dsc={"tr": tr, "n_frames": n_frames, "baseline_frames": baseline_frames},
            asl=None)
        write_dataset(root, config)
    return sorted(p.name[4:] for p in Path(root).glob("sub-*") if p.is_dir())


def load_subject(root, subject, n_slices=0):
    """Series (x, y, z, T), sidecar, brain and arterial masks and the true CBV and CBF, of
    the ``n_slices`` central slices (0: all)."""
    perf = Path(root) / f"sub-{subject}" / "perf"
    truth = Path(root) / TRUTH / f"sub-{subject}" / "perf"

    def image(folder, name):
        data = np.asarray(nib.load(folder / f"sub-{subject}_{name}.nii.gz").dataobj)
        first = max((data.shape[2] - n_slices) // 2, 0)
        return data[:, :, first:first + n_slices] if n_slices else data

    return {"series": image(perf, "ce-gadolinium_dsc").astype(np.float32),
            "sidecar": json.loads((perf / f"sub-{subject}_ce-gadolinium_dsc.json").read_text()),
            "brain": image(truth, "label-brain_mask") > 0,
            "arteries": image(truth, "label-arteries_mask") > 0,
            "cbv": image(truth, "desc-truth_cbv").astype(np.float64),
            "cbf": image(truth, "desc-truth_cbf").astype(np.float64)}


def perfusion_maps(series, dt, sidecar, brain, arteries, window=None):
    """oSVD CBF (mL/100 g/min) and area-ratio CBV (mL/100 g) of a series at frame interval
    ``dt`` by the public DSC core, the AIF over the given arterial voxels, and the baseline
    window used: found on the series' mean brain curve when ``window`` is None (the HR
    series), else the given ``(start, stop)`` frames."""
    relax = at_field(sidecar["MagneticFieldStrength"])
    echo_time = sidecar["EchoTime"]
    if window is None:
        delta, *window = series_to_delta_r2star([series], [echo_time], brain)
    else:
        start, stop = window
        s0 = series[..., start:stop].mean(axis=-1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = signal_to_delta_r2star(series[..., start:], s0, echo_time)
        delta = np.where(brain[..., None] & np.isfinite(delta), delta, 0).astype(np.float32)
    aif = blood_concentration(aif_from_mask(delta, arteries).curve, relax.blood_linear,
                              relax.blood_quadratic)
    tissue = tissue_concentration(delta, relax.tissue)
    cbf = cbf_from_fit(DeconvolutionModel(aif, dt, "osvd").fit(tissue, mask=brain))
    end = bolus_end(tissue[brain].mean(axis=0))
    frame_times = np.arange(delta.shape[-1]) * dt
    cbv = np.where(brain, cbv_area_ratio(tissue[..., :end], aif[:end], frame_times[:end]), 0)
    return {"cbv": cbv, "cbf": np.where(brain, cbf, 0)}, tuple(window)


def image_metrics(series, reference, brain):
    """NMSE (%), PSNR (dB) and SSIM of a series against the HR series over the brain."""
    from skimage.metrics import structural_similarity

    x, y = series[brain], reference[brain]
    data_range = float(y.max())
    mse = float(np.mean((x - y) ** 2))
    # every slice and frame is a channel of one 2-D SSIM: (X, Y, Z·T)
    shape = (*series.shape[:2], -1)
    _mean, ssim_map = structural_similarity(
        series.reshape(shape), reference.reshape(shape), data_range=data_range,
        channel_axis=-1, full=True)
    ssim = ssim_map.reshape(series.shape)[brain].mean()
    return {"NMSE %": 100 * float(np.sum((x - y) ** 2) / np.sum(y ** 2)),
            "PSNR dB": 10 * np.log10(data_range ** 2 / mse), "SSIM": float(ssim)}


def relative_error(estimate, reference, mask):
    """Mean |estimate − reference| over ``mask`` divided by the mean reference (%)."""
    return 100 * float(np.mean(np.abs(estimate[mask] - reference[mask]))
                       / np.mean(np.abs(reference[mask])))


def reconstruct(method, low, degradation, models, device, max_queries):
    """The HR-grid series of one method from the LR series (scanner units)."""
    from bids_perfusion.nn.superres_inference import interpolate, super_resolve

    if method in ("linear", "cubic"):
        return interpolate(low, degradation.space, degradation.time, method)
    return super_resolve(models[method], low, degradation.space, degradation.time,
                         degradation.baseline_frames, device, max_queries)


def evaluate_subject(data, degradation, models, cards, device, max_queries):
    """Per-method metrics of one subject (dict method -> metric -> value)."""
    from bids_perfusion.nn.superres_data import make_pair

    pair = make_pair(data["series"], degradation)
    low = pair.low * pair.scale
    frames = degradation.time * (low.shape[-1] - 1) + 1
    native = pair.high[..., :frames] * pair.scale
    rows, cols = native.shape[:2]
    brain, arteries = data["brain"][:rows, :cols], data["arteries"][:rows, :cols]
    tissue = brain & ~arteries
    truth = {key: data[key][:rows, :cols] for key in ("cbv", "cbf")}
    dt = float(data["sidecar"]["RepetitionTime"])
    reference, window = perfusion_maps(native, dt, data["sidecar"], brain, arteries)
    results = {"native": {f"{key.upper()} vs truth %": relative_error(
        reference[key], truth[key], tissue) for key in ("cbv", "cbf")}}
    for method in METHODS:
        if method in ("linear", "cubic") or method in models:
            with PeakMemory(device) as memory:
                tic = time.perf_counter()
                series = reconstruct(method, low, degradation, models, device, max_queries)
                seconds = time.perf_counter() - tic
            maps, _ = perfusion_maps(series, dt, data["sidecar"], brain, arteries, window)
            row = {**image_metrics(series, native, brain), "seconds": seconds,
                   "peak MiB": getattr(memory, "cuda_mib", memory.growth)}
            for key in ("cbv", "cbf"):
                row[f"{key.upper()} vs HR %"] = relative_error(maps[key], reference[key],
                                                               tissue)
                row[f"{key.upper()} vs truth %"] = relative_error(maps[key], truth[key],
                                                                  tissue)
            if method in models:
                row.update(pipeline_checks(low, series, degradation, data["sidecar"],
                                           cards[method]))
            results[method] = row
    return results


def pipeline_checks(low, series, degradation, sidecar, card):
    """What the pipeline's ``SuperResolve`` would say of this input: the NMSE of the
    super-resolved frames at the acquired times against the acquired (LR) frames, whether
    it exceeds ``constants.SUPERRES_MAX_NMSE`` (the run is refused), and the input's
    values outside the card's ``training_ranges`` (``OutsideTrainingRanges``: the
    acquired frame interval and frames are those of the LR input, 4 × the HR TR)."""
    from bids_perfusion.constants import SUPERRES_MAX_NMSE
    from bids_perfusion.nn.superres_inference import acquired_frames_nmse
    from bids_perfusion.nn.training_ranges import outside_ranges

    nmse = acquired_frames_nmse(low, series, degradation.time)
    acquisition = {"RepetitionTime": degradation.time * float(sidecar["RepetitionTime"]),
                   "Frames": low.shape[-1], "EchoTime": float(sidecar["EchoTime"]),
                   "MagneticFieldStrength": float(sidecar["MagneticFieldStrength"])}
    return {"acquired NMSE": nmse, "refused": float(nmse > SUPERRES_MAX_NMSE),
            "outside": outside_ranges(acquisition, card.get("training_ranges", {}))}


def table(records, title):
    """Mean (SD) over subjects of every metric (rows: methods), then ratios to linear."""
    methods = [m for m in ("native", *METHODS) if m in records[0]["results"]]
    metrics = (*IMAGE_METRICS, *MAP_METRICS, *COST_METRICS)
    width = 16
    lines = [f"{title}: {len(records)} subjects (measured on the phantom)",
             f"{'method':28}" + "".join(f"{m:>{width}}" for m in metrics)]
    means = {}
    for method in methods:
        cells = []
        for metric in metrics:
            values = [r["results"][method][metric] for r in records
                      if metric in r["results"][method]]
            if not values:
                cells.append(f"{'':>{width}}")
                continue
            means[method, metric] = np.mean(values)
            digits = 3 if metric == "SSIM" else 1 if metric == "seconds" else 2
            cell = f"{np.mean(values):.{digits}f} ({np.std(values):.{digits}f})"
            cells.append(f"{cell:>{width}}")
        lines.append(f"{LABELS[method]:28}" + "".join(cells))
    ratio_metrics = ("NMSE %", *MAP_METRICS[:2])
    lines.append("ratio to bilinear + linear: " + ", ".join(ratio_metrics))
    for method in methods:
        if method == "native" or method == "linear":
            continue
        lines.append(f"  {LABELS[method]:26}" + "".join(
            f"{means[method, m] / means['linear', m]:>{width}.2f}" for m in ratio_metrics))
    return "\n".join(lines)


def time_series_inference(model, device, max_queries, repeats, shape=(128, 128, 24, 80)):
    """CPU seconds (this process, all threads; best of ``repeats``) of ``super_resolve``
    at 2× in plane and 4× in time on one slice of three frames of ``shape``'s in-plane
    size (9 output frames: a pair of 4 and the last pair of 5), and the same scaled to a
    whole series of ``shape`` (× its output frames / 9). The cost does not depend on the
    content (smooth random images here)."""
    from scipy import ndimage

    from bids_perfusion.nn.superres_inference import output_shape, super_resolve

    rng = np.random.default_rng(0)
    series = ndimage.gaussian_filter(rng.random((*shape[:2], 1, 3)), (2, 2, 0, 1))
    series = (300 + 900 * (series - series.min()) / np.ptp(series)).astype(np.float32)
    best = np.inf
    for _ in range(repeats):
        cpu = time.process_time()
        super_resolve(model, series, 2, 4, device=device, max_queries=max_queries)
        best = min(best, time.process_time() - cpu)
    out = output_shape(shape, 2, 4)
    return best, best * out[2] * out[3] / 9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path("superres-bench"),
                        help="folder of the held-out cohorts (generated when missing)")
    parser.add_argument("--cohorts", nargs="+", metavar="SEED:TR:FRAMES:BASELINE",
                        help="held-out cohorts (default: "
                             + " ".join(":".join(map(str, c)) for c in COHORTS.values()) + ")")
    parser.add_argument("--datasets", nargs="+", metavar="NAME=DIR", default=[],
                        help="existing phantom datasets evaluated instead of the cohorts "
                             "generated here (e.g. the v2 population of "
                             "bids-perfusion-phantom --population; docs/superres.md)")
    parser.add_argument("--n-subjects", type=int, default=2, help="subjects per cohort")
    parser.add_argument("--slices", type=int, default=6,
                        help="central slices of every series evaluated (0: all)")
    parser.add_argument("--weights", type=Path, default=None,
                        help="neural ODE + LIIF weights (default: the bundled weights)")
    parser.add_argument("--ablation-weights", type=Path, default=None,
                        help="weights of the ablation (temporal 'linear'); without them "
                             "the ablation is not run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-queries", type=int, default=None,
                        help="queries decoded at once (bounds the memory; default "
                             "nn.superres.CPU_MAX_QUERIES)")
    parser.add_argument("--out", type=Path, help="per-subject results (JSON)")
    parser.add_argument("--timing", type=int, metavar="REPEATS", default=0,
                        help="only time the inference on one 128 x 128 slice (best of "
                             "REPEATS) and scale it to a 128 x 128 x 24 x 80 series "
                             "(issue 17; docs/superres.md, Inference time)")
    args = parser.parse_args(argv)

    import torch

    from bids_perfusion.nn import superres
    from bids_perfusion.nn.superres_data import Degradation

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    models, cards = {}, {}
    for method, path in (("node-liif", args.weights), ("ablation", args.ablation_weights)):
        if method == "ablation" and path is None:
            continue
        models[method], cards[method] = superres.load_model(path, args.device)
        expected = "ode" if method == "node-liif" else "linear"
        if cards[method]["configuration"].get("temporal", "ode") != expected:
            parser.error(f"{path}: the card's temporal model is not {expected!r}")
    if args.timing:
        one, series = time_series_inference(models["node-liif"], args.device,
                                            args.max_queries, args.timing)
        print(f"super-resolution 2x in plane, 4x in time, {torch.get_num_threads()} "
              f"thread(s): {one:.2f} CPU s for one 128 x 128 slice of 3 frames (9 output "
              f"frames of 256 x 256); {series:.0f} CPU s per 128 x 128 x 24 x 80 series "
              f"(x 7608 / 9 output frames)")
        return
    degradation = Degradation(**cards["node-liif"]["configuration"]["degradation"])
    cohorts = ({f"tr{c[1]}-seed{c[0]}": c for c in
                (tuple(float(v) if i == 1 else int(v) for i, v in enumerate(s.split(":")))
                 for s in args.cohorts)} if args.cohorts else COHORTS)
    shas = ", ".join(f"{m} sha256 {c['sha256'][:12]}" for m, c in cards.items())
    print(f"weights: {shas}; "
          f"degradation {degradation}; device {args.device}, "
          f"{torch.get_num_threads()} thread(s)", flush=True)
    if args.datasets:
        cohorts = {name: (None, None, None, None) for name in
                   (item.split("=", 1)[0] for item in args.datasets)}
        roots = {name: Path(path) for name, path in
                 (item.split("=", 1) for item in args.datasets)}
    everything = {}
    for name, (seed, tr, n_frames, baseline) in cohorts.items():
        records = []
        if args.datasets:
            root = roots[name]
            subjects = sorted(p.name[4:] for p in root.glob("sub-*") if p.is_dir())
        else:
            root = args.work_dir / name
            subjects = make_cohort(root, seed, tr, n_frames, baseline, args.n_subjects)
        for subject in subjects[:args.n_subjects]:
            tic = time.perf_counter()
            try:
                results = evaluate_subject(load_subject(root, subject, args.slices),
                                           degradation, models, cards, args.device,
                                           args.max_queries)
            except InputDataError as error:  # refused by the DSC core: said, not averaged
                print(f"  {name} sub-{subject}: refused by the DSC core: {error}", flush=True)
                continue
            records.append({"subject": subject, "results": results})
            checks = results["node-liif"]
            sidecar = json.loads(next((root / f"sub-{subject}" / "perf").glob(
                "*_dsc.json")).read_text())
            print(f"  {name} sub-{subject} (TR {sidecar['RepetitionTime']} s, "
                  f"TE {sidecar['EchoTime']} s, {sidecar['MagneticFieldStrength']} T): "
                  f"{time.perf_counter() - tic:.0f} s; node-liif acquired-frames NMSE "
                  f"{checks['acquired NMSE']:.2e}"
                  f"{' (refused by the pipeline)' if checks['refused'] else ''}; outside "
                  f"training ranges: {'; '.join(checks['outside']) or 'none'}", flush=True)
        everything[name] = records
        acquisition = (f"{root}" if args.datasets else
                       f"seed {seed}, TR {tr} s, {n_frames} frames")
        print(table(records, f"{name} ({acquisition}; "
                             f"inputs every {degradation.time}th frame, "
                             f"{degradation.space}x{degradation.space} in plane)"), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"cards": {m: c["sha256"] for m, c in cards.items()},
                                        "cohorts": everything}, indent=1))


if __name__ == "__main__":
    main()
