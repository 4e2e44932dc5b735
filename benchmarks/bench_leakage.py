"""Leakage correction models against the phantom's leakage models.

One high-grade phantom subject (small test grid, same seed for every leakage model: same
anatomy, tumour and perfusion) is simulated with each leakage model of the phantom
(``DSCAcquisition.leakage``):

- ``bsw``: ΔR2* − K2 ∫ref, K2 > 0, a T1 effect (the form the BSW correction assumes);
- ``t2star``: the same form with K2 < 0, a ΔR2* effect (T2*-dominant leakage);
- ``tofts``: extravasation of the Tofts model (Ktrans 0.05-0.2 min⁻¹, ve 0.3) whose T1
  shortening raises the spoiled gradient-echo signal (no K2 ∫ref term at all).

Each series goes through the core steps of the pipeline (steady state and baseline from
the mean brain curve, ΔR2*, the leakage reference from the brain without arteries, the
leakage fit, first-pass area-ratio CBV with the true AIF, so that the leakage models are
compared and not the AIF selection). Printed per phantom leakage model and correction
(none, bsw, bidirectional, bsw-transit): the median and the median absolute relative
error of CBV per voxel of the enhancing rim against desc-truth_cbv. Figures measured on
the phantom, not on patients.

    NIPYPE_NO_ET=1 .venv/bin/python benchmarks/bench_leakage.py [--snr 50] [--seed 7]
"""

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "2")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from bids_perfusion.dsc import leakage, maps, relaxivity, timing  # noqa: E402
from bids_perfusion.phantom import PhantomConfig, write_dataset  # noqa: E402
from bids_perfusion.phantom.bids import TRUTH  # noqa: E402
from bids_perfusion.phantom.config import LEAKAGE_MODELS  # noqa: E402

SMALL = {"matrix": (48, 48, 12), "fov_mm": 220.0, "slab_mm": 132.0}
CORRECTIONS = ("none", *leakage.MODELS)


def _image(root, name, folder=None):
    base = Path(root) / (folder or "") / "sub-01" / "perf"
    return np.asarray(nib.load(base / f"sub-01_{name}.nii.gz").dataobj, dtype=float)


def rim_cbv_errors(root):
    """``{correction: relative CBV error per rim voxel}`` of sub-01 of ``root``."""
    signal = _image(root, "ce-gadolinium_dsc")
    te = json.loads((Path(root) / "sub-01" / "perf"
                     / "sub-01_ce-gadolinium_dsc.json").read_text())["EchoTime"]
    brain = _image(root, "label-brain_mask", TRUTH) > 0
    arteries = _image(root, "label-arteries_probseg", TRUTH) > 0
    rim = (_image(root, "label-enhancing_mask", TRUTH) > 0) & ~arteries
    start, stop = timing.baseline_window(signal[brain].mean(axis=0))
    s0 = signal[..., start:stop].mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = relaxivity.signal_to_delta_r2star(signal, s0, te)[..., start:]
    delta[~brain] = 0.0
    times = float(json.loads((Path(root) / "sub-01" / "perf" / "sub-01_ce-gadolinium_dsc.json")
                             .read_text())["RepetitionTime"]) * np.arange(delta.shape[-1])
    aif = np.array([float(line.split("\t")[1]) for line in
                    (Path(root) / TRUTH / "sub-01" / "perf" / "sub-01_desc-truth_aif.tsv")
                    .read_text().splitlines()[1:]])[start:]
    reference = leakage.reference_curve(delta, brain & ~arteries)
    end = timing.bolus_end(delta[brain].mean(axis=0))
    true_cbv = _image(root, "desc-truth_cbv", TRUTH)[rim]
    errors = {}
    for correction in CORRECTIONS:
        curves = delta[rim] if correction == "none" else \
            leakage.correct(correction, delta[rim], reference, times).corrected
        cbv = maps.cbv_area_ratio(relaxivity.tissue_concentration(curves[:, :end]),
                                  aif[:end], times[:end])
        errors[correction] = cbv / true_cbv - 1.0
    return errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snr", type=float, default=50.0, help="inf: noise-free")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"Rim CBV error of each leakage correction on each phantom leakage model "
          f"(phantom, one HGG subject, SNR {args.snr:g}, seed {args.seed}); "
          "median (median |error|) per rim voxel")
    print(f"{'phantom leakage':<16}" + "".join(f"{c:>22}" for c in CORRECTIONS))
    with tempfile.TemporaryDirectory() as tmp:
        for model in LEAKAGE_MODELS:
            # separated: the grade ranges of docs/dsc-methods.md § 5's table, measured
            # when they were the phantom's default (before phantom v2)
            config = PhantomConfig(grades=("HGG",), seed=args.seed, asl=None,
                                   grade_ranges="separated", **SMALL).with_(
                dsc={"snr": args.snr, "leakage": model})
            root = write_dataset(Path(tmp) / model, config)
            errors = rim_cbv_errors(root)
            print(f"{model:<16}" + "".join(
                f"{100 * np.median(e):>+12.1f} % ({100 * np.median(np.abs(e)):4.1f} %)"
                for e in errors.values()))


if __name__ == "__main__":
    main()
