"""The automatic NAWM reference before and after the pre-contrast rule, on the phantom.

For every SNR the same cohort (same seed: same anatomy, tumours and perfusion; fresh
noise) is simulated on the small test grid, DSC only; each subject's series goes through
the pipeline's core steps (automatic brain mask, steady state and baseline, ΔR2*, tissue
concentration, area-ratio CBV to the end of the bolus). The AIF is the mean over the
phantom's arterial voxels, so that the references are compared and not the AIF
selection. Two rules choose the NAWM, with the tumour mask of the phantom:

- before: Otsu's threshold on the CBV map itself (smoothed, CSF and top 5 % set aside),
  eroded, the tumour's half of array axis 0 removed (the former rule, kept here
  as a small function to compare with);
- after: :func:`bids_perfusion.dsc.normalisation.automatic_nawm_mask`, white matter from
  the baseline image, the tumour's hemisphere from the affine;
- truth NAWM: the phantom's NAWM mask, the ideal reference: what is left of the rCBV
  bias with it comes from the CBV map (noise, leakage in the tumour rim), not from the
  reference.

Per SNR and rule it prints the median over subjects of: the white-matter fraction of the
mask (truth WM partial volume), the bias of the reference (median CBV in the mask over
the median CBV in the truth NAWM mask, minus 1; with its range over subjects), and the
bias of rCBV against the truth
rCBV (truth CBV over its truth-NAWM median) in the tumour (enhancing rim, or the whole
tumour when the rim has fewer than 5 voxels) and in normal grey matter. All figures are
measured on the phantom.

    NIPYPE_NO_ET=1 .venv/bin/python benchmarks/bench_nawm.py --n-subjects 8 --snr 50 20 10
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
from scipy import ndimage  # noqa: E402
from skimage.filters import threshold_otsu  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from bids_perfusion.dsc import aif, maps, relaxivity, timing  # noqa: E402
from bids_perfusion.dsc.brain_mask import brain_mask  # noqa: E402
from bids_perfusion.dsc.normalisation import automatic_nawm_mask  # noqa: E402
from bids_perfusion.dsc.signal import series_to_delta_r2star  # noqa: E402
from bids_perfusion.phantom import PhantomConfig, write_dataset  # noqa: E402
from bids_perfusion.phantom.bids import TRUTH  # noqa: E402

SMALL = {"matrix": (48, 48, 12), "fov_mm": 220.0, "slab_mm": 132.0}


def _image(root, subject, name, folder=None):
    base = Path(root) / (folder or "") / f"sub-{subject}" / "perf"
    return nib.load(base / f"sub-{subject}_{name}.nii.gz")


def phantom_runs(snr, n_subjects, seed=0):
    """Per subject of a phantom cohort at ``snr``: its series through ΔR2*, and truth.

    Yields dicts with the baseline image, the tissue concentration of the brain voxels
    and the AIF (mean over the truth arterial voxels) with their frame times, the brain
    mask (automatic), the affine, and the truth CBV and masks (``gm``, ``normal_wm``: no
    artery, tumour or oedema).
    """
    # The grade ranges of the tables of docs/dsc-methods.md, measured when they were the
    # phantom's default (before phantom v2's overlapping ranges).
    config = PhantomConfig.cohort(n_subjects, seed=seed, asl=None, grade_ranges="separated",
                                  **SMALL).with_(dsc={"snr": float(snr)})
    with tempfile.TemporaryDirectory() as folder:
        root = write_dataset(Path(folder) / "bids", config)
        for index in range(n_subjects):
            subject = f"{index + 1:02d}"
            image = _image(root, subject, "ce-gadolinium_dsc")
            sidecar = json.loads((Path(root) / f"sub-{subject}" / "perf"
                                  / f"sub-{subject}_ce-gadolinium_dsc.json").read_text())
            series = np.asarray(image.dataobj, dtype=np.float32)
            brain = brain_mask(series.mean(axis=-1))
            delta, start, stop = series_to_delta_r2star([series], [sidecar["EchoTime"]],
                                                        brain)

            def truth(name, subject=subject):
                return np.asarray(_image(root, subject, name, TRUTH).dataobj)

            arteries = truth("label-arteries_mask") > 0
            arterial = aif.aif_from_mask(delta, arteries).curve
            enhancing = truth("label-enhancing_mask") > 0
            normal = ~arteries & ~(truth("label-tumor_mask") > 0) & ~(truth("label-edema_mask")
                                                                      > 0)
            yield {
                "subject": subject, "grade": config.grades[index], "brain": brain,
                "affine": image.affine, "baseline": series[..., start:stop].mean(axis=-1),
                "tissue": relaxivity.tissue_concentration(delta[brain]),
                "aif": relaxivity.blood_concentration(arterial),
                "times": sidecar["RepetitionTime"] * (start + np.arange(delta.shape[-1])),
                "truth_cbv": truth("desc-truth_cbv"),
                "tumour": truth("label-tumor_mask") > 0,
                "tumour_roi": enhancing if enhancing.sum() >= 5
                else truth("label-tumor_mask") > 0,
                "nawm": truth("label-NAWM_mask") > 0,
                "wm_fraction": truth("label-WM_probseg"),
                "gm": (truth("label-GM_mask") > 0) & normal,
                "normal_wm": (truth("label-WM_mask") > 0) & normal,
            }


def area_ratio_cbv(run, tissue=None, arterial=None):
    """CBV of the brain voxels by the area ratio to the end of the bolus (the pipeline's
    BloodVolume), of the run's curves or of the given ones."""
    tissue = run["tissue"] if tissue is None else tissue
    arterial = run["aif"] if arterial is None else arterial
    end = timing.bolus_end(tissue.mean(axis=0))
    cbv = np.zeros(run["brain"].shape)
    cbv[run["brain"]] = maps.cbv_area_ratio(tissue[:, :end], arterial[:end],
                                            run["times"][:end])
    return cbv


