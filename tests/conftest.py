"""Shared fixtures: small phantom datasets generated once per test session."""

import os

import pytest

os.environ.setdefault("NIPYPE_NO_ET", "1")

from helpers import small_config

from bids_perfusion.phantom import write_dataset


@pytest.fixture(scope="session")
def noise_free(tmp_path_factory):
    """Noise-free DSC at full and half dose, and noise-free single-PLD PCASL."""
    config = small_config(dsc={"snr": float("inf"), "doses": (1.0, 0.5)},
                          asl={"snr": float("inf")})
    return write_dataset(tmp_path_factory.mktemp("noise_free") / "bids", config), config


@pytest.fixture(scope="session")
def noisy(tmp_path_factory):
    """The default acquisitions (DSC at SNR 50, PCASL) on the small grid."""
    config = small_config()
    return write_dataset(tmp_path_factory.mktemp("noisy") / "bids", config), config


# --- one participant run shared by the tests that read a pipeline's output ---------------


@pytest.fixture(scope="session")
def dsc_cohort(tmp_path_factory):
    """``(root, out, masks)``: a four-subject cohort (HGG, LGG, HGG, LGG; DSC only, SNR 50,
    small grid) through ``bids-perfusion ... participant`` once, with oSVD, Tikhonov and
    PHAE (bundled weights, CPU) and the truth tumour masks given as derivatives.

    Read by tests/test_group.py (the group level) and tests/test_reports.py (the reports);
    a test that writes into the output works on a copy. One process (nipype's Linear
    plugin): on this phantom a MultiProc pool costs more than it saves;
    tests/test_first_pass.py runs the participant level through MultiProc.
    """
    from helpers import tumour_derivatives

    from bids_perfusion.cli.run import main

    tmp = tmp_path_factory.mktemp("dsc_cohort")
    root = write_dataset(tmp / "bids", small_config(grades=("HGG", "LGG", "HGG", "LGG"),
                                                    asl=None))
    masks = tumour_derivatives(root, tmp / "masks")
    out = tmp / "out"
    status = main([str(root), str(out), "participant", "--skip-bids-validation",
                   "-w", str(tmp / "work"), "--nprocs", "1",
                   "--dsc-methods", "osvd,tikhonov,phae", "--device", "cpu",
                   "--derivatives", str(masks)])
    assert status == 0
    return root, out, masks


# --- DSC quantification: curves of the phantom through the timing core, once per session ---


def _dsc_curves(root, subject):
    """ΔR2* and concentration from the first steady-state frame on, with truth masks and AIF.

    The baseline window comes from the mean brain curve (bids_perfusion.dsc.timing); the
    AIF is the ground-truth arterial concentration, so that these fixtures test the maps
    and not the AIF selection.
    """
    import json
    from pathlib import Path

    import numpy as np
    from helpers import raw, read_tsv, truth

    from bids_perfusion.dsc import relaxivity, timing
    from bids_perfusion.phantom.bids import TRUTH

    signal = raw(root, subject, "ce-gadolinium_dsc")
    sidecar = json.loads((Path(root) / f"sub-{subject}" / "perf"
                          / f"sub-{subject}_ce-gadolinium_dsc.json").read_text())
    brain = truth(root, subject, "label-brain_mask") > 0
    start, stop = timing.baseline_window(signal[brain].mean(axis=0))
    s0 = signal[..., start:stop].mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = relaxivity.signal_to_delta_r2star(signal, s0, sidecar["EchoTime"])[..., start:]
    delta[~brain] = 0.0
    rows = read_tsv(Path(root) / TRUTH / f"sub-{subject}" / "perf"
                    / f"sub-{subject}_desc-truth_aif.tsv")
    arteries = truth(root, subject, "label-arteries_probseg") > 0
    lesion = sum(truth(root, subject, f"label-{n}_probseg") > 0
                 for n in ("enhancing", "necrosis", "edema")) > 0
    normal = {t: (truth(root, subject, f"label-{t}_mask") > 0) & ~arteries & ~lesion
              for t in ("GM", "WM")}
    return {
        "root": root, "subject": subject, "window": (start, stop), "brain": brain,
        "arteries": arteries, "normal": normal,
        "times": sidecar["RepetitionTime"] * np.arange(signal.shape[-1])[start:],
        "delta_r2star": delta, "concentration": relaxivity.tissue_concentration(delta),
        "aif": np.array([float(r["concentration"]) for r in rows])[start:],
    }


@pytest.fixture(scope="session")
def noise_free_dsc(noise_free):
    """``{subject: curves}`` of the noise-free phantom (sub-01 HGG, sub-02 LGG)."""
    return {s: _dsc_curves(noise_free[0], s) for s in ("01", "02")}


@pytest.fixture(scope="session")
def noisy_dsc(noisy):
    """``{subject: curves}`` of the SNR-50 phantom (sub-01 HGG, sub-02 LGG)."""
    return {s: _dsc_curves(noisy[0], s) for s in ("01", "02")}


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread, and do not suffer from a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
