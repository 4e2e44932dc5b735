"""A short text summary of a phantom dataset, read back from its files."""

from pathlib import Path

import nibabel as nib
import numpy as np

from bids_perfusion.phantom.bids import TRUTH
from bids_perfusion.tsv import read_tsv


def _load(path):
    return np.asarray(nib.load(path).dataobj)


def subject_summary(root, participant):
    """Mean ground-truth CBF/CBV in GM and WM masks and tumour CBV relative to NAWM."""
    truth = Path(root) / TRUTH / participant / "perf"
    cbf = _load(truth / f"{participant}_desc-truth_cbf.nii.gz")
    cbv = _load(truth / f"{participant}_desc-truth_cbv.nii.gz")
    mask = {name: _load(truth / f"{participant}_label-{name}_mask.nii.gz").astype(bool)
            for name in ("GM", "WM", "NAWM", "enhancing")}
    return {
        "gm_cbf": float(cbf[mask["GM"]].mean()),
        "wm_cbf": float(cbf[mask["WM"]].mean()),
        "gm_cbv": float(cbv[mask["GM"]].mean()),
        "wm_cbv": float(cbv[mask["WM"]].mean()),
        "tumour_rcbv": float(cbv[mask["enhancing"]].mean() / cbv[mask["NAWM"]].mean())
        if mask["enhancing"].any() else float("nan"),
    }


def summarise(root):
    """Text table: one line per subject, then the files written."""
    root = Path(root)
    participants = read_tsv(root / "participants.tsv")
    lines = [f"Phantom dataset: {root}",
             f"{'subject':8} {'grade':5} {'radius':>7} {'GM CBF':>7} {'WM CBF':>7} "
             f"{'GM CBV':>7} {'WM CBV':>7} {'tumour rCBV':>11}"]
    for row in participants:
        stats = subject_summary(root, row["participant_id"])
        radius = row["tumor_radius_mm"]  # n/a for a subject without lesion
        lines.append(
            f"{row['participant_id']:8} {row['grade']:5} "
            f"{radius if radius == 'n/a' else format(float(radius), '.1f'):>7} "
            f"{stats['gm_cbf']:7.1f} {stats['wm_cbf']:7.1f} {stats['gm_cbv']:7.2f} "
            f"{stats['wm_cbv']:7.2f} {stats['tumour_rcbv']:11.2f}")
    files = [p for p in root.rglob("*") if p.is_file()]
    raw = [p for p in files if TRUTH.parts[0] not in p.relative_to(root).parts]
    size = sum(p.stat().st_size for p in files) / 1e6
    lines += ["(CBF mL/100 g/min, CBV mL/100 g; masks at fraction >= 0.5, so partial volume "
              "mixes GM and WM values)",
              f"{len(raw)} raw files, {len(files) - len(raw)} ground-truth files, {size:.1f} MB",
              f"Ground truth: {root / TRUTH}"]
    return "\n".join(lines)
