"""ROI statistics of a run's maps as a tidy TSV."""

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_perfusion.interfaces.nifti import load, load_mask
from bids_perfusion.stats.roi import COLUMNS, roi_statistics
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
