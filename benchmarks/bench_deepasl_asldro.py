"""The bundled ASL denoisers scored on third-party data: ASLDRO runs with many repetitions.

ASLDRO (Gold Standard Phantoms' digital reference object, the ``asldro`` package; its own
implementation of the general kinetic model and the MRI signal, with T1' from the
tissue T1) makes single-delay PCASL runs from its bundled high-resolution ground truth
(``hrgt_icbm_2009a_nls_3t``: an ICBM 2009a brain, GM 60 / WM 20 mL/100 g/min, ATT 0.8 /
1.2 s) at the settings of the DeepASL training set (τ 1.6 s, PLD 2.2 s): one M0 volume
and ``--pairs`` control/label pairs, each volume with ASLDRO's own noise at
``--snr`` (``desired_snr``) and its own seed (``--seeds``: one run per seed). The runs are
written as BIDS ASL runs and read as the training recipe reads them
(:func:`bids_perfusion.nn.recipes.deepasl.read_run`; M0 Included, brain mask from M0).

For each run and fraction of the pairs (one random subset each), the mean ΔM of the
subset is scored as it is (Averaging) and denoised by the bundled DeepASL (λ = 0.2) and
Dilated Conv weights (trained on the bids-perfusion phantom only), in the brain ∩
ASLDRO's GM ∪ WM (ground-truth segmentation), against the mean of all pairs and its
consensus CBF, and against ASLDRO's ground-truth perfusion (the consensus formula is
not ASLDRO's model, T1' ≠ T1b, so every row shares a bias of a few mL/100 g/min against
it): PSNR of ΔM (all pairs only), RMSE and Lin's CCC of CBF; mean (sd) over the runs ×
fractions.
"""

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from bench_deepasl import lins_ccc, scores  # noqa: E402

PLD, TAU = 2.2, 1.6


def generate(folder, pairs, snr, seed):
    """One ASLDRO PCASL run (M0 then ``pairs`` control/label pairs) with its ground truth,
    extracted under ``folder``."""
    from asldro.examples import run_full_pipeline
    from asldro.validators.user_parameter_input import get_example_input_params

    logging.getLogger("asldro").setLevel(logging.WARNING)
    params = get_example_input_params()
    asl, ground_truth = params["image_series"][:2]
    n = 1 + 2 * pairs
    asl["series_parameters"].update(
        desired_snr=float(snr), random_seed=int(seed), signal_time=TAU + PLD,
        label_duration=TAU, label_efficiency=0.85,
        asl_context=" ".join(["m0scan"] + ["control", "label"] * pairs),
        echo_time=[0.01] * n, repetition_time=[10.0] + [5.0] * (2 * pairs),
        **{k: [0.0] * n for k in ("rot_x", "rot_y", "rot_z", "transl_x", "transl_y",
                                   "transl_z")})
    params["image_series"] = [asl, ground_truth]
    folder.mkdir(parents=True, exist_ok=True)
    run_full_pipeline(params, str(folder / "asldro.zip"))
    zipfile.ZipFile(folder / "asldro.zip").extractall(folder / "asldro")
    return folder / "asldro"


def to_bids(dro, root, subject, pairs):
    """The ASLDRO series as the BIDS ASL run ``sub-<subject>``."""
    (path,) = sorted((dro / "asl").glob("*_asl.nii.gz"))
    perf = root / f"sub-{subject}" / "perf"
    perf.mkdir(parents=True)
    if not (root / "dataset_description.json").is_file():
        (root / "dataset_description.json").write_text(json.dumps(
            {"Name": "asldro", "BIDSVersion": "1.10.0"}))
    image = nib.load(path)
    stem = perf / f"sub-{subject}_asl"
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj, np.float32), image.affine),
             f"{stem}.nii.gz")
    types = ["m0scan"] + ["control", "label"] * pairs
    Path(f"{stem}context.tsv").write_text("volume_type\n" + "\n".join(types) + "\n")
    Path(f"{stem}.json").write_text(json.dumps({
        "ArterialSpinLabelingType": "PCASL",
        "PostLabelingDelay": [0.0] + [PLD] * (2 * pairs), "LabelingDuration": TAU,
        "LabelingEfficiency": 0.85, "M0Type": "Included",
        "RepetitionTimePreparation": [10.0] + [5.0] * (2 * pairs),
        "BackgroundSuppression": False, "MagneticFieldStrength": 3,
        "MRAcquisitionType": "3D", "EchoTime": 0.01}))


