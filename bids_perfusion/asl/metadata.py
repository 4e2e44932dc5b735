"""Acquisition parameters of a BIDS ASL run, validated before any processing.

:meth:`ASLRunMetadata.from_sidecar` reads the ``*_asl.json`` sidecar, the
``*_aslcontext.tsv`` volume types, the image shape and (for ``M0Type: Separate``) the
``*_m0scan`` file and sidecar, and refuses, naming the file, the field and the fix, every
run that would otherwise give wrong or empty maps (DESIGN.md, sections 3 and 7): a
context whose length is not the number of volumes, a per-volume list of the wrong length,
``RepetitionTimePreparation`` missing or 0 (ASLPrep then writes zero CBF without a word),
PCASL without ``LabelingDuration``, PASL without bolus cut-off, no M0 with background
suppression, an M0 image on another grid. Every time of the ASL and M0 sidecars that is
read (``RepetitionTime``, ``RepetitionTimePreparation``, ``PostLabelingDelay``,
``LabelingDuration``, ``BolusCutOffDelayTime``, ``SliceTiming``) must be in seconds within
a physical range (:data:`MAX_TIME`, :data:`MAX_REPETITION_TIME`, slice times below the
repetition time): a value that only makes sense in milliseconds is refused with the value
in seconds to write, never guessed. ``EchoTime`` is not used by ASL quantification and
not checked.

The errors are :class:`bids_perfusion.dsc.metadata.MetadataError`, the class the command
line already reports and skips runs for.
"""

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bids_perfusion import constants
from bids_perfusion.asl.context import ASLContext, ContextError
from bids_perfusion.dsc.metadata import MetadataError

#: ``ArterialSpinLabelingType`` values that can be quantified.
LABEL_TYPES = ("PCASL", "CASL", "PASL")
#: ``M0Type`` values of BIDS.
M0_TYPES = ("Separate", "Included", "Estimate", "Absent")
#: Longest plausible post-labelling delay, inversion time, labelling duration or bolus
#: cut-off time TI1, s. Consensus single-delay protocols use 1.5-2 s (Alsop et al., MRM
#: 2015;73:102) and multi-delay protocols stop near 4 s, beyond which the label has decayed
#: (T1 of blood 1.65 s at 3 T); 10 is far above any of them and far below the same times
#: written in milliseconds (hundreds to thousands).
MAX_TIME = 10.0
#: Longest plausible repetition time of ASL or M0 volumes, s. ASL runs use 3-6 s; an M0
#: scan for full recovery of CSF needs 5 T1 of CSF (T1 4.2 s at 3 T, Lin et al., MRM
#: 2001;45:1040), 21 s. A TR written in milliseconds (2000-10 000) is far above 30.
MAX_REPETITION_TIME = 30.0
#: Largest difference, tesla, between the sidecar's field and a tabulated one
#: (Siemens "3 T" scanners write 2.89).
FIELD_TOLERANCE = constants.FIELD_TOLERANCE


