"""Synthetic DSC tissue curves of a brain-sized series, for tests and benchmarks.

Indicator dilution with the left-rectangle rule (:mod:`bids_perfusion.dsc.kinetics`):
``C_tis(t) = Δt · Σ C_aif(t_j) · CBF · R(t − t_j − δ)`` with a gamma-variate AIF
(t0 = 6 s, α = 3, β = 1.5 s, peak 5 mM), an exponential residue of mean transit time MTT
and a delay δ of the tissue relative to the AIF; Gaussian noise is added.
"""

import numpy as np

from bids_perfusion.dsc import kinetics


def brain_curves(n_voxels, n_frames=80, dt=1.5, *, noise=0.02, seed=0):
    """``(aif, tissue, truth)``: the AIF (T,) float64 in mM, ``n_voxels`` tissue curves
    (V, T) float32 in mM, and per voxel ``cbf`` (s⁻¹; 10–80 mL/100 mL/min / 6000),
    ``mtt`` (2–10 s) and ``delay`` (0–3 s), drawn uniformly with ``seed``. The noise has
    a standard deviation of ``noise`` × the largest tissue concentration."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) * dt
    aif = 5.0 * kinetics.gamma_variate(t, t0=6.0, alpha=3.0, beta=1.5)
    truth = {"cbf": rng.uniform(10, 80, n_voxels) / 6000, "mtt": rng.uniform(2, 10, n_voxels),
             "delay": rng.uniform(0, 3, n_voxels)}
    residue = truth["cbf"][:, None] * kinetics.residue_exponential(
        t[None] - truth["delay"][:, None], truth["mtt"][:, None])
    tissue = kinetics.convolve(aif, residue, dt)
    tissue += rng.normal(0.0, noise * tissue.max(), tissue.shape)
    return aif, tissue.astype(np.float32), truth
