"""Low-dose DSC simulation of every echo file of a run (:mod:`bids_perfusion.dsc.lowdose`)."""

from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bids_perfusion.dsc import lowdose
from bids_perfusion.interfaces.nifti import load, load_mask


class _SimulateLowDoseInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True)
    dose = traits.Range(low=0.0, high=1.0, exclude_low=True, mandatory=True,
                        desc="dose factor d in (0, 1]")
    brain_mask = File(exists=True, mandatory=True, desc="brain mask, for the baseline")
    repetition_time = traits.Float(mandatory=True, desc="frame interval (s), for the "
                                   "width of the temporal local average")
    model = traits.Enum(*lowdose.MODELS, usedefault=True,
                        desc="exponential: S(0)(S̄/S(0))^d + S - S̄; linear: Eq. 1")
    average = traits.Enum(*lowdose.AVERAGES, usedefault=True,
                          desc="local average: Savitzky-Golay along time or spatial box")


class _SimulateLowDoseOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(File(exists=True))
    metadata = traits.Dict(desc="sidecar record: dose, model, local average and its width")


class SimulateLowDose(SimpleInterface):
    """``S_d = S(0) (S̄/S(0))^d + (S - S̄)`` (exponential, default) or
    ``S_d = S - (1 - d)[S̄ - S(0)]`` (linear, the stU-Net paper's Eq. 1) for each echo.

    S(0) is the baseline found on the mean brain curve of the first echo; the frames of
    the approach to steady state are copied unchanged (they are discarded downstream, and
    both models would read their extra signal as contrast agent), and so are the voxels
    outside the brain mask (no map is made there). Float32 throughout.
    """

    input_spec = _SimulateLowDoseInputSpec
    output_spec = _SimulateLowDoseOutputSpec

    def _run_interface(self, runtime):
        first = load(self.inputs.in_files[0])
        brain = load_mask(self.inputs.brain_mask, first.shape)
        window = lowdose.baseline_of_run(first, brain)
        outputs = []
        for index, path in enumerate(self.inputs.in_files):
            image = nib.load(path)
            simulated = lowdose.simulate_low_dose_run(
                first if index == 0 else load(path), self.inputs.dose, window,
                tr=self.inputs.repetition_time, model=self.inputs.model,
                average=self.inputs.average, mask=brain)
            out = Path(f"lowdose_echo{index + 1}.nii").absolute()
            header = image.header.copy()
            header.set_data_dtype(np.float32)
            nib.Nifti1Image(simulated, image.affine, header).to_filename(out)
            outputs.append(str(out))
        self._results["out_files"] = outputs
        self._results["metadata"] = lowdose.simulation_metadata(
            self.inputs.dose, self.inputs.repetition_time, model=self.inputs.model,
            average=self.inputs.average)
        return runtime