@dataclass(frozen=True)
class ASLRunMetadata:
    """What quantification needs to know about one ASL run; every time in seconds.

    Per-volume attributes hold one value per volume of the series, in order, whether the
    sidecar gave a scalar or a list; the properties below trim them to the volumes used.

    Attributes
    ----------
    path, context_path : str
        The ``*_asl.nii[.gz]`` series and its ``*_aslcontext.tsv``.
    label_type : {"PCASL", "CASL", "PASL"}
    context : :class:`~bids_perfusion.asl.context.ASLContext`
    post_labeling_delay : tuple of float
        Per volume: PLD (PCASL/CASL) or inversion time TI (PASL).
    labeling_duration : tuple of float or None
        Per volume, PCASL/CASL only (τ).
    bolus_cutoff_delay : float or None
        PASL: TI1 of QUIPSS II / Q2TIPS, the duration of the labelled bolus.
    bolus_cutoff_technique : str or None
    m0_type : {"Separate", "Included", "Estimate", "Absent"}
    m0_estimate : float or None
        ``M0Estimate`` (``M0Type: Estimate``).
    m0_file : str or None
        The separate ``*_m0scan`` image (``M0Type: Separate``).
    m0_repetition_time : float or None
        Repetition time of the M0 volumes (separate or included); for ``Absent``, that of
        the control volumes.
    background_suppression : bool
    background_suppression_pulses : int or None
    labeling_efficiency : float or None
        ``LabelingEfficiency`` when the sidecar gives it.
    magnetic_field_strength : float
    slice_timing : tuple of float or None
        Acquisition time of each slice after the first (2-D readouts only), along the
        third voxel axis (reversed for ``SliceEncodingDirection: k-``).
    repetition_time_preparation : tuple of float
        Per volume.
    shape : tuple of int
    """

    path: str
    context_path: str
    label_type: str
    context: ASLContext
    post_labeling_delay: tuple
    labeling_duration: tuple | None
    bolus_cutoff_delay: float | None
    bolus_cutoff_technique: str | None
    m0_type: str
    m0_estimate: float | None
    m0_file: str | None
    m0_repetition_time: float | None
    background_suppression: bool
    background_suppression_pulses: int | None
    labeling_efficiency: float | None
    magnetic_field_strength: float
    slice_timing: tuple | None
    repetition_time_preparation: tuple
    shape: tuple

    # --- the volumes each step uses ----------------------------------------------------
    @property
    def quantifiable(self) -> bool:
        """True when the series holds ΔM (pairs or deltam); False for CBF volumes only."""
        return self.context.difference_sources is not None

    @property
    def delays(self) -> tuple[float, ...]:
        """Delay (PLD or TI) of each ΔM estimate (pairs, then deltam volumes)."""
        return self.context.take(self.post_labeling_delay, self.context.difference_volumes)

    @property
    def durations(self) -> tuple[float, ...] | None:
        """Labelling duration τ of each ΔM estimate (PCASL/CASL), else None."""
        if self.labeling_duration is None:
            return None
        return self.context.take(self.labeling_duration, self.context.difference_volumes)

    @property
    def unique_delays(self) -> tuple[float, ...]:
        return tuple(sorted(set(round(d, 6) for d in self.delays)))

    @property
    def multi_delay(self) -> bool:
        """More than one distinct delay among the ΔM volumes: fit CBF and ATT."""
        return len(self.unique_delays) > 1

    @property
    def n_pairs(self) -> int:
        return len(self.context.pairs)

    # --- constants of the quantification ----------------------------------------------
    def efficiency(self, override: float | None = None) -> tuple[float, str]:
        """Labelling efficiency α used and where it comes from, as ``(α, source)``.

        ``override`` (the command line) first, then ``LabelingEfficiency`` of the sidecar,
        else the consensus value of the labelling type (Alsop et al. 2015) times
        ``BACKGROUND_SUPPRESSION_PULSE_EFFICIENCY`` per background-suppression pulse
        (Garcia et al., MRM 2005;54:366).
        """
        if override is not None:
            return float(override), "command line (--labeling-efficiency)"
        if self.labeling_efficiency is not None:
            return self.labeling_efficiency, "sidecar LabelingEfficiency"
        alpha = constants.LABEL_EFFICIENCY[self.label_type]
        if not self.background_suppression:
            return alpha, f"consensus {self.label_type} value (Alsop et al. 2015)"
        if self.background_suppression_pulses is None:
            raise MetadataError(
                f"{_sidecar_name(self.path)}: field 'BackgroundSuppressionNumberPulses' is "
                "missing while BackgroundSuppression is true; the labelling efficiency "
                "depends on it. Add the number of suppression pulses, or give "
                "'LabelingEfficiency' (or --labeling-efficiency).")
        n = self.background_suppression_pulses
        factor = constants.BACKGROUND_SUPPRESSION_PULSE_EFFICIENCY ** n
        return alpha * factor, (
            f"consensus {self.label_type} value {alpha} (Alsop et al. 2015) x "
            f"{constants.BACKGROUND_SUPPRESSION_PULSE_EFFICIENCY}^{n} for {n} background-"
            "suppression pulses (Garcia et al. 2005)")

    def t1_blood(self, override: float | None = None) -> float:
        """T1 of arterial blood, s: ``override``, else the consensus value for the field."""
        if override is not None:
            return float(override)
        nominal = min(constants.T1_BLOOD, key=lambda b: abs(b - self.magnetic_field_strength))
        if abs(nominal - self.magnetic_field_strength) > FIELD_TOLERANCE:
            raise MetadataError(
                f"{_sidecar_name(self.path)}: field 'MagneticFieldStrength' is "
                f"{self.magnetic_field_strength:g} T; the consensus gives T1 of blood at "
                f"{sorted(constants.T1_BLOOD)} T only. Give --t1-blood in seconds.")
        return constants.T1_BLOOD[nominal]

    @property
    def nominal_field_strength(self) -> float:
        return min(constants.T1_BLOOD, key=lambda b: abs(b - self.magnetic_field_strength))

    # --- validation -----------------------------------------------------------------
    @classmethod
    def from_sidecar(cls, path: str | os.PathLike[str], sidecar: Mapping[str, Any],
                     context_path: str | os.PathLike[str], volume_types: Sequence[str],
                     shape: Sequence[int], m0_file: str | None = None,
                     m0_sidecar: Mapping[str, Any] | None = None,
                     m0_shape: Sequence[int] | None = None) -> "ASLRunMetadata":
        """Validate one run; raise :class:`MetadataError` naming file, field and fix.

        ``volume_types`` come from :func:`~bids_perfusion.asl.context.read_aslcontext`;
        ``m0_file``, ``m0_sidecar`` and ``m0_shape`` describe the separate M0 scan, when
        one was found for the run.
        """
        path, json_name = str(path), _sidecar_name(path)
        shape = tuple(int(s) for s in shape)
        n_volumes = shape[3] if len(shape) == 4 else 1
        if len(shape) not in (3, 4):
            raise MetadataError(f"{path}: the image is {len(shape)}-D; an ASL series must "
                                "be 4-D (x, y, z, volumes).")
        if len(volume_types) != n_volumes:
            raise MetadataError(
                f"{context_path}: field 'volume_type' lists {len(volume_types)} volumes but "
                f"{path} has {n_volumes}; give one row per volume, in order.")
        context = ASLContext(tuple(volume_types))
        try:
            _ = context.pairs
        except ContextError as error:
            raise MetadataError(f"{context_path}: field 'volume_type': {error}") from None
        if context.difference_sources is None and not context.indices("cbf"):
            raise MetadataError(
                f"{context_path}: field 'volume_type' lists no control/label pair, deltam "
                "or cbf volume; there is nothing to quantify.")

        label_type = sidecar.get("ArterialSpinLabelingType")
        if label_type not in LABEL_TYPES:
            raise MetadataError(
                f"{json_name}: field 'ArterialSpinLabelingType' is {label_type!r}; give one "
                f"of {', '.join(LABEL_TYPES)}.")
        delays = _per_volume(json_name, sidecar, "PostLabelingDelay", n_volumes,
                             "the post-labelling delay (PCASL) or inversion time TI (PASL)")
        used = context.difference_volumes
        durations, cutoff, technique = None, None, None
        if label_type in ("PCASL", "CASL"):
            if sidecar.get("LabelingDuration") is None:
                raise MetadataError(
                    f"{json_name}: field 'LabelingDuration' is missing; {label_type} CBF "
                    "needs the labelling duration τ in seconds (e.g. 1.8).")
            durations = _per_volume(json_name, sidecar, "LabelingDuration", n_volumes,
                                    "the labelling duration τ")
            if any(durations[i] <= 0 for i in used):
                raise MetadataError(f"{json_name}: field 'LabelingDuration' is 0 for a "
                                    "labelled volume; give τ in seconds (e.g. 1.8).")
        else:
            cutoff, technique = _bolus_cutoff(json_name, sidecar)
            if any(delays[i] <= cutoff for i in used):
                raise MetadataError(
                    f"{json_name}: field 'PostLabelingDelay' (the inversion time TI for "
                    f"PASL) must exceed BolusCutOffDelayTime TI1 = {cutoff:g} s.")

        trp = _per_volume(json_name, sidecar, "RepetitionTimePreparation", n_volumes,
                          "the repetition time of the preparation (usually RepetitionTime)",
                          positive=True, max_value=MAX_REPETITION_TIME)
        if sidecar.get("RepetitionTime") is not None:
            _check_seconds(json_name, "RepetitionTime", _numbers(json_name, sidecar,
                                                                 "RepetitionTime"),
                           "the repetition time", max_value=MAX_REPETITION_TIME)
        field = sidecar.get("MagneticFieldStrength")
        if not isinstance(field, int | float) or field <= 0:
            raise MetadataError(f"{json_name}: field 'MagneticFieldStrength' is missing or "
                                "not a positive number; give it in tesla (e.g. 3).")
        suppression = sidecar.get("BackgroundSuppression")
        if not isinstance(suppression, bool):
            raise MetadataError(f"{json_name}: field 'BackgroundSuppression' is missing "
                                "(it is required by BIDS); give true or false.")
        pulses = sidecar.get("BackgroundSuppressionNumberPulses")
        efficiency = sidecar.get("LabelingEfficiency")
        if efficiency is not None and not (isinstance(efficiency, int | float)
                                           and 0 < efficiency <= 1):
            raise MetadataError(f"{json_name}: field 'LabelingEfficiency' is {efficiency!r}; "
                                "give a number in (0, 1], e.g. 0.85.")

        m0_type, m0_estimate, m0_tr = _m0(json_name, sidecar, context, suppression, trp,
                                          m0_file, m0_sidecar, m0_shape, shape, path)
        slice_timing = _slice_timing(json_name, sidecar, shape, trp)
        return cls(
            path=path, context_path=str(context_path), label_type=label_type,
            context=context, post_labeling_delay=delays,
            labeling_duration=durations, bolus_cutoff_delay=cutoff,
            bolus_cutoff_technique=technique, m0_type=m0_type, m0_estimate=m0_estimate,
            m0_file=str(m0_file) if m0_type == "Separate" else None,
            m0_repetition_time=m0_tr, background_suppression=suppression,
            background_suppression_pulses=None if pulses is None else int(pulses),
            labeling_efficiency=None if efficiency is None else float(efficiency),
            magnetic_field_strength=float(field), slice_timing=slice_timing,
            repetition_time_preparation=trp, shape=shape)


