"""Writing derivatives: niworkflows' DerivativesDataSink with the patterns of this App."""

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
)
from niworkflows.interfaces.bids import DerivativesDataSink as _DerivativesDataSink

#: Path pattern of every output of a perfusion run (DESIGN.md, section 4).
PERF_PATTERN = (
    "sub-{subject}[/ses-{session}]/{datatype<perf>|perf}/sub-{subject}[_ses-{session}]"
    "[_task-{task}][_acq-{acquisition}][_ce-{ceagent}][_rec-{reconstruction}][_run-{run}]"
    "[_desc-{desc}]_{suffix<cbf|cbv|mtt|tmax|ttp|bat|k2|att|deltam|m0scan|mask|timeseries|roistats>}"
    "{extension<.nii.gz|.nii|.json|.tsv>|.nii.gz}"
)


class DerivativesDataSink(_DerivativesDataSink):
    """Writes into the output folder itself (no pipeline subfolder), with perf patterns."""

    out_path_base = ""
    _file_patterns = (PERF_PATTERN, *_DerivativesDataSink._file_patterns)


class _RunBarrierInputSpec(BaseInterfaceInputSpec):
    source_file = File(mandatory=True, desc="the run's raw series")
    in_files = InputMultiObject(File(exists=True), mandatory=True,
                                desc="every file the run will write")


class _RunBarrierOutputSpec(TraitedSpec):
    source_file = File(desc="passed through once every output exists")


class RunBarrier(SimpleInterface):
    """Releases the run's source file to the sinks only when all of its outputs exist.

    Sinks take their ``source_file`` from here, so a run that fails at any step writes
    nothing to the output folder instead of a partial set of maps.
    """

    input_spec = _RunBarrierInputSpec
    output_spec = _RunBarrierOutputSpec

    def _run_interface(self, runtime):
        self._results["source_file"] = self.inputs.source_file
        return runtime
