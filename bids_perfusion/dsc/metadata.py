"""Acquisition parameters of a DSC run, validated from its BIDS sidecar before any processing.

Every check names the file, the field and the fix, so that one bad run can be reported and
skipped while the others are processed (DESIGN.md, section 3). Times are in seconds, as
BIDS requires; values that only make sense in milliseconds are refused rather than guessed.
"""

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bids_perfusion import constants
from bids_perfusion.dsc.relaxivity import nominal_field
from bids_perfusion.errors import InputDataError

#: Longest plausible gradient-echo DSC echo time, s (clinical TEs are 20-50 ms).
MAX_ECHO_TIME = 0.2
#: Longest plausible frame interval, s.
MAX_REPETITION_TIME = 10.0
#: Fewest frames a bolus passage can be quantified from.
MIN_FRAMES = 20
#: Range of plausible ``MagneticFieldStrength`` values, tesla: from low-field scanners
#: to the 11.7 T human MRI (Iseult); outside it the value is in another unit (e.g. mT).
FIELD_STRENGTH_RANGE = (0.1, 11.7)


class MetadataError(InputDataError):
    """A DSC run cannot be processed as it is; the message says which file, field and fix."""


@dataclass(frozen=True)
class DSCRunMetadata:
    """What the pipeline needs to know about one DSC run.

    Attributes
    ----------
    echo_times : tuple of float
        Echo times, s, one per echo file, ascending.
    repetition_time : float
        Frame interval Δt, s (``RepetitionTime``, or the spacing of ``VolumeTiming``).
    n_frames : int
    magnetic_field_strength : float
        Tesla: ``MagneticFieldStrength`` of the sidecars, or the ``--field-strength``
        override; it selects the relaxivities (:func:`bids_perfusion.dsc.relaxivity.at_field`).
    field_strength_source : str
        ``"sidecar"`` or ``"--field-strength"``.
    """

    echo_times: tuple
    repetition_time: float
    n_frames: int
    magnetic_field_strength: float
    field_strength_source: str = "sidecar"

    @property
    def frame_times(self) -> NDArray[np.floating]:
        """Acquisition time of each frame relative to the first, s."""
        return np.arange(self.n_frames) * self.repetition_time

    @classmethod
    def from_sidecars(cls, paths: Sequence[str], sidecars: Sequence[Mapping[str, Any]],
                      shapes: Sequence[tuple[int, ...]],
                      field_strength: float | None = None) -> "DSCRunMetadata":
        """Validate the sidecars and image shapes of the echo files of one run.

        ``paths``, ``sidecars`` (dicts) and ``shapes`` hold one entry per echo file;
        ``field_strength`` (tesla, from ``--field-strength``) replaces the sidecars'
        ``MagneticFieldStrength``, which is otherwise required.
        Raises :class:`MetadataError` naming the file, the field and the fix.
        """
        echo_times, intervals = [], []
        for path, meta, shape in zip(paths, sidecars, shapes, strict=True):
            if len(shape) != 4:
                raise MetadataError(
                    f"{path}: the image is {len(shape)}-D; a DSC series must be 4-D "
                    "(x, y, z, time). Convert the series to a single 4-D NIfTI.")
            if shape[3] < MIN_FRAMES:
                raise MetadataError(
                    f"{path}: {shape[3]} frames; at least {MIN_FRAMES} are needed for a "
                    "baseline and the bolus passage.")
            echo_times.append(_echo_time(path, meta))
            intervals.append(_repetition_time(path, meta, shape[3]))
        if len({shape[:4] for shape in shapes}) > 1:
            raise MetadataError(f"{paths[0]}: the echo files of this run differ in shape "
                                f"{sorted({tuple(s) for s in shapes})}; they must match.")
        if len(set(intervals)) > 1:
            raise MetadataError(f"{paths[0]}: field 'RepetitionTime' differs between echoes "
                                f"({intervals}); they must be acquired together.")
        if len(set(echo_times)) != len(echo_times):
            raise MetadataError(f"{paths[0]}: two echo files share EchoTime {echo_times}; "
                                "give each echo its own EchoTime.")
        if field_strength is None:
            fields = [_field_strength(path, meta) for path, meta in zip(paths, sidecars,
                                                                        strict=True)]
            if len(set(fields)) > 1:
                raise MetadataError(f"{paths[0]}: field 'MagneticFieldStrength' differs "
                                    f"between echoes ({fields}); give one field, or "
                                    "--field-strength.")
            field, source = fields[0], "sidecar"
        else:
            field, source = float(field_strength), "--field-strength"
            _check_field_strength(paths[0], field, "--field-strength")
        order = np.argsort(echo_times)
        return cls(tuple(float(echo_times[i]) for i in order), intervals[0], int(shapes[0][3]),
                   field, source)


