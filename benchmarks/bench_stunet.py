"""Table 1 of the stU-Net paper on a held-out phantom cohort, and stU-Net inference speed.

For every test subject (a phantom cohort generated with another seed than the training
cohort, every subject with a glioma), the acquired full-dose series and the half and
quarter doses simulated from it (:func:`bids_perfusion.dsc.lowdose.simulate_low_dose_run`;
``--lowdose-model exponential``, ΔR2* scaled by the dose, the pipeline's default and the
bundled weights' training data, or ``linear``, the stU-Net paper's Eq. 1; ``--local-average
temporal``, the Savitzky–Golay average, or ``spatial``, the 3×3×3 box; baseline found on
the mean brain curve) are quantified by

- the classical pipeline: automatic brain mask, steady state and baseline, ΔR2*, tissue
  concentration, AIF from the phantom's arterial voxels (the paper also used given
  vessel masks), first-pass area-ratio CBV. This is the CBV of the pipeline's oSVD run
  (its MTT is CBV/CBF): oSVD's own ∫k(t)dt is the same ratio of areas, up to the
  integration window, since the zero frequency, the largest singular value of a positive
  AIF's circulant matrix, is never truncated. The full-dose map is the *reference*, as
  the paper's Verbena full-dose map;
- the baseline of Hess et al. (2018) and the stU-Net (weights given on the command line
  or bundled), from the raw series, strips every row averaged.

Every map is cropped to the brain, resampled to the model's in-plane size and
standardised with its own brain statistics, clipped to [-5, 5] (the paper's
preprocessing, :mod:`bids_perfusion.nn.cbv_preprocessing`); the outputs of networks
trained on that space are in it already (clipped likewise), those of networks trained on
the ``logRelative`` target are standardised like the classical map
(:func:`~bids_perfusion.nn.cbv_preprocessing.standardised_prediction`). Per slice with
at least ``--min-brain`` brain pixels: L2 (mean squared error over brain pixels), L1
(mean absolute error), t-L2 and t-L1 (the same over the tumour mask, slices holding
tumour only) and SSIM
(``skimage.metrics.structural_similarity`` on the slice with 0 outside the brain,
``data_range`` = 10, the width of the clipping interval), against the full-dose reference
and against the phantom's ground-truth CBV. Mean (SD) over test slices are printed in the
layout of the paper's Table 1; ``--out`` keeps the per-slice values.

Beside it, the value the clinic reads, which the standardised, clipped space hides: the
**tumour rCBV**, median CBV in the tumour over the median in normal-appearing white
matter (the phantom's ``label-tumor`` and ``label-NAWM`` masks, native grid), against
the same ratio of the truth, per subject and dose, and its relative error summarised
for LGG and HGG separately (``--out-rcbv`` keeps the per-subject values). The networks'
ratio is read on their CBV in mL/100 g as the pipeline writes it
(:func:`bids_perfusion.nn.cbv_models.to_units`, calibrated on that dose's area-ratio CBV).

Speed: one 128×128×24×80 series (a test series resampled in space and time) through
the whole stU-Net inference (preprocessing, strips, averaging, back to the native grid,
units), on the CPU with ``OMP_NUM_THREADS`` threads and on CUDA when available; peak
memory: the growth of the process's peak resident set (CPU) and the peak CUDA allocation.

Models are scored against the target they were trained on: ``--reference-models``
(trained on the full-dose reference, the paper's protocol; their references come from
``--write-references``) against the reference, ``--truth-models`` (the bundled stU-Net
by default) against the truth. Several weights of one model are compared in one pass
(the classical maps computed once) by labelling them ``NAME:LABEL=PATH``, e.g.
``--truth-models stunet:v1=OLD/stunet.safetensors stunet=bundled``: the label names the
column, the part before the colon must be the card's model. The full commands are in
``docs/stunet.md``:

    NIPYPE_NO_ET=1 .venv/bin/python benchmarks/bench_stunet.py --test-dir TEST \\
        --truth-models stunet=bundled hess=HESS_TRUTH/hess.safetensors \\
        --reference-models stunet=STUNET_REF/stunet.safetensors \\
                           hess=HESS_REF/hess.safetensors
"""

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "2")

