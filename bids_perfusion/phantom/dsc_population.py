"""Per-subject arterial input, acquisition and nuisance of the DSC phantom population.

With ``PhantomConfig.population`` every subject's DSC run is drawn from the ranges of
:class:`DSCPopulation`, uniformly and independently unless stated: the bolus (gamma-variate
shape, peak, arrival, injection duration, recirculation, dispersion on the way to
tissue), the acquisition (TR, TE, flip angle, frames, field) and the nuisance (signal
drift, temporally correlated physiological noise). :func:`draw_dsc_acquisition` turns one
draw into the :class:`~bids_perfusion.phantom.config.DSCAcquisition` that
:func:`~bids_perfusion.phantom.dsc.simulate_dsc` simulates, so every file of the subject
(series, sidecar, truth) follows from it.

Kept free of numpy at import (the phantom's command line reads the defaults).
"""

import math
from dataclasses import dataclass, replace

from bids_perfusion import constants


@dataclass(frozen=True)
class DSCPopulation:
    """Ranges (low, high) of the per-subject draws; times in s, concentrations in mM.

    Arterial input (the phantom's gamma variate plus recirculation,
    :func:`~bids_perfusion.phantom.dsc.arterial_input`):

    - ``aif_alpha`` 2-5, ``aif_beta`` 1-2 s: first passes of full width at half maximum
      about 3.4-10.6 s, around the 6 s of the default (α 3, β 1.5 s, the AIF of Østergaard
      et al., MRM 1996;36:715) and the 8 s of the population AIF of Parker et al.
      (MRM 2006;56:993; first Gaussian of σ 3.4 s). Measured AIFs vary this much between
      subjects and with the injection (Calamante, Prog NMR Spectrosc 2013;74:1;
      Knutsson, van Westen and Wirestam, MAGMA 2010;23:1).
    - ``aif_peak_mM`` 4-9 mM: peak whole-blood concentration of the first pass of an
      instantaneous injection at full dose; Parker et al.'s population average is 5.7 mM
      at 0.1 mmol/kg.
    - ``aif_arrival`` 5-25 s: arrival of the bolus at the artery after the first frame
      (the start of the gamma variate), drawn after TR and no earlier than
      ``min_baseline_frames`` (6) frames, so that a baseline in steady state precedes
      the bolus (the pipeline needs 3 frames after the transient; protocols inject after
      a baseline). ``baseline_frames`` becomes ⌊arrival / TR⌋.
    - ``injection_duration`` 2-6 s: the AIF is convolved with a unit-area box of this
      length (a 10-20 mL bolus at 3-5 mL/s), which lowers and widens the peak at fixed
      area.
    - ``recirculation_fraction`` 0.1-0.4, ``recirculation_delay`` 6-14 s,
      ``recirculation_dispersion`` 2-5 s: second pass; in Parker et al.'s AIF it has
      0.41 of the first pass's area and peaks 11.7 s after it.
    - ``extra_dispersion`` 0-2 s: time constant of an exponential transport kernel,
      common to every tissue, between the artery where the AIF is measured and the
      tissue, on top of the tissue's own (Calamante, Gadian and Connelly, MRM
      2000;44:466); the truth Tmax includes it.

    Acquisition (Boxerman et al., Neuro Oncol 2020;22:1262, consensus DSC protocol:
    TE 40-50 ms at 1.5 T and 20-35 ms at 3 T, flip 60°, or 30° without preload;
    clinical series of 1-2 s TR):

    - ``tr`` 1-2 s; ``field_strengths`` chosen with equal probability, relaxivities
      (ΔR2* and r1) those of the field (``constants.DSC_RELAXIVITY``,
      ``constants.R1_RELAXIVITY``); ``echo_time_1p5t`` 35-45 ms and ``echo_time_3t``
      20-35 ms, the first echo (later echoes keep their spacing); ``flip_angle`` 30-90°,
      which sets the T1 weighting of the spoiled gradient echo.
    - ``n_frames`` 50-120 (integers, inclusive), raised where needed so that at least
      ``min_frames_after_arrival_s`` (40 s: first pass and recirculation) follow the
      arrival, and never above the range's high end.
    - ``dummy_scans`` 4: excitations the scanner discards before the first frame, which
      shorten the approach to the steady state (``NumberOfVolumesDiscardedByScanner``).

    Nuisance (:mod:`bids_perfusion.phantom.nuisance`):

    - ``drift_linear`` ±3 %, ``drift_quadratic`` ±2 %: multiplicative drift
      ``1 + c₁ τ + c₂ τ²`` over the series (τ from 0 to 1), the low-order polynomial
      drift of scanner signals (Smith et al., NeuroImage 1999;9:526).
    - ``physiological_noise`` 0-2 % of the signal and ``physiological_noise_ar`` 0.2-0.6:
      Gaussian noise proportional to the signal (Krüger and Glover, MRM 2001;46:631),
      temporally correlated as a stationary AR(1) process with this lag-1
      autocorrelation (Purdon and Weisskoff, Hum Brain Mapp 1998;6:239).

    The bounds are the phantom's choice within these sources.
    """

    aif_alpha: tuple = (2.0, 5.0)
    aif_beta: tuple = (1.0, 2.0)
    aif_peak_mM: tuple = (4.0, 9.0)
    aif_arrival: tuple = (5.0, 25.0)
    injection_duration: tuple = (2.0, 6.0)
    recirculation_fraction: tuple = (0.1, 0.4)
    recirculation_delay: tuple = (6.0, 14.0)
    recirculation_dispersion: tuple = (2.0, 5.0)
    extra_dispersion: tuple = (0.0, 2.0)
    tr: tuple = (1.0, 2.0)
    echo_time_1p5t: tuple = (0.035, 0.045)
    echo_time_3t: tuple = (0.020, 0.035)
    flip_angle: tuple = (30.0, 90.0)
    n_frames: tuple = (50, 120)
    min_frames_after_arrival_s: float = 40.0
    min_baseline_frames: int = 6
    dummy_scans: int = 4
    field_strengths: tuple = (1.5, 3.0)
    drift_linear: tuple = (-0.03, 0.03)
    drift_quadratic: tuple = (-0.02, 0.02)
    physiological_noise: tuple = (0.0, 0.02)
    physiological_noise_ar: tuple = (0.2, 0.6)

    def echo_time(self, field_strength):
        """The echo-time range of a field."""
        return self.echo_time_1p5t if field_strength < 2.25 else self.echo_time_3t

    def problems(self):
        """``(field, fix)`` for every impossible range; empty when all can be drawn."""
        ranges = {name: getattr(self, name) for name in RANGES}
        found = [(name, "give a range (low, high) with low <= high")
                 for name, value in ranges.items()
                 if len(value) != 2 or not value[0] <= value[1]]
        if found:
            return found
        checks = [
            (min(self.aif_alpha) > 0 and min(self.aif_beta) > 0, "aif_alpha/aif_beta",
             "gamma-variate shape and scale must be positive"),
            (min(self.aif_peak_mM) > 0, "aif_peak_mM", "must be positive (mM)"),
            (min(self.tr) > 0, "tr", "repetition times must be positive (s)"),
            (self.min_baseline_frames >= 2 and self.dummy_scans >= 0, "min_baseline_frames",
             "need at least 2 baseline frames (and dummy_scans >= 0)"),
            (self.aif_arrival[0] >= 0
             and self.aif_arrival[1] >= self.min_baseline_frames * self.tr[1], "aif_arrival",
             "the latest arrival must leave min_baseline_frames frames at the longest TR"),
            (min(self.injection_duration) >= 0 and min(self.extra_dispersion) >= 0
             and min(self.recirculation_delay) >= 0
             and min(self.recirculation_dispersion) >= 0,
             "injection_duration/extra_dispersion/recirculation_*", "must be >= 0 s"),
            (0 <= self.recirculation_fraction[0], "recirculation_fraction", "must be >= 0"),
            (all(0 < te < 0.2 for te in (*self.echo_time_1p5t, *self.echo_time_3t)),
             "echo_time_1p5t/echo_time_3t", "echo times in seconds, 0 < TE < 0.2"),
            (0 < self.flip_angle[0] and self.flip_angle[1] <= 90, "flip_angle",
             "must be within (0, 90] degrees"),
            (len(self.field_strengths) >= 1
             and all(f in constants.DSC_RELAXIVITY for f in self.field_strengths),
             "field_strengths", f"use fields of {sorted(constants.DSC_RELAXIVITY)} (tesla)"),
            (self.n_frames[0] >= 10 and self.n_frames[1] * self.tr[0]
             >= self.aif_arrival[1] + self.min_frames_after_arrival_s,
             "n_frames", "need >= 10 frames, and the longest series at the shortest TR "
             "must hold the latest arrival plus min_frames_after_arrival_s"),
            (max(abs(c) for c in (*self.drift_linear, *self.drift_quadratic)) < 0.5,
             "drift_linear/drift_quadratic", "drift fractions must be below 0.5 in size"),
            (0 <= self.physiological_noise[0] and self.physiological_noise[1] < 0.2,
             "physiological_noise", "a fraction of the signal within [0, 0.2)"),
            (0 <= self.physiological_noise_ar[0] and self.physiological_noise_ar[1] < 1,
             "physiological_noise_ar", "an AR(1) coefficient within [0, 1)"),
        ]
        return [(name, fix) for ok, name, fix in checks if not ok]


