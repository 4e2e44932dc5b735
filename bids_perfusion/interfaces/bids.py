"""Writing derivatives: niworkflows' DerivativesDataSink with the patterns of this App.

niworkflows' module indexes TemplateFlow's home when imported (``STANDARD_SPACES``: about
9 s for its 2 500-file skeleton, in every process that imports it, workers included).
This App takes its template from nilearn (``--output-spaces``, docs/preprocessing.md), not
from TemplateFlow, so unless the user chose a home (``TEMPLATEFLOW_HOME``) it points
TemplateFlow at an empty one shipped with the package, whose index is instant (and which
guarantees that nothing is downloaded).
"""

import json
import os
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    Str,
    TraitedSpec,
)

from bids_perfusion import records

#: The empty TemplateFlow home (see the module's docstring).
EMPTY_TEMPLATEFLOW_HOME = Path(__file__).resolve().parents[1] / "data" / "templateflow"
os.environ.setdefault("TEMPLATEFLOW_HOME", str(EMPTY_TEMPLATEFLOW_HOME))

from niworkflows.interfaces.bids import (  # noqa: E402 (after TEMPLATEFLOW_HOME)
    DerivativesDataSink as _DerivativesDataSink,
)

#: Path pattern of every output of a perfusion run (DESIGN.md, section 4).
PERF_PATTERN = (
    "sub-{subject}[/ses-{session}]/{datatype<perf>|perf}/sub-{subject}[_ses-{session}]"
    "[_task-{task}][_acq-{acquisition}][_ce-{ceagent}][_rec-{reconstruction}][_run-{run}]"
    "[_space-{space}][_res-{resolution}][_desc-{desc}]"
    "_{suffix<cbf|cbv|mtt|tmax|ttp|bat|k2|att|deltam|m0scan|mask|timeseries|roistats|dsc|asl"
    "|dscref|aslref>}"
    "{extension<.nii.gz|.nii|.json|.tsv>|.nii.gz}"
)
#: Path pattern of the transforms (workflows/spatial.py): ITK affine text or displacement
#: field, in anat/ (the T1w's normalisation) or perf/ (a run's co-registration).
XFM_PATTERN = (
    "sub-{subject}[/ses-{session}]/{datatype<anat|perf>|anat}/sub-{subject}[_ses-{session}]"
    "[_task-{task}][_acq-{acquisition}][_ce-{ceagent}][_rec-{reconstruction}][_run-{run}]"
    "_from-{from}_to-{to}_mode-{mode<image|points>|image}[_desc-{desc}]_{suffix<xfm>|xfm}"
    "{extension<.txt|.h5|.nii.gz|.json>|.txt}"
)


class DerivativesDataSink(_DerivativesDataSink):
    """Writes into the output folder itself (no pipeline subfolder), with perf patterns.

    A ``Resolution`` given with a ``resolution`` entity is kept in the sidecar: niworkflows
    describes ``res`` labels of template spaces only and writes "Unknown" for the others
    (here, the grid of a super-resolved run, which BIDS Derivatives ask to describe).
    """

    out_path_base = ""
    _file_patterns = (PERF_PATTERN, XFM_PATTERN, *_DerivativesDataSink._file_patterns)

    def _run_interface(self, runtime):
        resolution = self._metadata.get("Resolution")
        runtime = super()._run_interface(runtime)
        if resolution is not None and self._results.get("out_meta"):
            sidecar = Path(self._results["out_meta"])
            metadata = json.loads(sidecar.read_text())
            metadata["Resolution"] = resolution
            sidecar.write_text(json.dumps(metadata, sort_keys=True, indent=2))
        return runtime


class _RunBarrierInputSpec(BaseInterfaceInputSpec):
    source_file = File(mandatory=True, desc="the run's raw series")
    in_files = InputMultiObject(File(exists=True), mandatory=True,
                                desc="every file the run will write")
    output_dir = Str(mandatory=True, desc="the derivatives dataset")
    run = Str(mandatory=True, desc="name of the run's completion record")


class _RunBarrierOutputSpec(TraitedSpec):
    source_file = File(desc="passed through once every output exists")


class RunBarrier(SimpleInterface):
    """Releases the run's source file to the sinks only when all of its outputs exist.

    Sinks take their ``source_file`` from here, so a run that fails at any step writes
    nothing to the output folder instead of a partial set of maps. The run's previous
    completion record (:mod:`bids_perfusion.records`) is removed first: until the new
    one is written, readers take none of the run's files as complete. It always runs,
    cached or not, as the sinks after it do.
    """

    input_spec = _RunBarrierInputSpec
    output_spec = _RunBarrierOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        records.invalidate(self.inputs.output_dir, self.inputs.run)
        self._results["source_file"] = self.inputs.source_file
        return runtime
