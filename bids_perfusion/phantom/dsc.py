"""DSC-MRI series of a phantom subject.

Concentration (mM) on a time grid ``time_oversampling`` times finer than the frames:

- AIF: ``C_a(t) = d A [g(t) + (g ⊛ h_rec)(t - T_rec)] ⊛ box_D`` with g a gamma variate
  starting at the arrival t₀ (:func:`bolus_arrival`), h_rec an exponential dispersion
  kernel scaled so the second pass has ``recirculation_fraction`` of the first pass's
  area, A the full-dose peak, d the dose factor and box_D the unit-area box of the
  injection duration D (none for D = 0).
- Compartment k: ``C_k(t) = (rho/kH) F_k (C_in,k ⊛ R_k)(t)``, with the input delayed by
  ``delay_k`` (+ ``extra_delay``) and dispersed by an exponential kernel of ``tau_k``
  (Calamante et al., MRM 2000;44:466), and by one of ``extra_dispersion`` common to all
  tissues, R_k exponential or gamma with MTT_k = CBV_k/CBF_k,
  so that ``100 (kH/rho) ∫C_k / ∫C_a = CBV_k``.
- Voxel: ``ΔR2* = r_t s Σ_k w_k C_k + a ΔR2*_blood(C_a) - K2 ∫_0^t ΔR2*_ref``; the last
  term is the leakage effect in the form of Boxerman, Schmainda and Weisskoff (AJNR
  2006;27:859), ref the mean ΔR2* of normal brain (``leakage`` ``bsw`` and ``t2star``).
- Signal at echo e: ``S = M0 SS(n) e^(-TE_e R2*_0) e^(-TE_e ΔR2*_intravascular) L_e(t)``
  with SS(n) the approach of a spoiled gradient echo to its steady state (first frames
  brighter; n counts ``dummy_scans`` excitations before the first frame) and the
  leakage factor L_e of ``DSCAcquisition.leakage``:
  ``bsw``: ``e^(TE_1 K2 ∫ΔR2*_ref)``, K2 > 0, a T1 (echo-time independent) effect
  calibrated on the first echo; ``t2star``: ``e^(TE_e K2 ∫ΔR2*_ref)`` with K2 < 0, a
  ΔR2* effect at every echo; ``tofts``: ``SPGR(R1(t)) / SPGR(R1_0)``,
  ``R1 = 1/T10 + r1 C_e``, C_e the Tofts extravascular concentration of the rim
  (:func:`tofts_concentration`). Drift and physiological noise multiply the signal
  (:mod:`bids_perfusion.phantom.nuisance`; none by default), then Rician noise of
  standard deviation ``mean brain S0 / SNR`` is added.
"""

from dataclasses import dataclass

import numpy as np

from bids_perfusion import constants
from bids_perfusion.dsc import kinetics, relaxivity
from bids_perfusion.phantom import forward
from bids_perfusion.phantom.config import RECEIVER_GAIN
from bids_perfusion.phantom.mr import rician, spoiled_gre_factor
from bids_perfusion.phantom.nuisance import nuisance_factor


@dataclass(frozen=True)
class DSCSimulation:
    """Simulated DSC runs and their noise-free ground truth.

    ``signals[(dose, echo)]`` is a float32 (x, y, z, t) array; ``aif[dose]`` the
    noise-free arterial concentration at the frame times.
    """

    signals: dict
    aif: dict
    frame_times: np.ndarray
    tmax: np.ndarray
    bat: np.ndarray
    delay: np.ndarray
    k2: np.ndarray
    noise_sd: float
    ktrans: np.ndarray | None = None
    ve: np.ndarray | None = None
    #: Forward model ``realistic`` only: the CBV truth (vessels' blood included) and the
    #: subject's T2* relaxivity of extravasated agent, s^-1 mM^-1.
    cbv: np.ndarray | None = None
    r2star_ev: float | None = None


