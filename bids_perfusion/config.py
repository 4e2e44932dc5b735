"""One run configuration of ``bids-perfusion``: execution, DSC, ASL and group options.

The command line builds a :class:`RunConfig` from its arguments (``cli/parser.py``); the
participant and group levels read it instead of the argparse namespace, and every run
saves it with the command line and the versions of the software to
``output_dir/logs/config-<run id>.json`` (as fMRIPrep saves its ``config.toml``), from
which :meth:`RunConfig.load` gives the same options back. The workflows receive its
parts (:class:`~bids_perfusion.workflows.options.DSCOptions`,
:class:`~bids_perfusion.workflows.asl_options.ASLOptions`); the runner reads
:class:`ExecutionOptions`. Cheap to import: no numerical library is loaded.
"""

import dataclasses
import json
import platform
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path

from bids_perfusion import __version__
from bids_perfusion.workflows.asl_options import ASLOptions
from bids_perfusion.workflows.options import DSCOptions

#: Folder of the derivatives dataset that holds the configurations and logs of the runs.
LOGS_DIR = "logs"
#: Distributions whose versions are saved with the configuration (read from their
#: metadata, so that torch is not imported).
VERSIONED = ("nipype", "numpy", "scipy", "nibabel", "pybids", "torch")


@dataclass(frozen=True)
class ExecutionOptions:
    """What to process, where, and with which resources (BIDS-App arguments).

    ``participant_label`` and ``session_label`` are None for all; ``verbose`` counts
    ``-v``; ``output_spaces`` and ``normalisation`` are
    :class:`~bids_perfusion.spatial.spaces.SpatialOptions`' (:attr:`spatial`).
    """

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    participant_label: tuple | None = None
    session_label: tuple | None = None
    bids_filter_file: Path | None = None
    derivatives: tuple = ()
    skip_bids_validation: bool = False
    work_dir: Path = Path("work")
    nprocs: int = 0
    omp_nthreads: int = 0
    mem: float | None = None
    verbose: int = 0
    output_spaces: tuple = ("run",)
    normalisation: str = "full"

    @property
    def spatial(self):
        """The :class:`~bids_perfusion.spatial.spaces.SpatialOptions` of the run."""
        from bids_perfusion.spatial.spaces import SpatialOptions

        return SpatialOptions(tuple(self.output_spaces), self.normalisation)

    @classmethod
    def from_dict(cls, values):
        """The inverse of :func:`dataclasses.asdict` followed by JSON encoding."""
        values = dict(values)
        for name in ("bids_dir", "output_dir", "work_dir", "bids_filter_file"):
            if values.get(name) is not None:
                values[name] = Path(values[name])
        for name in ("participant_label", "session_label", "output_spaces"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        values["derivatives"] = tuple(Path(p) for p in values.get("derivatives", ()))
        return cls(**values)


@dataclass(frozen=True)
class GroupOptions:
    """Options of the group level (glioma grading, :mod:`bids_perfusion.group`)."""

    grade_column: str = "grade"
    positive_class: str = "HGG"
    grading_roi: str = "tumor"
    n_bootstrap: int = 2000
    bootstrap_seed: int = 0


@dataclass(frozen=True)
class RunConfig:
    """Everything a run of ``bids-perfusion`` was asked to do."""

    execution: ExecutionOptions
    dsc: DSCOptions = field(default_factory=DSCOptions)
    asl: ASLOptions = field(default_factory=ASLOptions)
    group: GroupOptions = field(default_factory=GroupOptions)

    def as_dict(self):
        """JSON-ready sections ``execution``, ``dsc``, ``asl`` and ``group``."""
        return json.loads(json.dumps({name: dataclasses.asdict(getattr(self, name))
                                      for name in ("execution", "dsc", "asl", "group")},
                                     default=str))

    @classmethod
    def from_dict(cls, sections):
        """The configuration of :meth:`as_dict`'s sections."""
        dsc = dict(sections["dsc"])
        for name in ("methods", "simulate_doses", "superres_scale"):
            dsc[name] = tuple(dsc[name])
        return cls(execution=ExecutionOptions.from_dict(sections["execution"]),
                   dsc=DSCOptions(**dsc), asl=ASLOptions(**sections["asl"]),
                   group=GroupOptions(**sections["group"]))

    def save(self, command):
        """Write ``output_dir/logs/config-<run id>.json``: the command line, the versions
        of Python and the libraries, and :meth:`as_dict`; returns its path and the run id
        (``<date>-<time>_<8 hex digits>``), which names the run's log file too."""
        run_id = f"{datetime.now():%Y%m%d-%H%M%S}_{uuid.uuid4().hex[:8]}"
        folder = Path(self.execution.output_dir) / LOGS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"config-{run_id}.json"
        document = {"command": command, "run_id": run_id, "versions": versions(),
                    **self.as_dict()}
        path.write_text(json.dumps(document, indent=2) + "\n")
        return path, run_id

    @classmethod
    def load(cls, path):
        """The configuration saved by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def versions():
    """``{name: version}`` of bids-perfusion, Python and :data:`VERSIONED` (None when a
    distribution is not installed)."""
    found = {"bids-perfusion": __version__, "python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
