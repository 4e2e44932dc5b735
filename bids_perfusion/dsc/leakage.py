"""Contrast agent leakage correction of DSC-MRI: BSW, its transit variant, bidirectional.

Where the blood-brain barrier is broken (enhancing tumour), extravasated gadolinium
shortens T1 and raises the signal, so the measured ΔR2* falls below the intravascular one
and CBV is underestimated. Boxerman et al. (AJNR 2006;27:859) model the measured curve of a
voxel as a scaled reference curve of non-leaky brain plus a term proportional to its
running integral:

    ΔR2*(t) ≈ K1 · ΔR2*_ref(t) − K2 · ∫_0^t ΔR2*_ref(τ) dτ,

K1 dimensionless, K2 in s⁻¹ (positive for T1-dominant leakage, negative for T2*-dominant),
and correct it as ``ΔR2*_corr(t) = ΔR2*(t) + K2 ∫_0^t ΔR2*_ref``. Corrected CBV is the area
ratio of the corrected curves (:func:`bids_perfusion.dsc.maps.cbv_area_ratio`).
:func:`bsw_correction` is this published model by default; with ``transit_kernels`` it
lets the intravascular term differ in transit time from the reference (``bsw-transit``,
see there). :func:`bidirectional_correction` adds the back-flux of the agent from the
interstitium (Leu et al., AJNR 2016;37:1440). :func:`correct` dispatches on the model name;
:class:`LeakageModel` fits the voxels of a mask and returns full-volume maps.
The reference and the integrals start at the first frame given, which should be the first
steady-state frame; the reference is ~0 before the bolus, so earlier frames change nothing.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import integrate

from bids_perfusion.dsc import kinetics
from bids_perfusion.voxels import scatter, voxel_mask

#: A voxel is T1-enhancing when its post-bolus mean ΔR2* is this many robust standard
#: deviations (across the mask) below the median of the mask.
ENHANCING_Z = 3.0
#: A voxel has T2*-dominant leakage when its late ΔR2* exceeds the mask's late-to-peak
#: ratio by this many robust SDs (higher than ENHANCING_Z: a new criterion, kept from
#: excluding normal voxels through noise alone).
T2STAR_Z = 5.0
#: Time constants (s) of the transit-time terms of the ``bsw-transit`` model.
TRANSIT_KERNELS = (2.0, 4.0, 8.0)
#: Leakage models by their option name (``--leakage-correction``); ``bsw`` is the default.
MODELS = ("bsw", "bidirectional", "bsw-transit")


def output_label(model: str) -> str:
    """The ``desc`` label of a model's outputs: the option name without dash (``bswTransit``)."""
    if model not in MODELS:
        raise ValueError(f"unknown leakage model {model!r}; use one of {MODELS}")
    head, *rest = model.split("-")
    return head + "".join(part.capitalize() for part in rest)


