"""Digital perfusion phantom: BIDS datasets of DSC-MRI and ASL with known ground truth.

>>> from bids_perfusion.phantom import PhantomConfig, write_dataset
>>> config = PhantomConfig.cohort(4, hgg_fraction=0.5, seed=1)   # doctest: +SKIP
>>> write_dataset("phantom", config)                              # doctest: +SKIP

See ``docs/phantom.md`` for the model, every parameter and the files written. Names are
imported lazily so that the command line starts without loading numpy and nibabel.
"""

import importlib

_EXPORTS = {
    "write_dataset": "bids_perfusion.phantom.bids",
    "summarise": "bids_perfusion.phantom.summary",
    "PhantomConfig": "bids_perfusion.phantom.config",
    "DSCAcquisition": "bids_perfusion.phantom.config",
    "ASLAcquisition": "bids_perfusion.phantom.config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