import argparse  # noqa: E402
import csv  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from bids_perfusion.dsc import brain_mask, lowdose, maps  # noqa: E402
from bids_perfusion.phantom import PhantomConfig, write_dataset  # noqa: E402
from bids_perfusion.phantom.bids import TRUTH  # noqa: E402

DOSES = (1.0, 0.5, 0.25)
TARGETS = ("reference", "truth")
METRICS = ("L2", "t-L2", "L1", "t-L1", "SSIM")
RCBV_COLUMNS = ("subject", "grade", "method", "dose", "target", "rCBV", "rCBV_truth",
                "rCBV_error")
SCALE = {"L2": 100, "t-L2": 100, "L1": 100, "t-L1": 100, "SSIM": 100}
UNITS = {"L2": "1e-2", "t-L2": "1e-2", "L1": "1e-2", "t-L1": "1e-2", "SSIM": "%"}


def _image(root, subject, name, folder=None):
    base = Path(root) / (folder or "") / f"sub-{subject}" / "perf"
    return np.asarray(nib.load(base / f"sub-{subject}_{name}.nii.gz").dataobj)


def classical_cbv(series, sidecar, brain, arteries):
    """Area-ratio CBV (mL/100 g) of the pipeline's core steps, on the native grid, with the
    relaxivities of the sidecar's MagneticFieldStrength."""
    from bids_perfusion.nn.samples import run_curves

    curves = run_curves([series], [sidecar["EchoTime"]], sidecar["RepetitionTime"], "bench",
                        brain=brain, aif_mask=arteries,
                        field_strength=sidecar["MagneticFieldStrength"])
    end = curves.cbv_end
    out = np.zeros(brain.shape, dtype=np.float32)
    out[brain] = maps.cbv_area_ratio(curves.tissue[:, :end], curves.aif[:end],
                                     curves.frame_times[:end])
    return out


def slice_metrics(prediction, reference, mask, tumour, min_brain):
    """Per-slice metrics (list of dicts) of two standardised (size, size, Z) maps."""
    from skimage.metrics import structural_similarity

    rows = []
    for z in range(mask.shape[2]):
        brain = mask[..., z]
        if brain.sum() < min_brain:
            continue
        p = np.where(brain, prediction[..., z], 0.0)
        r = np.where(brain, reference[..., z], 0.0)
        error = (p - r)[brain]
        row = {"slice": z, "L2": float(np.mean(error ** 2)), "L1": float(np.mean(np.abs(error))),
               "SSIM": float(structural_similarity(p, r, data_range=10.0))}
        inside = tumour[..., z] & brain
        if inside.any():
            t_error = (p - r)[inside]
            row["t-L2"] = float(np.mean(t_error ** 2))
            row["t-L1"] = float(np.mean(np.abs(t_error)))
        rows.append(row)
    return rows


def tumour_rcbv(cbv, tumour, nawm):
    """median(CBV in the tumour) / median(CBV in NAWM): the clinical tumour rCBV."""
    return float(np.median(cbv[tumour]) / np.median(cbv[nawm]))


def _subject(root, subject):
    """Series, sidecar, automatic brain mask and the phantom's arterial mask of a subject."""
    sidecar = json.loads((Path(root) / f"sub-{subject}" / "perf"
                          / f"sub-{subject}_ce-gadolinium_dsc.json").read_text())
    series = _image(root, subject, "ce-gadolinium_dsc").astype(np.float32)
    brain = brain_mask.brain_mask(series.mean(axis=-1))
    arteries = _image(root, subject, "label-arteries_mask", TRUTH) > 0
    return series, sidecar, brain, arteries