def _validated_curves(data: NDArray[np.float64]) -> NDArray[np.float64]:
    if data.ndim < 1 or data.shape[-1] < 3:
        raise ValueError(f"ΔR2* must be curves (..., T) with T >= 3 frames, got {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError("ΔR2* contains NaN or infinite values; mask those voxels")
    return data


def _late_frames(mean_curve: NDArray[np.float64]) -> slice:
    """The last quarter of the frames after the peak of the mean curve."""
    peak = int(np.argmax(mean_curve))
    if not (mean_curve[peak] > 0 and mean_curve.size - peak >= 5):
        raise ValueError("the mean ΔR2* of the mask has no bolus followed by at least 4 "
                         "frames: the series must cover the bolus and some frames after it")
    return slice(mean_curve.size - (mean_curve.size - peak) // 4, None)


def non_enhancing(delta_r2star: ArrayLike, mask: ArrayLike) -> NDArray[np.bool_]:
    """The voxels of ``mask`` without leakage: boolean array of the voxel shape.

    T1-dominant leakage drives the late ΔR2* negative (Boxerman et al., AJNR 2006;27:859);
    T2*-dominant leakage keeps it high relative to the voxel's peak. With ``late`` the mean
    ΔR2* of the last quarter of the frames after the peak of the mask's mean curve, a
    voxel is excluded when ``late`` is more than ``ENHANCING_Z`` robust SDs
    (1.4826 · MAD across the mask) below the median of the mask, or when its excess
    ``late − m · peak`` (peak: the voxel's mean ΔR2* over the three frames
    around the peak of the mask's mean curve; m: the median of late/peak over
    the mask) is more than ``T2STAR_Z`` robust SDs above the median excess.
    """
    data = np.asarray(delta_r2star)
    mask = np.asarray(mask, dtype=bool)
    if data.ndim < 2 or mask.shape != data.shape[:-1]:
        raise ValueError(f"mask shape {mask.shape} does not match the voxels of ΔR2* curves "
                         f"{data.shape}")
    if not mask.any():
        raise ValueError("the mask of the leakage reference is empty")
    curves = _validated_curves(np.asarray(data[mask], dtype=np.float64))
    mean_curve = curves.mean(axis=0)
    late = curves[:, _late_frames(mean_curve)].mean(axis=-1)
    top = int(np.argmax(mean_curve))
    peak = curves[:, max(top - 1, 0):top + 2].mean(axis=-1)
    excess = late - np.median(late / np.where(peak > 0, peak, np.inf)) * peak
    kept = np.zeros(mask.shape, dtype=bool)
    kept[mask] = ((late >= _robust_limit(late, -ENHANCING_Z))
                  & (excess <= _robust_limit(excess, T2STAR_Z)))
    return kept


def _robust_limit(values: NDArray[np.float64], z: float) -> float:
    """``median + z · 1.4826 · MAD`` of ``values`` (MAD at least 1e-9 of the largest
    magnitude, so that identical noise-free voxels all pass)."""
    centre = np.median(values)
    spread = max(np.median(np.abs(values - centre)), 1e-9 * np.abs(values).max())
    return centre + z * 1.4826 * spread


def reference_curve(delta_r2star: ArrayLike, mask: ArrayLike) -> NDArray[np.float64]:
    """Mean ΔR2*(t) of the non-enhancing voxels of ``mask``: the BSW reference, shape (T,).

    ``ΔR2*_ref(t) = mean over {v ∈ mask, not enhancing} ΔR2*_v(t)`` (Boxerman et al.,
    AJNR 2006;27:859: the average of non-enhancing brain), the voxels chosen by
    :func:`non_enhancing`. ``mask`` should hold brain tissue without large vessels:
    arterial voxels scale the reference, and K2 inversely with it (the corrected curves
    do not change).
    """
    data = np.asarray(delta_r2star, dtype=np.float64)
    return data[non_enhancing(data, mask)].mean(axis=0)


@dataclasses.dataclass(frozen=True)
class LeakageFit:
    """Result of :func:`bsw_correction`, :func:`bidirectional_correction` or
    :meth:`LeakageModel.fit`: arrays of the voxel shape (``corrected``: + (T,)), 0 outside
    the mask of the fit.

    k1: dimensionless scale of the intravascular term (the area of the voxel's transport
    function relative to the reference: its CBV over the reference's); k2: leakage
    coefficient, s⁻¹ (positive: T1-dominant); corrected: ΔR2* plus the fitted leakage
    term, s⁻¹; kep: interstitial efflux rate, s⁻¹ (bidirectional model only, else None).
    """

    k1: np.ndarray
    k2: np.ndarray
    corrected: np.ndarray
    kep: np.ndarray | None = None


def _transit_columns(
    ref: NDArray[np.float64], times: NDArray[np.float64],
    kernels: Sequence[float] | NDArray[np.float64],
) -> list[NDArray[np.float64]]:
    """``ref ⊛ h_τ`` for unit-area exponential kernels ``h_τ`` (mid-point sampled)."""
    steps = np.diff(times)
    dt = float(np.median(steps))
    if not np.allclose(steps, dt, rtol=1e-3):
        raise ValueError("transit kernels need evenly spaced frame_times; pass "
                         "transit_kernels=() for the original BSW model on uneven sampling")
    lags = times - times[0] + dt / 2.0
    columns = []
    for tau in kernels:
        if not (np.isfinite(tau) and tau > 0):
            raise ValueError(f"transit kernel time constants must be > 0 s, got {tau}")
        kernel = kinetics.dispersion_kernel(lags, tau)
        columns.append(kinetics.convolve(ref, kernel / (kernel.sum() * dt), dt))
    return columns


def bsw_correction(delta_r2star: ArrayLike, reference: ArrayLike, frame_times: ArrayLike,
                   transit_kernels: Sequence[float] = ()) -> LeakageFit:
    """Per-voxel leakage fit and corrected curves, one pseudo-inverse for all voxels.

    Published model (default, ``transit_kernels=()``; Boxerman et al., AJNR 2006;27:859):
    ``ΔR2*(t) ≈ K1 ref(t) − K2 ∫_0^t ref``. It assumes the voxel's intravascular curve
    has the shape of the reference; where transit times differ (tumour rim: longer MTT),
    the mismatch is read as leakage and K2 is biased, even in sign (Bjornerud et al.,
    JCBFM 2011;31:2041, who recover K2 by deconvolving the voxel with the reference).

    ``bsw-transit`` (``transit_kernels=TRANSIT_KERNELS``), the same idea with a parametric
    deconvolution, added here because the published model misreads the longer MTT of a
    tumour rim as leakage: the intravascular term is the reference passed through a
    transport function expanded on unit-area exponential kernels
    ``h_τ(t) = e^(−t/τ)/τ`` (τ in ``transit_kernels``, s):

        ΔR2*(t) ≈ a₀ ref(t) + Σ_τ a_τ (ref ⊛ h_τ)(t) − K2 ∫_0^t ref,   K1 = a₀ + Σ a_τ.

    Both are linear in the coefficients: ``θ = X⁺ ΔR2*`` with the columns of X as above,
    the integral by the cumulative trapezoid rule on ``frame_times``, the convolutions as
    in :func:`bids_perfusion.dsc.kinetics.convolve` (evenly spaced frames). Returns a
    :class:`LeakageFit` with ``corrected = ΔR2* + K2 ∫_0^t ref``.
    """
    data, ref, times = _validated_inputs(delta_r2star, reference, frame_times)
    running = integrate.cumulative_trapezoid(ref, times, initial=0.0)
    design = np.stack([ref, *_transit_columns(ref, times, transit_kernels), -running], axis=-1)
    if np.linalg.matrix_rank(design) < design.shape[-1]:
        raise ValueError("the leakage design is rank deficient: the reference is flat, or "
                         "the series too short for the transit kernels")
    theta = data @ np.linalg.pinv(design).T
    k2 = theta[..., -1]
    return LeakageFit(k1=theta[..., :-1].sum(axis=-1), k2=k2,
                      corrected=data + k2[..., None] * running)


def bidirectional_correction(delta_r2star: ArrayLike, reference: ArrayLike,
                             frame_times: ArrayLike,
                             transit_kernels: Sequence[float] = TRANSIT_KERNELS) -> LeakageFit:
    """Bidirectional leakage fit with transit-time terms, all voxels at once.

    The agent crosses the barrier both ways (Leu et al., AJNR 2016;37:1440): the
    extravascular term is the reference convolved with an exponential of the interstitial
    efflux rate ``kep`` (s⁻¹); as in the residue-function formulation of Bjornerud et al.
    (JCBFM 2011;31:2041) the intravascular term is the reference passed through the
    voxel's own transport function, expanded here on the unit-area exponential kernels of
    ``transit_kernels`` (``h_0 = δ``, ``h_τ(t) = e^(−t/τ)/τ``):

        ΔR2*(t) = I(t) − L(t),   I = Σ_j a_j (ref ⊛ h_j),
        L(t) = K2 ∫_0^t ref(τ) e^(−kep (t−τ)) dτ,

    which is Leu et al.'s model when ``transit_kernels=()`` (then ``I = K1 ref``) and BSW
    when also kep = 0 (Boxerman et al., AJNR 2006;27:859). K2 > 0 for T1-dominant, K2 < 0
    for T2*-dominant leakage; K1 = Σ a_j. From ``dL/dt = K2 ref − kep L`` and
    ``L = I − ΔR2*``, ``L = K2 ∫ref − kep ∫I + kep ∫ΔR2*``; with ``X_τ = ref ⊛ h_τ``,
    ``∫X_τ = ∫ref − τ X_τ`` (since ``τ X_τ' = ref − X_τ``), so the model is linear
    (derived here; Leu et al. fit the form without transit terms):

        ΔR2*(t) = a_0 ref + Σ_τ c_τ X_τ + d ∫_0^t ref − kep ∫_0^t ΔR2*,
        c_τ = a_τ (1 − τ kep),   d = kep K1 − K2,

    solved per voxel by linear least squares with the shared columns (ref, X_τ, ∫ref)
    projected out first (Frisch-Waugh), so one vectorised pass gives kep, then a_0, c, d;
    ``a_τ = c_τ / (1 − τ kep)``, ``K2 = kep K1 − d``. Corrected curve: ``ΔR2* + L`` with
    ``L = Σ a_j X_j − (fitted ΔR2*)``, the residual of the fit kept. Integrals:
    cumulative trapezoid on ``frame_times``; convolutions as in :func:`bsw_correction`
    (evenly spaced frames with transit kernels).
    """
    data, ref, times = _validated_inputs(delta_r2star, reference, frame_times)
    kernels = np.asarray(transit_kernels, dtype=float)
    intravascular = np.stack([ref, *_transit_columns(ref, times, kernels)], axis=-1)
    shared = np.concatenate([intravascular, integrate.cumulative_trapezoid(
        ref, times, initial=0.0)[:, None]], axis=-1)
    if np.linalg.matrix_rank(shared) < shared.shape[-1]:
        raise ValueError("the leakage design is rank deficient: the reference is flat, or "
                         "the series too short for the transit kernels")
    own = -integrate.cumulative_trapezoid(data, times, axis=-1, initial=0.0)
    pseudo_inverse = np.linalg.pinv(shared)
    projector = np.eye(ref.size) - shared @ pseudo_inverse
    y_res, z_res = data @ projector, own @ projector  # projector is symmetric
    denominator = np.einsum("...t,...t->...", z_res, z_res)
    kep = np.where(denominator > 0, np.einsum("...t,...t->...", y_res, z_res)
                   / np.where(denominator > 0, denominator, 1.0), 0.0)
    theta = (data - kep[..., None] * own) @ pseudo_inverse.T
    damping = 1.0 - kernels * kep[..., None]
    a = np.concatenate([theta[..., :1], theta[..., 1:-1] / np.where(
        np.abs(damping) > 1e-3, damping, 1e-3)], axis=-1)
    k1 = a.sum(axis=-1)
    fitted = theta @ shared.T + kep[..., None] * own
    return LeakageFit(k1=k1, k2=kep * k1 - theta[..., -1], kep=kep,
                      corrected=data + a @ intravascular.T - fitted)


def correct(model: str, delta_r2star: ArrayLike, reference: ArrayLike,
            frame_times: ArrayLike) -> LeakageFit:
    """The :class:`LeakageFit` of a model of :data:`MODELS` (``bsw``: published BSW;
    ``bsw-transit``: BSW with :data:`TRANSIT_KERNELS`; ``bidirectional``: with efflux and
    the same transit kernels)."""
    if model == "bsw":
        return bsw_correction(delta_r2star, reference, frame_times)
    if model == "bsw-transit":
        return bsw_correction(delta_r2star, reference, frame_times, TRANSIT_KERNELS)
    if model == "bidirectional":
        return bidirectional_correction(delta_r2star, reference, frame_times)
    raise ValueError(f"unknown leakage model {model!r}; use one of {MODELS}")


@dataclasses.dataclass(frozen=True)
class LeakageModel:
    """A leakage model of :data:`MODELS` with its reference curve (dipy-style:
    ``LeakageModel(reference, frame_times, kind).fit(delta_r2star, mask) -> LeakageFit``).

    ``reference``: the ΔR2* of non-leaky brain, (T,), e.g. :func:`reference_curve`;
    ``frame_times``: s, (T,); ``kind``: ``bsw`` (default), ``bsw-transit`` or
    ``bidirectional`` (:func:`correct`).
    """

    reference: ArrayLike
    frame_times: ArrayLike
    kind: str = "bsw"

    def __post_init__(self) -> None:
        output_label(self.kind)  # ValueError for an unknown model

    def fit(self, delta_r2star: ArrayLike, mask: ArrayLike | None = None) -> LeakageFit:
        """Fit ΔR2* curves ``(..., T)``, the voxels of ``mask`` only when given; the
        :class:`LeakageFit` has the voxel shape of ``delta_r2star``, 0 outside the mask."""
        data = np.asarray(delta_r2star)
        if mask is None:
            return correct(self.kind, data, self.reference, self.frame_times)
        voxels = voxel_mask(mask, data.shape[:-1])
        fit = correct(self.kind, data[voxels], self.reference, self.frame_times)
        return LeakageFit(k1=scatter(fit.k1, voxels), k2=scatter(fit.k2, voxels),
                          corrected=scatter(fit.corrected, voxels),
                          kep=None if fit.kep is None else scatter(fit.kep, voxels))


def _validated_inputs(
    delta_r2star: ArrayLike, reference: ArrayLike, frame_times: ArrayLike,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    data = _validated_curves(np.asarray(delta_r2star, dtype=np.float64))
    ref = np.asarray(reference, dtype=np.float64)
    times = np.asarray(frame_times, dtype=np.float64)
    if ref.ndim != 1 or times.shape != ref.shape or data.shape[-1] != ref.size:
        raise ValueError(f"reference {ref.shape}, frame_times {times.shape} and the last axis "
                         f"of ΔR2* {data.shape} must have the same number of frames")
    if not (np.all(np.isfinite(ref)) and np.all(np.diff(times) > 0)):
        raise ValueError("the reference must be finite and frame_times strictly increasing")
    return data, ref, times
