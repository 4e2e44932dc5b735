"""Nuisance of the DSC phantom beside thermal noise: slow drift and physiological noise.

Both multiply the noise-free signal before the Rician thermal noise
(:func:`bids_perfusion.phantom.mr.rician`) is added:

    S'(n) = S(n) · (1 + c₁ τ_n + c₂ τ_n²) · (1 + λ ε(n)),   τ_n = t_n / t_last,

with ε a stationary, unit-variance AR(1) process per voxel,
``ε(n) = φ ε(n−1) + sqrt(1 − φ²) z(n)``, z white standard normal. The drift is the
low-order polynomial drift of scanner signals (Smith et al., NeuroImage 1999;9:526);
the physiological term has a standard deviation proportional to the signal, λ S
(Krüger and Glover, MRM 2001;46:631), and the lag-1 autocorrelation φ of physiological
noise at TRs of 1-2 s (Purdon and Weisskoff, Hum Brain Mapp 1998;6:239).
"""

import numpy as np
from scipy import signal


def polynomial_drift(frame_times, linear, quadratic):
    """Multiplicative drift ``1 + c₁ τ + c₂ τ²`` at each frame, τ = t / t_last ∈ [0, 1].

    The first frame is unchanged; the last is scaled by ``1 + c₁ + c₂``.
    """
    frame_times = np.asarray(frame_times, dtype=float)
    tau = frame_times / frame_times[-1] if frame_times[-1] > 0 else np.zeros_like(frame_times)
    return 1.0 + linear * tau + quadratic * tau**2


def ar1_noise(rng, shape, phi):
    """Stationary AR(1) noise of unit variance along the last axis of ``shape``.

    ``ε(0) = z(0)``, ``ε(n) = φ ε(n−1) + sqrt(1 − φ²) z(n)``, z standard normal: every
    sample has variance 1 and the autocorrelation at lag k is φ^k (Box and Jenkins,
    *Time Series Analysis*, 1970). Filtered along time by ``scipy.signal.lfilter``.
    """
    white = rng.standard_normal(shape)
    gain = np.sqrt(1.0 - phi**2)
    white[..., 0] /= gain  # so that ε(0) = z(0): the process starts stationary
    return signal.lfilter([gain], [1.0, -phi], white, axis=-1)


def nuisance_factor(rng, acq, n_voxels, frame_times):
    """Factor (voxels, frames) of drift and physiological noise for one run of ``acq``.

    None, and nothing drawn from ``rng``, when ``acq`` has neither (the default), so the
    series of a phantom without nuisance is unchanged bit for bit.
    """
    drifting = acq.drift_linear != 0 or acq.drift_quadratic != 0
    if not drifting and acq.physiological_noise == 0:
        return None
    drift = polynomial_drift(frame_times, acq.drift_linear, acq.drift_quadratic)
    if acq.physiological_noise == 0:
        return np.broadcast_to(drift, (n_voxels, drift.size))
    factor = ar1_noise(rng, (n_voxels, drift.size), acq.physiological_noise_ar)
    factor *= acq.physiological_noise  # in place: one (voxels, frames) array
    factor += 1.0
    factor *= drift
    return factor
