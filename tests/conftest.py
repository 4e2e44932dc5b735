"""Shared fixtures: small phantom datasets generated once per test session, and the
scheduling that lets ``make test`` run the suite on every core (pytest-xdist).

Under ``pytest -n N --dist loadfile`` each worker is its own session: a session fixture is
built once per worker that needs it, a module fixture once per worker that runs a test of
its file. Each test file therefore goes to one worker, and the files that read a session
fixture costing a participant run (:data:`ONE_WORKER`) go to one worker together
(:func:`pytest_xdist_make_scheduler`).
"""

import os

import pytest

os.environ.setdefault("NIPYPE_NO_ET", "1")


def _share_the_cores_between_workers():
    """Under pytest-xdist, BLAS, OpenMP and torch threads per worker: the CPUs divided by
    the workers, so that two workers on two cores do not run four threads. Runs on import
    of this file, before numpy or torch is imported; a thread count already set wins."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = str(max(1, len(os.sched_getaffinity(0)) // workers))
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(variable, threads)


_share_the_cores_between_workers()

from helpers import small_config  # noqa: E402 (after the thread limits)

from bids_perfusion.phantom import write_dataset  # noqa: E402


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


# --- pytest-xdist: the files that share an expensive session fixture run in one worker ----

#: Session fixtures that cost a full participant run, and the test files that read them:
#: under ``--dist loadfile`` each set of files is one unit of work, sent to one worker, so
#: the fixture is built once. The other session fixtures (phantoms of a few seconds) are
#: built by each worker that needs them.
ONE_WORKER = {"dsc_cohort": ("test_group.py", "test_reports.py")}


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # a hook of pytest-xdist, when installed
def pytest_xdist_make_scheduler(config, log):
    """Under ``--dist loadfile``: xdist's file scheduler, with the files of each
    :data:`ONE_WORKER` set as one unit. A test file is one unit because its module fixtures
    are built once per worker that runs one of its tests.

    (xdist's ``--dist loadgroup`` cannot do this with pytest 9.2: the group it appends to
    ``item._nodeid`` is not read, since pytest 9.2 keeps the node id elsewhere.)
    """
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedFixtureScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid):
            path = super()._split_scope(nodeid)
            return next((name for name, files in ONE_WORKER.items()
                         if path.rsplit("/", 1)[-1] in files), path)

    return SharedFixtureScheduling(config, log)
