"""MR signal equations of the phantom: spoiled gradient echo and magnitude noise."""

import numpy as np


def rician(rng, signal, sd):
    """Magnitude of the signal plus complex Gaussian noise: ``|S + n_re + i n_im|``.

    ``n_re`` and ``n_im`` are independent with standard deviation ``sd`` (Gudbjartsson and
    Patz, MRM 1995;34:910). ``sd = 0`` returns the signal unchanged.
    """
    signal = np.asarray(signal, dtype=float)
    if sd == 0:
        return signal.copy()
    real = signal + rng.normal(0.0, sd, signal.shape)
    imag = rng.normal(0.0, sd, signal.shape)
    return np.hypot(real, imag)


def spoiled_gre_steady_state(t1, tr, flip_deg):
    """Steady-state signal of a spoiled gradient echo relative to M0 (Ernst equation).

    ``S_ss / M0 = sin(α) (1 - E1) / (1 - E1 cos α)`` with E1 = exp(-TR/T1).
    """
    alpha = np.deg2rad(flip_deg)
    e1 = np.exp(-tr / np.maximum(np.asarray(t1, dtype=float), 1e-6))
    return np.sin(alpha) * (1.0 - e1) / (1.0 - e1 * np.cos(alpha))


def spoiled_gre_factor(t1, tr, flip_deg, n_frames):
    """Signal of frame n of a spoiled gradient echo relative to a fully relaxed M0.

    ``S_n / M0 = S_ss/M0 + (sin α - S_ss/M0) (E1 cos α)^n``: the first excitation sees the
    full M0, later ones approach the steady state of :func:`spoiled_gre_steady_state`
    geometrically (Haacke et al., MRI Physical Principles 1999, ch. 18).
    Returns shape ``t1.shape + (n_frames,)``.
    """
    alpha = np.deg2rad(flip_deg)
    e1 = np.exp(-tr / np.maximum(np.asarray(t1, dtype=float), 1e-6))[..., None]
    steady = spoiled_gre_steady_state(t1, tr, flip_deg)[..., None]
    return steady + (np.sin(alpha) - steady) * (e1 * np.cos(alpha)) ** np.arange(n_frames)