def otsu_on_cbv(cbv, brain, tumour, smoothing=0.7, margin=2):
    """The former NAWM rule: Otsu on the smoothed CBV, axis-0 hemispheres."""
    inside = np.where(brain, cbv, 0.0)
    weight = ndimage.gaussian_filter(brain.astype(float), smoothing)
    smooth = ndimage.gaussian_filter(inside, smoothing) / np.maximum(weight, 1e-6)
    values = smooth[brain]
    tissue = brain & (smooth > 0.25 * np.median(values)) & (smooth < np.percentile(values, 95))
    wm = tissue & (smooth <= threshold_otsu(smooth[tissue]))
    wm = ndimage.binary_erosion(wm, structure=ndimage.generate_binary_structure(3, 1))
    wm &= ~ndimage.binary_dilation(tumour, iterations=margin)
    x = np.arange(brain.shape[0])[:, None, None]
    centre = np.argwhere(brain)[:, 0].mean()
    ipsilateral = (x >= centre) if np.argwhere(tumour)[:, 0].mean() >= centre else (x < centre)
    return wm & ~np.broadcast_to(ipsilateral, brain.shape)


def figures(run, cbv, mask):
    """WM fraction, reference bias, tumour and GM rCBV bias of one NAWM mask."""
    reference = np.median(cbv[mask])
    truth_reference = np.median(run["truth_cbv"][run["nawm"]])

    def rcbv_bias(roi):
        measured = np.median(cbv[roi]) / reference
        return measured / (np.median(run["truth_cbv"][roi]) / truth_reference) - 1.0

    return {"wm": float(run["wm_fraction"][mask].mean()),
            "reference": reference / np.median(cbv[run["nawm"]]) - 1.0,
            "tumour": rcbv_bias(run["tumour_roi"]), "gm": rcbv_bias(run["gm"])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-subjects", type=int, default=8)
    parser.add_argument("--snr", type=float, nargs="+", default=[50.0, 20.0, 10.0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print("Measured on the phantom (small grid 48x48x12, DSC SNR as given; medians over "
          f"{args.n_subjects} subjects, seed {args.seed}).\n")
    print("| SNR | rule | WM fraction | reference bias (range) | tumour rCBV bias | "
          "GM rCBV bias |")
    print("|---|---|---|---|---|---|")
    for snr in args.snr:
        rows = {"before": [], "after": [], "truth NAWM": []}
        for run in phantom_runs(snr, args.n_subjects, args.seed):
            cbv = area_ratio_cbv(run)
            masks = {"before": otsu_on_cbv(cbv, run["brain"], run["tumour"]),
                     "after": automatic_nawm_mask(run["brain"], run["affine"],
                                                  baseline=run["baseline"],
                                                  exclude=run["tumour"]),
                     "truth NAWM": run["nawm"]}
            for rule, mask in masks.items():
                rows[rule].append(figures(run, cbv, mask))
        for rule, values in rows.items():
            median = {key: np.median([v[key] for v in values]) for key in values[0]}
            low, high = (f([v["reference"] for v in values]) for f in (np.min, np.max))
            print(f"| {snr:g} | {rule} | {median['wm']:.2f} | {median['reference']:+.1%} "
                  f"({low:+.1%} to {high:+.1%}) | {median['tumour']:+.1%} | "
                  f"{median['gm']:+.1%} |")


if __name__ == "__main__":
    main()
