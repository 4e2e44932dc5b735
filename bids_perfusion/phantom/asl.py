"""ASL series of a phantom subject.

Each voxel has its ground-truth CBF, a flow-weighted arterial transit time and M0, and the
difference between control and label follows the general kinetic model
(:mod:`bids_perfusion.asl.kinetics`). Control images carry the static tissue signal
``M0 (1 - e^(-TR/T1))``, reduced to a residual fraction under background suppression;
label = control - ΔM; M0 volumes are ``M0 (1 - e^(-TR_M0/T1))``. With a 2-D readout,
slice z is read ``z * slice_duration`` after the first, which lengthens its delay. The
labelling efficiency is the consensus value times the inversion efficiency of each
background-suppression pulse. Rician noise of standard deviation ``mean brain M0 / SNR``
in every volume; optionally, physiological noise in the control and label volumes,
Gaussian with a standard deviation proportional to their static signal (Krüger and
Glover, MRM 2001;46:631), drawn before the thermal noise.
"""

from dataclasses import dataclass

import numpy as np

from bids_perfusion import constants
from bids_perfusion.asl import kinetics
from bids_perfusion.phantom.config import RECEIVER_GAIN
from bids_perfusion.phantom.mr import rician


@dataclass(frozen=True)
class ASLSimulation:
    """Simulated ASL run: series (x, y, z, volumes), its volume types and delays, M0."""

    series: np.ndarray
    volume_types: list
    plds: list
    m0scan: np.ndarray | None
    att: np.ndarray
    m0: np.ndarray
    labeling_efficiency: float
    t1_blood: float
    noise_sd: float
    slice_timing: list | None


def labeling_efficiency(acq):
    """Consensus labelling efficiency, times the efficiency of each suppression pulse."""
    efficiency = constants.LABEL_EFFICIENCY[acq.label_type]
    if acq.background_suppression:
        efficiency *= (constants.BACKGROUND_SUPPRESSION_PULSE_EFFICIENCY
                       ** acq.background_suppression_pulses)
    return efficiency


def volume_plan(acq):
    """Volume types ('control', 'label', 'm0scan') and post-labelling delays, in order."""
    n_pairs = acq.n_pairs * len(acq.plds) if len(acq.n_pairs) == 1 else acq.n_pairs
    pair = ("label", "control") if acq.label_first else ("control", "label")
    types, plds = [], []
    if acq.m0_type == "Included":
        types += ["m0scan"] * acq.n_m0
        plds += [0.0] * acq.n_m0
    for pld, count in zip(acq.plds, n_pairs, strict=True):
        types += list(pair) * count
        plds += [float(pld)] * (2 * count)
    return types, plds


def simulate_asl(subject, acq, rng):
    """Simulate one ASL run (and its separate M0 scan when ``m0_type`` is Separate)."""
    t1_blood = constants.T1_BLOOD[acq.field_strength]
    efficiency = labeling_efficiency(acq)
    cbf = subject.cbf
    att = subject.mixture("att", flow_weighted=True)
    m0 = RECEIVER_GAIN * subject.mixture("m0")
    t1 = np.maximum(subject.mixture("t1"), 1e-3)
    types, plds = volume_plan(acq)

    slice_offset = np.zeros(subject.grid.shape)
    slice_timing = None
    if acq.readout == "2D":
        slice_timing = [round(z * acq.slice_duration, 6) for z in range(subject.grid.shape[2])]
        slice_offset += np.asarray(slice_timing)
    unique = sorted(set(p for p, kind in zip(plds, types, strict=True) if kind != "m0scan"))
    delays = np.asarray(unique)[:, None, None, None] + slice_offset
    t1_tissue = t1 if acq.t1_tissue_decay else None
    if acq.label_type == "PCASL":
        delta = kinetics.pcasl_delta_m(delays, cbf, att, m0, acq.labeling_duration, t1_blood,
                                       efficiency, t1_tissue=t1_tissue)
    else:
        delta = kinetics.pasl_delta_m(delays, cbf, att, m0, acq.bolus_cutoff, t1_blood,
                                      efficiency, t1_tissue=t1_tissue)
    control = m0 * (1.0 - np.exp(-acq.tr / t1))
    if acq.background_suppression:
        control = control * acq.background_suppression_residual
    m0_volume = m0 * (1.0 - np.exp(-acq.m0_tr / t1))

    brain = subject.masks()["brain"]
    noise_sd = float(m0[brain].mean() / acq.snr)
    volumes = []
    for kind, pld in zip(types, plds, strict=True):
        if kind == "m0scan":
            volumes.append(m0_volume)
        elif kind == "control":
            volumes.append(control)
        else:
            volumes.append(control - delta[unique.index(pld)])
    clean = np.stack(volumes, axis=-1)
    if acq.physiological_noise > 0:
        paired = np.array([kind != "m0scan" for kind in types])
        clean[..., paired] += rng.normal(size=clean[..., paired].shape) * (
            acq.physiological_noise * control[..., None])
    series = rician(rng, clean, noise_sd).astype(np.float32)
    m0scan = None
    if acq.m0_type == "Separate":
        m0scan = rician(rng, np.repeat(m0_volume[..., None], acq.n_m0, axis=-1), noise_sd)
        m0scan = m0scan.astype(np.float32)
    return ASLSimulation(series, types, plds, m0scan, np.where(cbf > 0, att, 0.0), m0,
                         efficiency, t1_blood, noise_sd, slice_timing)
