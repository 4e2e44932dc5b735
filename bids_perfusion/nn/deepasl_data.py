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
#: Per-voxel maps of a multi-delay sample (``noisy`` and ``residual`` hold every delay).
MULTI_DELAY_MAPS = ("noisy", "residual", "m0", "cbf", "att", "mask")


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


@dataclass(frozen=True)
class MultiDelayConstants:
    """ξ of a multi-delay run: the K delays (PLD or TI), the slice times of a 2-D readout
    (0 for each slice otherwise), τ of each delay (PCASL/CASL) or TI1 (PASL), the pairs
    averaged at each delay, T1 of blood, labelling efficiency, partition coefficient."""

    delays: tuple
    slice_timing: tuple
    durations: tuple
    counts: tuple
    t1_blood: float
    efficiency: float
    pasl: bool
    partition: float

    @property
    def slice_delays(self):
        """Delays of each slice, (z, K)."""
        return np.add.outer(np.asarray(self.slice_timing), np.asarray(self.delays))

    def model(self):
        """The pipeline's :class:`~bids_perfusion.asl.multi_delay.MultiDelayModel` of the run
        (delays per slice; T1' = T1b)."""
        from bids_perfusion.asl.multi_delay import MultiDelayModel

        if self.pasl:
            return MultiDelayModel("PASL", self.slice_delays, self.t1_blood, self.efficiency,
                                   bolus_duration=self.durations[0], weights=self.counts,
                                   partition=self.partition)
        return MultiDelayModel("PCASL", self.slice_delays, self.t1_blood, self.efficiency,
                               labeling_duration=np.asarray(self.durations),
                               weights=self.counts, partition=self.partition)

    def att_tables(self):
        """``(att grids, WD tables)`` of each slice, (z, L) each
        (:func:`bids_perfusion.nn.deepasl_multidelay.padded_att_table`)."""
        from bids_perfusion.nn.deepasl_multidelay import padded_att_table, table_length

        model = self.model()
        length = table_length(model)
        rows = [padded_att_table(model, row, length) for row in self.slice_delays]
        return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])


@dataclass(frozen=True)
class MultiDelayRunArrays:
    """One multi-delay run: the ΔM estimates of each delay (a tuple of (x, y, z, n_k)),
    M0 (x, y, z), brain mask and constants."""

    subject: str
    differences: tuple
    m0: np.ndarray
    brain: np.ndarray
    constants: MultiDelayConstants

    @property
    def scale(self):
        """Intensity scale of the run (:func:`bids_perfusion.nn.deepasl.intensity_scale`)."""
        return intensity_scale(self.m0, self.brain)

    @property
    def complete(self):
        """Mean ΔM of all pairs of each delay, (x, y, z, K)."""
        return np.stack([d.mean(axis=-1) for d in self.differences], axis=-1)


def fit_constants(constants, slices, counts=None):
    """The per-sample constants of :func:`bids_perfusion.nn.deepasl_multidelay.kinetic_fit`
    for samples of the given ``slices`` of a run (arrays with a leading sample axis);
    ``counts`` (samples, K) when the samples average other numbers of pairs than the run."""
    c = constants
    grids, tables = c.att_tables()
    k = len(c.delays)
    n = len(slices)
    counts = np.broadcast_to(np.asarray(c.counts if counts is None else counts, float),
                             (n, k))
    return {"delays": c.slice_delays[slices].reshape(n, k, 1, 1),
            "duration": np.broadcast_to(np.asarray(c.durations, float).reshape(1, k, 1, 1),
                                        (n, k, 1, 1)),
            "counts": counts.reshape(n, k, 1, 1),
            **{key: np.full((n, 1, 1, 1), float(value)) for key, value in (
                ("t1_blood", c.t1_blood), ("efficiency", c.efficiency),
                ("pasl", c.pasl), ("partition", c.partition),
                ("att_max", c.model().att_max))},
            "att_grid": grids[slices], "wd_table": tables[slices]}


