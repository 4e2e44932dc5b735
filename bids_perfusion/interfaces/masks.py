"""Brain and normal-appearing white matter masks derived from the series."""

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
)

from bids_perfusion.dsc import brain_mask, normalisation
from bids_perfusion.interfaces.nifti import load, load_mask, refused, save_like


class _BrainMaskInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="4-D DSC series (first echo)")


class _MaskOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="binary mask")


class BrainMask(SimpleInterface):
    """Brain mask from the temporal mean of the series (:func:`dsc.brain_mask.brain_mask`)."""

    input_spec = _BrainMaskInputSpec
    output_spec = _MaskOutputSpec

    def _run_interface(self, runtime):
        mean_image = load(self.inputs.in_file).mean(axis=-1)
        with refused(self.inputs.in_file, "check the conversion from DICOM, or give a brain "
                     "mask with --derivatives"):
            mask = brain_mask.brain_mask(mean_image)
        self._results["out_file"] = save_like(mask, self.inputs.in_file, "brain_mask.nii.gz",
                                              dtype=np.uint8)
        return runtime


class _NAWMMaskInputSpec(BaseInterfaceInputSpec):
    cbv = File(exists=True, mandatory=True, desc="CBV map the segmentation is based on")
    brain_mask = File(exists=True, mandatory=True)
    tumor_mask = File(exists=True, desc="tumour, excluded with its hemisphere")


class NAWMMask(SimpleInterface):
    """Automatic NAWM: white-matter class of the CBV map, away from the tumour."""

    input_spec = _NAWMMaskInputSpec
    output_spec = _MaskOutputSpec

    def _run_interface(self, runtime):
        cbv = load(self.inputs.cbv)
        brain = load_mask(self.inputs.brain_mask, cbv.shape)
        tumour = (load_mask(self.inputs.tumor_mask, cbv.shape)
                  if self.inputs.tumor_mask else None)
        mask = normalisation.automatic_nawm_mask(cbv, brain, exclude=tumour)
        self._results["out_file"] = save_like(mask, self.inputs.cbv, "nawm_mask.nii.gz",
                                              dtype=np.uint8)
        return runtime
