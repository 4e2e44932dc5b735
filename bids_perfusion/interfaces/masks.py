"""Brain and normal-appearing white matter masks derived from the series."""

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_perfusion.dsc import brain_mask, normalisation
from bids_perfusion.interfaces.nifti import load, load_mask, refused, save_like


class _BrainMaskInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="4-D DSC series (first echo)")
    source_file = traits.Str(desc="the user's series in_file comes from (e.g. before motion "
                             "correction), named in errors")


class _MaskOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="binary mask")


class BrainMask(SimpleInterface):
    """Brain mask from the temporal mean of the series (:func:`dsc.brain_mask.brain_mask`)."""

    input_spec = _BrainMaskInputSpec
    output_spec = _MaskOutputSpec

    def _run_interface(self, runtime):
        mean_image = load(self.inputs.in_file).mean(axis=-1)
        shown = (self.inputs.source_file if isdefined(self.inputs.source_file)
                 else self.inputs.in_file)
        with refused(shown, "check the conversion from DICOM, or give a brain "
                     "mask with --derivatives"):
            mask = brain_mask.brain_mask(mean_image)
        self._results["out_file"] = save_like(mask, self.inputs.in_file, "brain_mask.nii",
                                              dtype=np.uint8)
        return runtime


class _NAWMMaskInputSpec(BaseInterfaceInputSpec):
    baseline = File(exists=True, mandatory=True,
                    desc="mean pre-contrast (baseline) image of the series, first echo")
    brain_mask = File(exists=True, mandatory=True)
    wm_mask = File(exists=True, desc="white-matter segmentation; else from the baseline")
    tumor_mask = File(exists=True, desc="tumour, excluded with its hemisphere")


class NAWMMask(SimpleInterface):
    """Automatic NAWM (:func:`dsc.normalisation.automatic_nawm_mask`): white matter of a
    given segmentation or of the baseline contrast, contralateral to the tumour."""

    input_spec = _NAWMMaskInputSpec
    output_spec = _MaskOutputSpec

    def _run_interface(self, runtime):
        image = nib.load(self.inputs.baseline)
        baseline = np.asarray(image.dataobj, dtype=np.float32)
        brain = load_mask(self.inputs.brain_mask, baseline.shape)
        optional = {key: load_mask(getattr(self.inputs, name), baseline.shape)
                    for key, name in (("white_matter", "wm_mask"), ("exclude", "tumor_mask"))
                    if getattr(self.inputs, name)}
        mask = normalisation.automatic_nawm_mask(brain, image.affine, baseline=baseline,
                                                 **optional)
        self._results["out_file"] = save_like(mask, self.inputs.baseline, "nawm_mask.nii",
                                              dtype=np.uint8)
        return runtime
