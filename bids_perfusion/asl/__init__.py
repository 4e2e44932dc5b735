"""ASL numeric core: the kinetic model of the label and CBF quantification on arrays.

No nipype and no files (see ``docs/api.md``): single-delay CBF is a closed form
(:func:`single_delay_cbf`); multi-delay CBF and ATT follow the dipy-style Model/Fit shape,
``MultiDelayModel(...).fit(delta_m / m0, mask=brain)`` with full-volume maps (tissue T1 one
value or a map, :func:`tissue_t1`); partial-volume correction of CBF is
:func:`linear_regression_pvc`. The names below are imported from their submodules on
first use.
"""

from typing import TYPE_CHECKING

from bids_perfusion.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from bids_perfusion.asl.consensus import pasl_cbf, pcasl_cbf, single_delay_cbf
    from bids_perfusion.asl.context import (
        ASLContext,
        difference_images,
        mean_by_delay,
        read_aslcontext,
    )
    from bids_perfusion.asl.kinetics import pasl_delta_m, pcasl_delta_m
    from bids_perfusion.asl.m0 import (
        M0Reference,
        PreparedM0,
        low_m0,
        m0_reference,
        prepare_m0,
        recovery_fraction,
        smooth_m0,
    )
    from bids_perfusion.asl.multi_delay import MultiDelayFit, MultiDelayModel
    from bids_perfusion.asl.partial_volume import PartialVolumeCBF, linear_regression_pvc
    from bids_perfusion.asl.tissue import resample_linear, tissue_t1

__all__ = [
    "ASLContext", "M0Reference", "MultiDelayFit", "MultiDelayModel", "PartialVolumeCBF",
    "PreparedM0", "difference_images", "linear_regression_pvc", "low_m0", "m0_reference",
    "mean_by_delay", "pasl_cbf", "pasl_delta_m", "pcasl_cbf", "pcasl_delta_m", "prepare_m0",
    "read_aslcontext", "recovery_fraction", "resample_linear", "single_delay_cbf",
    "smooth_m0", "tissue_t1",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__, __all__)