def multi_delay_fit(delta_m, m0, constants, counts=None):
    """(CBF, ATT) maps, (x, y, z), of a ΔM volume (x, y, z, K) by the loss's closed-form
    fit (:func:`bids_perfusion.nn.deepasl_multidelay.kinetic_fit`), slice by slice."""
    import torch

    from bids_perfusion.nn.deepasl_multidelay import fit_batch

    delta_m = np.asarray(delta_m, dtype=np.float64)
    slices = np.arange(delta_m.shape[2])
    batch = {key: torch.from_numpy(np.array(value, dtype=np.float64))
             for key, value in fit_constants(constants, slices, counts).items()}
    batch["m0"] = torch.as_tensor(np.moveaxis(np.asarray(m0, np.float64), 2, 0)[:, None])
    volume = torch.as_tensor(np.moveaxis(delta_m, (2, 3), (0, 1)))
    with torch.no_grad():
        cbf, att = fit_batch(batch, volume)
    return (np.moveaxis(cbf[:, 0].numpy(), 0, 2), np.moveaxis(att[:, 0].numpy(), 0, 2))


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
    which, z, cut = _patches(run.brain, len(means), patch, patches_per_slice, rng,
                             min_brain_fraction, run.subject)
    n = len(which)
    noisy = cut(means, which) / scale
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


def _patches(brain, n_inputs, patch, patches_per_slice, rng, min_brain_fraction, subject):
    """Random in-plane patches of the slices that hold brain, ``patches_per_slice`` per
    slice of each of ``n_inputs`` inputs: ``(input of each patch, its slice, cut)``.
    ``cut(volume)``: the patches of a (x, y, z) or (x, y, z, c) volume, (n, 1 or c, p,
    p); ``cut(volumes, inputs)``: those of ``volumes[inputs[i]]`` for patch i, volumes
    (m, x, y, z[, c])."""
    nx, ny, nz = brain.shape
    p = min(patch, nx, ny)
    slices = [z for z in range(nz) if brain[..., z].mean() >= min_brain_fraction]
    if not slices:
        raise ValueError(f"{subject}: no slice holds brain")
    n = n_inputs * len(slices) * patches_per_slice
    which = np.repeat(np.arange(n_inputs), len(slices) * patches_per_slice)
    z = np.tile(np.repeat(slices, patches_per_slice), n_inputs)
    x0 = rng.integers(0, nx - p + 1, n)
    y0 = rng.integers(0, ny - p + 1, n)
    rows = x0[:, None, None] + np.arange(p)[:, None]
    cols = y0[:, None, None] + np.arange(p)[None, :]
    zs = z[:, None, None]

    def cut(volume, inputs=None):
        values = (volume[rows, cols, zs] if inputs is None
                  else volume[np.asarray(inputs)[:, None, None], rows, cols, zs])
        return values[:, None] if values.ndim == 3 else np.moveaxis(values, -1, 1)

    return which, z, cut


def multi_delay_training_pairs(run, fractions=FRACTIONS, draws=1, patch=40,
                               patches_per_slice=4, rng=None, min_brain_fraction=0.05):
    """Training samples of one multi-delay run (:func:`training_pairs`, with every delay).

    ``noisy`` and ``residual`` (k, K, p, p): the mean of the same fraction of the pairs
    of each delay, and its difference from the mean of all; ``cbf`` and ``att`` the
    closed-form fit of the mean of all (:func:`multi_delay_fit`); ``m0``, ``mask``
    (k, 1, p, p); the fit's constants (:func:`fit_constants`, ``counts`` those of the
    noisy input).
    """
    rng = np.random.default_rng() if rng is None else rng
    scale = run.scale
    complete = run.complete
    cbf, att = multi_delay_fit(complete, run.m0, run.constants)
    means, used = zip(*(noisy_means(d, fractions, draws, rng) for d in run.differences),
                      strict=True)
    means = np.stack(means, axis=-1)
    which, z, cut = _patches(run.brain, len(means), patch, patches_per_slice, rng,
                             min_brain_fraction, run.subject)
    noisy = cut(means, which) / scale
    counts = (np.stack(used, axis=-1) * np.asarray(run.constants.counts))[which]
    samples = {"noisy": noisy, "residual": noisy - cut(complete) / scale,
               "m0": cut(run.m0) / scale, "cbf": cut(cbf), "att": cut(att),
               "mask": cut(run.brain & (run.m0 > 0)).astype(float),
               **fit_constants(run.constants, z, counts)}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in samples.items()}


def rigid_augment(batch, generator, maps=MAPS):
    """One of the eight rigid transformations of the square per sample (rotation by
    k × 90°, then a flip or not), the same for every map (``maps``) of a sample."""
    import torch

    n = len(batch["noisy"])
    choice = torch.randint(0, 8, (n,), generator=generator)
    out = dict(batch)
    for key in maps:
        value = batch[key].clone()
        for code in range(1, 8):
            index = torch.nonzero(choice.to(value.device) == code).flatten()
            if len(index):
                moved = torch.rot90(value[index], code % 4, dims=(-2, -1))
                value[index] = moved.flip(-1) if code >= 4 else moved
        out[key] = value
    return out