def bolus_arrival(acq):
    """Arrival of the bolus at the artery, s after the first frame: ``acq.aif_arrival``,
    or ``baseline_frames * tr`` when it is not set."""
    return acq.baseline_frames * acq.tr if acq.aif_arrival is None else acq.aif_arrival


def arterial_input(t, acq, dose):
    """Arterial concentration (mM) on the grid ``t``: first pass plus recirculation,
    convolved with the injection's box when ``acq.injection_duration`` > 0."""
    dt = t[1] - t[0]
    t0 = bolus_arrival(acq)
    first = kinetics.gamma_variate(t, t0, acq.aif_alpha, acq.aif_beta)
    second = kinetics.convolve(
        kinetics.gamma_variate(t, t0 + acq.recirculation_delay, acq.aif_alpha, acq.aif_beta),
        _unit_kernel(t, acq.recirculation_dispersion), dt)
    second *= acq.recirculation_fraction * first.sum() / second.sum()
    aif = acq.aif_peak_mM * dose * (first + second)
    if acq.injection_duration > 0:
        aif = kinetics.convolve(aif, injection_box(t, acq.injection_duration), dt)
    return aif


def injection_box(t, duration):
    """Unit-area box of length ``duration`` (s) on the uniform grid ``t``: ``1/duration``
    on [0, duration), the last partial step weighted by its covered fraction, so that
    ``Δt Σ box = 1`` exactly and a convolution keeps the curve's area."""
    dt = t[1] - t[0]
    covered = np.clip(duration / dt - np.arange(t.size), 0.0, 1.0)
    return covered / duration


def _unit_kernel(t, tau):
    """Dispersion kernel sampled at mid-points and normalised to unit area on the grid."""
    dt = t[1] - t[0]
    kernel = kinetics.dispersion_kernel(t + dt / 2.0, tau) if tau > 0 else \
        kinetics.dispersion_kernel(t, 0.0)
    return kernel / (kernel.sum() * dt)


def _residue(t, mtt, acq):
    # Mid-point samples: dt Σ R = MTT to second order in dt / MTT.
    mid = t + (t[1] - t[0]) / 2.0
    if acq.residue == "gamma":
        return kinetics.residue_gamma(mid, mtt, acq.residue_shape)
    return kinetics.residue_exponential(mid, mtt)


def compartment_curves(t, aif, tissues, acq):
    """Concentration ``C_k(t)`` (K, T) and flow-scaled residue ``F_k R_k,eff(t)`` (K, T).

    R_k,eff is the residue seen from the measured artery: delayed, and dispersed by the
    transport kernel; its maximum is the ground-truth Tmax.
    """
    dt = t[1] - t[0]
    curves = np.zeros((len(tissues), t.size))
    residues = np.zeros((len(tissues), t.size))
    common = _unit_kernel(t, acq.extra_dispersion) if acq.extra_dispersion > 0 else None
    for k, tissue in enumerate(tissues):
        if tissue.cbf <= 0:
            continue
        flow = tissue.cbf / constants.PER_SECOND_TO_PER_100G_MIN
        kernel = _unit_kernel(t, tissue.dispersion)
        if common is not None:
            kernel = kinetics.convolve(kernel, common, dt)
        delay = tissue.delay + acq.extra_delay
        inflow = kinetics.shift(kinetics.convolve(aif, kernel, dt), delay, dt)
        residue = _residue(t, tissue.mtt, acq)
        curves[k] = constants.RHO_BRAIN / constants.KH * flow * kinetics.convolve(
            inflow, residue, dt)
        residues[k] = flow * kinetics.shift(kinetics.convolve(kernel, residue, dt), delay, dt)
    return curves, residues