def _sidecar_name(path: str | os.PathLike[str]) -> str:
    """The JSON sidecar beside an image (``x_asl.nii.gz`` -> ``x_asl.json``)."""
    text = str(path)
    for extension in (".nii.gz", ".nii"):
        if text.endswith(extension):
            return text[: -len(extension)] + ".json"
    return text


def _per_volume(json_name: str, sidecar: Mapping[str, Any], field: str, n_volumes: int,
                meaning: str, positive: bool = False,
                max_value: float = MAX_TIME) -> tuple[float, ...]:
    """A scalar or per-volume list as one float per volume, validated."""
    value = sidecar.get(field)
    if value is None:
        raise MetadataError(f"{json_name}: field '{field}' is missing; give {meaning} in "
                            "seconds, one value or one per volume.")
    given = value if isinstance(value, list) else [value] * n_volumes
    if len(given) != n_volumes:
        raise MetadataError(
            f"{json_name}: field '{field}' lists {len(given)} values but the series has "
            f"{n_volumes} volumes; give one value, or one per volume (aslcontext order).")
    try:
        values = tuple(float(v) for v in given)
    except (TypeError, ValueError):
        raise MetadataError(f"{json_name}: field '{field}' must hold numbers "
                            f"(got {value!r}).") from None
    _check_seconds(json_name, field, values, meaning, positive=positive, max_value=max_value)
    return values


