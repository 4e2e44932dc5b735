"""Tissue-aware ASL interfaces: GM/WM fractions on the ASL grid, partial-volume corrected CBF.

Thin wrappers of :mod:`bids_perfusion.asl.tissue` and
:mod:`bids_perfusion.asl.partial_volume`: read the files, call the core, write the maps and
return the sidecar entries that record how they were made. The partial-volume maps were
checked before processing (:func:`bids_perfusion.collect.masks.check_probsegs`).
"""

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

from bids_perfusion.asl import partial_volume, tissue
from bids_perfusion.interfaces.nifti import load, load_mask, refused, save_like


class _TissueFractionsInputSpec(BaseInterfaceInputSpec):
    gm_probseg = File(exists=True, mandatory=True, desc="label-GM_probseg")
    wm_probseg = File(exists=True, mandatory=True, desc="label-WM_probseg")
    reference = File(exists=True, mandatory=True, desc="an image on the ASL grid")


class _TissueFractionsOutputSpec(TraitedSpec):
    gm = File(exists=True, desc="grey-matter fraction on the ASL grid")
    wm = File(exists=True, desc="white-matter fraction on the ASL grid")


class TissueFractions(SimpleInterface):
    """GM and WM fractions on the ASL grid: the probsegs as they are, or resampled by their
    affines, trilinear (:func:`asl.tissue.resample_linear`); rounding beyond [0, 1] is
    clipped (:func:`asl.tissue.check_fraction`)."""

    input_spec = _TissueFractionsInputSpec
    output_spec = _TissueFractionsOutputSpec

    def _run_interface(self, runtime):
        target = nib.load(self.inputs.reference)
        for name, path in (("gm", self.inputs.gm_probseg), ("wm", self.inputs.wm_probseg)):
            image = nib.load(path)
            with refused(path):
                values = tissue.check_fraction(
                    np.asarray(image.dataobj, dtype=np.float64).reshape(image.shape[:3]),
                    name.upper())
                values = tissue.resample_linear(values, image.affine, target.affine,
                                                target.shape[:3])
            self._results[name] = save_like(values, self.inputs.reference,
                                            f"{name}_fraction.nii")
        return runtime


class _PartialVolumeInputSpec(BaseInterfaceInputSpec):
    cbf = File(exists=True, mandatory=True, desc="CBF map")
    gm = File(exists=True, mandatory=True, desc="grey-matter fraction (TissueFractions)")
    wm = File(exists=True, mandatory=True, desc="white-matter fraction (TissueFractions)")
    brain_mask = File(exists=True, mandatory=True)
    excluded_mask = File(exists=True, desc="brain voxels left out of CBF (PrepareM0)")
    kernel = traits.Int(mandatory=True, desc="in-plane side of the kernel, voxels")
    metadata = traits.Dict(desc="sidecar entries of the CBF map")


class _PartialVolumeOutputSpec(TraitedSpec):
    gm_cbf = File(exists=True, desc="CBF of grey matter")
    wm_cbf = File(exists=True, desc="CBF of white matter")
    metadata = traits.Dict()


class PartialVolumeCorrection(SimpleInterface):
    """GM and WM CBF by Asllani's linear regression
    (:func:`asl.partial_volume.linear_regression_pvc`) over the quantified brain voxels."""

    input_spec = _PartialVolumeInputSpec
    output_spec = _PartialVolumeOutputSpec

    def _run_interface(self, runtime):
        cbf = load(self.inputs.cbf, dtype=np.float64)
        inside = load_mask(self.inputs.brain_mask, cbf.shape)
        if isdefined(self.inputs.excluded_mask):
            inside &= load(self.inputs.excluded_mask) == 0
        kernel = self.inputs.kernel
        corrected = partial_volume.linear_regression_pvc(
            cbf, load(self.inputs.gm, dtype=np.float64), load(self.inputs.wm, dtype=np.float64),
            inside, kernel)
        self._results["gm_cbf"] = save_like(corrected.gm, self.inputs.cbf, "cbf_pvgm.nii")
        self._results["wm_cbf"] = save_like(corrected.wm, self.inputs.cbf, "cbf_pvwm.nii")
        base = self.inputs.metadata if isdefined(self.inputs.metadata) else {}
        self._results["metadata"] = {
            **base,
            "PartialVolumeCorrection": "linear regression (Asllani et al. 2008) of the CBF "
                                       "map on the GM and WM fractions",
            "PartialVolumeCorrectionModel": "CBF = P_GM CBF_GM + P_WM CBF_WM, least squares "
                                            "over the kernel around each voxel",
            "PartialVolumeCorrectionKernel": [kernel, kernel, 1],
            "PartialVolumeUndeterminedVoxels": int(corrected.undetermined.sum()),
            "PartialVolumeUndeterminedDescription": (
                "voxels holding a tissue whose CBF the kernel could not determine (GM and "
                "WM fractions nearly proportional in the kernel); written 0"),
        }
        return runtime
