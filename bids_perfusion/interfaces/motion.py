"""Head-motion correction of a DSC or ASL series: corrected series and confounds table.

Thin wrappers of :mod:`bids_perfusion.motion`: read the series, realign it, write the
corrected series, the motion parameters with the framewise displacement and the outlier
flags (``desc-confounds_timeseries.tsv``), and the sidecar entries of the correction.
"""

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_perfusion.asl import quality
from bids_perfusion.interfaces.nifti import load, refused, save_like
from bids_perfusion.motion.rigid import HEAD_RADIUS_MM, PARAMETER_NAMES
from bids_perfusion.tsv import write_tsv

#: Columns of the confounds table after the six parameters.
FD_COLUMN, OUTLIER_COLUMN = "framewise_displacement", "motion_outlier"


def confounds_sidecar(reference):
    """What each column of ``desc-confounds_timeseries.tsv`` holds; ``reference`` says
    what the frames were realigned to."""
    columns = {name: {"Units": "mm" if name.startswith("trans") else "rad",
                      "Description": ("translation along" if name.startswith("trans")
                                      else "rotation about")
                      + f" the {name[-1]} axis of the image (RAS+) from the reference "
                      f"({reference}) to the volume, rotations about the grid centre"}
               for name in PARAMETER_NAMES}
    columns[FD_COLUMN] = {
        "Units": "mm", "Description": "framewise displacement, sum of the absolute changes "
        f"of the translations and of the rotations as arcs on a {HEAD_RADIUS_MM:g} mm "
        "sphere since the previous volume (Power et al., NeuroImage 2012;59:2142); n/a for "
        "the first"}
    columns[OUTLIER_COLUMN] = {
        "Description": "1 where the framewise displacement exceeds "
        "MotionCorrection.FramewiseDisplacementThreshold, else 0",
        "Levels": {"0": "kept", "1": "motion outlier"}}
    return columns


class _MotionInputSpec(BaseInterfaceInputSpec):
    fd_threshold = traits.Float(mandatory=True, desc="framewise displacement above which a "
                                "volume is a motion outlier, mm")
    source_file = traits.Str(desc="the user's series, named in errors")


class _MotionOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(File(exists=True), desc="corrected series (one per echo)")
    out_file = File(exists=True, desc="the corrected series of the first echo")
    confounds = File(exists=True, desc="motion parameters, FD and outlier flags (TSV)")
    outliers = traits.List(traits.Int, desc="0-based indices of the motion outliers")
    metadata = traits.Dict(desc="sidecar entries of the confounds table")


def _finish(interface, corrected, echo_files, threshold, reference, extra):
    """Write the corrected series and the confounds table; fill the results."""
    realignment = corrected.realignment
    fd = realignment.framewise_displacement
    outliers = realignment.outliers(threshold)
    rows = [{**dict(zip(PARAMETER_NAMES, map(float, row), strict=True)),
             FD_COLUMN: float(d) if index else None, OUTLIER_COLUMN: int(flag)}
            for index, (row, d, flag) in enumerate(zip(realignment.parameters, fd, outliers,
                                                       strict=True))]
    interface._results["confounds"] = write_tsv(
        rows, [*PARAMETER_NAMES, FD_COLUMN, OUTLIER_COLUMN], "confounds.tsv")
    interface._results["out_files"] = [
        save_like(series, path, f"corrected_{index}.nii", keep_nonfinite=True)
        for index, (series, path) in enumerate(zip(corrected.series, echo_files, strict=True))]
    interface._results["out_file"] = interface._results["out_files"][0]
    interface._results["outliers"] = [int(i) for i in np.flatnonzero(outliers)]
    interface._results["metadata"] = {
        "MotionCorrection": {"Reference": reference,
                             "FramewiseDisplacementThreshold": threshold, **extra},
        "MeanFramewiseDisplacement": float(fd[1:].mean()) if fd.size > 1 else 0.0,
        "MaxFramewiseDisplacement": float(fd.max()),
        "NumberOfMotionOutliers": int(outliers.sum()),
        "CentreOfRotation": [float(v) for v in realignment.centre],
        **confounds_sidecar(reference),
    }


class _DSCMotionInputSpec(_MotionInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True,
                                desc="echo files of one DSC run, ascending echo time")


class DSCMotionCorrection(SimpleInterface):
    """Realign a DSC run to the mean of its pre-bolus frames
    (:func:`bids_perfusion.motion.realign_dsc`); every echo moves with the first."""

    input_spec = _DSCMotionInputSpec
    output_spec = _MotionOutputSpec

    def _run_interface(self, runtime):
        from bids_perfusion.motion.series import realign_dsc

        files = list(self.inputs.in_files)
        name = self.inputs.source_file if isdefined(self.inputs.source_file) else files[0]
        with refused(name, "it cannot be realigned; check the series, or run with "
                     "--no-motion-correction"):
            corrected = realign_dsc([load(path) for path in files], nib.load(files[0]).affine)
        first, last = corrected.reference_frames[0], corrected.reference_frames[-1]
        _finish(self, corrected, files, self.inputs.fd_threshold,
                f"mean of the pre-bolus frames {first}-{last} (0-based)",
                {"ReferenceFrames": [first, last]})
        return runtime


class _ASLMotionInputSpec(_MotionInputSpec):
    in_file = File(exists=True, mandatory=True, desc="4-D ASL series")
    volume_types = traits.List(traits.Str, mandatory=True, desc="aslcontext, one per volume")
    m0_file = File(exists=True, desc="separate M0 scan, the reference when given")


class ASLMotionCorrection(SimpleInterface):
    """Realign an ASL series to its M0 image, else the mean control
    (:func:`bids_perfusion.motion.realign_asl`)."""

    input_spec = _ASLMotionInputSpec
    output_spec = _MotionOutputSpec

    def _run_interface(self, runtime):
        from bids_perfusion.motion.series import realign_asl

        name = (self.inputs.source_file if isdefined(self.inputs.source_file)
                else self.inputs.in_file)
        types = list(self.inputs.volume_types)
        series = load(self.inputs.in_file)
        if series.ndim == 3:
            series = series[..., None]
        m0 = load(self.inputs.m0_file) if isdefined(self.inputs.m0_file) else None
        with refused(name):  # the checks of the quantification, first, with their fixes
            quality.check_series(series)
        if m0 is not None:
            with refused(self.inputs.m0_file):
                quality.check_m0(m0)
        with refused(name, "it cannot be realigned; check the series, or run with "
                     "--no-motion-correction"):
            corrected = realign_asl(series, nib.load(self.inputs.in_file).affine, types,
                                    m0=m0)
        reference = ("the separate M0 scan" if m0 is not None else
                     "the mean M0 volume of the series" if "m0scan" in types else
                     "the mean control volume")
        _finish(self, corrected, [self.inputs.in_file], self.inputs.fd_threshold,
                reference, {})
        return runtime