def _check_seconds(json_name: str, field: str, values: Sequence[float], meaning: str,
                   positive: bool = True, max_value: float = MAX_TIME) -> None:
    """Refuse times that are negative, 0 (when ``positive``) or only make sense in ms."""
    if any(not np.isfinite(v) for v in values):
        raise MetadataError(f"{json_name}: field '{field}' holds a non-finite number; give "
                            f"{meaning} in seconds.")
    if any(v < 0 for v in values) or (positive and any(v == 0 for v in values)):
        why = " (a zero value would give zero or infinite CBF)" if positive else ""
        raise MetadataError(f"{json_name}: field '{field}' is {'0 or ' if positive else ''}"
                            f"negative; give {meaning} in seconds{why}.")
    if max_value is not None and any(v > max_value for v in values):
        big = max(values)
        raise MetadataError(f"{json_name}: field '{field}' has {big:g}; BIDS needs seconds, "
                            f"at most {max_value:g} for {meaning}. It looks like "
                            f"milliseconds: write {big / 1000:g}.")


def _bolus_cutoff(json_name: str, sidecar: Mapping[str, Any]) -> tuple[float, Any]:
    """TI1 and technique of a PASL run; refuse PASL without bolus cut-off."""
    flag = sidecar.get("BolusCutOffFlag")
    if flag is not True:
        reason = "is missing" if flag is None else "is false"
        raise MetadataError(
            f"{json_name}: field 'BolusCutOffFlag' {reason}; PASL CBF needs a bolus of "
            "known duration (QUIPSS II or Q2TIPS). Set BolusCutOffFlag true with "
            "BolusCutOffDelayTime (TI1, s) and BolusCutOffTechnique.")
    delay = sidecar.get("BolusCutOffDelayTime")
    values: list[Any] = delay if isinstance(delay, list) else [delay]
    if not values or not all(isinstance(v, int | float) for v in values):
        raise MetadataError(
            f"{json_name}: field 'BolusCutOffDelayTime' is missing or not a number; give "
            "TI1, the bolus duration in seconds (e.g. 0.8).")
    # Q2TIPS: [TI1, TI1s]; TI1 fixes the bolus duration.
    _check_seconds(json_name, "BolusCutOffDelayTime", [float(v) for v in values],
                   "TI1, the bolus duration (e.g. 0.8)")
    return float(values[0]), sidecar.get("BolusCutOffTechnique")


