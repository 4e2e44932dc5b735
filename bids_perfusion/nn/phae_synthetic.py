r"""Synthetic DSC tissue curves across acquisitions, to train PHAE beyond the phantom.

PHAE reads one voxel at a time, so curves need no anatomy: a *subject* here is one
acquisition and one AIF with many voxels, every quantity drawn from :class:`CurveRanges`
(uniform, or log-uniform where the range spans a factor of more than 4; delay and
dispersion as ``low + (high − low) u²``, u uniform, so that half of them lie in the first
quarter of their range, where normal tissue lies):

- acquisition: TR, number of frames, TE, field (1.5 or 3 T, with the relaxivities the
  pipeline uses there, :func:`bids_perfusion.dsc.relaxivity.at_field`);
- AIF: ``C_a(t) = A [g(t) + f (g ⊛ h_rec)(t − T_rec)/…]``, a gamma variate g (shape α,
  scale β; Thompson et al., Circ Res 1964;14:502) arriving at ``t₀``, of peak A, and a
  second pass of ``f`` of its area, dispersed by an exponential kernel of 3 s, as the
  phantom's (:mod:`bids_perfusion.phantom.dsc`); measured with additive Gaussian noise;
- tissue: ``C(t) = (ρ/kH) CBF (C_a ⊛ h_τ ⊛ R)(t − δ)`` with an exponential dispersion
  kernel h_τ (Calamante et al., MRM 2000;44:466), a gamma residue of shape k and mean
  MTT (k = 1: exponential; Mouridsen et al., NeuroImage 2006;33:570), CBV and MTT drawn,
  CBF = CBV/MTT, arrival delay δ;
- signal: ``S = S₀ exp(−TE r_t q C)`` with q the tissue/blood relaxivity ratio relative
  to the tabulated one, Rician noise of SD S₀/SNR (Gudbjartsson and Patz, MRM
  1995;34:910); back to concentration as the pipeline does,
  ``C = −ln(S/S̄₀)/(TE r_t)`` with S̄₀ the mean of the frames before the AIF arrives.

Then :func:`bids_perfusion.nn.phae.encoder_inputs` makes the encoder's windowed,
normalised inputs exactly as at inference. Everything is vectorised over the voxels of a
subject; one seed gives the same curves.
"""

import dataclasses

import numpy as np

from bids_perfusion import constants
from bids_perfusion.dsc import kinetics, relaxivity

#: Fine time step of the simulation, as a fraction of TR.
OVERSAMPLING = 5


@dataclasses.dataclass(frozen=True)
class CurveRanges:
    """Ranges (low, high) of every drawn quantity; the defaults are the bundled weights'.

    Acquisition: ``repetition_time`` s, ``frames``, ``echo_time`` s, ``field_strength``
    T (either end, both tabulated); AIF: ``aif_peak`` mM (quarter dose to twice a full
    dose), ``aif_arrival`` s, ``aif_alpha``, ``aif_beta`` s, ``recirculation_fraction``,
    ``recirculation_delay`` s, ``aif_snr`` (peak / noise SD); tissue: ``cbv`` mL/100 g,
    ``mtt`` s, ``residue_shape`` k, ``delay`` s, ``dispersion`` s,
    ``relaxivity_ratio`` q, ``snr`` (S₀ / noise SD). Sources: Boxerman et al., AJNR
    2020;41:1 (DSC protocols), Calamante et al. 2000 (delay and dispersion).
    """

    repetition_time: tuple = (1.0, 2.0)
    frames: tuple = (50, 120)
    echo_time: tuple = (0.020, 0.045)
    field_strength: tuple = (1.5, 3.0)
    aif_peak: tuple = (1.0, 12.0)
    aif_arrival: tuple = (5.0, 25.0)
    aif_alpha: tuple = (2.0, 5.0)
    aif_beta: tuple = (0.7, 2.0)
    recirculation_fraction: tuple = (0.0, 0.3)
    recirculation_delay: tuple = (6.0, 14.0)
    aif_snr: tuple = (20.0, 200.0)
    cbv: tuple = (0.5, 15.0)
    mtt: tuple = (1.0, 16.0)
    residue_shape: tuple = (1.0, 3.0)
    delay: tuple = (0.0, 6.0)
    dispersion: tuple = (0.0, 3.0)
    relaxivity_ratio: tuple = (0.5, 6.0)
    snr: tuple = (5.0, 100.0)

    def as_dict(self):
        return {key: list(value) for key, value in dataclasses.asdict(self).items()}

    def training_ranges(self):
        """The ranges in the model-card vocabulary of :mod:`bids_perfusion.nn.
        training_ranges` (``training_ranges`` of the card)."""
        return {"RepetitionTime": list(self.repetition_time), "Frames": list(self.frames),
                "EchoTime": list(self.echo_time),
                "MagneticFieldStrength": list(self.field_strength),
                "AIFPeak": list(self.aif_peak), "AIFArrival": list(self.aif_arrival),
                "SNR": list(self.snr)}


def _draw(rng, bounds, size=None):
    low, high = bounds
    if low > 0 and high > 4 * low:
        return np.exp(rng.uniform(np.log(low), np.log(high), size))
    return rng.uniform(low, high, size)


def _draw_small(rng, bounds, size=None):
    """``low + (high − low) u²``, u uniform: half the draws in the first quarter."""
    low, high = bounds
    return low + (high - low) * rng.uniform(0.0, 1.0, size) ** 2


