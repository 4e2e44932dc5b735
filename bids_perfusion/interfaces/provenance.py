"""The last node of a run: its completion record (:mod:`bids_perfusion.records`)."""

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    Str,
    TraitedSpec,
    traits,
)

from bids_perfusion import __version__, records


class _RunRecordInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True,
                                desc="every file the run's sinks wrote (maps, sidecars)")
    output_dir = Str(mandatory=True, desc="the derivatives dataset")
    run = Str(mandatory=True, desc="name of the record: logs/runs/<run>.json")
    options = traits.Dict(mandatory=True, desc="the run's options, JSON-serialisable")
    methods = Str(mandatory=True, desc="the run's methods text, with [@key] citations")


class _RunRecordOutputSpec(TraitedSpec):
    out_file = File(desc="the completion record")


class RunRecord(SimpleInterface):
    """Write the run's completion record once every sink has written its files.

    Always runs (a cached result would leave the record of a rewritten run missing).
    """

    input_spec = _RunRecordInputSpec
    output_spec = _RunRecordOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        self._results["out_file"] = str(records.write_record(
            self.inputs.output_dir, self.inputs.run, self.inputs.in_files,
            options=self.inputs.options, methods=self.inputs.methods, version=__version__))
        return runtime