def _m0(json_name: str, sidecar: Mapping[str, Any], context: ASLContext, suppression: bool,
        trp: Sequence[float], m0_file: str | None, m0_sidecar: Mapping[str, Any] | None,
        m0_shape: Sequence[int] | None, shape: tuple[int, ...],
        path: str) -> tuple[str, float | None, float | None]:
    """M0 type, estimate and repetition time of the M0 volumes, validated."""
    m0_type = sidecar.get("M0Type")
    if m0_type not in M0_TYPES:
        raise MetadataError(f"{json_name}: field 'M0Type' is {m0_type!r}; give one of "
                            f"{', '.join(M0_TYPES)}.")
    if not context.difference_sources:
        return m0_type, None, None  # CBF volumes only: M0 is not needed.
    if m0_type == "Absent":
        if suppression:
            raise MetadataError(
                f"{json_name}: field 'M0Type' is Absent and 'BackgroundSuppression' is true: "
                "the control images are suppressed and cannot serve as M0. Provide an M0 "
                "scan (M0Type Separate or Included) or M0Estimate (M0Type Estimate).")
        controls = context.indices("control")
        if not controls:
            raise MetadataError(
                f"{json_name}: field 'M0Type' is Absent and the series has no control "
                "volume to estimate M0 from; provide an M0 scan or M0Estimate.")
        return m0_type, None, float(np.mean([trp[i] for i in controls]))
    if m0_type == "Estimate":
        estimate = sidecar.get("M0Estimate")
        if not isinstance(estimate, int | float) or estimate <= 0:
            raise MetadataError(f"{json_name}: field 'M0Estimate' is missing or not "
                                "positive while M0Type is Estimate; give the M0 value in "
                                "the units of the ASL images.")
        return m0_type, float(estimate), None
    if m0_type == "Included":
        included = context.indices("m0scan")
        if not included:
            raise MetadataError(f"{json_name}: field 'M0Type' is Included but the "
                                f"aslcontext lists no m0scan volume; list it, or use M0Type "
                                "Separate with an *_m0scan file.")
        return m0_type, None, float(np.mean([trp[i] for i in included]))
    # Separate
    if m0_file is None:
        raise MetadataError(
            f"{json_name}: field 'M0Type' is Separate but no *_m0scan.nii[.gz] was found for "
            f"{path}; add it to perf/ with IntendedFor naming this series.")
    m0_json = _sidecar_name(m0_file)
    if m0_shape is None or tuple(m0_shape[:3]) != tuple(shape[:3]) or len(m0_shape) > 4:
        raise MetadataError(
            f"{m0_file}: the M0 image has shape {tuple(m0_shape or ())}, the ASL series "
            f"{tuple(shape[:3])} voxels; field 'IntendedFor' links it to {path}. Resample "
            "the M0 scan onto the ASL grid (same matrix) or fix IntendedFor.")
    m0_sidecar = m0_sidecar or {}
    present = [f for f in ("RepetitionTimePreparation", "RepetitionTime")
               if m0_sidecar.get(f) is not None]
    if not present:
        raise MetadataError(
            f"{m0_json}: field 'RepetitionTimePreparation' is missing; the M0 scan's "
            "repetition time (s) is needed to correct its T1 recovery. Add it in seconds.")
    for field in present:
        _check_seconds(m0_json, field, _numbers(m0_json, m0_sidecar, field),
                       "the M0 scan's repetition time", max_value=MAX_REPETITION_TIME)
    return m0_type, None, float(np.mean(_numbers(m0_json, m0_sidecar, present[0])))


