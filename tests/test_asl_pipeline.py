"""ASL through ``bids-perfusion ... participant`` on noise-free phantoms, against the truth.

Single-PLD PCASL and multi-TI PASL with background suppression, and the same PCASL with
label-first pairs and M0 included in the series: CBF (and ATT) from the command line.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import load, small_config, truth

from bids_perfusion.cli.run import main
from bids_perfusion.phantom import write_dataset

pytestmark = pytest.mark.slow
NOISE_FREE = {"snr": float("inf")}
ACQUISITIONS = {
    "pcasl": NOISE_FREE,
    "pcasl_reordered": {**NOISE_FREE, "label_first": True, "m0_type": "Included"},
    "pasl_multi": {**NOISE_FREE, "label_type": "PASL", "plds": (1.0, 1.5, 2.0, 2.5, 3.0, 3.5),
                   "n_pairs": (2,), "bolus_cutoff": 0.8, "background_suppression": True},
}


@pytest.fixture(scope="module")
def quantified(tmp_path_factory):
    results = {}
    for name, asl in ACQUISITIONS.items():
        tmp = tmp_path_factory.mktemp(name)
        root = write_dataset(tmp / "bids", small_config(grades=("HGG",), dsc=None, asl=asl))
        status = main([str(root), str(tmp / "out"), "participant", "--skip-bids-validation",
                       "-w", str(tmp / "work"), "--nprocs", "1",
                       "--no-motion-correction"])  # still, noise-free: the quantification
        results[name] = (root, tmp / "out" / "sub-01" / "perf", status)
    return results


def _exact(root):
    """GM/WM voxels free of CSF (M0 fully recovered) and away from arteries."""
    tissue = (truth(root, "01", "label-GM_mask") + truth(root, "01", "label-WM_mask")) > 0
    return (tissue & (truth(root, "01", "label-CSF_probseg") < 0.01)
            & (truth(root, "01", "label-arteries_probseg") == 0))


def test_pcasl_single_pld_matches_truth(quantified):
    root, perf, status = quantified["pcasl"]
    assert status == 0
    cbf = load(perf / "sub-01_desc-consensus_cbf.nii.gz")
    exact = _exact(root) & (cbf > 0)
    assert exact.sum() > 500
    np.testing.assert_allclose(cbf[exact], truth(root, "01", "desc-truth_cbf")[exact],
                               rtol=0.005)
    sidecar = json.loads((perf / "sub-01_desc-consensus_cbf.json").read_text())
    assert sidecar["Units"] == "mL/100 g/min"
    assert sidecar["M0Type"] == "Separate"


def test_label_order_and_included_m0_change_nothing(quantified):
    _, perf, _ = quantified["pcasl"]
    _, reordered, status = quantified["pcasl_reordered"]
    assert status == 0
    np.testing.assert_allclose(load(reordered / "sub-01_desc-consensus_cbf.nii.gz"),
                               load(perf / "sub-01_desc-consensus_cbf.nii.gz"),
                               rtol=1e-5, atol=1e-4)


def test_multi_ti_pasl_fit_gives_cbf_and_att(quantified):
    root, perf, status = quantified["pasl_multi"]
    assert status == 0
    cbf = load(perf / "sub-01_desc-gkm_cbf.nii.gz")
    att = load(perf / "sub-01_desc-gkm_att.nii.gz")
    exact = _exact(root) & (cbf > 0)
    np.testing.assert_allclose(cbf[exact], truth(root, "01", "desc-truth_cbf")[exact],
                               rtol=0.02)
    np.testing.assert_allclose(att[exact], truth(root, "01", "desc-truth_att")[exact],
                               atol=0.05)
    assert Path(perf.parent.parent / "sub-01.html").exists()
