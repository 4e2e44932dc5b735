"""ROI statistics of a run's maps as a tidy TSV, and the mean ΔR2* curves of its ROIs."""

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_perfusion.dsc import relaxivity
from bids_perfusion.interfaces.nifti import load, load_mask
from bids_perfusion.interfaces.specs import RelaxivityInputSpec
from bids_perfusion.stats.roi import COLUMNS, roi_mean_curves, roi_statistics
from bids_perfusion.tsv import write_tsv


class _ROIStatisticsInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True)
    measures = traits.List(traits.Str, mandatory=True, desc="name of each map")
    masks = InputMultiObject(File(exists=True), mandatory=True)
    rois = traits.List(traits.Str, mandatory=True, desc="name of each mask")
    excluded_mask = File(exists=True, desc="voxels that could not be quantified: left out "
                         "of every ROI and counted (n_excluded)")


class _ROIStatisticsOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class ROIStatistics(SimpleInterface):
    """One row per ROI and measure (:func:`stats.roi.roi_statistics`)."""

    input_spec = _ROIStatisticsInputSpec
    output_spec = _ROIStatisticsOutputSpec

    def _run_interface(self, runtime):
        maps = {name: load(path) for name, path in
                zip(self.inputs.measures, self.inputs.in_files, strict=True)}
        shape = next(iter(maps.values())).shape
        masks = {name: load_mask(path, shape) for name, path in
                 zip(self.inputs.rois, self.inputs.masks, strict=True)}
        excluded = (load(self.inputs.excluded_mask) > 0
                    if isdefined(self.inputs.excluded_mask) else None)
        self._results["out_file"] = write_tsv(roi_statistics(maps, masks, excluded),
                                              COLUMNS, "roi_statistics.tsv")
        return runtime


class _ROICurvesInputSpec(RelaxivityInputSpec):
    delta_r2star = File(exists=True, mandatory=True, desc="ΔR2* (s^-1), 4-D")
    frame_times = traits.List(traits.Float, mandatory=True, desc="time of each frame, s")
    masks = InputMultiObject(File(exists=True), mandatory=True)
    rois = traits.List(traits.Str, mandatory=True, desc="name of each mask")


class _ROICurvesOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="time (s), then ΔR2* (s^-1) and concentration (mM) "
                                      "of each ROI")


class ROICurves(SimpleInterface):
    """Mean ΔR2*(t) of each ROI (:func:`stats.roi.roi_mean_curves`) and its tissue
    concentration ``C = ΔR2*/r_t`` (:func:`dsc.relaxivity.tissue_concentration`), one
    column each: ``time``, ``<roi>_delta_r2star``, ``<roi>_concentration``."""

    input_spec = _ROICurvesInputSpec
    output_spec = _ROICurvesOutputSpec

    def _run_interface(self, runtime):
        delta = load(self.inputs.delta_r2star)
        masks = {name: load_mask(path, delta.shape) for name, path in
                 zip(self.inputs.rois, self.inputs.masks, strict=True)}
        means = roi_mean_curves(delta, masks)
        tissue = relaxivity.Relaxivities.from_sidecar(self.inputs.relaxivity).tissue
        columns = {"time": np.asarray(self.inputs.frame_times, dtype=float)}
        for roi in self.inputs.rois:
            curve = means.get(roi, np.full(delta.shape[-1], np.nan))
            columns[f"{roi}_delta_r2star"] = curve
            columns[f"{roi}_concentration"] = relaxivity.tissue_concentration(curve, tissue)
        rows = [dict(zip(columns, values, strict=True))
                for values in zip(*columns.values(), strict=True)]
        self._results["out_file"] = write_tsv(rows, list(columns), "roi_curves.tsv")
        return runtime