def _numbers(json_name: str, sidecar: Mapping[str, Any], field: str) -> list[float]:
    """A field holding a number or a non-empty list of numbers, as a list of floats."""
    value = sidecar[field]
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int | float) and not isinstance(v, bool)
                             for v in values):
        raise MetadataError(f"{json_name}: field '{field}' must hold a number or a list of "
                            f"numbers (got {value!r}).")
    return [float(v) for v in values]


def _slice_timing(json_name: str, sidecar: Mapping[str, Any], shape: tuple[int, ...],
                  repetition_time_preparation: Sequence[float]) -> tuple[float, ...] | None:
    """Slice acquisition times along the third voxel axis, for 2-D readouts only."""
    if sidecar.get("MRAcquisitionType") != "2D" or sidecar.get("SliceTiming") is None:
        return None
    timing = sidecar["SliceTiming"]
    if not isinstance(timing, list) or len(timing) != shape[2]:
        raise MetadataError(f"{json_name}: field 'SliceTiming' must list one time per "
                            f"slice ({shape[2]} slices along the third axis).")
    direction = sidecar.get("SliceEncodingDirection", "k")
    if direction not in ("k", "k-"):
        raise MetadataError(f"{json_name}: field 'SliceEncodingDirection' is {direction!r}; "
                            "only slices along the third voxel axis ('k' or 'k-') are "
                            "supported. Reorient the series so that slices run along k.")
    timing = _numbers(json_name, sidecar, "SliceTiming")
    # A slice is acquired within one repetition: every time lies in [0, TR).
    _check_seconds(json_name, "SliceTiming", timing, "the acquisition time of each slice "
                   "after the start of the readout", positive=False,
                   max_value=min(repetition_time_preparation))
    if direction == "k-":
        timing = timing[::-1]
    start = min(timing)
    return tuple(t - start for t in timing)
