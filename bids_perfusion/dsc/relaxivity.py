"""From gradient-echo signal to relaxation-rate change and contrast agent concentration.

The gradient-echo signal at echo time TE during the bolus passage is

    S(t) = S0 * exp(-TE * ΔR2*(t)),  so  ΔR2*(t) = -ln(S(t) / S0) / TE

(Rosen et al., MRM 1990;14:249). Concentration follows from the relaxivity: linear in
tissue, ``ΔR2* = r_t C``, and linear plus quadratic in whole blood,
``ΔR2* = a C + b C²`` (Kjolby et al., MRM 2006;56:187). The constants live in
:mod:`bids_perfusion.constants`.
"""

import numpy as np

from bids_perfusion import constants


def signal_to_delta_r2star(signal, s0, te):
    """``ΔR2*(t) = -ln(S(t) / S0) / TE`` (s^-1); ``S0`` broadcasts against ``signal``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.log(np.asarray(signal, dtype=float) / s0) / te


def delta_r2star_to_signal(delta_r2star, s0, te):
    """``S(t) = S0 exp(-TE ΔR2*(t))``."""
    return s0 * np.exp(-te * np.asarray(delta_r2star, dtype=float))


def tissue_delta_r2star(concentration, r2star=constants.R2STAR_TISSUE):
    """Tissue: ``ΔR2* = r2* C`` (s^-1), C in mM."""
    return r2star * np.asarray(concentration, dtype=float)


def tissue_concentration(delta_r2star, r2star=constants.R2STAR_TISSUE):
    """Inverse of :func:`tissue_delta_r2star`: ``C = ΔR2* / r2*`` (mM)."""
    return np.asarray(delta_r2star, dtype=float) / r2star


def blood_delta_r2star(
    concentration,
    linear=constants.R2STAR_BLOOD_LINEAR,
    quadratic=constants.R2STAR_BLOOD_QUADRATIC,
):
    """Whole blood: ``ΔR2* = a C + b C²`` (s^-1); ``quadratic=0`` gives a linear model."""
    c = np.asarray(concentration, dtype=float)
    return linear * c + quadratic * c**2


def blood_concentration(
    delta_r2star,
    linear=constants.R2STAR_BLOOD_LINEAR,
    quadratic=constants.R2STAR_BLOOD_QUADRATIC,
):
    """Inverse of :func:`blood_delta_r2star`, the positive root of ``b C² + a C - ΔR2* = 0``.

    ``C = 2 ΔR2* / (a + sqrt(a² + 4 b ΔR2*))``, which is stable as b -> 0 and keeps the
    sign of ΔR2* for small negative (noise) values.
    """
    r = np.asarray(delta_r2star, dtype=float)
    disc = np.sqrt(np.clip(linear**2 + 4.0 * quadratic * r, 0.0, None))
    return 2.0 * r / (linear + disc)