def write_references(root, folder):
    """The full-dose reference CBV of every subject of ``root`` as a derivatives folder
    (``sub-X_ce-gadolinium_desc-areaRatio_cbv.nii.gz``), to train on it as the paper did."""
    for path in sorted(Path(root).glob("sub-*/perf/sub-*_ce-gadolinium_dsc.nii.gz")):
        subject = path.name.split("_")[0][4:]
        series, sidecar, brain, arteries = _subject(root, subject)
        cbv = classical_cbv(series, sidecar, brain, arteries)
        out = Path(folder) / f"sub-{subject}" / "perf"
        out.mkdir(parents=True, exist_ok=True)
        image = nib.load(path)
        nib.Nifti1Image(cbv, image.affine).to_filename(
            out / f"sub-{subject}_ce-gadolinium_desc-areaRatio_cbv.nii.gz")
    (Path(folder) / "dataset_description.json").write_text(json.dumps(
        {"Name": "full-dose area-ratio CBV (bench_stunet.py references)",
         "BIDSVersion": "1.10.0", "DatasetType": "derivative"}, indent=2) + "\n")


def evaluate_subject(root, subject, models, args):
    """Per-slice rows of every method and dose against the reference and the truth, and
    the tumour rCBV rows (:data:`RCBV_COLUMNS`).

    ``models`` maps ``(target, name)`` to ``(model, preprocessing)``: the models trained
    on that target (the full-dose reference or the truth) are scored against it.
    """
    from bids_perfusion.nn import cbv_models
    from bids_perfusion.nn.cbv_preprocessing import (
        prepare_map,
        prepare_mask,
        standardised_prediction,
        to_native,
    )

    series, sidecar, brain, arteries = _subject(root, subject)
    tumour_native = _image(root, subject, "label-tumor_mask", TRUTH) > 0
    nawm = (_image(root, subject, "label-NAWM_mask", TRUTH) > 0) & brain
    truth_native = _image(root, subject, "desc-truth_cbv", TRUTH).astype(np.float32)
    parameters = json.loads((Path(root) / TRUTH / f"sub-{subject}" / "perf"
                             / f"sub-{subject}_desc-truth_parameters.json").read_text())
    grade = parameters["tumour"]["grade"]
    truth_rcbv = tumour_rcbv(truth_native, tumour_native & brain, nawm)
    preprocessing = next(iter(models.values()))[1]
    mask, crop = prepare_mask(brain, preprocessing)
    tumour = prepare_mask(tumour_native & brain, preprocessing, crop)[0]
    window = lowdose.baseline_of_run(series, brain)
    standardised, seconds, rcbv = {}, {}, []

    def rcbv_row(method, dose, target, cbv):
        value = tumour_rcbv(cbv, tumour_native & brain, nawm)
        rcbv.append({"subject": subject, "grade": grade, "method": method, "dose": dose,
                     "target": target, "rCBV": value, "rCBV_truth": truth_rcbv,
                     "rCBV_error": value / truth_rcbv - 1})

    for dose in DOSES:
        dosed = series if dose == 1 else lowdose.simulate_low_dose_run(
            series, dose, window, tr=sidecar["RepetitionTime"], model=args.lowdose_model,
            average=args.local_average)
        dosed = dosed.astype(np.float32)
        cbv = classical_cbv(dosed, sidecar, brain, arteries)
        for target in TARGETS:
            standardised[(target, "osvd", dose)] = prepare_map(cbv, brain, preprocessing, crop)
            rcbv_row("osvd", dose, target, cbv)
        for (target, name), (model, config) in models.items():
            tic = time.perf_counter()
            run, z = cbv_models.predict_standardised(model, config, dosed, brain,
                                                     device=args.device)
            seconds[(target, name, dose)] = time.perf_counter() - tic
            standardised[(target, name, dose)] = standardised_prediction(z, run.mask, config)
            units = cbv_models.to_units(to_native(z, run.crop), cbv, brain, config)[0]
            rcbv_row(name, dose, target, units)
    references = {"reference": standardised[("reference", "osvd", 1.0)],
                  "truth": prepare_map(truth_native, brain, preprocessing, crop)}
    rows = []
    for (target, method, dose), values in standardised.items():
        if method == "osvd" and dose == 1.0 and target == "reference":
            continue  # the reference itself
        for row in slice_metrics(values, references[target], mask, tumour, args.min_brain):
            rows.append({"subject": subject, "method": method, "dose": dose,
                         "target": target, **row})
    return rows, seconds, rcbv


