"""The classical DSC estimators on the ``simple`` and the ``realistic`` forward model.

The same cohort (same seed: same anatomy, tumours, perfusion and noise level) is
simulated on the small test grid, DSC only, Tofts leakage, with each forward model of the
phantom (``PhantomConfig.forward_model``; docs/phantom.md §5): ``simple`` writes the
signal the pipeline inverts, ``realistic`` adds complex-signal partial volume and the
susceptibility phase of arterial voxels, extravascular dephasing and blooming, the
quadratic blood relaxivity, Tofts leakage through T1 and T2*, and counts the vessels'
blood in the CBV truth. Each series goes through the pipeline's core steps (automatic
brain mask, steady state and baseline, ΔR2*, concentration) with three AIFs, the first
two within the automatic brain mask (outside it ΔR2* is 0):

- ``pure blood``: the mean ΔR2* over the voxels of blood fraction 1 (no partial volume);
- ``truth mask``: the mean ΔR2* over the phantom's arterial voxels (partial volume
  included);
- ``automatic``: :func:`bids_perfusion.dsc.aif.select_aif` in the brain (with its
  saturation check at the series' TE).

ΔR2* becomes concentration as the pipeline does by default: the relaxivities of the
series' field, linear in blood (``--blood-relaxivity linear``). Printed per forward model
and AIF, as medians over subjects: the AIF's peak over the true arterial peak and the
fractions of its voxels that are pure blood (blood fraction 1) and that hold no blood;
area-ratio CBV over truth in normal GM and WM; rCBV (CBV over its truth-NAWM median) over
the truth rCBV in GM, WM and the enhancing rim; oSVD and cSVD CBF over truth in normal
GM; and the delay insensitivity: GM CBF of oSVD and cSVD with every tissue delayed by a
further 3 s (``extra_delay``), over the undelayed CBF. Figures of the digital phantom.

    NIPYPE_NO_ET=1 .venv/bin/python benchmarks/bench_forward.py --n-subjects 4 --snr 50
    NIPYPE_NO_ET=1 .venv/bin/python benchmarks/bench_forward.py --n-subjects 4 \\
        --field-strength 3 --te 0.045          # saturation of the arterial peak
    NIPYPE_NO_ET=1 .venv/bin/python benchmarks/bench_forward.py --n-subjects 4 --cli

``--cli`` also runs ``bids-perfusion BIDS OUT participant --dsc-methods osvd,csvd`` (the
pipeline's automatic AIF, leakage correction and NAWM) on both undelayed cohorts and
prints the AIF peak, area-ratio CBV in GM, rim rCBV (area ratio, and BSW leakage-
corrected, the pipeline's default) and GM CBF of its maps against the truth, then per
subject the BSW fit's median K2 in the rim and the subject's r2*_ev (``realistic``).

``--population`` measures phantom v2 through both command lines instead: for each forward
model it writes ``bids-perfusion-phantom DIR --population --forward-model M --seed S
--grades LGG HGG LGG HGG LGG HGG --no-asl`` (the default 64 × 64 × 16 grid and
overlapping grade ranges; every subject its own anatomy, lesions, AIF, acquisition and
nuisance) and the same cohort with ``--extra-delay 3`` (every tissue 3 s later than the
AIF, all else equal), runs ``bids-perfusion DIR OUT participant --dsc-methods osvd,csvd``
on both, and prints per subject and per forward model the ratios to the truth of its
maps (automatic AIF, default BSW leakage correction): the AIF's peak and the share of its
voxels that are pure blood or hold none, GM CBV, rCBV (CBV over its median in the truth
NAWM, over the truth's) in normal GM and WM and in the enhancing tissue of LGG and HGG
(area ratio and BSW), GM CBF of oSVD and cSVD, and the delay insensitivity (GM CBF of
the delayed cohort over the undelayed):

    NIPYPE_NO_ET=1 .venv/bin/python benchmarks/bench_forward.py --population --seed 4242 \
        --keep V2DIR

``--keep`` keeps the datasets and derivatives (a participant run or cohort found there is
reused, so the tables can be printed again without recomputing them);
``--forward-models`` runs one of the two only.
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

from bench_nawm import SMALL, area_ratio_cbv  # noqa: E402

from bids_perfusion.dsc import aif, maps, relaxivity  # noqa: E402
from bids_perfusion.dsc.brain_mask import brain_mask  # noqa: E402
from bids_perfusion.dsc.deconvolution import DeconvolutionModel  # noqa: E402
from bids_perfusion.dsc.signal import series_to_delta_r2star  # noqa: E402
from bids_perfusion.phantom import PhantomConfig, write_dataset  # noqa: E402
from bids_perfusion.phantom.bids import TRUTH  # noqa: E402
from bids_perfusion.tsv import read_tsv  # noqa: E402

AIFS = ("pure blood", "truth mask", "automatic")
DELAY = 3.0


def _load(root, subject, name, folder=None):
    base = Path(root) / (folder or "") / f"sub-{subject}" / "perf"
    return np.asarray(nib.load(base / f"sub-{subject}_{name}.nii.gz").dataobj, dtype=float)


def truth_regions(root, subject):
    """The truth's regions of one subject: normal GM and WM (no artery, tumour or
    oedema), the enhancing tissue (rim) and the NAWM."""
    def truth(name):
        return _load(root, subject, name, TRUTH) > 0

    normal = ~truth("label-arteries_mask") & ~truth("label-tumor_mask") & ~truth(
        "label-edema_mask")
    return {"GM": truth("label-GM_mask") & normal, "WM": truth("label-WM_mask") & normal,
            "rim": truth("label-enhancing_mask"), "NAWM": truth("label-NAWM_mask")}


def subject_figures(root, subject, delayed_root):
    """Figures of one subject, per AIF (dict of dicts)."""
    sidecar = json.loads((Path(root) / f"sub-{subject}" / "perf"
                          / f"sub-{subject}_ce-gadolinium_dsc.json").read_text())
    te, tr = sidecar["EchoTime"], sidecar["RepetitionTime"]
    # the pipeline's default: the field's relaxivities, linear blood (--blood-relaxivity)
    relax = relaxivity.at_field(sidecar["MagneticFieldStrength"], "linear")

    def truth(name):
        return _load(root, subject, name, TRUTH)

    rois = truth_regions(root, subject)
    nawm = rois.pop("NAWM")
    truth_cbv, truth_cbf = truth("desc-truth_cbv"), truth("desc-truth_cbf")
    aif_truth = [float(row["concentration"]) for row in read_tsv(
        Path(root) / TRUTH / f"sub-{subject}" / "perf" / f"sub-{subject}_desc-truth_aif.tsv")]

    def curves(folder):
        series = _load(folder, subject, "ce-gadolinium_dsc").astype(np.float32)
        brain = brain_mask(series.mean(axis=-1))
        delta, start, _ = series_to_delta_r2star([series], [te], brain)
        return delta, brain, tr * (start + np.arange(delta.shape[-1]))

    delta, brain, times = curves(root)
    delayed, delayed_brain, _ = curves(delayed_root)
    out = {}
    for name in AIFS:
        if name == "pure blood":
            selection = aif.aif_from_mask(delta, (truth("label-arteries_probseg") == 1)
                                          & brain)
        elif name == "truth mask":
            selection = aif.aif_from_mask(delta, (truth("label-arteries_mask") > 0) & brain)
        else:
            selection = aif.select_aif(delta, brain, times, echo_time=te)
        arterial = relaxivity.blood_concentration(selection.curve, relax.blood_linear,
                                                  relax.blood_quadratic)
        run = {"brain": brain,
               "tissue": relaxivity.tissue_concentration(delta[brain], relax.tissue),
               "aif": arterial, "times": times}
        cbv = area_ratio_cbv(run)
        blood = truth("label-arteries_probseg")[selection.mask]
        figures = {"aif peak": arterial.max() / max(aif_truth),
                   "AIF voxels pure": np.mean(blood == 1),
                   "AIF voxels no blood": np.mean(blood == 0)}
        for roi in ("GM", "WM"):
            figures[f"CBV {roi}"] = np.median(cbv[rois[roi]]) / np.median(truth_cbv[rois[roi]])
        reference, truth_reference = np.median(cbv[nawm]), np.median(truth_cbv[nawm])
        for roi, mask in rois.items():
            figures[f"rCBV {roi}"] = (np.median(cbv[mask]) / reference) / (
                np.median(truth_cbv[mask]) / truth_reference) if mask.sum() >= 3 else np.nan
        dt = float(times[1] - times[0])
        for method in ("osvd", "csvd"):
            cbf = np.zeros(brain.shape)
            cbf[brain] = maps.cbf_from_fit(DeconvolutionModel(arterial, dt, method).fit(
                run["tissue"]))
            late = np.zeros(brain.shape)
            late[delayed_brain] = maps.cbf_from_fit(DeconvolutionModel(arterial, dt, method).fit(
                relaxivity.tissue_concentration(delayed[delayed_brain], relax.tissue)))
            gm = rois["GM"] & delayed_brain
            figures[f"{method} CBF GM"] = np.median(cbf[gm]) / np.median(truth_cbf[gm])
            figures[f"{method} delay"] = np.median(late[gm]) / np.median(cbf[gm])
        out[name] = figures
    return out


def cohort(folder, forward_model, args, extra_delay=0.0):
    config = PhantomConfig.cohort(args.n_subjects, seed=args.seed, asl=None,
                                  forward_model=forward_model, grade_ranges="overlapping",
                                  **SMALL).with_(
        dsc={"snr": args.snr, "leakage": "tofts", "extra_delay": extra_delay,
             "field_strength": args.field_strength, "echo_times": (args.te,)})
    return write_dataset(Path(folder) / f"{forward_model}-{extra_delay:g}", config)


def pipeline_figures(root, subject, out):
    """Ratios to the truth of the maps of ``bids-perfusion ... participant`` (oSVD, cSVD)."""
    def truth(name):
        return _load(root, subject, name, TRUTH)

    def output(name):
        return _load(out, subject, f"ce-gadolinium_desc-{name}")

    regions = truth_regions(root, subject)
    gm, rim, nawm = regions["GM"], regions["rim"], regions["NAWM"]
    truth_cbv, truth_cbf = truth("desc-truth_cbv"), truth("desc-truth_cbf")
    cbv = output("areaRatio_cbv")
    aif_out = read_tsv(Path(out) / f"sub-{subject}" / "perf"
                       / f"sub-{subject}_ce-gadolinium_desc-aif_timeseries.tsv")
    aif_truth = read_tsv(Path(root) / TRUTH / f"sub-{subject}" / "perf"
                         / f"sub-{subject}_desc-truth_aif.tsv")
    def rcbv_rim(cbv):
        return ((np.median(cbv[rim]) / np.median(cbv[nawm]))
                / (np.median(truth_cbv[rim]) / np.median(truth_cbv[nawm]))
                if rim.sum() >= 3 else np.nan)

    figures = {
        "aif peak": max(float(r["concentration"]) for r in aif_out)
        / max(float(r["concentration"]) for r in aif_truth),
        "CBV GM": np.median(cbv[gm]) / np.median(truth_cbv[gm]),
        "rCBV rim": rcbv_rim(cbv), "rCBV rim, BSW": rcbv_rim(output("bsw_cbv")),
        "K2 rim": np.median(output("bsw_k2")[rim]) if rim.any() else np.nan,
        "r2star_ev": json.loads((Path(root) / TRUTH / f"sub-{subject}" / "perf"
                                 / f"sub-{subject}_desc-truth_parameters.json").read_text())
        .get("dsc_r2star_extravascular")}
    for method in ("osvd", "csvd"):
        figures[f"{method} CBF GM"] = (np.median(output(f"{method}_cbf")[gm])
                                       / np.median(truth_cbf[gm]))
    return figures


def run_cli(folder, args):
    """The participant level on each forward model's cohort; prints one table."""
    from bids_perfusion.cli.run import main as run

    columns = ["aif peak", "CBV GM", "rCBV rim", "rCBV rim, BSW", "osvd CBF GM",
               "csvd CBF GM"]
    print("\nThrough the command line (bids-perfusion ... participant --dsc-methods "
          "osvd,csvd; automatic AIF), digital phantom, medians over subjects:\n")
    print("| forward model | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for forward_model in ("simple", "realistic"):
        root = Path(folder) / f"{forward_model}-0"
        out = Path(folder) / f"{forward_model}-out"
        status = run([str(root), str(out), "participant", "--skip-bids-validation",
                      "-w", str(Path(folder) / f"{forward_model}-work"), "--nprocs", "1",
                      "--dsc-methods", "osvd,csvd"])
        if status != 0:
            raise SystemExit(f"bids-perfusion failed on the {forward_model} cohort")
        rows = [pipeline_figures(root, f"{i + 1:02d}", out) for i in range(args.n_subjects)]
        values = [np.nanmedian([row[c] for row in rows]) for c in columns]
        print(f"| {forward_model} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
        for i, row in enumerate(rows):
            print(f"  sub-{i + 1:02d} {forward_model}: rim K2 (BSW fit) "
                  f"{row['K2 rim']:+.4f} 1/s, r2*_ev {row['r2star_ev']}")


POPULATION_GRADES = ("LGG", "HGG") * 3


def population_cohort(folder, forward_model, args, extra_delay=0.0):
    """A v2 cohort written by the phantom's command line."""
    from bids_perfusion.cli.phantom import main as phantom

    root = Path(folder) / f"v2-{forward_model}-{extra_delay:g}"
    phantom([str(root), "--population", "--forward-model", forward_model, "--seed",
             str(args.seed), "--grades", *POPULATION_GRADES, "--no-asl", "--snr",
             str(args.snr), "--extra-delay", str(extra_delay), "-q"])
    return root


def population_subject(root, subject, out, late_out):
    """Ratios to the truth of the participant level's maps of one v2 subject."""
    def truth(name):
        return _load(root, subject, name, TRUTH)

    def output(name, folder=out):
        return _load(folder, subject, f"ce-gadolinium_desc-{name}")

    perf = Path(root) / TRUTH / f"sub-{subject}" / "perf"
    parameters = json.loads((perf / f"sub-{subject}_desc-truth_parameters.json").read_text())
    rois = truth_regions(root, subject)
    nawm = rois.pop("NAWM")
    truth_cbv, truth_cbf = truth("desc-truth_cbv"), truth("desc-truth_cbf")
    blood = truth("label-arteries_probseg")[output("aif_mask") > 0]
    aif_out = read_tsv(Path(out) / f"sub-{subject}" / "perf"
                       / f"sub-{subject}_ce-gadolinium_desc-aif_timeseries.tsv")
    aif_truth = read_tsv(perf / f"sub-{subject}_desc-truth_aif.tsv")
    drawn = parameters["dsc_acquisition"]
    figures = {
        "subject": subject, "grade": parameters["tumour"]["grade"],
        "field": drawn["field_strength"],
        "TE ms": 1000 * drawn["echo_time"], "flip": drawn["flip_angle"],
        "frames": drawn["n_frames"], "AIF peak mM": drawn["aif_peak_mM"],
        "r2star_ev": parameters.get("dsc_r2star_extravascular"),
        "aif peak": max(float(r["concentration"]) for r in aif_out)
        / max(float(r["concentration"]) for r in aif_truth),
        "AIF voxels pure": np.mean(blood == 1), "AIF voxels no blood": np.mean(blood == 0),
        "K2 rim": np.median(output("bsw_k2")[rois["rim"]]) if rois["rim"].any() else np.nan}
    for desc, label in (("areaRatio_cbv", ""), ("bsw_cbv", " BSW")):
        cbv = output(desc)
        reference, truth_reference = np.median(cbv[nawm]), np.median(truth_cbv[nawm])
        for roi, mask in rois.items():
            figures[f"rCBV {roi}{label}"] = (
                (np.median(cbv[mask]) / reference) / (np.median(truth_cbv[mask])
                                                      / truth_reference)
                if mask.sum() >= 3 else np.nan)
        if not label:
            figures["CBV GM"] = np.median(cbv[rois["GM"]]) / np.median(truth_cbv[rois["GM"]])
    for method in ("osvd", "csvd"):
        cbf = output(f"{method}_cbf")[rois["GM"]]
        figures[f"{method} CBF GM"] = np.median(cbf) / np.median(truth_cbf[rois["GM"]])
        figures[f"{method} delay"] = (np.median(output(f"{method}_cbf", late_out)[rois["GM"]])
                                      / np.median(cbf))
    return figures


def run_population(folder, args):
    """Phantom v2 (``--population``) through both command lines; prints the tables."""
    from bids_perfusion.cli.run import main as run

    rows = {}
    for forward_model in args.forward_models:
        outs = []
        for extra_delay in (0.0, DELAY):
            root = Path(folder) / f"v2-{forward_model}-{extra_delay:g}"
            out = Path(folder) / f"{root.name}-out"
            if (out / "dataset_description.json").is_file():  # kept from an earlier run
                outs.append((root, out))
                continue
            if not (root / "dataset_description.json").is_file():
                population_cohort(folder, forward_model, args, extra_delay)
            status = run([str(root), str(out), "participant", "--skip-bids-validation",
                          "-w", str(Path(folder) / f"{root.name}-work"), "--nprocs",
                          str(args.nprocs), "--dsc-methods", "osvd,csvd"])
            if status != 0:  # a refused run: its subject is left out, said below
                print(f"bids-perfusion exited with {status} on {root} (see its log)")
            outs.append((root, out))
        (root, out), (_, late_out) = outs
        rows[forward_model] = []
        for i in range(len(POPULATION_GRADES)):
            try:
                rows[forward_model].append(population_subject(root, f"{i + 1:02d}", out,
                                                              late_out))
            except FileNotFoundError as error:
                print(f"{forward_model} sub-{i + 1:02d}: no maps, left out ({error})")
    print(f"Digital phantom v2 (--population, seed {args.seed}, 64x64x16, DSC SNR "
          f"{args.snr:g}, overlapping grade ranges), through bids-perfusion-phantom and "
          "bids-perfusion ... participant --dsc-methods osvd,csvd (automatic AIF, BSW "
          "leakage correction). Ratios to the truth; rCBV against the truth NAWM; delay: "
          f"GM CBF with every tissue a further {DELAY:g} s late over GM CBF without.\n")
    described = ["grade", "field", "TE ms", "flip", "frames", "AIF peak mM", "r2star_ev",
                 "aif peak", "AIF voxels pure", "AIF voxels no blood", "CBV GM",
                 "rCBV GM", "rCBV WM", "rCBV rim", "rCBV rim BSW", "K2 rim", "osvd CBF GM",
                 "osvd delay", "csvd delay"]
    print("| forward model | subject | " + " | ".join(described) + " |")
    print("|---|---|" + "---|" * len(described))
    for forward_model, subjects in rows.items():
        for row in subjects:
            cells = [row[c] if isinstance(row[c], str) else "–" if row[c] is None
                     else f"{row[c]:.4f}" if c == "K2 rim" else f"{row[c]:.3g}"
                     for c in described]
            print(f"| {forward_model} | sub-{row['subject']} | " + " | ".join(cells) + " |")
    summary = ["aif peak", "CBV GM", "rCBV GM", "rCBV WM", "rCBV LGG", "rCBV HGG",
               "rCBV LGG BSW", "rCBV HGG BSW", "osvd CBF GM", "csvd CBF GM", "osvd delay",
               "csvd delay"]
    print("\nMedians over subjects (LGG, HGG: over the 3 subjects of the grade), and the "
          "range over subjects in brackets:\n")
    print("| forward model | " + " | ".join(summary) + " |")
    print("|---|" + "---|" * len(summary))
    for forward_model, subjects in rows.items():
        cells = []
        for column in summary:
            words = column.split()
            if words[1] in ("LGG", "HGG"):  # the rim of the subjects of that grade
                key = " ".join(["rCBV", "rim", *words[2:]])
                values = [r[key] for r in subjects if r["grade"] == words[1]]
            else:
                values = [r[column] for r in subjects]
            cells.append(f"{np.nanmedian(values):.2f} [{np.nanmin(values):.2f}, "
                         f"{np.nanmax(values):.2f}]")
        print(f"| {forward_model} | " + " | ".join(cells) + " |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-subjects", type=int, default=4)
    parser.add_argument("--snr", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--field-strength", type=float, default=1.5, choices=(1.5, 3.0))
    parser.add_argument("--te", type=float, default=0.03, help="echo time, s")
    parser.add_argument("--cli", action="store_true",
                        help="also run the participant level on both cohorts (oSVD, cSVD)")
    parser.add_argument("--population", action="store_true",
                        help="phantom v2 through both command lines instead (6 subjects, "
                             "64x64x16; --field-strength and --te do not apply: drawn)")
    parser.add_argument("--nprocs", type=int, default=1,
                        help="processes of each participant run (--population)")
    parser.add_argument("--forward-models", nargs="+", default=["simple", "realistic"],
                        choices=("simple", "realistic"), help="--population: which to run")
    parser.add_argument("--keep", type=Path,
                        help="--population: write the datasets and derivatives here instead "
                             "of a temporary folder; a participant run found there is "
                             "reused")
    args = parser.parse_args(argv)
    if args.population:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            run_population(args.keep, args)
        else:
            with tempfile.TemporaryDirectory() as folder:
                run_population(folder, args)
        return
    columns = ["aif peak", "AIF voxels pure", "AIF voxels no blood", "CBV GM", "CBV WM",
               "rCBV GM", "rCBV WM", "rCBV rim", "osvd CBF GM", "csvd CBF GM", "osvd delay",
               "csvd delay"]
    print(f"Digital phantom (small grid 48x48x12, {args.field_strength:g} T, TE "
          f"{1000 * args.te:g} ms, DSC SNR {args.snr:g}, Tofts leakage; "
          f"medians over {args.n_subjects} subjects, seed {args.seed}). Ratios to the "
          f"truth; delay: GM CBF with a further {DELAY:g} s delay over GM CBF without.\n")
    print("| forward model | AIF | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    with tempfile.TemporaryDirectory() as folder:
        for forward_model in ("simple", "realistic"):
            root = cohort(folder, forward_model, args)
            late = cohort(folder, forward_model, args, DELAY)
            rows = [subject_figures(root, f"{i + 1:02d}", late)
                    for i in range(args.n_subjects)]
            for name in AIFS:
                values = [np.nanmedian([row[name][c] for row in rows]) for c in columns]
                print(f"| {forward_model} | {name} | "
                      + " | ".join(f"{v:.2f}" for v in values) + " |")
        if args.cli:
            run_cli(folder, args)


if __name__ == "__main__":
    main()
