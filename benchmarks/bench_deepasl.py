"""Table 1 of DeepASL (Ulas et al., MICCAI 2018) on held-out phantom subjects.

Rows: Averaging (the mean of a subset of the control/label pairs, no denoising), Dilated
Conv (Kim et al., Radiology 2018), PR-λ = 0.2, 0.5, 0.7, 1.0 (the residual FCN trained
with the kinetic loss of weight λ). Every model is trained by ``bids-perfusion-train`` on
the training cohort (``--train-dir``, a phantom written with ``--preset deepasl``) with
the same settings (``--epochs``, ``--patches-per-slice``, ``--subset-draws``, one CPU
thread), unless its weights are already in ``--models-dir/<row>/``. They are scored on
the subjects of ``--test-dir`` (a cohort of another seed: leave-subjects-out), whose
runs are read as the recipe reads them (:func:`bids_perfusion.nn.recipes.deepasl.read_run`).

For each test subject and each fraction of the pairs (``--fractions``; one random
subset each, seeded), the noisy mean ΔM_n is denoised (whole axial slices) and scored in
the brain (the run's mask: M0-derived, less M0 below 0.2 of its median, ∩ the phantom's
brain mask), against two references:

- **all pairs**: ΔM_c, the mean of every pair, and its consensus CBF (the paper's
  reference and the training target);
- **truth**: the phantom's noise-free ΔM, ``CBF_true / f(1)`` (the consensus formula
  inverted with the measured M0; exact for the phantom where the transit time is shorter
  than the PLD), and the ground-truth CBF.

Metrics: PSNR of ΔM (``20 log10(max reference ΔM in the brain / RMSE)``, dB), RMSE of CBF
(mL/100 g/min) and Lin's concordance correlation coefficient of CBF (Lin, Biometrics
1989;45:255). A subject's value is the mean over the fractions; the table gives mean (sd)
over the test subjects. Paired tests PR-0.2 vs Dilated Conv: ``scipy.stats.wilcoxon``
and ``ttest_rel`` over the subject × fraction cases. Bland-Altman plots of GM CBF
(Averaging, Dilated Conv, PR-0.2 at the first fraction, all test subjects pooled,
against the all-pairs reference) go to ``--figure``. CPU inference time per 128 × 128
slice: median of 20 forward passes on one thread.

**Multi-delay** (``--multi-delay``; :mod:`bids_perfusion.nn.deepasl_multidelay`): the
cohorts are phantoms written with ``--preset deepasl-multidelay``, the models
``deepasl-multidelay`` at λ = 0.2 and 1.0 (``--denoise-width`` filters). For each test
subject and fraction, the mean of that fraction of the pairs of every delay is fitted by
the pipeline's general-kinetic-model fit (:class:`bids_perfusion.asl.multi_delay.
MultiDelayModel`, weighted-delay start and Levenberg-Marquardt) as it is (Averaging) and
after each delay is denoised; RMSE of CBF (mL/100 g/min) and ATT (s) in the brain against
the same fit of the mean of all pairs and against the phantom truth (ATT where the true
CBF exceeds 10 mL/100 g/min: below it the transit time hardly shapes the signal); the
truth table also scores the all-pairs fit itself.

``--bundled`` scores the weights shipped with the package instead (Dilated Conv and
PR-λ = 0.2, the rows that have bundled weights; nothing is trained, ``--train-dir`` and
``--models-dir`` are not read), e.g. on a test cohort of the population phantom (phantom
v2: every subject its own head size, deformation, ventricles and irregular lesions).

The commands that made ``docs/deepasl.md`` are given there.
"""

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

#: Rows of Table 1: (label, model, λ).
ROWS = (("Dilated Conv", "dilatedconv", 1.0), ("PR-λ = 0.2", "deepasl", 0.2),
        ("PR-λ = 0.5", "deepasl", 0.5), ("PR-λ = 0.7", "deepasl", 0.7),
        ("PR-λ = 1.0", "deepasl", 1.0))
METRICS = ("psnr", "rmse", "ccc")


def folder(model, weight):
    return "dilatedconv" if model == "dilatedconv" else f"pr{weight:g}"


