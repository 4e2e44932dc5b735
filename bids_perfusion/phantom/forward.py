"""The ``realistic`` DSC forward model of the phantom: physics the estimators do not share.

The ``simple`` forward model (:mod:`bids_perfusion.phantom.dsc`) writes the signal the
pipeline inverts: ΔR2* mixes linearly over a voxel, the leakage has the K2 ∫ref form
of the correction, and blood has the relaxivity the pipeline assumes. Agreement on it
proves self-consistency only. The ``realistic`` model (``PhantomConfig.forward_model``)
replaces, per voxel:

- arterial partial volume: the magnitude of the complex sum of a tissue and a blood
  signal, the blood's phase set by the agent's susceptibility in a cylinder at its
  angle to B0 (:func:`two_compartment_magnitude`, :func:`vessel_field_shift`, the
  angle of the centre line from :func:`vessel_cos_theta`); blood is fresh inflow and
  relaxes by the quadratic whole-blood model at the series' field, whatever model the
  pipeline is told;
- extravascular dephasing around the vessels, in their own voxel and, scaled by
  ``blooming``, in the six neighbours (:func:`extravascular_dephasing`);
- leakage: the Tofts extravascular concentration acts through T1 (spoiled gradient echo,
  :func:`spgr_t1_gain`) and through T2* with the extravasated agent's own relaxivity,
  drawn per subject (:func:`draw_r2star_ev`), which makes T1- and T2*-dominant rims;
- ground truth: CBV counts the blood of the vessel voxels (:func:`cbv_truth`).

Magnitude (Rician) noise is added afterwards by :func:`~bids_perfusion.phantom.mr.rician`,
so that an arterial signal that falls below the noise reads the noise floor (saturation).
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bids_perfusion import constants
from bids_perfusion.dsc import relaxivity
from bids_perfusion.phantom import arteries
from bids_perfusion.phantom.config import RECEIVER_GAIN
from bids_perfusion.phantom.mr import spoiled_gre_factor, spoiled_gre_steady_state
from bids_perfusion.phantom.subject import BLOOD

#: Gyromagnetic ratio of the proton, rad s⁻¹ T⁻¹.
GAMMA = 2.675e8


@dataclass(frozen=True)
class ForwardParameters:
    """Constants of the ``realistic`` forward model.

    molar_susceptibility: SI volume susceptibility of whole blood per mM of gadolinium
    chelate, 0.32 ppm mM⁻¹ (0.026 ppm mM⁻¹ in cgs units; the Curie-law value of Gd³⁺ at
    37 °C, μ_eff = 7.94 μ_B), the shift that phase-based AIFs measure (van Osch et al.,
    MRM 2003;49:1067). r2star_ev_range: relaxivity of extravasated agent on T2*, s⁻¹
    mM⁻¹ of tissue concentration at 1.5 T (linear in B0), drawn uniformly per subject; it
    depends on the cell size and density around the extravascular space (Quarles et al.,
    Phys Med Biol 2009;54:5749; Semmineh et al., MRM 2015;74:772). The phantom's range
    straddles the value where the T2* effect overtakes the T1 effect (about 35-65 at the
    default TR, TE and flip angle for a rim of T1 1.6 s and C_e 0.2-0.05 mM). blooming:
    share of a vessel's extravascular dephasing felt by each of the six face neighbours
    of its voxel (the phantom's choice; 0 turns blooming off).
    """

    molar_susceptibility: float = 0.32e-6
    r2star_ev_range: tuple = (20.0, 150.0)
    blooming: float = 0.1


REALISTIC = ForwardParameters()


def two_compartment_magnitude(tissue, blood, phase):
    """Magnitude of the complex sum of two compartments' signals.

    ``|S_t + S_b e^(iφ)| = sqrt(S_t² + S_b² + 2 S_t S_b cos φ)``: the voxel's signal is
    the sum of the complex signals of tissue and blood, not of their ΔR2* (van Osch et
    al., MRM 2003;49:1067; Bleeker et al., JCBFM 2009;29:840). Equal magnitudes in
    opposition (φ = π) cancel; with φ = 0 the magnitudes add.
    """
    tissue, blood, phase = (np.asarray(v, dtype=float) for v in (tissue, blood, phase))
    power = tissue**2 + blood**2 + 2.0 * tissue * blood * np.cos(phase)
    return np.sqrt(np.maximum(power, 0.0))


def vessel_field_shift(concentration, field_strength, cos_theta,
                       molar_susceptibility=REALISTIC.molar_susceptibility):
    """Field shift inside an infinite cylinder of blood, tesla.

    ``ΔB = Δχ B0 (cos²θ − 1/3) / 2``, ``Δχ = χ_m C`` (SI), θ the angle between the vessel
    and B0 (Lorentz-corrected field of a long cylinder; van Osch et al., MRM
    2003;49:1067). Zero at the magic angle, Δχ B0 / 3 parallel to B0, −Δχ B0 / 6 across.
    """
    return (molar_susceptibility * np.asarray(concentration, dtype=float) * field_strength
            * (np.asarray(cos_theta, dtype=float) ** 2 - 1.0 / 3.0) / 2.0)


def vessel_cos_theta(grid, artery, world_from_template, warp=None):
    """|cos θ| between the vessel and B0 (world z) in every voxel (x, y, z).

    A voxel on a centre line takes the direction of its segment
    (:func:`~bids_perfusion.phantom.arteries.centre_line_voxels`), any other voxel that of
    the nearest centre-line voxel (its partial-volume neighbours lie beside the same
    segment); 1 (parallel) where the grid holds no centre line.
    """
    cos_theta = np.full(grid.shape, np.nan)
    for ijk, direction in arteries.centre_line_voxels(grid, world_from_template, warp):
        cos_theta[tuple(ijk)] = abs(direction[2])
    if np.isnan(cos_theta).all() or not np.asarray(artery).any():
        return np.ones(grid.shape)
    nearest = ndimage.distance_transform_edt(np.isnan(cos_theta), sampling=grid.zooms,
                                             return_distances=False, return_indices=True)
    return cos_theta[tuple(nearest)]


def extravascular_dephasing(artery, cos_theta, concentration, field_strength,
                            blooming=REALISTIC.blooming,
                            molar_susceptibility=REALISTIC.molar_susceptibility):
    """R2' of the tissue around the vessels, s⁻¹, shape (voxels, frames).

    Static dephasing around cylinders of volume fraction ζ at angle θ to B0:
    ``R2' = ζ δω``, ``δω = γ Δχ B0 sin²θ / 2`` (Yablonskiy and Haacke, MRM 1994;32:749).
    A vessel's field also reaches the neighbouring voxels (blooming): the effective
    fraction is ``ζ(x) = a(x) sin²θ(x) + η Σ_{n ∈ N6(x)} a(n) sin²θ(n)``, η =
    ``blooming``. ``artery`` and ``cos_theta`` are (x, y, z) grids.
    """
    weight = np.asarray(artery, dtype=float) * (1.0 - np.asarray(cos_theta) ** 2)
    cross = ndimage.generate_binary_structure(3, 1).astype(float)
    cross[1, 1, 1] = 0.0
    zeta = weight + blooming * ndimage.convolve(weight, cross, mode="constant")
    delta_omega = (GAMMA * molar_susceptibility * np.asarray(concentration, dtype=float)
                   * field_strength / 2.0)
    return zeta.reshape(-1)[:, None] * delta_omega[None, :]


def spgr_t1_gain(t10, delta_r1, tr, flip_deg):
    """Change of the spoiled gradient-echo steady state when R1 rises by ``delta_r1``.

    ``SPGR(R1) / SPGR(1/T10)`` with ``R1 = 1/T10 + ΔR1`` and SPGR the Ernst equation
    (:func:`~bids_perfusion.phantom.mr.spoiled_gre_steady_state`); ``t10`` per voxel
    (V,), ``delta_r1`` (V, T). ΔR1 = r1 C_e for extravasated agent in fast water exchange
    (Tofts et al., JMRI 1999;10:223).
    """
    r1 = 1.0 / t10[:, None] + delta_r1
    return (spoiled_gre_steady_state(1.0 / r1, tr, flip_deg)
            / spoiled_gre_steady_state(t10, tr, flip_deg)[:, None])


def draw_r2star_ev(rng, field_strength, parameters=REALISTIC):
    """A subject's T2* relaxivity of extravasated agent, s⁻¹ mM⁻¹, linear in B0."""
    return float(rng.uniform(*parameters.r2star_ev_range)) * field_strength / 1.5


def cbv_truth(subject):
    """Ground-truth CBV of the ``realistic`` model, mL/100 g.

    ``CBV = s Σ_k w_k CBV_k + 100 a / ρ``: the tissue's blood volume plus the blood of
    the vessel filling a fraction ``a`` of the voxel, per 100 g of voxel (ρ the brain
    density, ``constants.RHO_BRAIN``).
    """
    return subject.cbv + 100.0 * subject.artery / constants.RHO_BRAIN


#: What the CBV truth means in each class of voxel, written beside the truth map.
CBV_DEFINITIONS = {
    "simple": {
        "tissue": "s * sum_k w_k CBV_k: the blood volume of the tissue compartments",
        "mixed": "fraction-weighted sum over the compartments in the voxel",
        "arterial": "tissue part only (weights scaled by 1 - a); the vessel's blood is "
                    "not counted",
        "tumour": "rCBV_rim * CBV_WM (and necrosis, oedema) weighted by their fractions",
    },
    "realistic": {
        "tissue": "s * sum_k w_k CBV_k: the blood volume of the tissue compartments",
        "mixed": "fraction-weighted sum over the compartments in the voxel",
        "arterial": "tissue part plus the vessel's blood, 100 a / rho (mL/100 g); the "
                    "area ratio with the kH convention reads kH times the vessel's part",
        "tumour": "rCBV_rim * CBV_WM (and necrosis, oedema) weighted by their fractions; "
                  "the extravasated agent is not blood volume",
    },
}


class RealisticSignals:
    """Noise-free signals of one dose under the ``realistic`` model, echo by echo.

    Per voxel, with tissue fraction f = Σ_k w_k, M0_t = G Σ_k w_k M0_k and the tissue's
    mean T1 and R2*₀ (Σ_k w_k x_k / f; G the receiver gain):

    ``S_t = M0_t SS_t(n) e^(−TE R2*₀,t) e^(−TE (ΔR2*_iv + r2*_ev C_e + R2')) g_T1(C_e)``

    with ΔR2*_iv the intravascular tissue ΔR2* of the simple model, C_e the Tofts
    extravascular concentration (``None``: no leakage), R2' :func:`extravascular_dephasing`
    and g_T1 :func:`spgr_t1_gain` with ΔR1 = r1 C_e; and for the blood of the vessel
    (fresh inflow each TR: the full ``M0 sin α``, no saturation, no T1 effect)

    ``S_b = G a M0_b sin α e^(−TE (R2*₀,b + ΔR2*_b(C_a))) e^(i γ ΔB(C_a) TE)``

    with ΔR2*_b the quadratic whole-blood model (Kjølby et al., MRM 2006;56:187) at the
    series' field and ΔB :func:`vessel_field_shift`. The voxel reads
    :func:`two_compartment_magnitude` of the two. ``aif`` is the whole-blood
    concentration and ``tissue_r2`` / ``extravascular`` are (voxels, frames), at the
    frames.
    """

    def __init__(self, subject, acq, aif, tissue_r2, extravascular, r1, r2star_ev,
                 parameters=REALISTIC):
        fraction = subject.weights.sum(axis=0).reshape(-1)
        occupied = np.maximum(fraction, 1e-12)
        t1 = np.where(fraction > 0, subject.mixture("t1").reshape(-1) / occupied, 1.0)
        m0 = (RECEIVER_GAIN * subject.mixture("m0").reshape(-1)[:, None]
              * spoiled_gre_factor(t1, acq.tr, acq.flip_angle, acq.n_frames))
        cos_theta = vessel_cos_theta(subject.grid, subject.artery,
                                     np.linalg.inv(subject.template_from_world),
                                     subject.warp)
        rate = (subject.mixture("r2star").reshape(-1)[:, None] / occupied[:, None]
                + tissue_r2 + extravascular_dephasing(
                    subject.artery, cos_theta, aif, acq.field_strength,
                    parameters.blooming, parameters.molar_susceptibility))
        if extravascular is not None:
            rate = rate + r2star_ev * extravascular
            m0 = m0 * spgr_t1_gain(t1, r1 * extravascular, acq.tr, acq.flip_angle)
        self._tissue = m0, rate
        artery = subject.artery.reshape(-1)
        self._vessels = artery > 0
        relax = relaxivity.at_field(acq.field_strength, "quadratic")
        self._blood_m0 = (RECEIVER_GAIN * BLOOD["m0"] * np.sin(np.deg2rad(acq.flip_angle))
                          * artery[self._vessels])
        self._blood_rate = BLOOD["r2star"] + relaxivity.blood_delta_r2star(
            aif, relax.blood_linear, relax.blood_quadratic)
        self._omega = GAMMA * vessel_field_shift(
            aif[None, :], acq.field_strength, cos_theta.reshape(-1)[self._vessels, None],
            parameters.molar_susceptibility)

    def signal(self, te):
        """Noise-free magnitude (voxels, frames) at echo time ``te``, s."""
        m0, rate = self._tissue
        out = m0 * np.exp(-te * rate)
        blood = self._blood_m0[:, None] * np.exp(-te * self._blood_rate)[None, :]
        out[self._vessels] = two_compartment_magnitude(out[self._vessels], blood,
                                                       te * self._omega)
        return out