def truth(dro, quantity):
    (path,) = sorted((dro / "ground_truth").glob(f"*_{quantity}.nii.gz"))
    return np.asarray(nib.load(path).dataobj, dtype=np.float64)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work", type=Path, help="folder for the ASLDRO runs (new)")
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--snr", type=float, default=100.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.4, 0.6, 0.8])
    parser.add_argument("--out", type=Path, default=None, help="JSON of every number")
    args = parser.parse_args(argv)

    import torch

    from bids_perfusion.collect import collect_asl_runs, layout_of
    from bids_perfusion.nn import deepasl
    from bids_perfusion.nn.deepasl_data import consensus_cbf, noisy_means
    from bids_perfusion.nn.recipes import KeyedRun
    from bids_perfusion.nn.recipes.deepasl import read_run

    torch.set_num_threads(1)
    root = args.work / "bids"
    dros = {}
    for seed in args.seeds:
        subject = f"seed{seed}"
        dros[subject] = generate(args.work / subject, args.pairs, args.snr, seed)
        to_bids(dros[subject], root, subject, args.pairs)
        print(f"ASLDRO run of seed {seed} written", flush=True)
    models = {"DeepASL (PR-λ = 0.2)": deepasl.load_model("deepasl")[0],
              "Dilated Conv": deepasl.load_model("dilatedconv")[0]}
    runs, errors = collect_asl_runs(layout_of(root))
    if errors:
        raise SystemExit("\n".join(errors))
    labels = ["Averaging", *models]
    results = {ref: {label: {"psnr": [], "rmse": [], "ccc": []} for label in labels}
               for ref in ("all pairs", "truth")}
    for index, run in enumerate(runs):
        arrays = read_run(KeyedRun(f"sub-{run.subject}", run))
        dro = dros[run.subject]
        seg = np.rint(truth(dro, "seg_label"))
        tissue = arrays.brain & ((seg == 1) | (seg == 2))
        complete = arrays.differences.mean(axis=-1).astype(np.float64)
        reference_cbf = consensus_cbf(complete, arrays.m0, arrays.constants)
        true_cbf = truth(dro, "perfusion_rate")
        rng = np.random.default_rng([0, index])
        means, _ = noisy_means(arrays.differences, args.fractions, 1, rng)
        for noisy in means.astype(np.float64):
            estimates = {"Averaging": noisy}
            for label, model in models.items():
                estimates[label] = deepasl.denoise(model, noisy, arrays.scale)
            for label, estimate in estimates.items():
                cbf = consensus_cbf(estimate, arrays.m0, arrays.constants)
                for metric, value in scores(estimate, cbf, complete, reference_cbf,
                                            tissue).items():
                    results["all pairs"][label][metric].append(value)
                error = cbf[tissue] - true_cbf[tissue]
                results["truth"][label]["rmse"].append(float(np.sqrt(np.mean(error ** 2))))
                results["truth"][label]["ccc"].append(lins_ccc(cbf[tissue],
                                                               true_cbf[tissue]))
    for ref, rows in results.items():
        print(f"\nAgainst the {ref} reference (ASLDRO, {len(runs)} runs of {args.pairs} pairs "
              f"at SNR {args.snr:g}, fractions {args.fractions}):\n")
        print("| Method | PSNR of ΔM (dB) | RMSE of CBF (mL/100 g/min) | CCC of CBF |")
        print("|---|---|---|---|")
        for label, metrics in rows.items():
            cells = [f"{np.mean(v):.{3 if m == 'ccc' else 2}f} "
                     f"({np.std(v, ddof=1):.{3 if m == 'ccc' else 2}f})" if v else "—"
                     for m, v in metrics.items()]
            print(f"| {label} | " + " | ".join(cells) + " |")
    if args.out:
        args.out.write_text(json.dumps({"results": results, "pairs": args.pairs,
                                        "snr": args.snr, "seeds": args.seeds}, indent=1))


if __name__ == "__main__":
    main()
