"""Single-delay CBF quantification of the ISMRM consensus (Alsop et al., MRM 2015;73:102).

PCASL / CASL (Eq. 1 of the consensus)::

    CBF = 6000 λ ΔM e^(PLD/T1b) / (2 α T1b M0 (1 - e^(-τ/T1b)))

PASL with QUIPSS II / Q2TIPS bolus cut-off (Eq. 2)::

    CBF = 6000 λ ΔM e^(TI/T1b) / (2 α TI1 M0)

CBF in mL/100 g/min, λ in mL/g, times in seconds, ΔM and M0 in the same units. Both are
exact inversions of the kinetic model of :mod:`bids_perfusion.asl.kinetics` with
T1' = T1b when the transit time is shorter than the post-labelling delay (PCASL) or
than TI - TI1 (PASL).
"""

import numpy as np

from bids_perfusion import constants


def _ratio(delta_m, m0):
    delta_m = np.asarray(delta_m, dtype=float)
    m0 = np.asarray(m0, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(m0 > 0, delta_m / m0, 0.0)


def pcasl_cbf(
    delta_m,
    m0,
    pld,
    labeling_duration,
    t1_blood,
    efficiency,
    partition=constants.BLOOD_BRAIN_PARTITION,
):
    """CBF from a single-PLD (P)CASL difference image; 0 where M0 is not positive."""
    numerator = constants.PER_SECOND_TO_PER_100G_MIN * partition * np.exp(pld / t1_blood)
    denominator = 2.0 * efficiency * t1_blood * (1.0 - np.exp(-labeling_duration / t1_blood))
    return numerator / denominator * _ratio(delta_m, m0)


def pasl_cbf(
    delta_m,
    m0,
    ti,
    bolus_duration,
    t1_blood,
    efficiency,
    partition=constants.BLOOD_BRAIN_PARTITION,
):
    """CBF from a single-TI PASL difference image with bolus cut-off (TI1 = bolus duration)."""
    numerator = constants.PER_SECOND_TO_PER_100G_MIN * partition * np.exp(ti / t1_blood)
    return numerator / (2.0 * efficiency * bolus_duration) * _ratio(delta_m, m0)