def _column_names(methods):
    """Column titles of the methods (``stunet:LABEL`` -> ``stU-Net LABEL``)."""
    titles = {"osvd": "oSVD (area ratio)", "hess": "Hess", "stunet": "stU-Net"}
    return {m: " ".join([titles[m.split(":")[0]], *m.split(":")[1:]]) for m in methods}


def table(rows, target, methods):
    """Table 1 layout: dose x metric rows, method columns, mean (SD) over slices."""
    names = _column_names(methods)
    what = "full-dose oSVD reference" if target == "reference" else "ground-truth CBV"
    lines = [f"digital phantom, against the {what} "
             f"({len({(r['subject'], r['slice']) for r in rows})} test slices)",
             f"{'dose':6} {'metric':12}" + "".join(f"{names[m]:>20}" for m in methods)]
    labels = {1.0: "full", 0.5: "1/2", 0.25: "1/4"}
    summary = {}
    for dose in DOSES:
        for metric in METRICS:
            cells = []
            for method in methods:
                values = [r[metric] for r in rows if r["method"] == method and r["dose"] == dose
                          and r["target"] == target and metric in r]
                if not values:
                    cells.append(f"{'(n/a)':>20}")
                    continue
                mean, sd = SCALE[metric] * np.mean(values), SCALE[metric] * np.std(values)
                summary[(dose, metric, method)] = mean
                cells.append(f"{mean:>12.2f} ({sd:5.2f})")
            lines.append(f"{labels[dose]:6} {metric:5} ({UNITS[metric]:>4})" + "".join(cells))
    return "\n".join(lines), summary


def rcbv_table(rcbv, target, methods):
    """Tumour rCBV against the truth: per subject (the ratio, its truth and the error of
    every method and dose), then per grade and dose the mean error, its mean absolute
    value and range over subjects, in %, and how many subjects lie within 15 %."""
    names = _column_names(methods)
    labels = {1.0: "full", 0.5: "1/2", 0.25: "1/4"}
    rows = [r for r in rcbv if r["target"] == target]
    lines = ["digital phantom, tumour rCBV (tumour/NAWM median) per subject, error vs "
             "truth in %"]
    for subject in sorted({r["subject"] for r in rows}):
        mine = [r for r in rows if r["subject"] == subject]
        cells = [f"{labels[r['dose']]} {r['method']} {r['rCBV']:.2f} "
                 f"({100 * r['rCBV_error']:+.0f})" for dose in DOSES for m in methods
                 for r in mine if r["dose"] == dose and r["method"] == m]
        lines.append(f"sub-{subject} {mine[0]['grade']} truth {mine[0]['rCBV_truth']:.2f}: "
                     + ", ".join(cells))
    lines += ["tumour rCBV error vs truth (%): mean [min, max], mean |error|, subjects "
              "within 15 %",
              f"{'dose':6} {'grade':6}" + "".join(f"{names[m]:>34}" for m in methods)]
    summary = {}
    for dose in DOSES:
        for grade in ("LGG", "HGG"):
            cells = []
            for method in methods:
                errors = 100 * np.array([r["rCBV_error"] for r in rows if r["dose"] == dose
                                         and r["grade"] == grade and r["method"] == method])
                if not errors.size:
                    cells.append(f"{'(n/a)':>34}")
                    continue
                summary[(dose, grade, method)] = np.abs(errors).max()
                within = int(np.sum(np.abs(errors) <= 15))
                cells.append(f"{errors.mean():+6.1f} [{errors.min():+4.0f},{errors.max():+4.0f}]"
                             f" |{np.abs(errors).mean():4.1f}| {within}/{errors.size}".rjust(34))
            lines.append(f"{labels[dose]:6} {grade:6}" + "".join(cells))
    return "\n".join(lines), summary


