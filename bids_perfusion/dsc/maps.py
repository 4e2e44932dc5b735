"""Perfusion maps from DSC concentration curves and a deconvolution fit.

- CBV by the area ratio of tissue and arterial concentration (Rempp et al., Radiology
  1994;193:637): ``CBV = 100 · (kH / ρ) · ∫C_t / ∫C_a``, mL/100 g;
- CBF from the flow-scaled residue function (Ostergaard et al., MRM 1996;36:715):
  ``CBF = (kH / ρ) · 6000 · max_t k(t)``, mL/100 g/min;
- MTT by the central volume theorem (Stewart 1894; Meier and Zierler, J Appl Physiol
  1954;6:731): ``MTT = 60 · CBV / CBF``, s;
- Tmax, TTP and bolus arrival time, s (:mod:`bids_perfusion.dsc.timing`).

``scaled=False`` drops the haematocrit and density factor kH / ρ: CBV in mL/100 mL and CBF
in mL/100 mL/min, the convention of the OSIPI DSC challenge. kH and ρ default to
:data:`bids_perfusion.constants.KH` and :data:`~bids_perfusion.constants.RHO_BRAIN`.
"""

import dataclasses
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bids_perfusion.constants import KH, RHO_BRAIN
from bids_perfusion.dsc import timing
from bids_perfusion.dsc.relaxivity import floating

if TYPE_CHECKING:
    from bids_perfusion.dsc.deconvolution import DeconvolutionFit


def _scale(kh: float, rho: float, scaled: bool) -> float:
    if not scaled:
        return 1.0
    if not (np.isfinite(kh) and np.isfinite(rho) and kh > 0 and rho > 0):
        raise ValueError(f"kh and rho must be positive, got kh={kh}, rho={rho}")
    return kh / rho


def trapezoid_weights(frame_times: ArrayLike) -> NDArray[np.float64]:
    """Weights ``w`` with ``Σ_i w_i y_i`` the trapezoid rule over ``frame_times``.

    ``w_0 = (t_1 − t_0)/2``, ``w_i = (t_{i+1} − t_{i−1})/2``, ``w_{T−1} = (t_{T−1} − t_{T−2})/2``:
    the integral of many curves is then one matrix-vector product, with no temporary
    the size of the curves.
    """
    steps = np.diff(np.asarray(frame_times, dtype=np.float64))
    return np.concatenate([steps, [0.0]]) / 2.0 + np.concatenate([[0.0], steps]) / 2.0


def cbv_area_ratio(tissue_concentration: ArrayLike, aif_concentration: ArrayLike,
                   frame_times: ArrayLike, kh: float = KH, rho: float = RHO_BRAIN,
                   scaled: bool = True) -> NDArray[np.floating]:
    """Cerebral blood volume by the area ratio, mL/100 g (mL/100 mL when not scaled).

    ``CBV = 100 · (kH / ρ) · ∫C_t(t) dt / ∫C_a(t) dt`` (Rempp et al., Radiology
    1994;193:637), both integrals by the trapezoid rule over ``frame_times``
    (:func:`trapezoid_weights`). The curves should start after the steady-state frames
    and cover the first pass; ``scaled=False`` gives ``100 · ∫C_t / ∫C_a``.
    Leakage-corrected CBV is the same ratio on corrected curves
    (:mod:`bids_perfusion.dsc.leakage`). Float32 tissue curves give float32 CBV.
    """
    times = np.asarray(frame_times, dtype=np.float64)
    tissue = floating(tissue_concentration)
    aif = np.asarray(aif_concentration, dtype=np.float64)
    if times.ndim != 1 or aif.shape != times.shape or tissue.shape[-1:] != times.shape:
        raise ValueError(
            f"the AIF {aif.shape}, frame_times {times.shape} and the last axis of the tissue "
            f"concentration {tissue.shape} must have the same number of frames")
    if not np.all(np.diff(times) > 0):
        raise ValueError("frame_times must be strictly increasing (seconds)")
    weights = trapezoid_weights(times)
    aif_area = aif @ weights
    if not (np.isfinite(aif_area) and aif_area > 0):
        raise ValueError(f"the AIF area must be positive, got {aif_area}: check the AIF")
    factor = 100.0 * _scale(kh, rho, scaled) / aif_area
    return tissue @ (factor * weights).astype(tissue.dtype)