#: Fields of :class:`DSCPopulation` that are (low, high) ranges.
RANGES = tuple(name for name in DSCPopulation.__dataclass_fields__
               if name not in ("min_frames_after_arrival_s", "min_baseline_frames",
                               "dummy_scans", "field_strengths"))
#: Fields drawn uniformly and copied as they are into the acquisition, in draw order.
_UNIFORM = ("aif_alpha", "aif_beta", "aif_peak_mM", "injection_duration",
            "recirculation_fraction", "recirculation_delay", "recirculation_dispersion",
            "extra_dispersion", "drift_linear", "drift_quadratic", "physiological_noise",
            "physiological_noise_ar")


def draw_dsc_acquisition(rng, acq, population):
    """One subject's DSC acquisition: ``acq`` with the fields of ``population`` drawn.

    Draw order (fixed, so that a seed gives the same subject): the uniform fields of
    ``_UNIFORM``, then TR, arrival, field, first echo time, flip angle and frame count;
    TR, TE and flip angle are rounded as a scanner reports them (1 ms, 0.1 ms, 1°).
    The arrival is uniform in ``[max(low, min_baseline_frames · TR), high]``;
    ``baseline_frames = ⌊arrival / TR⌋``; ``n_frames`` is drawn in its range and raised to
    ``⌈(arrival + min_frames_after_arrival_s) / TR⌉`` where that is larger;
    ``dummy_scans`` is copied.
    Returns ``(acquisition, drawn)``, ``drawn`` the dict of every drawn value under the
    field name of :class:`~bids_perfusion.phantom.config.DSCAcquisition` (the first echo
    time as ``echo_time``), for the subject's ground truth.
    """
    drawn = {name: float(rng.uniform(*getattr(population, name))) for name in _UNIFORM}
    tr = round(float(rng.uniform(*population.tr)), 3)
    low, high = population.aif_arrival
    arrival = float(rng.uniform(max(low, population.min_baseline_frames * tr), high))
    field = float(population.field_strengths[rng.integers(len(population.field_strengths))])
    echo_time = round(float(rng.uniform(*population.echo_time(field))), 4)
    flip = float(round(rng.uniform(*population.flip_angle)))
    low, high = population.n_frames
    n_frames = int(rng.integers(low, high + 1))
    needed = math.ceil((arrival + population.min_frames_after_arrival_s) / tr)
    drawn.update(tr=tr, aif_arrival=arrival, field_strength=field, echo_time=echo_time,
                 flip_angle=flip, n_frames=min(max(n_frames, needed), high),
                 baseline_frames=int(arrival // tr), dummy_scans=population.dummy_scans)
    spacing = [te - acq.echo_times[0] for te in acq.echo_times]
    fields = {k: v for k, v in drawn.items() if k != "echo_time"}
    return replace(acq, echo_times=tuple(echo_time + s for s in spacing), **fields), drawn