def speed(model, preprocessing, root, subject, device):
    """Seconds and peak memory of one 128x128x24x80 series through :func:`estimate_cbv`."""
    import torch
    from scipy import ndimage

    from bids_perfusion.nn import cbv_models

    series = _image(root, subject, "ce-gadolinium_dsc").astype(np.float32)
    big = ndimage.zoom(series, np.divide((128, 128, 24, 80), series.shape), order=1)
    brain = brain_mask.brain_mask(big.mean(axis=-1))
    noise = np.random.default_rng(0).normal(0.0, 1.0, brain.shape)
    reference = np.where(brain, 3.0 + noise, 0.0).astype(np.float32)  # stands for the CBV
    model = model.to(device)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tic = time.perf_counter()
    cbv_models.estimate_cbv(model, preprocessing, big, brain, reference, device=device)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - tic
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record = {"device": device, "shape": big.shape, "brain_voxels": int(brain.sum()),
              "seconds": seconds, "peak_rss_MiB": peak, "rss_growth_MiB": peak - before}
    if torch.device(device).type == "cuda":
        record["peak_cuda_MiB"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--test-dir", type=Path, required=True,
                        help="test phantom (generated here when missing)")
    parser.add_argument("--n-subjects", type=int, default=6)
    parser.add_argument("--seed", type=int, default=12,
                        help="seed of a generated test cohort (the bundled weights were "
                             "trained on seeds 11 and 13)")
    parser.add_argument("--truth-models", nargs="+", default=["stunet=bundled"],
                        metavar="NAME=PATH", help="stunet and hess weights trained on the "
                        "ground truth, scored against it ('bundled': the bundled stU-Net); "
                        "NAME:LABEL=PATH adds a labelled column (several weights of NAME)")
    parser.add_argument("--reference-models", nargs="+", default=[], metavar="NAME=PATH",
                        help="weights trained on the full-dose reference (--write-"
                             "references), scored against it; without them, only the "
                             "ground-truth table is printed")
    parser.add_argument("--write-references", type=Path, nargs=2,
                        metavar=("DATASET", "FOLDER"),
                        help="only write the full-dose reference CBV of DATASET's subjects "
                             "to the derivatives FOLDER, and stop")
    parser.add_argument("--lowdose-model", choices=lowdose.MODELS,
                        default="exponential",
                        help="signal model of the simulated doses (linear: the paper's Eq. 1)")
    parser.add_argument("--local-average", choices=lowdose.AVERAGES, default="temporal",
                        help="local average of the simulated doses")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--test-stride", type=int,
                        help="rows between inference strips, replacing the cards' "
                             "test_stride (1 in the bundled card; 8, the training stride, "
                             "is 7 times faster at 64 rows and still covers every row)")
    parser.add_argument("--no-speed", action="store_true",
                        help="skip the speed measurement (the tables only)")
    parser.add_argument("--min-brain", type=int, default=100,
                        help="brain pixels a resampled slice needs to be scored")
    parser.add_argument("--out", type=Path, default=Path("stunet_bench.tsv"))
    parser.add_argument("--out-rcbv", type=Path, default=Path("stunet_rcbv.tsv"),
                        help="per-subject tumour rCBV of every method and dose")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from bids_perfusion.nn import cbv_models, stunet

    if args.write_references:
        write_references(*args.write_references)
        print(f"references written to {args.write_references[1]}")
        return
    if not (args.test_dir / "dataset_description.json").is_file():
        # the v1 cohorts of docs/stunet.md: the grade ranges of their time
        config = PhantomConfig.cohort(args.n_subjects, seed=args.seed, asl=None,
                                      grade_ranges="separated")
        write_dataset(args.test_dir, config)
    subjects = sorted(p.name[4:] for p in args.test_dir.glob("sub-*"))
    given = {"truth": args.truth_models, "reference": args.reference_models}
    models = {}
    for target, entries in given.items():
        for entry in entries:
            name, path = entry.split("=", 1)
            model, preprocessing, card = cbv_models.load_model(
                None if path == "bundled" else Path(path), args.device)
            if card["model"] != name.split(":")[0]:
                parser.error(f"{entry}: the card is for {card['model']!r}")
            if args.test_stride is not None:
                preprocessing = dataclasses.replace(preprocessing, test_stride=args.test_stride)
            models[(target, name)] = (model, preprocessing)
            reference = card["data"].get("reference", {})
            print(f"{target} table, {name}: {path}, sha256 {card['sha256'][:16]}..., "
                  f"{stunet.parameter_count(model)} parameters, trained on "
                  f"{' + '.join(d.get('path') for d in card['data']['datasets'])} against "
                  f"desc-{reference.get('desc')}; test stride {preprocessing.test_stride}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, test subjects "
          f"{subjects}; doses simulated with the {args.lowdose_model} model and the "
          f"{args.local_average} local average", flush=True)

    stunet_model, stunet_config = next(value for key, value in models.items()
                                       if key[1].split(":")[0] == "stunet")
    devices = [] if args.no_speed else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        record = speed(stunet_model, stunet_config, args.test_dir, subjects[0], device)
        print("speed: " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in record.items()), flush=True)
    stunet_model.to(args.device)

    rows, seconds, rcbv = [], [], []
    for subject in subjects:
        tic = time.perf_counter()
        subject_rows, timing, subject_rcbv = evaluate_subject(args.test_dir, subject, models,
                                                              args)
        rows += subject_rows
        rcbv += subject_rcbv
        seconds.append(timing)
        print(f"sub-{subject}: {time.perf_counter() - tic:.0f} s", flush=True)
    with args.out.open("w", newline="") as handle:
        columns = ("subject", "method", "dose", "target", "slice", *METRICS)
        writer = csv.DictWriter(handle, columns, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                             for k, v in row.items()})
    with args.out_rcbv.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, RCBV_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for row in rcbv:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                             for k, v in row.items()})
    for key in models:
        mean = np.mean([t[(*key, d)] for t in seconds for d in DOSES])
        print(f"{key[1]} ({key[0]} table): {mean:.1f} s per test series (stride "
              f"{models[key][1].test_stride})")
    for target in [t for t in TARGETS if any(key[0] == t for key in models)]:
        names = [key[1] for key in models if key[0] == target]
        methods = ["osvd", *sorted(names, key=lambda m: (not m.startswith("hess"), m))]
        text, summary = table(rows, target, methods)
        print("\n" + text)
        sign = {metric: -1 if metric == "SSIM" else 1 for metric in METRICS}
        rivals = [m for m in methods if not m.startswith("stunet")]
        text, worst = rcbv_table(rcbv, target, methods)
        for net in [m for m in methods if m.startswith("stunet")]:
            wins = [all(sign[metric] * summary[(dose, metric, net)]
                        <= sign[metric] * summary[(dose, metric, m)]
                        for m in rivals if (dose, metric, m) in summary)
                    for dose in DOSES for metric in METRICS]
            quarter = summary[(0.25, "L1", net)] / summary[(0.25, "L1", "osvd")]
            within = {grade: all(worst[(d, grade, net)] <= 15 for d in DOSES)
                      for grade in ("LGG", "HGG")}
            print(f"{net} best (against {', '.join(rivals)}) on {sum(wins)}/{len(wins)} rows; "
                  f"quarter-dose L1 {net}/oSVD = {quarter:.2f} (target <= 0.5); tumour rCBV "
                  "within 15 % of the truth in every subject: " + ", ".join(
                      f"{grade} {'yes' if ok else 'no'}" for grade, ok in within.items()))
        print("\n" + text)
    print(f"\nper-slice values: {args.out}; tumour rCBV per subject: {args.out_rcbv}")


if __name__ == "__main__":
    main()