def tofts_concentration(t, aif, ktrans, ve):
    """Extravascular concentration of the standard Tofts model, mM, shape (K, T).

    ``C_e(t) = Ktrans ∫_0^t C_p(τ) e^(−(Ktrans/ve)(t−τ)) dτ`` with the plasma concentration
    ``C_p = C_a / (1 − Hct)`` (Tofts et al., JMRI 1999;10:223-232); Ktrans (s⁻¹) and ve
    per compartment (arrays of K), the convolution on the fine grid ``t``.
    """
    dt = t[1] - t[0]
    plasma = aif / (1.0 - constants.HCT_LARGE_VESSELS)
    ktrans = np.asarray(ktrans, dtype=float)
    out = np.zeros((ktrans.size, t.size))
    for k, (kt, v) in enumerate(zip(ktrans, np.asarray(ve, dtype=float), strict=True)):
        if kt > 0:
            out[k] = kt * kinetics.convolve(plasma, np.exp(-kt / v * (t + dt / 2.0)), dt)
    return out


def r1_relaxivity(field_strength):
    """r1 of the nearest tabulated field (``constants.R1_RELAXIVITY``), s⁻¹ mM⁻¹."""
    field = min(constants.R1_RELAXIVITY, key=lambda f: abs(f - field_strength))
    return constants.R1_RELAXIVITY[field]


def relaxivities(acq):
    """The :class:`~bids_perfusion.dsc.relaxivity.Relaxivities` of the acquisition's field
    and blood model: the same constants the pipeline uses for that field."""
    return relaxivity.at_field(acq.field_strength, acq.blood_relaxivity)


def blood_delta_r2star(concentration, acq):
    """ΔR2* of whole blood under the configured relaxivity model and field."""
    relax = relaxivities(acq)
    return relaxivity.blood_delta_r2star(concentration, relax.blood_linear,
                                         relax.blood_quadratic)