def cbf_from_fit(fit: "DeconvolutionFit", kh: float = KH, rho: float = RHO_BRAIN,
                 scaled: bool = True) -> NDArray[np.floating]:
    """Cerebral blood flow, mL/100 g/min (mL/100 mL/min when not scaled).

    ``CBF = (kH / ρ) · 6000 · max_t k(t)`` with ``k = CBF · R`` the flow-scaled residue of a
    :class:`~bids_perfusion.dsc.deconvolution.DeconvolutionFit`, whose ``cbf`` is
    ``6000 · max k`` (Ostergaard et al., MRM 1996;36:715).
    """
    return _scale(kh, rho, scaled) * fit.cbf


def mean_transit_time(cbv: ArrayLike, cbf: ArrayLike) -> NDArray[np.float64]:
    """Mean transit time, s: ``MTT = 60 · CBV / CBF`` (central volume theorem).

    CBV in mL/100 g and CBF in mL/100 g/min (or both per 100 mL); 0 where CBF ≤ 0
    (Stewart, J Physiol 1894;15:1; Meier and Zierler, J Appl Physiol 1954;6:731).
    """
    cbv = np.asarray(cbv, dtype=np.float64)
    cbf = np.asarray(cbf, dtype=np.float64)
    positive = cbf > 0
    return np.where(positive, 60.0 * cbv / np.where(positive, cbf, 1.0), 0.0)


@dataclasses.dataclass(frozen=True)
class DSCMaps:
    """The classical DSC maps of one run; arrays of the voxel shape.

    cbv: mL/100 g; cbf: mL/100 g/min (per 100 mL when built with ``scaled=False``);
    mtt, tmax: s; ttp, bat: s on the clock of the ``frame_times`` they were built with.
    """

    cbv: np.ndarray
    cbf: np.ndarray
    mtt: np.ndarray
    tmax: np.ndarray
    ttp: np.ndarray
    bat: np.ndarray

    #: Units of each map for the output sidecars (scaled maps).
    UNITS: ClassVar[dict] = {"cbv": "mL/100g", "cbf": "mL/100g/min", "mtt": "s", "tmax": "s",
                             "ttp": "s", "bat": "s"}

    @classmethod
    def from_fit(cls, tissue_concentration: ArrayLike, aif_concentration: ArrayLike,
                 frame_times: ArrayLike, fit: "DeconvolutionFit", kh: float = KH,
                 rho: float = RHO_BRAIN, scaled: bool = True) -> "DSCMaps":
        """All maps from the tissue curves (..., T), the AIF (T,) and their deconvolution.

        CBV by :func:`cbv_area_ratio`, CBF by :func:`cbf_from_fit`, MTT by
        :func:`mean_transit_time`, Tmax from the fit, TTP and BAT by
        :func:`~bids_perfusion.dsc.timing.time_to_peak` and
        :func:`~bids_perfusion.dsc.timing.bolus_arrival_time`.
        """
        cbv = cbv_area_ratio(tissue_concentration, aif_concentration, frame_times, kh, rho,
                             scaled)
        cbf = cbf_from_fit(fit, kh, rho, scaled)
        return cls(cbv=cbv, cbf=cbf, mtt=mean_transit_time(cbv, cbf), tmax=fit.tmax,
                   ttp=timing.time_to_peak(tissue_concentration, frame_times),
                   bat=timing.bolus_arrival_time(tissue_concentration, frame_times))
