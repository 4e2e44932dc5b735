"""The general kinetic model of arterial spin labelling (Buxton et al., MRM 1998;40:383).

Single compartment, plug flow: labelled blood arrives at the voxel after the arterial
transit time Δt (ATT), as a bolus of duration τ, and its label decays with the T1 of blood
before arrival and with T1' afterwards, 1/T1' = 1/T1_tissue + f/λ. With ``t1_tissue=None``
the label keeps decaying with the T1 of blood after arrival (T1' = T1_blood): the
assumption under which the consensus single-delay formulas (Alsop et al., MRM
2015;73:102) are exact for ATT <= PLD.

Units: f (CBF) in mL/100 g/min at the interface and converted to mL/g/s inside; times in
seconds; ΔM in the units of M0 (M0 of tissue; the M0 of blood is M0 / λ).
"""

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bids_perfusion import constants


def _flow_per_second(cbf: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(cbf, dtype=float) / constants.PER_SECOND_TO_PER_100G_MIN


def _t1_apparent(f: NDArray[np.float64], t1_blood: float, t1_tissue: ArrayLike | None,
                 partition: float) -> float | NDArray[np.float64]:
    if t1_tissue is None:
        return np.broadcast_to(np.asarray(t1_blood, dtype=float), np.shape(f))
    return 1.0 / (1.0 / np.asarray(t1_tissue, dtype=float) + f / partition)


def pcasl_delta_m(
    pld: ArrayLike,
    cbf: ArrayLike,
    att: ArrayLike,
    m0: ArrayLike,
    labeling_duration: float | NDArray[np.float64],
    t1_blood: float,
    efficiency: float,
    partition: float = constants.BLOOD_BRAIN_PARTITION,
    t1_tissue: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Control - label difference ΔM for (pseudo-)continuous labelling.

    With t = τ + PLD, M0b = M0 / λ and f in mL/g/s (Buxton et al. 1998, Eq. 6-7)::

        ΔM = 0                                                         t < Δt
        ΔM = 2 α M0b f T1' e^(-Δt/T1b) (1 - e^(-(t-Δt)/T1'))           Δt <= t < Δt + τ
        ΔM = 2 α M0b f T1' e^(-Δt/T1b) e^(-(t-τ-Δt)/T1') (1 - e^(-τ/T1'))   t >= Δt + τ

    ``pld`` broadcasts against the voxel arrays ``cbf``, ``att``, ``m0`` (give voxels a
    trailing axis of length 1 to evaluate several delays at once).
    """
    f = _flow_per_second(cbf)
    t1p = _t1_apparent(f, t1_blood, t1_tissue, partition)
    att = np.asarray(att, dtype=float)
    t = labeling_duration + np.asarray(pld, dtype=float)
    scale = 2.0 * efficiency * np.asarray(m0, dtype=float) / partition * f * t1p
    scale = scale * np.exp(-att / t1_blood)
    filling = 1.0 - np.exp(-np.clip(t - att, 0.0, None) / t1p)
    washout = np.exp(-np.clip(t - labeling_duration - att, 0.0, None) / t1p) * (
        1.0 - np.exp(-labeling_duration / t1p)
    )
    inflow = t < att + labeling_duration
    return np.where(t < att, 0.0, scale * np.where(inflow, filling, washout))


def pasl_delta_m(
    ti: ArrayLike,
    cbf: ArrayLike,
    att: ArrayLike,
    m0: ArrayLike,
    bolus_duration: float,
    t1_blood: float,
    efficiency: float,
    partition: float = constants.BLOOD_BRAIN_PARTITION,
    t1_tissue: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Control - label difference ΔM for pulsed labelling with a bolus cut-off (QUIPSS II).

    With t = TI, τ = TI1 (the bolus duration fixed by the cut-off) and M0b = M0 / λ, the
    label that arrives at time s has decayed with T1b in transit and with T1' since
    (Buxton et al. 1998, Eq. 3-5)::

        ΔM(t) = 2 α M0b f ∫ e^(-s/T1b) e^(-(t-s)/T1') ds,   s from Δt to min(t, Δt + τ)

    and 0 for t < Δt. With T1' = T1b this is ``2 α M0b f (min(t, Δt + τ) - Δt)
    e^(-t/T1b)``, the model behind the consensus PASL formula.
    """
    f = _flow_per_second(cbf)
    t1p = _t1_apparent(f, t1_blood, t1_tissue, partition)
    att = np.asarray(att, dtype=float)
    t = np.asarray(ti, dtype=float)
    start = att
    end = np.minimum(t, att + bolus_duration)
    # e^(-s/T1b) e^(-(t-s)/T1') = e^(-t/T1') e^(-k s) with k = 1/T1b - 1/T1'.
    k = 1.0 / t1_blood - 1.0 / t1p
    duration = np.clip(end - start, 0.0, None)
    small_k = np.abs(k) < 1e-12
    safe_k = np.where(small_k, 1.0, k)
    kernel = np.where(
        small_k,
        duration * np.exp(-t / t1_blood),
        np.exp(-t / t1p) * (np.exp(-safe_k * start) - np.exp(-safe_k * end)) / safe_k,
    )
    scale = 2.0 * efficiency * np.asarray(m0, dtype=float) / partition * f
    return np.where(t < att, 0.0, scale * kernel)
