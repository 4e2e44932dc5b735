"""Generic training of a torch model on tensors of samples, shared by every model.

A model is trained by :func:`train` from

- ``loss_fn(model, batch) -> scalar loss``, ``batch`` a dict of tensors on the device;
- the training and validation samples, each a dict of tensors with the same first
  dimension (one row per sample, e.g. one voxel's curves);
- a :class:`TrainingConfig` (epochs, batch size, Adam learning rate, seed...).

It shuffles with a seeded generator, steps Adam (Kingma and Ba, ICLR 2015) at a constant
learning rate or on a cosine schedule (Loshchilov and Hutter, SGDR, ICLR 2017), optionally
augments the training batches (e.g. :func:`bids_perfusion.nn.strips.flip_strips`), shows
tqdm progress bars, logs the mean training and validation loss of every epoch, and
returns the weights of the epoch with the lowest validation loss. Mixed precision (autocast) is
used only on CUDA and only where the model allows it: models run their physics in
float32 themselves (see :mod:`bids_perfusion.nn.phae`). Samples are split by subject
with :func:`split_subjects`, so no subject contributes to two of train, validation and
test.
"""

import copy
import dataclasses
import logging
import math
import os
import random
import time

import numpy as np
import torch

LOGGER = logging.getLogger("bids_perfusion.nn")

