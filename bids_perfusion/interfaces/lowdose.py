"""Low-dose DSC simulation of every echo file of a run (seed stU-Net paper, Eq. 1)."""

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


class _SimulateLowDoseOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(File(exists=True))


class SimulateLowDose(SimpleInterface):
    """``S_d(t) = S(t) - (1 - d)[mean_local(S)(t) - S(0)]`` for each echo.

    S(0) is the baseline found on the mean brain curve of the first echo; the frames of
    the approach to steady state are copied unchanged (they are discarded downstream, and
    Eq. 1 would read their extra signal as contrast agent).
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
            simulated = lowdose.simulate_low_dose_run(load(path, np.float64),
                                                      self.inputs.dose, window)
            out = Path(f"lowdose_echo{index + 1}.nii.gz").absolute()
            header = image.header.copy()
            header.set_data_dtype(np.float32)
            nib.Nifti1Image(simulated.astype(np.float32), image.affine, header).to_filename(out)
            outputs.append(str(out))
        self._results["out_files"] = outputs
        return runtime
