"""The files that make ``output_dir`` a BIDS-Derivatives dataset.

``dataset_description.json`` (BIDS-Derivatives: ``DatasetType``, ``GeneratedBy`` with the
version, and the container only when the App runs in one), a ``README`` saying what the
folder holds, and a ``.bidsignore`` listing the outputs the BIDS specification has no place
for yet: DSC has no suffix in BIDS (bids-specification issue 1549), perfusion maps,
masks in ``perf/`` and tables are not in the derivatives schema, and reports, figures and
logs are not data. With it, ``bids-validator-deno`` reports no error on the folder.
"""

import json
import os

from bids_perfusion import __version__, atomic

#: Environment variables that tell which container runs the App, the first set wins:
#: Apptainer and Singularity set theirs in every container they run, so that they win over
#: the one the image sets (Dockerfile) when they run the Docker image.
CONTAINER_VARIABLES = {"APPTAINER_CONTAINER": "apptainer",
                       "SINGULARITY_CONTAINER": "singularity", "BIDS_PERFUSION_CONTAINER": None}

BIDSIGNORE = """\
# Outputs of bids-perfusion that the BIDS specification has no place for yet.
# Reports, figures, logs and group-level tables:
*.html
sub-*/figures
logs/
group/
# DSC (no suffix in BIDS yet, bids-specification issue 1549): every file with 'ce-'.
*_ce-*
# Perfusion maps, ΔM, masks of perf/ and tables (not in the derivatives schema):
*_cbf.*
*_att.*
*_deltam.*
sub-*/perf/*_mask.*
*_roistats.*
# Co-registration (--output-spaces): ASL reference images and transforms of perf/, and
# displacement fields (BIDS lists .txt and .h5 transforms only):
*_aslref.*
sub-*/perf/*_xfm.*
*_xfm.nii.gz
*_timeseries.*
"""

README = """\
# bids-perfusion derivatives

Quantitative perfusion maps made by bids-perfusion {version} from the BIDS dataset
{source}.

- `sub-<label>/perf/`: maps (CBF, CBV, MTT, Tmax, TTP, ATT...), masks, the arterial input
  function and ROI statistics of every DSC and ASL run, each with a JSON sidecar that
  records the units and every parameter used;
- `sub-<label>.html` and `sub-<label>/figures/`: the report of each subject;
- `logs/CITATION.md`: the methods of every run, with references; `logs/runs/`: one
  completion record per run (options, methods, files written with their sha256);
- `group/`: the group level (tidy table of every ROI statistic, glioma grading).

The documentation of every output is docs/outputs.md of bids-perfusion.
"""


def container_type(environ=os.environ):
    """``GeneratedBy.Container.Type`` of this process ('docker', 'apptainer'...), or None
    outside a container."""
    for variable, kind in CONTAINER_VARIABLES.items():
        if environ.get(variable):
            return kind or environ[variable]
    return None


def write_dataset_files(output_dir, bids_dir):
    """Write ``dataset_description.json``, ``README`` and ``.bidsignore`` of ``output_dir``
    (derivatives of ``bids_dir``); an existing README written by a user is kept.

    Every subject's participant level writes them (the same content), possibly at the
    same time as another's: each file is replaced atomically (:mod:`bids_perfusion.atomic`).
    """
    generated = {"Name": "bids-perfusion", "Version": __version__}
    if kind := container_type():
        generated["Container"] = {"Type": kind}
    description = {
        "Name": "bids-perfusion derivatives",
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "SourceDatasets": [{"URL": bids_dir.as_uri()}],
        "DatasetLinks": {"raw": bids_dir.as_uri()},
    }
    atomic.write_text(output_dir / "dataset_description.json", json.dumps(description, indent=2))
    atomic.write_text(output_dir / ".bidsignore", BIDSIGNORE)
    readme = output_dir / "README"
    if not readme.exists() or readme.read_text().startswith("# bids-perfusion derivatives"):
        atomic.write_text(readme, README.format(version=__version__, source=bids_dir))