#: Learning-rate schedules of :class:`TrainingConfig`.
LR_SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How to train: ``epochs`` over the training samples in batches of ``batch_size``,
    Adam with learning rate ``lr`` and ``weight_decay``, shuffling seeded by ``seed``;
    ``lr_schedule``: ``"constant"`` or ``"cosine"`` (epoch e of E trains at
    lr·(1 + cos(π(e − 1)/E))/2, from lr down to nearly 0); ``amp``: mixed precision on
    CUDA (ignored on CPU); ``patience``: stop after that many epochs without a better
    validation loss (None: never); ``progress``: tqdm bars."""

    epochs: int = 10
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    seed: int = 0
    amp: bool = True
    patience: int | None = None
    progress: bool = True

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got "
                             f"{self.lr_schedule!r}")

    def learning_rate(self, epoch):
        """Learning rate of ``epoch`` (1-based) under the schedule."""
        if self.lr_schedule == "cosine":
            return self.lr * (1 + math.cos(math.pi * (epoch - 1) / self.epochs)) / 2
        return self.lr


@dataclasses.dataclass
class TrainingResult:
    """Best weights (on validation), per-epoch history and where the best epoch was."""

    state_dict: dict
    history: list
    best_epoch: int
    best_val_loss: float
    seconds: float


def seed_everything(seed, deterministic=True):
    """Seed Python and torch (CPU and CUDA); ask torch for deterministic kernels.

    numpy is not seeded globally: every numpy draw here takes an explicit
    ``numpy.random.default_rng(seed)``.

    ``torch.use_deterministic_algorithms(True, warn_only=True)`` makes CPU training
    reproducible bit for bit on one machine; on CUDA, cuBLAS also needs the workspace
    setting that is exported here. Different hardware or library versions may still
    differ in the last bits.
    """
    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def split_subjects(subjects, val_fraction=0.15, test_fraction=0.15, seed=0):
    """Split subject identifiers into ``train``, ``val`` and ``test`` lists, by subject.

    The identifiers are sorted, shuffled with ``numpy.random.default_rng(seed)`` and cut:
    ``round(n · test_fraction)`` test subjects, then ``round(n · val_fraction)``
    validation subjects (at least one of each when the fraction is positive and at least
    three subjects exist), the rest for training. Same subjects and seed, same split.
    """
    subjects = sorted(set(subjects))
    n = len(subjects)
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1
            and val_fraction + test_fraction < 1):
        raise ValueError("val_fraction and test_fraction must be in [0, 1) with a sum < 1")
    if n < 2:
        raise ValueError(f"at least two subjects are needed to split (got {n})")
    order = [subjects[i] for i in np.random.default_rng(seed).permutation(n)]

    def count(fraction):
        k = round(n * fraction)
        return max(k, 1) if fraction > 0 and n >= 3 else k

    n_test, n_val = count(test_fraction), count(val_fraction)
    if n - n_test - n_val < 1:
        raise ValueError(f"{n} subjects leave none for training with val_fraction="
                         f"{val_fraction} and test_fraction={test_fraction}")
    return {"train": sorted(order[n_test + n_val:]), "val": sorted(order[n_test:n_test + n_val]),
            "test": sorted(order[:n_test])}


def _length(arrays):
    lengths = {len(v) for v in arrays.values()}
    if len(lengths) != 1:
        raise ValueError(f"the sample tensors differ in length: {sorted(lengths)}")
    return lengths.pop()


def batches(arrays, batch_size, device, generator=None):
    """Yield dicts of tensors of at most ``batch_size`` rows, shuffled when ``generator``."""
    n = _length(arrays)
    order = (torch.randperm(n, generator=generator) if generator is not None
             else torch.arange(n))
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        yield {key: value[index].to(device, non_blocking=True)
               for key, value in arrays.items()}


def _autocast(device, enabled):
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


@torch.no_grad()
def evaluate(model, loss_fn, arrays, batch_size, device, amp=False):
    """Mean loss over ``arrays`` (weighted by batch size), model in eval mode."""
    device = torch.device(device)
    model.eval()
    total, count = 0.0, 0
    for batch in batches(arrays, batch_size, device):
        with _autocast(device, amp):
            loss = loss_fn(model, batch)
        size = _length(batch)
        total += float(loss) * size
        count += size
    return total / max(count, 1)


def train(model, loss_fn, train_arrays, val_arrays, config, device, log=None, augment=None):
    """Train ``model`` in place and load the best validation checkpoint into it.

    ``log``, when given, is called with each epoch's record ``{"epoch", "lr",
    "train_loss", "val_loss", "seconds"}`` (e.g. to write a TSV); the records are also
    returned in :class:`TrainingResult` ``.history``. ``augment(batch, generator)``, when
    given, transforms every training batch (never the validation batches) with draws from
    a CPU generator seeded by ``config.seed``. Returns the result with the best state_dict.
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    seed_everything(config.seed)
    model.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    augmenter = torch.Generator().manual_seed(config.seed + 1)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    amp = config.amp and device.type == "cuda"
    fp16 = amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    n_batches = -(-_length(train_arrays) // config.batch_size)
    best = (float("inf"), 0, copy.deepcopy(model.state_dict()))
    history, started, stale = [], time.perf_counter(), 0
    epochs = tqdm(range(1, config.epochs + 1), desc="epochs", disable=not config.progress,
                  unit="epoch")
    for epoch in epochs:
        tic = time.perf_counter()
        learning_rate = config.learning_rate(epoch)
        for group in optimiser.param_groups:
            group["lr"] = learning_rate
        model.train()
        total, count = 0.0, 0
        bar = tqdm(batches(train_arrays, config.batch_size, device, generator),
                   total=n_batches, desc=f"epoch {epoch}", leave=False,
                   disable=not config.progress, unit="batch")
        for batch in bar:
            if augment is not None:
                batch = augment(batch, augmenter)
            optimiser.zero_grad(set_to_none=True)
            with _autocast(device, amp):
                loss = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch}: the training loss is {float(loss)}; "
                                         "lower --lr or check the samples")
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            size = _length(batch)
            total += float(loss.detach()) * size
            count += size
            bar.set_postfix(loss=f"{total / count:.4g}")
        val_loss = evaluate(model, loss_fn, val_arrays, config.batch_size, device, amp)
        record = {"epoch": epoch, "lr": optimiser.param_groups[0]["lr"],
                  "train_loss": total / count, "val_loss": val_loss,
                  "seconds": time.perf_counter() - tic}
        history.append(record)
        epochs.set_postfix(train=f"{record['train_loss']:.4g}", val=f"{val_loss:.4g}")
        LOGGER.info("epoch %d: train loss %.5g, validation loss %.5g (%.1f s)", epoch,
                    record["train_loss"], val_loss, record["seconds"])
        if log is not None:
            log(record)
        if val_loss < best[0]:
            best, stale = (val_loss, epoch, copy.deepcopy(model.state_dict())), 0
        else:
            stale += 1
            if config.patience is not None and stale >= config.patience:
                LOGGER.info("no better validation loss for %d epochs: stopping", stale)
                break
    model.load_state_dict(best[2])
    return TrainingResult(best[2], history, best[1], best[0], time.perf_counter() - started)
