"""Find the runs of a BIDS dataset and validate them before any graph is built (the role
of nipreps' ``collect_data``): DSC and ASL runs with their metadata, the masks given with
``--derivatives``, and the weights of the deep methods.

Below the command lines and above the workflows: ``cli/`` and the training layer import
it; it imports the workflows' run dataclasses, the interfaces' header checks and the
cores' metadata validation.
"""

from bids_perfusion.collect.asl import collect_asl_runs, usable_denoiser
from bids_perfusion.collect.dsc import collect_dsc_runs, usable_weights
from bids_perfusion.collect.layout import InputError, layout_of

__all__ = ["InputError", "collect_asl_runs", "collect_dsc_runs", "layout_of",
           "usable_denoiser", "usable_weights"]