def train_missing(args):
    """Train every row whose weights are not in ``--models-dir``."""
    from bids_perfusion.cli.train import main as train

    for _label, model, weight in ROWS:
        out = args.models_dir / folder(model, weight)
        if (out / f"{model}.safetensors").is_file():
            continue
        argv = [model, str(args.train_dir), str(out), "--kinetic-weight", str(weight),
                "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                "--lr", str(args.lr), "--subset-draws", str(args.subset_draws),
                "--patches-per-slice", str(args.patches_per_slice), "--device", "cpu",
                "--seed", str(args.seed), "-q"]
        print("training:", "bids-perfusion-train", " ".join(argv), flush=True)
        train(argv)


def lins_ccc(x, y):
    """Lin's concordance correlation coefficient 2 s_xy / (s_x² + s_y² + (x̄ − ȳ)²)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    covariance = np.mean((x - x.mean()) * (y - y.mean()))
    return float(2 * covariance / (x.var() + y.var() + (x.mean() - y.mean()) ** 2))


def scores(delta_m, cbf, reference_dm, reference_cbf, brain):
    """PSNR of ΔM, RMSE and CCC of CBF in the brain."""
    error = delta_m[brain] - reference_dm[brain]
    psnr = 20 * np.log10(np.abs(reference_dm[brain]).max() / np.sqrt(np.mean(error ** 2)))
    rmse = np.sqrt(np.mean((cbf[brain] - reference_cbf[brain]) ** 2))
    return {"psnr": float(psnr), "rmse": float(rmse),
            "ccc": lins_ccc(cbf[brain], reference_cbf[brain])}


def truth_map(test_dir, subject, name):
    path = (Path(test_dir) / "derivatives/phantom-truth" / f"sub-{subject}" / "perf"
            / f"sub-{subject}_{name}.nii.gz")
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float64)


def evaluate(args, models):
    """``{reference: {row: {metric: [per case]}}}``, Bland-Altman points, cases."""
    from bids_perfusion.collect import collect_asl_runs, layout_of
    from bids_perfusion.nn import deepasl
    from bids_perfusion.nn.deepasl_data import consensus_cbf, noisy_means
    from bids_perfusion.nn.recipes import KeyedRun
    from bids_perfusion.nn.recipes.deepasl import read_run

    runs, errors = collect_asl_runs(layout_of(args.test_dir))
    if errors:
        raise SystemExit("\n".join(errors))
    labels = ["Averaging", *models]
    results = {ref: {label: {m: [] for m in METRICS} for label in labels}
               for ref in ("all pairs", "truth")}
    bland_altman = {label: ([], []) for label in ("Averaging", "Dilated Conv", "PR-λ = 0.2")}
    cases = []
    for index, run in enumerate(runs):
        arrays = read_run(KeyedRun(f"sub-{run.subject}", run))
        brain = arrays.brain & (truth_map(args.test_dir, run.subject,
                                          "label-brain_mask") > 0)
        gm = brain & (truth_map(args.test_dir, run.subject, "label-GM_mask") > 0)
        complete = arrays.differences.mean(axis=-1).astype(np.float64)
        references = {"all pairs": (complete, consensus_cbf(complete, arrays.m0,
                                                            arrays.constants))}
        true_cbf = truth_map(args.test_dir, run.subject, "desc-truth_cbf")
        unit = consensus_cbf(np.ones_like(complete), arrays.m0, arrays.constants)
        true_dm = np.divide(true_cbf, unit, out=np.zeros_like(unit), where=unit > 0)
        references["truth"] = (true_dm, true_cbf)
        rng = np.random.default_rng([args.seed, index])
        means, used = noisy_means(arrays.differences, args.fractions, 1, rng)
        for noisy, fraction in zip(means.astype(np.float64), used, strict=True):
            cases.append((run.subject, float(fraction)))
            estimates = {"Averaging": noisy}
            for label, model in models.items():
                estimates[label] = deepasl.denoise(model, noisy, arrays.scale)
            for label, estimate in estimates.items():
                cbf = consensus_cbf(estimate, arrays.m0, arrays.constants)
                for ref, (ref_dm, ref_cbf) in references.items():
                    for metric, value in scores(estimate, cbf, ref_dm, ref_cbf,
                                                brain).items():
                        results[ref][label][metric].append(value)
                if label in bland_altman and np.isclose(fraction, used[0]):
                    ref_cbf = references["all pairs"][1][gm]
                    bland_altman[label][0].extend((cbf[gm] + ref_cbf) / 2)
                    bland_altman[label][1].extend(cbf[gm] - ref_cbf)
    return results, bland_altman, cases


def per_subject(values, cases):
    """Mean over the fractions of each subject, in subject order."""
    subjects = sorted({s for s, _ in cases})
    values = np.asarray(values)
    return np.array([values[[i for i, (s, _) in enumerate(cases) if s == subject]].mean()
                     for subject in subjects])


def table(results, cases):
    lines = ["| Method | PSNR (dB) | RMSE (mL/100 g/min) | CCC |", "|---|---|---|---|"]
    for label, metrics in results.items():
        cells = []
        for metric in METRICS:
            values = per_subject(metrics[metric], cases)
            digits = 3 if metric == "ccc" else 2
            cells.append(f"{values.mean():.{digits}f} ({values.std(ddof=1):.{digits}f})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_tests(results):
    from scipy import stats

    out = {}
    for metric in METRICS:
        a = np.asarray(results["PR-λ = 0.2"][metric])
        b = np.asarray(results["Dilated Conv"][metric])
        out[metric] = {"mean_difference": float(np.mean(a - b)),
                       "wilcoxon_p": float(stats.wilcoxon(a, b).pvalue),
                       "ttest_rel_p": float(stats.ttest_rel(a, b).pvalue), "n": len(a)}
    return out


def bland_altman_figure(points, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(points), figsize=(4 * len(points), 3.6), sharey=True)
    for ax, (label, (mean, diff)) in zip(axes, points.items(), strict=True):
        mean, diff = np.asarray(mean), np.asarray(diff)
        bias, spread = diff.mean(), 1.96 * diff.std(ddof=1)
        ax.scatter(mean, diff, s=2, alpha=0.3, color="tab:blue", rasterized=True)
        ax.axhline(bias, color="tab:green", lw=1.5)
        for limit in (bias - spread, bias + spread):
            ax.axhline(limit, color="gray", lw=1.2)
        slope, intercept = np.polyfit(mean, diff, 1)
        xs = np.linspace(mean.min(), mean.max(), 2)
        ax.plot(xs, intercept + slope * xs, color="tab:red", lw=1.2)
        ax.set_title(f"{label}\nbias {bias:.2f}, LoA ±{spread:.1f}")
        ax.set_xlabel("mean of method and reference CBF")
    axes[0].set_ylabel("method − reference CBF (mL/100 g/min)")
    fig.suptitle("GM CBF against the all-pairs reference, held-out phantom subjects "
                 "(measured on the phantom)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def inference_times(models):
    import torch

    torch.set_num_threads(1)
    x = torch.randn(1, 1, 128, 128)
    out = {}
    with torch.no_grad():
        for label, model in models.items():
            model(x)
            times = []
            for _ in range(20):
                started = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - started)
            out[label] = 1000 * float(np.median(times))
    return out


#: Rows of the multi-delay table: (label, λ).
MULTI_DELAY_ROWS = (("MD-DeepASL λ = 0.2", 0.2), ("MD-DeepASL λ = 1.0", 1.0))
#: True CBF above which ATT is scored, mL/100 g/min.
ATT_MIN_CBF = 10.0


def train_missing_multi_delay(args):
    """Train every multi-delay row whose weights are not in ``--models-dir``."""
    from bids_perfusion.cli.train import main as train
    from bids_perfusion.nn.deepasl_multidelay import MODEL_NAME

    for _label, weight in MULTI_DELAY_ROWS:
        out = args.models_dir / f"pr{weight:g}"
        if (out / f"{MODEL_NAME}.safetensors").is_file():
            continue
        argv = [MODEL_NAME, str(args.train_dir), str(out), "--kinetic-weight", str(weight),
                "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                "--lr", str(args.lr), "--subset-draws", str(args.subset_draws),
                "--patches-per-slice", str(args.patches_per_slice), "--denoise-width",
                str(args.denoise_width), "--device", "cpu", "--seed", str(args.seed), "-q"]
        print("training:", "bids-perfusion-train", " ".join(argv), flush=True)
        train(argv)


def multi_delay_fit(delta_m, arrays):
    """CBF and ATT maps of a (x, y, z, K) ΔM by the pipeline's fit, in the run's mask."""
    inside = arrays.brain & (arrays.m0 > 0)
    ratio = np.divide(delta_m, arrays.m0[..., None], out=np.zeros_like(delta_m),
                      where=inside[..., None])
    fit = arrays.constants.model().fit(ratio, mask=inside)
    return fit.cbf, fit.att


def evaluate_multi_delay(args, models):
    """``{reference: {row: {"cbf"|"att": [RMSE per case]}}}`` and the cases."""
    from bids_perfusion.collect import collect_asl_runs, layout_of
    from bids_perfusion.nn import deepasl
    from bids_perfusion.nn.deepasl_data import noisy_means
    from bids_perfusion.nn.recipes import KeyedRun
    from bids_perfusion.nn.recipes.deepasl import read_multi_delay_run

    runs, errors = collect_asl_runs(layout_of(args.test_dir))
    if errors:
        raise SystemExit("\n".join(errors))
    labels = ["Averaging", *models]
    results = {ref: {label: {"cbf": [], "att": []} for label in labels}
               for ref in ("all pairs", "truth")}
    results["truth"]["All pairs"] = {"cbf": [], "att": []}
    cases = []
    for index, run in enumerate(runs):
        arrays = read_multi_delay_run(KeyedRun(f"sub-{run.subject}", run))
        brain = arrays.brain & (truth_map(args.test_dir, run.subject,
                                          "label-brain_mask") > 0)
        true_cbf = truth_map(args.test_dir, run.subject, "desc-truth_cbf")
        references = {"all pairs": multi_delay_fit(arrays.complete.astype(np.float64),
                                                   arrays),
                      "truth": (true_cbf, truth_map(args.test_dir, run.subject,
                                                    "desc-truth_att"))}
        flowing = brain & (true_cbf > ATT_MIN_CBF)
        (all_cbf, all_att), (true_cbf, true_att) = references.values()
        reference_rmse = {"cbf": float(np.sqrt(np.mean((all_cbf - true_cbf)[brain] ** 2))),
                          "att": float(np.sqrt(np.mean((all_att - true_att)[flowing] ** 2)))}
        rng = np.random.default_rng([args.seed, index])
        for fraction in args.fractions:
            noisy = np.stack([noisy_means(d, (fraction,), 1, rng)[0][0]
                              for d in arrays.differences], axis=-1).astype(np.float64)
            cases.append((run.subject, fraction))
            for metric, value in reference_rmse.items():  # the same for every fraction
                results["truth"]["All pairs"][metric].append(value)
            estimates = {"Averaging": noisy}
            for label, model in models.items():
                estimates[label] = deepasl.denoise(model, noisy, arrays.scale)
            for label, estimate in estimates.items():
                cbf, att = multi_delay_fit(estimate, arrays)
                for ref, (ref_cbf, ref_att) in references.items():
                    results[ref][label]["cbf"].append(
                        float(np.sqrt(np.mean((cbf[brain] - ref_cbf[brain]) ** 2))))
                    results[ref][label]["att"].append(
                        float(np.sqrt(np.mean((att[flowing] - ref_att[flowing]) ** 2))))
        print(f"sub-{run.subject} scored", flush=True)
    return results, cases


def multi_delay_table(results, cases):
    lines = ["| Method | RMSE of CBF (mL/100 g/min) | RMSE of ATT (s) |", "|---|---|---|"]
    for label, metrics in results.items():
        cells = []
        for metric, digits in (("cbf", 2), ("att", 3)):
            values = per_subject(metrics[metric], cases)
            cells.append(f"{values.mean():.{digits}f} ({values.std(ddof=1):.{digits}f})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def multi_delay_main(args):
    """Train (if needed) and score the multi-delay rows (module docstring)."""
    from scipy import stats

    from bids_perfusion.nn import deepasl
    from bids_perfusion.nn.deepasl_multidelay import MODEL_NAME

    train_missing_multi_delay(args)
    models = {label: deepasl.load_model(MODEL_NAME, args.models_dir / f"pr{weight:g}"
                                        / f"{MODEL_NAME}.safetensors")[0]
              for label, weight in MULTI_DELAY_ROWS}
    results, cases = evaluate_multi_delay(args, models)
    tests = {}
    for ref, rows in results.items():
        print(f"\nAgainst the {ref} reference ({len({s for s, _ in cases})} held-out "
              f"phantom subjects, fractions {args.fractions}; measured on the phantom):\n")
        print(multi_delay_table(rows, cases))
        tests[ref] = {metric: {
            "mean_difference": float(np.mean(np.subtract(
                rows["MD-DeepASL λ = 0.2"][metric], rows["Averaging"][metric]))),
            "wilcoxon_p": float(stats.wilcoxon(rows["MD-DeepASL λ = 0.2"][metric],
                                               rows["Averaging"][metric]).pvalue)}
            for metric in ("cbf", "att")}
    print("\nMD-DeepASL λ = 0.2 vs Averaging, paired over subject x fraction cases:")
    print(json.dumps(tests, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"results": results, "cases": cases, "tests": tests},
                                       indent=1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-dir", type=Path)
    parser.add_argument("--test-dir", type=Path, required=True)
    parser.add_argument("--models-dir", type=Path)
    parser.add_argument("--bundled", action="store_true",
                        help="score the bundled weights (Dilated Conv, PR-λ = 0.2); "
                             "no training, no --train-dir or --models-dir")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.4, 0.6, 0.8])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--subset-draws", type=int, default=1)
    parser.add_argument("--patches-per-slice", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", type=Path, default=None,
                        help="PNG of the Bland-Altman plots")
    parser.add_argument("--out", type=Path, default=None, help="JSON of every number")
    parser.add_argument("--multi-delay", action="store_true",
                        help="the multi-delay table instead of Table 1 (cohorts written with "
                             "--preset deepasl-multidelay)")
    parser.add_argument("--denoise-width", type=int, default=32,
                        help="--multi-delay: filters per convolution of the models trained")
    args = parser.parse_args(argv)

    import torch

    from bids_perfusion.nn import deepasl

    torch.set_num_threads(1)
    if not args.bundled and (args.train_dir is None or args.models_dir is None):
        parser.error("--train-dir and --models-dir are needed without --bundled")
    if args.multi_delay:
        multi_delay_main(args)
        return
    if args.bundled:  # the rows whose weights the package ships
        models = {label: deepasl.load_model(model)[0] for label, model, weight in ROWS
                  if (model, weight) in (("dilatedconv", 1.0), ("deepasl", 0.2))}
    else:
        train_missing(args)
        models = {label: deepasl.load_model(model, args.models_dir / folder(model, weight)
                                            / f"{model}.safetensors")[0]
                  for label, model, weight in ROWS}
    results, points, cases = evaluate(args, models)
    for ref, rows in results.items():
        print(f"\nAgainst the {ref} reference ({len({s for s, _ in cases})} held-out phantom "
              f"subjects, fractions {args.fractions}; measured on the phantom):\n")
        print(table(rows, cases))
    tests = {ref: paired_tests(rows) for ref, rows in results.items()}
    print("\nPR-λ = 0.2 vs Dilated Conv, paired over subject x fraction cases:")
    print(json.dumps(tests, indent=1))
    speed = inference_times(models)
    print("\nCPU inference per 128 x 128 slice, one thread (ms):",
          {k: round(v, 1) for k, v in speed.items()})
    if args.figure:
        bland_altman_figure(points, args.figure)
    if args.out:
        args.out.write_text(json.dumps({"results": results, "cases": cases, "tests": tests,
                                        "inference_ms": speed}, indent=1))


if __name__ == "__main__":
    main()
