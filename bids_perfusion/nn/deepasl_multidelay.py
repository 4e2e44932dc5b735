r"""Multi-delay DeepASL: the kinetic loss with the general kinetic model (CBF and ATT).

The future work of Ulas et al. (MICCAI 2018), built here: the residual FCN of
:mod:`bids_perfusion.nn.deepasl` denoises the mean ΔM of each delay (PLD or TI) of a
multi-delay run, and the kinetic term of the loss compares what the general kinetic
model (Buxton et al., MRM 1998;40:383; :mod:`bids_perfusion.asl.kinetics`) makes of the
denoised ΔM with what it makes of the mean of all pairs::

    L = λ ‖N − Ñ‖² + (1 − λ) (‖f_t − f̂‖² + κ² ‖Δt_t − Δt̂‖²)

over the brain voxels, N and Ñ over every delay, (f̂, Δt̂) = fit(ΔM_n − Ñ) and
(f_t, Δt_t) = fit(ΔM_c); CBF in mL/100 g/min, ATT in s, κ (``att_weight``, mL/100 g/min
per s) puts an ATT error in CBF units.

**The network sees one delay at a time, with shared weights** (each delay's image is a
sample of the same 2-D network, the stacked delays are the batch): one set of weights
serves any number and any choice of delays, the architecture is the paper's, and the
per-delay images have the single-delay images' statistics. The delays are coupled by
the loss, not by the network; a network with one input channel per delay could use the
correlation between delays but would be tied to one protocol.

**The fit inside the loss** (:func:`kinetic_fit`) must let gradients through, so it is the
closed-form first step of the pipeline's fit (:mod:`bids_perfusion.asl.multi_delay`): ATT
from the weighted delay of Dai et al. (MRM 2012;67:1252), ``WD = Σ PLD_k y_k / Σ y_k``,
read off the model's WD(ATT) table by linear interpolation, then the linear least-squares
CBF ``Σ n g y / Σ n g²`` with g the model's ΔM/M0 at CBF 1 and that ATT; without the
Levenberg-Marquardt iterations. It equals
:meth:`bids_perfusion.asl.multi_delay.MultiDelayModel.initial_guess`; the evaluation
uses the full fit. Both sides of the kinetic term use the same estimator.

Units as in the single-delay model: ΔM and M0 divided by the run's intensity scale
(:func:`bids_perfusion.nn.deepasl.intensity_scale`), so the fit sees ΔM/M0 unchanged.
"""

import numpy as np
import torch

from bids_perfusion import constants

#: Name of the multi-delay DeepASL model in weights files, model cards, the recipe.
MODEL_NAME = "deepasl-multidelay"
#: Default κ: an ATT error of 0.1 s weighs as a CBF error of 5 mL/100 g/min.
ATT_WEIGHT = 50.0


def _tensor(value, like):
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def kinetic_delta_m(cbf, att, delays, duration, t1_blood, efficiency, pasl,
                    partition=constants.BLOOD_BRAIN_PARTITION, t1_tissue=None):
    """ΔM/M0 of the general kinetic model, in torch (gradients flow to every tensor).

    PCASL/CASL (``pasl`` False; ``duration`` τ, ``delays`` PLD) and PASL (``pasl`` True;
    ``duration`` TI1, ``delays`` TI), chosen per element; every argument broadcasts. The
    formulas of :func:`bids_perfusion.asl.kinetics.pcasl_delta_m` and
    :func:`~bids_perfusion.asl.kinetics.pasl_delta_m` with M0 = 1; ``t1_tissue`` None
    for T1' = T1b.
    """
    cbf = torch.as_tensor(cbf)
    att = _tensor(att, cbf)
    delays, duration, t1_blood, efficiency, partition = (
        _tensor(v, cbf) for v in (delays, duration, t1_blood, efficiency, partition))
    pasl = torch.as_tensor(pasl, device=cbf.device, dtype=torch.bool)
    f = cbf / constants.PER_SECOND_TO_PER_100G_MIN
    t1p = (t1_blood if t1_tissue is None
           else 1.0 / (1.0 / _tensor(t1_tissue, cbf) + f / partition))
    zero = torch.zeros((), dtype=cbf.dtype, device=cbf.device)
    # (P)CASL: t = τ + PLD
    t = duration + delays
    filling = 1.0 - torch.exp(-torch.clamp(t - att, min=0.0) / t1p)
    washout = torch.exp(-torch.clamp(t - duration - att, min=0.0) / t1p) * (
        1.0 - torch.exp(-duration / t1p))
    continuous = (2.0 * efficiency / partition * f * t1p * torch.exp(-att / t1_blood)
                  * torch.where(t < att + duration, filling, washout))
    continuous = torch.where(t < att, zero, continuous)
    # PASL: t = TI, label arriving from Δt to min(t, Δt + TI1)
    ti = delays
    start, end = att, torch.minimum(ti, att + duration)
    length = torch.clamp(end - start, min=0.0)
    if t1_tissue is None:
        kernel = length * torch.exp(-ti / t1_blood)
    else:
        k = 1.0 / t1_blood - 1.0 / t1p
        small = torch.abs(k) < 1e-12
        safe = torch.where(small, torch.ones_like(k), k)
        kernel = torch.where(small, length * torch.exp(-ti / t1_blood),
                             torch.exp(-ti / t1p) * (torch.exp(-safe * start)
                                                     - torch.exp(-safe * end)) / safe)
    pulsed = torch.where(ti < att, zero, 2.0 * efficiency / partition * f * kernel)
    return torch.where(pasl, pulsed, continuous)


