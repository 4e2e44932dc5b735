"""Digital perfusion phantom: BIDS datasets of DSC-MRI and ASL with known ground truth.

>>> from bids_perfusion.phantom import PhantomConfig, write_dataset
>>> config = PhantomConfig.cohort(4, hgg_fraction=0.5, seed=1)   # doctest: +SKIP
>>> write_dataset("phantom", config)                              # doctest: +SKIP

See ``docs/phantom.md`` for the model, every parameter and the files written.
"""

from bids_perfusion.phantom.bids import write_dataset
from bids_perfusion.phantom.config import ASLAcquisition, DSCAcquisition, PhantomConfig

__all__ = ["ASLAcquisition", "DSCAcquisition", "PhantomConfig", "write_dataset"]
