"""From gradient-echo signal to relaxation-rate change and contrast agent concentration.

The gradient-echo signal at echo time TE during the bolus passage is

    S(t) = S0 * exp(-TE * ΔR2*(t)),  so  ΔR2*(t) = -ln(S(t) / S0) / TE

(Rosen et al., MRM 1990;14:249). Concentration follows from the relaxivity: linear in
tissue, ``ΔR2* = r_t C``, and linear plus quadratic in whole blood,
``ΔR2* = a C + b C²`` (Kjolby et al., MRM 2006;56:187). The constants depend on the
magnetic field and live in :data:`bids_perfusion.constants.DSC_RELAXIVITY`;
:func:`at_field` picks those of a run's field. With two echoes,
:func:`dual_echo_delta_r2star` removes the T1 effect of contrast agent leakage.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bids_perfusion import constants

#: Models of whole-blood ΔR2*: linear ``a C`` or linear plus quadratic ``a C + b C²``.
BLOOD_MODELS = ("linear", "quadratic")


def floating(values: ArrayLike) -> NDArray[np.floating]:
    """``values`` as a float array: float32 stays float32 (no float64 copy of a series),
    anything else becomes float64."""
    values = np.asarray(values)
    return values if values.dtype == np.float32 else values.astype(np.float64, copy=False)


@dataclass(frozen=True)
class Relaxivities:
    """The relaxivities used for one run, and the field they belong to.

    ``field_strength`` is the run's field (tesla), ``nominal_field`` the tabulated field
    of :data:`~bids_perfusion.constants.DSC_RELAXIVITY` whose constants are used;
    ``tissue`` r_t (s^-1 mM^-1), ``blood_linear`` a (s^-1 mM^-1) and ``blood_quadratic`` b
    (s^-1 mM^-2; 0 with the linear blood model).
    """

    field_strength: float
    nominal_field: float
    blood_model: str
    tissue: float
    blood_linear: float
    blood_quadratic: float

    def sidecar(self) -> dict[str, Any]:
        """The keys written into every DSC sidecar that depends on them."""
        return {"MagneticFieldStrength": self.field_strength,
                "RelaxivityFieldStrength": self.nominal_field,
                "TissueRelaxivity": self.tissue,
                "BloodRelaxivity": self.blood_model,
                "BloodRelaxivityLinear": self.blood_linear,
                "BloodRelaxivityQuadratic": self.blood_quadratic,
                "RelaxivitySource": constants.DSC_RELAXIVITY_SOURCE[self.nominal_field]}

    @classmethod
    def from_sidecar(cls, record: Mapping[str, Any]) -> "Relaxivities":
        """Inverse of :meth:`sidecar` (the dict that travels between nipype nodes)."""
        return cls(float(record["MagneticFieldStrength"]),
                   float(record["RelaxivityFieldStrength"]), record["BloodRelaxivity"],
                   float(record["TissueRelaxivity"]), float(record["BloodRelaxivityLinear"]),
                   float(record["BloodRelaxivityQuadratic"]))


def nominal_field(field_strength: float,
                  table: Mapping[float, Any] = constants.DSC_RELAXIVITY) -> float | None:
    """The tabulated field within :data:`~bids_perfusion.constants.FIELD_TOLERANCE` of
    ``field_strength`` (tesla), or ``None`` when there is none."""
    nearest = min(table, key=lambda b: abs(b - field_strength))
    return nearest if abs(nearest - field_strength) <= constants.FIELD_TOLERANCE else None


def at_field(field_strength: float, blood_model: str = "linear") -> Relaxivities:
    """:class:`Relaxivities` at ``field_strength`` (tesla) for a blood model of
    :data:`BLOOD_MODELS`; ValueError when no tabulated field is within the tolerance
    (the constants of another field would bias absolute CBV and CBF)."""
    if blood_model not in BLOOD_MODELS:
        raise ValueError(f"blood_model must be one of {BLOOD_MODELS}, got {blood_model!r}")
    nominal = nominal_field(field_strength)
    if nominal is None:
        raise ValueError(f"no DSC relaxivities at {field_strength:g} T; they are tabulated "
                         f"at {sorted(constants.DSC_RELAXIVITY)} T only")
    values = constants.DSC_RELAXIVITY[nominal]
    return Relaxivities(float(field_strength), nominal, blood_model, values["tissue"],
                        values["blood_linear"],
                        values["blood_quadratic"] if blood_model == "quadratic" else 0.0)


def signal_to_delta_r2star(signal: ArrayLike, s0: ArrayLike, te: float) -> NDArray[np.floating]:
    """``ΔR2*(t) = -ln(S(t) / S0) / TE`` (s^-1); ``S0`` broadcasts against ``signal``.

    In the dtype of :func:`floating` (``signal``), computed in place after the ratio.
    """
    signal = floating(signal)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.divide(signal, np.asarray(s0, dtype=signal.dtype))
        np.log(ratio, out=ratio)
    ratio /= np.asarray(-te, dtype=signal.dtype)
    return ratio


def delta_r2star_to_signal(delta_r2star: ArrayLike, s0: float | NDArray[np.float64],
                           te: float) -> NDArray[np.float64]:
    """``S(t) = S0 exp(-TE ΔR2*(t))``."""
    return s0 * np.exp(-te * np.asarray(delta_r2star, dtype=float))


def tissue_delta_r2star(concentration: ArrayLike,
                        r2star: float = constants.R2STAR_TISSUE) -> NDArray[np.float64]:
    """Tissue: ``ΔR2* = r2* C`` (s^-1), C in mM."""
    return r2star * np.asarray(concentration, dtype=float)


def tissue_concentration(delta_r2star: ArrayLike,
                         r2star: float = constants.R2STAR_TISSUE) -> NDArray[np.floating]:
    """Inverse of :func:`tissue_delta_r2star`: ``C = ΔR2* / r2*`` (mM), float32 for float32."""
    delta_r2star = floating(delta_r2star)
    return delta_r2star / np.asarray(r2star, dtype=delta_r2star.dtype)


def blood_delta_r2star(
    concentration: ArrayLike,
    linear: float = constants.R2STAR_BLOOD_LINEAR,
    quadratic: float = constants.R2STAR_BLOOD_QUADRATIC,
) -> NDArray[np.float64]:
    """Whole blood: ``ΔR2* = a C + b C²`` (s^-1); ``quadratic=0`` gives a linear model."""
    c = np.asarray(concentration, dtype=float)
    return linear * c + quadratic * c**2


def blood_concentration(
    delta_r2star: ArrayLike,
    linear: float = constants.R2STAR_BLOOD_LINEAR,
    quadratic: float = constants.R2STAR_BLOOD_QUADRATIC,
) -> NDArray[np.float64]:
    """Inverse of :func:`blood_delta_r2star`, the positive root of ``b C² + a C - ΔR2* = 0``.

    ``C = 2 ΔR2* / (a + sqrt(a² + 4 b ΔR2*))``, which is stable as b -> 0 and keeps the
    sign of ΔR2* for small negative (noise) values.
    """
    r = np.asarray(delta_r2star, dtype=float)
    disc = np.sqrt(np.clip(linear**2 + 4.0 * quadratic * r, 0.0, None))
    return 2.0 * r / (linear + disc)


def dual_echo_delta_r2star(s_te1: ArrayLike, s0_te1: ArrayLike, s_te2: ArrayLike,
                           s0_te2: ArrayLike, te1: float, te2: float) -> NDArray[np.float64]:
    """T1-insensitive ΔR2* from two echoes: ``ΔR2* = ln[(S1/S1₀) / (S2/S2₀)] / (TE2 − TE1)``.

    With ``S_e(t) = S_e,0 · f_T1(t) · exp(−TE_e ΔR2*(t))``, the T1 factor ``f_T1`` of
    extravasated contrast agent is the same at both echoes and cancels in the ratio
    (Vonken et al., MRM 1999;41:343; Paulson and Schmainda, Radiology 2008;249:601).
    ``S1₀`` and ``S2₀`` are the pre-bolus baselines of each echo and broadcast against the
    signals; times in seconds, result in s⁻¹ (float32 when both signals are float32).
    """
    if not (np.isfinite(te1) and np.isfinite(te2) and 0 < te1 < te2):
        raise ValueError(f"echo times must satisfy 0 < te1 < te2 (seconds), got {te1}, {te2}")
    s_te1, s_te2 = floating(s_te1), floating(s_te2)
    dtype = np.result_type(s_te1, s_te2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.divide(s_te1, np.asarray(s0_te1, dtype=dtype))
        ratio /= np.divide(s_te2, np.asarray(s0_te2, dtype=dtype))
        np.log(ratio, out=ratio)
    ratio /= np.asarray(te2 - te1, dtype=dtype)
    return ratio