def padded_att_table(model, delays, length):
    """The WD(ATT) table of ``model`` (a :class:`~bids_perfusion.asl.multi_delay.
    MultiDelayModel`) for one row of ``delays``, as ``(att, wd)`` arrays of ``length``
    entries: the table, then its last entry repeated (:func:`interpolate` reads such
    tables as :func:`numpy.interp` reads the unpadded one)."""
    grid, table = model.att_table(delays)
    if len(grid) > length:
        raise ValueError(f"the ATT table has {len(grid)} entries, more than {length}")
    pad = length - len(grid)
    return np.pad(grid, (0, pad), mode="edge"), np.pad(table, (0, pad), mode="edge")


def table_length(model):
    """Entries enough for the ATT tables of ``model`` (its ATT grid)."""
    from bids_perfusion.asl.multi_delay import ATT_TABLE_STEP

    return len(np.arange(0.0, model.att_max + ATT_TABLE_STEP, ATT_TABLE_STEP))


def interpolate(x, table, grid):
    """Piecewise-linear ``grid(table)`` at ``x`` per sample: ``x`` (B, ...), ``table`` and
    ``grid`` (B, L), ``table`` non-decreasing and, up to a repeated tail, increasing; the
    ends are held outside the table (:func:`numpy.interp`). Differentiable in ``x``."""
    shape = x.shape
    flat = x.reshape(shape[0], -1).contiguous()
    table = table.to(flat.dtype).contiguous()
    grid = grid.to(flat.dtype)
    upper = torch.searchsorted(table, flat.detach(), right=True).clamp(1, table.shape[1] - 1)
    lower = upper - 1
    t0, t1 = table.gather(1, lower), table.gather(1, upper)
    g0, g1 = grid.gather(1, lower), grid.gather(1, upper)
    step = t1 - t0
    fraction = torch.where(step > 0, (flat - t0) / torch.where(step > 0, step, 1.0), 0.0)
    return (g0 + fraction.clamp(0.0, 1.0) * (g1 - g0)).reshape(shape)


def kinetic_fit(ratio, delays, duration, counts, t1_blood, efficiency, pasl, partition,
                att_grid, wd_table, att_max):
    """(CBF, ATT) of ΔM/M0 ``ratio`` (B, K, H, W) by the weighted delay and linear least
    squares (module docstring), each (B, 1, H, W); differentiable in ``ratio``.

    ``delays``, ``duration``, ``counts`` (B, K, 1, 1): the delays, τ (or TI1) and pairs
    averaged at each; scalars or (B, 1, 1, 1) tensors for the others; ``att_grid`` and
    ``wd_table`` (B, L): :func:`padded_att_table`; ``att_max`` (B, 1, 1, 1): the latest
    signal time, whose half is the ATT where Σ y <= 0 (as the numpy fit).
    """
    total = ratio.sum(dim=1, keepdim=True)
    positive = total > 0
    wd = (delays * ratio).sum(dim=1, keepdim=True) / torch.where(positive, total, 1.0)
    att = torch.where(positive, interpolate(wd, wd_table, att_grid),
                      0.5 * _tensor(att_max, ratio).expand_as(wd))
    g = kinetic_delta_m(torch.ones_like(att), att, delays, duration, t1_blood, efficiency,
                        pasl, partition)
    numerator = (counts * g * ratio).sum(dim=1, keepdim=True)
    denominator = (counts * g * g).sum(dim=1, keepdim=True)
    usable = denominator > 0
    cbf = torch.where(usable, numerator / torch.where(usable, denominator, 1.0), 0.0)
    return cbf, att


def per_delay(model, x):
    """The residual of a 1-channel network for each delay of ``x`` (B, K, H, W), the
    delays being samples of one batch (shared weights)."""
    b, k, h, w = x.shape
    return model(x.reshape(b * k, 1, h, w)).reshape(b, k, h, w)


#: Per-sample constants of a multi-delay batch, in the order of :func:`kinetic_fit`.
FIT_KEYS = ("delays", "duration", "counts", "t1_blood", "efficiency", "pasl", "partition",
            "att_grid", "wd_table", "att_max")


def fit_batch(batch, delta_m):
    """:func:`kinetic_fit` of ``delta_m`` (B, K, H, W, network units) with the batch's
    M0 and constants; 0 where M0 is not positive."""
    m0 = batch["m0"]
    positive = m0 > 0
    ratio = torch.where(positive, delta_m / torch.where(positive, m0, 1.0), 0.0)
    return kinetic_fit(ratio, *(batch[key] for key in FIT_KEYS))


def multidelay_loss(model, batch, weight, att_weight=ATT_WEIGHT):
    """The loss of the module docstring with λ = ``weight`` and κ = ``att_weight``.

    ``batch``: ``noisy`` ΔM_n and ``residual`` N (B, K, H, W, network units), ``m0``,
    ``cbf`` f_t, ``att`` Δt_t and ``mask`` (B, 1, H, W), and the constants of
    :data:`FIT_KEYS`.
    """
    predicted = per_delay(model, batch["noisy"])
    mask = batch["mask"]
    count = mask.sum().clamp_min(1.0)
    k = predicted.shape[1]
    loss = weight * (mask * (batch["residual"] - predicted) ** 2).sum() / (count * k)
    if weight < 1:
        cbf, att = fit_batch(batch, batch["noisy"] - predicted)
        kinetic = (batch["cbf"] - cbf) ** 2 + (att_weight * (batch["att"] - att)) ** 2
        loss = loss + (1 - weight) * (mask * kinetic).sum() / count
    return loss
