"""The volumes of a BIDS ASL series (``*_aslcontext.tsv``) and what each is used for.

BIDS lists one ``volume_type`` per volume of ``*_asl.nii[.gz]``: ``control``, ``label``,
``m0scan``, ``deltam`` (control - label, computed by the scanner), ``cbf`` (a CBF map
computed by the scanner) and ``noRF`` (no labelling RF, a noise or reference volume).

Control and label volumes are paired in the order they appear: the i-th control with the
i-th label, whichever of the two comes first in the series (Alsop et al., MRM
2015;73:102 leave the order to the vendor), so that ``ΔM_i = S(control_i) - S(label_i)``.
Per-volume metadata (``PostLabelingDelay``, ``LabelingDuration``,
``RepetitionTimePreparation`` given as lists) are trimmed to the volumes each step uses
with :meth:`ASLContext.take`.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bids_perfusion.dsc.metadata import MetadataError
from bids_perfusion.tsv import read_tsv

#: Volume types of BIDS ``aslcontext.tsv`` (BIDS 1.10, "Arterial Spin Labeling").
VOLUME_TYPES = ("control", "label", "m0scan", "deltam", "cbf", "noRF")


class ContextError(MetadataError):
    """The aslcontext table cannot be read or does not describe a usable series."""


def read_aslcontext(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The ``volume_type`` column of an aslcontext TSV, as a tuple of str.

    Accepts the spelling ``norf``/``NORF`` for ``noRF``; raises :class:`ContextError`
    naming the file, the field and the fix for a missing column or an unknown type.
    """
    try:
        rows = read_tsv(path)
    except OSError as error:
        raise ContextError(f"{path}: cannot be read ({error.strerror}).") from None
    if not rows or "volume_type" not in rows[0]:
        raise ContextError(f"{path}: field 'volume_type' is missing; the file must be a "
                           "TSV whose header is 'volume_type', with one row per volume.")
    types = []
    for number, row in enumerate(rows, start=2):
        value = (row["volume_type"] or "").strip()
        value = "noRF" if value.lower() == "norf" else value
        if value not in VOLUME_TYPES:
            raise ContextError(f"{path}: field 'volume_type' has {value!r} on line {number}; "
                               f"use one of {', '.join(VOLUME_TYPES)}.")
        types.append(value)
    return tuple(types)


@dataclass(frozen=True)
class ASLContext:
    """Volume types of one series, with the indices each quantification step uses.

    Attributes
    ----------
    volume_types : tuple of str
        One of :data:`VOLUME_TYPES` per volume, in acquisition order.
    """

    volume_types: tuple

    def __len__(self) -> int:
        return len(self.volume_types)

    def indices(self, kind: str) -> tuple[int, ...]:
        """0-based indices of the volumes of type ``kind``, in order."""
        return tuple(i for i, v in enumerate(self.volume_types) if v == kind)

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        """``((control, label), ...)``: the i-th control with the i-th label.

        Raises :class:`ContextError` when the counts differ.
        """
        controls, labels = self.indices("control"), self.indices("label")
        if len(controls) != len(labels):
            raise ContextError(f"{len(controls)} control and {len(labels)} label volumes; "
                               "every control needs its label.")
        return tuple(zip(controls, labels, strict=True))

    @property
    def difference_sources(self) -> str | None:
        """Which volumes give ΔM: ``'pairs'``, ``'deltam'``, ``'both'``, or None (none)."""
        pairs, deltam = bool(self.indices("label")), bool(self.indices("deltam"))
        return {(True, False): "pairs", (False, True): "deltam",
                (True, True): "both"}.get((pairs, deltam))

    @property
    def difference_volumes(self) -> tuple[int, ...]:
        """For each ΔM estimate, the volume whose metadata (delay, duration) it takes:
        the label of each pair, then each ``deltam`` volume."""
        return tuple(label for _, label in self.pairs) + self.indices("deltam")

    def take(self, values: Any, indices: Sequence[int]) -> tuple[float, ...]:
        """Per-volume ``values`` (scalar or list of one per volume) at ``indices``.

        A scalar applies to every volume; a list must have one entry per volume (callers
        validate that first, so a mismatch here is a programming error).
        """
        if np.ndim(values) == 0:
            return tuple(float(values) for _ in indices)
        values = list(values)
        assert len(values) == len(self), "per-volume list of the wrong length"
        return tuple(float(values[i]) for i in indices)


def difference_images(series: ArrayLike, context: ASLContext) -> NDArray[np.float64]:
    """ΔM estimates of a 4-D series: one per control/label pair, then one per ``deltam``.

    Returns an array ``(..., n)`` in the order of :attr:`ASLContext.difference_volumes`:
    ``S[..., control_i] - S[..., label_i]`` for each pair, then the ``deltam`` volumes.
    """
    series = np.asarray(series)
    pairs = context.pairs
    parts = []
    if pairs:
        controls, labels = (list(x) for x in zip(*pairs, strict=True))
        parts.append(series[..., controls].astype(np.float64)
                     - series[..., labels].astype(np.float64))
    if deltam := context.indices("deltam"):
        parts.append(series[..., list(deltam)].astype(np.float64))
    if not parts:
        return np.zeros((*series.shape[:-1], 0))
    return np.concatenate(parts, axis=-1)


def mean_by_delay(
    differences: NDArray[Any], delays: ArrayLike, durations: ArrayLike | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None,
           NDArray[np.int_]]:
    """Average ΔM estimates that share a delay (and labelling duration).

    Returns ``(means (..., k), unique delays (k,), durations (k,) or None, counts (k,))``,
    delays ascending. ``durations`` (one per estimate) separates protocols whose
    labelling duration varies with the delay.
    """
    delays = np.asarray(delays, dtype=float)
    keys = delays if durations is None else np.stack([delays, np.asarray(durations)], -1)
    unique, inverse, counts = np.unique(np.round(np.atleast_2d(keys.T).T, 6), axis=0,
                                        return_inverse=True, return_counts=True)
    inverse = np.ravel(inverse)
    means = np.stack([differences[..., inverse == k].mean(axis=-1)
                      for k in range(len(unique))], axis=-1)
    if durations is None:
        return means, unique[:, 0], None, counts
    return means, unique[:, 0], unique[:, 1], counts