def _field_strength(path: str, meta: Mapping[str, Any]) -> float:
    field = meta.get("MagneticFieldStrength")
    if field is None:
        raise MetadataError(f"{path}: field 'MagneticFieldStrength' is missing from the JSON "
                            "sidecar; the relaxivities depend on it. Add it in tesla (e.g. 3), "
                            "or give --field-strength.")
    field = number(path, "MagneticFieldStrength", field, "3", unit="tesla")
    _check_field_strength(path, field, "field 'MagneticFieldStrength'")
    return field


def _check_field_strength(path: str, field: float, where: str) -> None:
    low, high = FIELD_STRENGTH_RANGE
    if not low <= field <= high:
        raise MetadataError(f"{path}: {where} is {field:g}; it must be in tesla, between "
                            f"{low:g} and {high:g} (e.g. 1.5 or 3). Correct it, or give "
                            "--field-strength.")
    if nominal_field(field) is None:
        raise MetadataError(f"{path}: {where} is {field:g} T; DSC relaxivities are tabulated "
                            f"at {sorted(constants.DSC_RELAXIVITY)} T only. Add this field's "
                            "values to constants.DSC_RELAXIVITY, or give --field-strength.")


def _echo_time(path: str, meta: Mapping[str, Any]) -> float:
    te = meta.get("EchoTime")
    if te is None:
        raise MetadataError(f"{path}: field 'EchoTime' is missing from the JSON sidecar; "
                            "add it in seconds (e.g. 0.03).")
    if isinstance(te, list):
        raise MetadataError(f"{path}: field 'EchoTime' is a list; split the echoes into "
                            "one file each with the 'echo' entity.")
    te = number(path, "EchoTime", te, "0.03")
    if not 0 < te <= MAX_ECHO_TIME:
        hint = (f" It looks like milliseconds: write {te / 1000:g}." if te > MAX_ECHO_TIME
                else "")
        raise MetadataError(f"{path}: field 'EchoTime' is {te:g}; BIDS needs seconds, "
                            f"between 0 and {MAX_ECHO_TIME} for DSC.{hint}")
    return te


def _repetition_time(path: str, meta: Mapping[str, Any], n_frames: int) -> float:
    tr = meta.get("RepetitionTime")
    if tr is None and "VolumeTiming" in meta:
        timing = meta["VolumeTiming"]
        if not isinstance(timing, list):
            timing = [timing]
        timing = np.array([number(path, "VolumeTiming", t, "[0, 1.5, 3.0]") for t in timing])
        steps = np.diff(timing)
        if timing.size != n_frames or steps.size == 0 or np.ptp(steps) > 1e-3 * steps.mean():
            raise MetadataError(f"{path}: field 'VolumeTiming' must list {n_frames} equally "
                                "spaced onsets, one per frame.")
        tr = float(steps.mean())
    if tr is None:
        raise MetadataError(f"{path}: field 'RepetitionTime' is missing from the JSON "
                            "sidecar; add the frame interval in seconds (e.g. 1.5).")
    tr = number(path, "RepetitionTime", tr, "1.5")
    if not 0 < tr <= MAX_REPETITION_TIME:
        hint = (f" It looks like milliseconds: write {tr / 1000:g}."
                if tr > MAX_REPETITION_TIME else "")
        raise MetadataError(f"{path}: field 'RepetitionTime' is {tr:g}; it must be the frame "
                            f"interval in seconds, between 0 and {MAX_REPETITION_TIME}.{hint}")
    return tr


def number(path: object, field: str, value: object, example: str,
           unit: str = "seconds") -> float:
    """``value`` of sidecar ``field`` as a finite float, or MetadataError naming the file,
    the field and an ``example`` of a valid value in ``unit`` (JSON numbers only:
    ``"30ms"``, ``true`` or ``null`` are refused rather than guessed)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(
            float(value)):
        raise MetadataError(f"{path}: field {field!r} is {value!r}; it must be a JSON number "
                            f"in {unit}, e.g. {example}.")
    return float(value)
