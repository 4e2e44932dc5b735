"""Tracer kinetics of a bolus of contrast agent: input functions and residue functions.

These are the forward-model building blocks of indicator-dilution theory (Meier and
Zierler, J Appl Physiol 1954;6:731; Ostergaard et al., MRM 1996;36:715). The tissue
concentration produced by an arterial input C_a(t) is

    C_t(t) = (rho / kH) * CBF * (C_a ⊛ R)(t),

with R(t) the residue function (R(0) = 1, non-increasing) whose integral is the mean
transit time MTT = CBV / CBF (central volume theorem, Stewart 1894).

All functions take times in seconds and broadcast over leading axes.
"""

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import signal, special


def gamma_variate(t: ArrayLike, t0: float = 0.0, alpha: float = 3.0,
                  beta: float = 1.5) -> NDArray[np.float64]:
    """Gamma-variate bolus shape, normalised to a peak of 1.

    ``g(t) = ((t - t0) / (alpha * beta))**alpha * exp(alpha - (t - t0) / beta)`` for
    ``t > t0`` and 0 before (Thompson et al., Circ Res 1964;14:502; Madsen, Phys Med Biol
    1992;37:1597). The peak, of height 1, is at ``t0 + alpha * beta``.
    """
    s = np.clip((np.asarray(t, dtype=float) - t0) / beta, 0.0, None)
    with np.errstate(divide="ignore"):
        log_g = alpha * np.log(s / alpha) + alpha - s
    return np.where(s > 0, np.exp(log_g), 0.0)


def residue_exponential(t: ArrayLike, mtt: ArrayLike) -> NDArray[np.float64]:
    """Residue function of a well-mixed compartment: ``R(t) = exp(-t / MTT)`` for t >= 0.

    Its integral is MTT (Ostergaard et al. 1996).
    """
    t = np.asarray(t, dtype=float)
    return np.where(t >= 0, np.exp(-np.clip(t, 0.0, None) / mtt), 0.0)


def residue_gamma(t: ArrayLike, mtt: ArrayLike, shape: float = 2.0) -> NDArray[np.float64]:
    """Residue function of a gamma distribution of transit times.

    With transit-time density ``h`` a gamma distribution of mean MTT and shape k
    (scale MTT / k), ``R(t) = 1 - H(t) = Q(k, k t / MTT)``, the regularised upper
    incomplete gamma function. Its integral is MTT; k = 1 gives the exponential.
    (Mouridsen et al., NeuroImage 2006;33:570.)
    """
    t = np.asarray(t, dtype=float)
    return np.where(t >= 0, special.gammaincc(shape, shape * np.clip(t, 0.0, None) / mtt), 0.0)


def dispersion_kernel(t: ArrayLike, tau: float) -> NDArray[np.float64]:
    """Unit-area exponential vascular transport kernel ``h(t) = exp(-t / tau) / tau``.

    Models dispersion of the bolus between the measured artery and the tissue
    (Calamante et al., MRM 2000;44:466). ``tau = 0`` returns a discrete delta.
    """
    t = np.asarray(t, dtype=float)
    if tau <= 0:
        dt = t[1] - t[0]
        return np.where(np.arange(t.size) == 0, 1.0 / dt, 0.0)
    return np.where(t >= 0, np.exp(-np.clip(t, 0.0, None) / tau) / tau, 0.0)


def convolve(a: ArrayLike, b: ArrayLike, dt: float) -> NDArray[np.float64]:
    """Causal discrete convolution ``(a ⊛ b)(t_i) = dt * sum_{j<=i} a(t_j) b(t_{i-j})``.

    Left-rectangle rule on a uniform grid of spacing ``dt`` (the frame interval appears
    in every convolution; forgetting it makes flows scale with the sampling). Operates on
    the last axis; the result is truncated to the length of ``a``.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    ndim = max(a.ndim, b.ndim)
    a = a.reshape((1,) * (ndim - a.ndim) + a.shape)
    b = b.reshape((1,) * (ndim - b.ndim) + b.shape)
    n = a.shape[-1]
    return dt * signal.fftconvolve(a, b, axes=-1)[..., :n]


def shift(curve: ArrayLike, delay: float, dt: float) -> NDArray[np.float64]:
    """Delay a sampled curve by ``delay`` seconds (linear interpolation, zero-filled)."""
    curve = np.asarray(curve, dtype=float)
    t = np.arange(curve.shape[-1]) * dt
    return np.interp(t - delay, t, curve, left=0.0)
