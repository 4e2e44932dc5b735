"""Training pairs of DeepASL from ASL runs with many control/label repetitions.

After Ulas et al., MICCAI 2018, §3 ("Data preprocessing"): the complete image
``ΔM_c`` is the mean of all subtractions of a run; a noisy input ``ΔM_n`` is the mean of
a random subset of them, 20, 40, 60 or 80 % (one model for every noise level); the
target of the network is the residual ``N = ΔM_n − ΔM_c`` and the reference CBF is
``f_t = f(ΔM_c)`` (:func:`bids_perfusion.nn.deepasl.kinetic_cbf`). Samples are 40 × 40
in-plane patches (here drawn at random positions of the slices that hold brain, rather
than tiled), augmented by the eight rigid transformations of the square (rotations by
multiples of 90° and flips; :func:`rigid_augment`).

Arrays only: reading the runs is the recipe's work (:mod:`bids_perfusion.nn.recipes.deepasl`).
"""

from dataclasses import dataclass

import numpy as np

from bids_perfusion.nn.deepasl import intensity_scale

#: Fractions of the pairs averaged into the noisy inputs (paper: 20, 40, 60, 80 %).
FRACTIONS = (0.2, 0.4, 0.6, 0.8)
#: Keys of the per-voxel maps of a sample, and of its per-sample constants (ξ).
MAPS = ("noisy", "residual", "m0", "cbf", "mask")
CONSTANTS = ("delay", "t1_blood", "efficiency", "duration", "partition", "pasl")


@dataclass(frozen=True)
class KineticConstants:
    """ξ of a single-delay run: the delay of each slice (PLD or TI, plus slice time), T1 of
    blood, labelling efficiency, τ (PCASL/CASL) or TI1 (PASL), partition coefficient."""

    slice_delays: tuple
    t1_blood: float
    efficiency: float
    duration: float
    pasl: bool
    partition: float

    def as_dict(self):
        return {"slice_delays": list(self.slice_delays), "t1_blood": self.t1_blood,
                "efficiency": self.efficiency, "duration": self.duration,
                "pasl": self.pasl, "partition": self.partition}


@dataclass(frozen=True)
class ASLRunArrays:
    """One run: its ΔM estimates (x, y, z, n), M0 (x, y, z), brain mask and constants."""

    subject: str
    differences: np.ndarray
    m0: np.ndarray
    brain: np.ndarray
    constants: KineticConstants

    @property
    def scale(self):
        """Intensity scale of the run (:func:`bids_perfusion.nn.deepasl.intensity_scale`)."""
        return intensity_scale(self.m0, self.brain)


def consensus_cbf(delta_m, m0, constants):
    """CBF of a (x, y, z) ΔM with the run's constants (the torch model, on arrays)."""
    import torch

    from bids_perfusion.nn.deepasl import kinetic_cbf

    c = constants
    delay = torch.tensor(c.slice_delays, dtype=torch.float64).reshape(1, 1, -1)
    return kinetic_cbf(torch.as_tensor(np.asarray(delta_m, dtype=np.float64)),
                       torch.as_tensor(np.asarray(m0, dtype=np.float64)), delay,
                       c.t1_blood, c.efficiency, c.duration, c.pasl, c.partition).numpy()


def noisy_means(differences, fractions, draws, rng):
    """Means of random subsets of the ΔM estimates: ``draws`` subsets per fraction, each
    of ``max(1, round(f n))`` distinct estimates. Returns ``(means (k, x, y, z),
    fractions used (k,))``."""
    n = differences.shape[-1]
    means, used = [], []
    for fraction in fractions:
        size = max(1, round(fraction * n))
        for _ in range(draws):
            index = np.sort(rng.choice(n, size=size, replace=False))
            means.append(differences[..., index].mean(axis=-1))
            used.append(size / n)
    return np.stack(means), np.asarray(used)


def training_pairs(run, fractions=FRACTIONS, draws=1, patch=40, patches_per_slice=4,
                   rng=None, min_brain_fraction=0.05):
    """Training samples of one run, a dict of float32 arrays with one row per patch.

    Maps (``MAPS``; shape (k, 1, p, p)) are in the network's units (ΔM and M0 divided by
    the run's scale), ``cbf`` in mL/100 g/min; constants (``CONSTANTS``; shape
    (k, 1, 1, 1)). Patches are drawn at random in-plane positions of slices whose brain
    covers at least ``min_brain_fraction`` of the slice; ``p = min(patch, x, y)``.
    """
    rng = np.random.default_rng() if rng is None else rng
    scale = run.scale
    complete = run.differences.mean(axis=-1)
    reference = consensus_cbf(complete, run.m0, run.constants)
    means, _ = noisy_means(run.differences, fractions, draws, rng)
    nx, ny, nz = complete.shape
    p = min(patch, nx, ny)
    slices = [z for z in range(nz) if run.brain[..., z].mean() >= min_brain_fraction]
    if not slices:
        raise ValueError(f"{run.subject}: no slice holds brain")
    n = len(means) * len(slices) * patches_per_slice
    which = np.repeat(np.arange(len(means)), len(slices) * patches_per_slice)
    z = np.tile(np.repeat(slices, patches_per_slice), len(means))
    x0 = rng.integers(0, nx - p + 1, n)
    y0 = rng.integers(0, ny - p + 1, n)
    rows = x0[:, None] + np.arange(p)
    cols = y0[:, None] + np.arange(p)

    def cut(volume):  # (x, y, z) -> (n, 1, p, p) at the drawn patches
        return volume[rows[:, :, None], cols[:, None, :], z[:, None, None]][:, None]

    noisy = means[which[:, None, None], rows[:, :, None], cols[:, None, :], z[:, None, None]]
    noisy = noisy[:, None] / scale
    target = cut(complete) / scale
    c = run.constants
    constants = {"delay": np.asarray(c.slice_delays)[z], "t1_blood": c.t1_blood,
                 "efficiency": c.efficiency, "duration": c.duration,
                 "partition": c.partition, "pasl": float(c.pasl)}
    samples = {"noisy": noisy, "residual": noisy - target, "m0": cut(run.m0) / scale,
               "cbf": cut(reference), "mask": cut(run.brain & (run.m0 > 0)).astype(float)}
    samples.update({k: np.broadcast_to(np.asarray(v, dtype=float).reshape(-1, 1, 1, 1),
                                       (n, 1, 1, 1)) for k, v in constants.items()})
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in samples.items()}


def rigid_augment(batch, generator):
    """One of the eight rigid transformations of the square per sample (rotation by
    k × 90°, then a flip or not), the same for every map of a sample."""
    import torch

    n = len(batch["noisy"])
    choice = torch.randint(0, 8, (n,), generator=generator)
    out = dict(batch)
    for key in MAPS:
        value = batch[key].clone()
        for code in range(1, 8):
            index = torch.nonzero(choice.to(value.device) == code).flatten()
            if len(index):
                moved = torch.rot90(value[index], code % 4, dims=(-2, -1))
                value[index] = moved.flip(-1) if code >= 4 else moved
        out[key] = value
    return out
