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
from numpy.typing import ArrayLike, NDArray

from bids_perfusion import constants


def _ratio(delta_m: ArrayLike, m0: ArrayLike) -> NDArray[np.float64]:
    delta_m = np.asarray(delta_m, dtype=float)
    m0 = np.asarray(m0, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(m0 > 0, delta_m / m0, 0.0)


def pcasl_cbf(
    delta_m: ArrayLike,
    m0: ArrayLike,
    pld: float | NDArray[np.float64],
    labeling_duration: float | NDArray[np.float64],
    t1_blood: float,
    efficiency: float,
    partition: float = constants.BLOOD_BRAIN_PARTITION,
) -> NDArray[np.float64]:
    """CBF from a single-PLD (P)CASL difference image; 0 where M0 is not positive."""
    numerator = constants.PER_SECOND_TO_PER_100G_MIN * partition * np.exp(pld / t1_blood)
    denominator = 2.0 * efficiency * t1_blood * (1.0 - np.exp(-labeling_duration / t1_blood))
    return numerator / denominator * _ratio(delta_m, m0)


def pasl_cbf(
    delta_m: ArrayLike,
    m0: ArrayLike,
    ti: float | NDArray[np.float64],
    bolus_duration: float,
    t1_blood: float,
    efficiency: float,
    partition: float = constants.BLOOD_BRAIN_PARTITION,
) -> NDArray[np.float64]:
    """CBF from a single-TI PASL difference image with bolus cut-off (TI1 = bolus duration)."""
    numerator = constants.PER_SECOND_TO_PER_100G_MIN * partition * np.exp(ti / t1_blood)
    return numerator / (2.0 * efficiency * bolus_duration) * _ratio(delta_m, m0)


def slice_delays(delay: float, slice_timing: ArrayLike | None,
                 ndim: int = 3) -> float | NDArray[np.float64]:
    """Effective delay of each slice of a 2-D readout: ``PLD_z = PLD + SliceTiming[z]``.

    Slice z is read ``SliceTiming[z]`` seconds after the first, so its label has had that
    much longer to arrive and decay (Alsop et al. 2015, "2D readouts"). Returns ``delay``
    unchanged without slice timing, else an array of shape ``(1, 1, n_slices)`` (or
    ``(1, 1, n_slices, 1)`` with ``ndim=4``) that broadcasts against images.
    """
    if slice_timing is None:
        return delay
    offsets = np.asarray(slice_timing, dtype=float).reshape((1, 1, -1) + (1,) * (ndim - 3))
    return np.asarray(delay, dtype=float) + offsets


def single_delay_cbf(delta_m: ArrayLike, m0: ArrayLike, label_type: str, delay: float,
                     t1_blood: float, efficiency: float,
                     labeling_duration: float | None = None,
                     bolus_duration: float | None = None,
                     slice_timing: ArrayLike | None = None,
                     partition: float = constants.BLOOD_BRAIN_PARTITION) -> NDArray[np.float64]:
    """CBF of a single-delay run: :func:`pcasl_cbf` (PCASL, CASL) or :func:`pasl_cbf`.

    ``delay`` is the PLD (PCASL/CASL) or the inversion time TI (PASL); with
    ``slice_timing`` each slice takes its own delay (:func:`slice_delays`).
    ``delta_m`` may carry a trailing axis of pairs: it then needs ``m0[..., None]``.
    """
    effective = slice_delays(delay, slice_timing, ndim=np.ndim(delta_m))
    if label_type in ("PCASL", "CASL"):
        if labeling_duration is None:
            raise ValueError(f"{label_type} CBF needs the labeling_duration")
        return pcasl_cbf(delta_m, m0, effective, labeling_duration, t1_blood, efficiency,
                         partition)
    if label_type == "PASL":
        if bolus_duration is None:
            raise ValueError("PASL CBF needs the bolus_duration (TI1)")
        return pasl_cbf(delta_m, m0, effective, bolus_duration, t1_blood, efficiency,
                        partition)
    raise ValueError(f"unknown labelling type {label_type!r}")
