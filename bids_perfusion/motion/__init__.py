"""Head-motion correction core: rigid realignment of DSC and ASL series, on arrays.

No nipype and no files: :func:`realign_dsc` and :func:`realign_asl` choose the reference
of each modality and return the motion parameters and the corrected series;
:func:`realign_series` realigns any series to a given reference; the parameters and the
framewise displacement follow fMRIPrep's confounds (``trans_x`` ... ``rot_z``, mm and
radians). The names below are imported from their submodules on first use.
"""

from typing import TYPE_CHECKING

from bids_perfusion.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from bids_perfusion.motion.realign import (
        Realignment,
        apply_realignment,
        realign_series,
        resample_frame,
    )
    from bids_perfusion.motion.rigid import (
        PARAMETER_NAMES,
        framewise_displacement,
        rigid_matrix,
        rigid_parameters,
    )
    from bids_perfusion.motion.series import CorrectedSeries, realign_asl, realign_dsc

__all__ = [
    "PARAMETER_NAMES", "CorrectedSeries", "Realignment", "apply_realignment",
    "framewise_displacement", "realign_asl", "realign_dsc", "realign_series",
    "resample_frame", "rigid_matrix", "rigid_parameters",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__, __all__)