def _gamma_residue(t, mtt, shape):
    """Gamma residues (N, T) at times ``t`` (T,) for MTT and shape k (N,), vectorised."""
    from scipy import special

    return special.gammaincc(shape[:, None], shape[:, None] * np.clip(t, 0, None)
                             / mtt[:, None]) * (t >= 0)


def simulate_subject(rng, n_voxels, ranges=CurveRanges()):
    """One subject: a dict with ``tissue`` (N, T) and ``aif`` (T,) in mM as the pipeline
    reads them, ``frame_times`` (T,) s, and the truth ``cbf`` (mL/100 g/min), ``cbv``
    (mL/100 g), ``mtt`` (s), ``delay`` (s) (N,) and ``acquisition`` (a dict in the
    vocabulary of :meth:`CurveRanges.training_ranges`)."""
    tr = _draw(rng, ranges.repetition_time)
    frames = int(rng.integers(ranges.frames[0], ranges.frames[1] + 1))
    te = _draw(rng, ranges.echo_time)
    field = float(rng.choice(ranges.field_strength))
    dt = tr / OVERSAMPLING
    t = np.arange(frames * OVERSAMPLING) * dt
    arrival = _draw(rng, ranges.aif_arrival)
    alpha, beta = _draw(rng, ranges.aif_alpha), _draw(rng, ranges.aif_beta)
    first = kinetics.gamma_variate(t, arrival, alpha, beta)
    second = kinetics.convolve(
        kinetics.gamma_variate(t, arrival + _draw(rng, ranges.recirculation_delay), alpha,
                               beta), kinetics.dispersion_kernel(t, 3.0), dt)
    fraction = _draw(rng, ranges.recirculation_fraction)
    aif = first + fraction * first.sum() / max(second.sum(), 1e-12) * second
    aif *= _draw(rng, ranges.aif_peak) / aif.max()

    cbv = _draw(rng, ranges.cbv, n_voxels)
    mtt = _draw(rng, ranges.mtt, n_voxels)
    delay = _draw_small(rng, ranges.delay, n_voxels)
    tau = _draw_small(rng, ranges.dispersion, n_voxels)
    shape = _draw(rng, ranges.residue_shape, n_voxels)
    flow = cbv / mtt  # mL/100 g per s
    kernel = np.exp(-t[None] / np.maximum(tau, 1e-3)[:, None])
    kernel /= kernel.sum(axis=1, keepdims=True) * dt
    # Mid-point samples: dt Σ R = MTT to second order in dt / MTT.
    residue = _gamma_residue(t[None] + dt / 2 - delay[:, None], mtt, shape)
    effective = kinetics.convolve(kernel, residue, dt)
    tissue = constants.RHO_BRAIN / constants.KH / 100.0 * flow[:, None] * kinetics.convolve(
        aif, effective, dt)

    frame = slice(None, None, OVERSAMPLING)
    relax = relaxivity.at_field(field)
    ratio = _draw(rng, ranges.relaxivity_ratio, (n_voxels, 1))
    signal = np.exp(-te * relax.tissue * ratio * tissue[:, frame])
    sd = 1.0 / _draw(rng, ranges.snr, (n_voxels, 1))
    noisy = np.hypot(signal + rng.normal(0, 1, signal.shape) * sd,
                     rng.normal(0, 1, signal.shape) * sd)
    times = t[frame]
    baseline = times < max(arrival, times[2])
    s0 = noisy[:, baseline].mean(axis=1, keepdims=True)
    measured = relaxivity.tissue_concentration(
        relaxivity.signal_to_delta_r2star(noisy, s0, te), relax.tissue)
    aif_peak = float(aif.max())
    aif_measured = aif[frame] + rng.normal(0, aif_peak / _draw(rng, ranges.aif_snr),
                                           times.size)
    return {"tissue": measured.astype(np.float32), "aif": aif_measured,
            "frame_times": times, "cbf": 60.0 * flow, "cbv": cbv, "mtt": mtt,
            "delay": delay,
            "acquisition": {"RepetitionTime": tr, "Frames": frames, "EchoTime": te,
                            "MagneticFieldStrength": field, "AIFPeak": aif_peak,
                            "AIFArrival": arrival}}


def synthetic_arrays(config, n_subjects, n_voxels, seed, ranges=CurveRanges()):
    """Encoder inputs of ``n_subjects`` simulated subjects of ``n_voxels`` voxels:
    a dict of float32 ``tissue`` (N, W) and ``aif`` (N, W) and the truth ``mtt`` and
    ``delay`` (N,), with N = n_subjects · n_voxels; seeded by ``seed``."""
    from bids_perfusion.nn.phae import encoder_inputs

    rng = np.random.default_rng(seed)
    columns = {"tissue": [], "aif": [], "mtt": [], "delay": []}
    for _ in range(n_subjects):
        subject = simulate_subject(rng, n_voxels, ranges)
        tissue, aif = encoder_inputs(subject["tissue"], subject["aif"],
                                     subject["frame_times"], config)
        columns["tissue"].append(tissue)
        columns["aif"].append(np.broadcast_to(aif, tissue.shape))
        columns["mtt"].append(subject["mtt"].astype(np.float32))
        columns["delay"].append(subject["delay"].astype(np.float32))
    return {key: np.concatenate(value) for key, value in columns.items()}
