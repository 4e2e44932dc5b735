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
