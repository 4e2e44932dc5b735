"""The acquisition ranges a bundled model was trained on, and whether an input lies in them.

Every model card holds ``training_ranges``: a dict from a quantity to its ``[low, high]``
over the training data, in the vocabulary of :data:`QUANTITIES` (units in the values).
A model card may hold any subset (the ASL models have no AIF). At inference the
interfaces describe the input in the same vocabulary and call :func:`outside_ranges`;
a non-empty answer is logged as a warning and written into the map's sidecar as
``OutsideTrainingRanges``: the model may still work there, but it was never tested
there (docs/phae.md, § Training ranges).
"""

import logging

import numpy as np

LOGGER = logging.getLogger("bids_perfusion.nn")

#: Quantity -> unit, the vocabulary of ``training_ranges``.
QUANTITIES = {"RepetitionTime": "s", "Frames": "frames", "EchoTime": "s",
              "MagneticFieldStrength": "T", "AIFPeak": "mM", "AIFArrival": "s", "SNR": "",
              "PostLabelingDelay": "s", "LabelingDuration": "s", "Delays": "delays"}
#: Relative slack of a range's ends (rounding of scanner values, 1.5 T read as 1.494 T).
TOLERANCE = 0.02


def dsc_acquisition(aif, frame_times, field_strength=None, echo_time=None):
    """A DSC input in the vocabulary of :data:`QUANTITIES`: TR and frames of
    ``frame_times`` (T,) s, AIF peak (mM) and arrival (s, the bolus arrival time of
    :func:`bids_perfusion.dsc.timing.bolus_arrival_time`) of ``aif`` (T,), and the field
    (T) and echo time (s) when known."""
    from bids_perfusion.dsc.timing import bolus_arrival_time

    times = np.asarray(frame_times, dtype=np.float64)
    aif = np.asarray(aif, dtype=np.float64)
    values = {"RepetitionTime": float(np.median(np.diff(times))), "Frames": int(times.size),
              "AIFPeak": float(aif.max()),
              "AIFArrival": float(bolus_arrival_time(aif[None], times)[0])}
    if field_strength is not None:
        values["MagneticFieldStrength"] = float(field_strength)
    if echo_time is not None:
        values["EchoTime"] = float(echo_time)
    return values


def envelope(records):
    """``training_ranges`` covering every record (dicts of values or of ``[low, high]``)."""
    ranges = {}
    for record in records:
        for key, value in record.items():
            low, high = (value, value) if np.isscalar(value) else value
            old = ranges.get(key, (low, high))
            ranges[key] = [min(old[0], low), max(old[1], high)]
    return ranges


def outside_ranges(acquisition, ranges):
    """Descriptions (``"EchoTime 0.06 s outside [0.02, 0.045]"``) of the values of
    ``acquisition`` outside the card's ``ranges``; quantities missing from either are not
    checked, and NaN values (not measurable) neither."""
    outside = []
    for key, value in acquisition.items():
        if key not in ranges or value is None or not np.isfinite(value):
            continue
        low, high = ranges[key]
        slack = TOLERANCE * max(abs(low), abs(high))
        if not low - slack <= value <= high + slack:
            unit = QUANTITIES.get(key, "")
            outside.append(f"{key} {value:.4g}{' ' + unit if unit else ''} outside "
                           f"[{low:.4g}, {high:.4g}]")
    return outside


def check_input(card, acquisition, name):
    """:func:`outside_ranges` of ``acquisition`` against the ``training_ranges`` of the
    model card ``card`` (none checked when it has none), each logged as a warning naming
    the model ``name``; returns the list for the sidecar's ``OutsideTrainingRanges``."""
    outside = outside_ranges(acquisition, card.get("training_ranges", {}))
    for item in outside:
        LOGGER.warning("%s: input %s of the model's training data (model card "
                       "'training_ranges'); check its maps against a classical method",
                       name, item)
    return outside