def simulate_dsc(subject, acq, rng, forward_model="simple"):
    """Simulate every dose and echo of ``acq`` for ``subject``; fresh noise for each run.

    ``forward_model`` ``realistic`` replaces the noise-free signal by that of
    :class:`~bids_perfusion.phantom.forward.RealisticSignals` (needs ``tofts`` leakage).
    """
    if forward_model == "realistic" and acq.leakage != "tofts":
        raise ValueError("The realistic forward model leaks by the Tofts model: set "
                         "dsc.leakage to 'tofts' (--leakage tofts).")
    step = acq.time_oversampling
    dt = acq.tr / step
    t = np.arange(acq.n_frames * step) * dt
    frames = slice(None, None, step)
    weights = subject.weights.reshape(len(subject.tissues), -1)
    scale = subject.scale.reshape(-1)
    artery = subject.artery.reshape(-1)

    masks = subject.masks()
    normal = (masks["brain"] & ~masks["arteries"]
              & (subject.fraction("enhancing") + subject.fraction("necrosis")
                 + subject.fraction("oedema") == 0)).reshape(-1)
    leak_factor = acq.preload_leakage_factor if acq.preload else 1.0
    k2 = leak_factor * subject.mixture("k2").reshape(-1)
    ktrans = ve = None
    if acq.leakage == "t2star":
        k2 = -k2
    elif acq.leakage == "tofts":
        # Ktrans (s^-1) and ve of each compartment; only leaky (k2 > 0) compartments.
        k2_tissue = np.array([tis.k2 for tis in subject.tissues])
        ktrans_tissue = acq.tofts_ktrans_per_k2 * k2_tissue / 60.0
        ktrans = 60.0 * (ktrans_tissue @ weights)  # voxel truth, min^-1
        ve = acq.tofts_ve * ((k2_tissue > 0).astype(float) @ weights)
        t10 = subject.relaxation("t1").reshape(-1)
        k2 = np.zeros_like(k2)

    m0 = RECEIVER_GAIN * subject.relaxation("m0").reshape(-1)
    r2star0 = subject.relaxation("r2star").reshape(-1)
    steady = spoiled_gre_factor(subject.relaxation("t1").reshape(-1), acq.tr, acq.flip_angle,
                                acq.n_frames + acq.dummy_scans)[:, acq.dummy_scans:]
    brain = masks["brain"].reshape(-1)
    s0_first_echo = m0 * steady[:, -1] * np.exp(-acq.echo_times[0] * r2star0)
    noise_sd = float(s0_first_echo[brain].mean() / acq.snr)

    r_tissue = relaxivities(acq).tissue
    signals, aifs = {}, {}
    # Forward model "realistic": the subject's T2* relaxivity of extravasated agent.
    r2star_ev = (forward.draw_r2star_ev(rng, acq.field_strength)
                 if forward_model == "realistic" else None)
    for dose in acq.doses:
        nuisance = nuisance_factor(rng, acq, m0.size, t[frames])
        aif = arterial_input(t, acq, dose)
        curves, residues = compartment_curves(t, aif, subject.tissues, acq)
        tissue_r2 = relaxivity.tissue_delta_r2star(
            scale[:, None] * (weights.T @ curves[:, frames]), r_tissue)
        # Reference for leakage: mean ΔR2* of normal brain, integrated on the fine grid
        # (cumulative trapezoid) and sampled at the frames.
        mean_weights = (scale[normal, None] * weights[:, normal].T).mean(axis=0)
        reference = relaxivity.tissue_delta_r2star(mean_weights @ curves, r_tissue)
        integral = np.concatenate([[0.0], np.cumsum((reference[1:] + reference[:-1]) / 2.0)])
        leak = k2[:, None] * (integral * dt)[frames]
        intravascular = tissue_r2 + artery[:, None] * blood_delta_r2star(aif[frames], acq)
        if acq.leakage == "tofts":
            extravascular = leak_factor * (weights.T @ tofts_concentration(
                t, aif, ktrans_tissue, np.full(k2_tissue.size, acq.tofts_ve))[:, frames])
            t10_safe = np.maximum(t10, 1e-3)  # T1 is 0 outside the head
            t1_gain = forward.spgr_t1_gain(
                t10_safe, r1_relaxivity(acq.field_strength) * extravascular, acq.tr,
                acq.flip_angle)
        realistic = None if r2star_ev is None else forward.RealisticSignals(
            subject, acq, aif[frames], tissue_r2, extravascular,
            r1_relaxivity(acq.field_strength), r2star_ev)
        for echo, te in enumerate(acq.echo_times):
            # bsw: T1 effect calibrated on the first echo; t2star: ΔR2* at every echo.
            leak_te = te if acq.leakage == "t2star" else acq.echo_times[0]
            clean = (m0[:, None] * steady * np.exp(-te * r2star0)[:, None]
                     * np.exp(-te * intravascular + leak_te * leak))
            if acq.leakage == "tofts":
                clean = clean * t1_gain
            if realistic is not None:
                clean = realistic.signal(te)
            if nuisance is not None:
                clean = clean * nuisance
            noisy = rician(rng, clean, noise_sd)
            signals[(dose, echo)] = noisy.reshape(*subject.grid.shape, -1).astype(np.float32)
        aifs[dose] = aif[frames]

    # Ground-truth timing from the flow-scaled effective residues (dose independent).
    horizon = t < t[-1] / 2.0
    mixed = weights.T @ residues[:, horizon]
    tmax = np.where(mixed.max(axis=1) > 0, t[horizon][np.argmax(mixed, axis=1)], 0.0)
    delay = subject.mixture("delay", flow_weighted=True).reshape(-1) + acq.extra_delay
    perfused = weights.T @ np.array([tis.cbf > 0 for tis in subject.tissues], dtype=float) > 0
    bat = np.where(perfused, bolus_arrival(acq) + delay, 0.0)
    shape = subject.grid.shape
    return DSCSimulation(signals, aifs, t[frames], tmax.reshape(shape), bat.reshape(shape),
                         np.where(perfused, delay, 0.0).reshape(shape), k2.reshape(shape),
                         noise_sd,
                         None if ktrans is None else ktrans.reshape(shape),
                         None if ve is None else ve.reshape(shape),
                         None if r2star_ev is None else forward.cbv_truth(subject), r2star_ev)
