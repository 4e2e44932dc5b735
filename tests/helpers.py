"""Small helpers shared by the tests: phantom configurations and file access."""

import csv
import importlib
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_perfusion.phantom import PhantomConfig
from bids_perfusion.phantom.bids import TRUTH

#: Small grid that still holds a tumour, arteries and NAWM: fast enough for every test.
SMALL = {"matrix": (48, 48, 12), "fov_mm": 220.0, "slab_mm": 132.0}


def small_config(**changes):
    """A two-subject (HGG, LGG) configuration on the small grid."""
    return PhantomConfig(grades=("HGG", "LGG"), **SMALL).with_(**changes)


def load(path):
    return np.asarray(nib.load(path).dataobj, dtype=float)


def truth(root, subject, name):
    """A ground-truth map or mask: ``truth(root, '01', 'desc-truth_cbv')``."""
    return load(Path(root) / TRUTH / f"sub-{subject}" / "perf" / f"sub-{subject}_{name}.nii.gz")


def raw(root, subject, name):
    return load(Path(root) / f"sub-{subject}" / "perf" / f"sub-{subject}_{name}.nii.gz")


def read_tsv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def tumour_derivatives(root, dest):
    """A derivatives folder ``dest`` holding only the truth tumour masks, as a user would
    give them with ``--derivatives``."""
    dest = Path(dest)
    for path in (Path(root) / TRUTH).glob("sub-*/perf/*_label-tumor_mask.nii.gz"):
        target = dest / path.relative_to(Path(root) / TRUTH)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return dest


# --- what a test needs: skipped here, a failure in CI --------------------------------------


def require(condition, reason):
    """Let the calling test go on only if ``condition`` holds.

    Otherwise the test is skipped with ``reason``, except in CI (environment variable
    ``CI=true``, set by ``.ci/run``), where the test extras are part of
    the set-up and their absence is a failure, not a silent skip.
    """
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def require_package(name, hint):
    """The module ``name``, or :func:`require`'s skip/fail if it or a dependency is not
    installed (``hint`` says how to install it). Any other error on import propagates."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        require(False, f"{name} is not installed ({error}); {hint}")


# --- nipype graphs: the one place the tests read private attributes ----------------------


def connections(workflow):
    """``(source, target, (output, input))`` for every field connected in ``workflow``'s
    own graph, by node name.

    nipype has no public API for a workflow's edges (``Workflow.connect`` keeps them in
    the private networkx graph ``_graph``); this is the one place the tests read it.
    """
    return [(source.name, target.name, field)
            for source, target, data in workflow._graph.edges(data=True)
            for field in data["connect"]]


def sidecar_fields(node):
    """The sidecar fields a DerivativesDataSink ``node`` was given (niworkflows keeps them
    in the private ``_metadata``, without a public accessor)."""
    return node.interface._metadata
