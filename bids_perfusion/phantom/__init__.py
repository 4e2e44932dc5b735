"""Digital perfusion phantom: BIDS datasets of DSC-MRI and ASL with known ground truth.

>>> from bids_perfusion.phantom import PhantomConfig, write_dataset
>>> config = PhantomConfig.cohort(4, hgg_fraction=0.5, seed=1)   # doctest: +SKIP
>>> write_dataset("phantom", config)                              # doctest: +SKIP

See ``docs/phantom.md`` for the model, every parameter and the files written. Names are
imported lazily so that the command line starts without loading numpy and nibabel.
"""

from typing import TYPE_CHECKING

from bids_perfusion.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from bids_perfusion.phantom.bids import write_dataset
    from bids_perfusion.phantom.config import ASLAcquisition, DSCAcquisition, PhantomConfig
    from bids_perfusion.phantom.summary import summarise

__all__ = ["ASLAcquisition", "DSCAcquisition", "PhantomConfig", "summarise", "write_dataset"]

__getattr__, __dir__ = lazy_exports(__name__, __file__, __all__)
