"""DSC-MRI numeric core: tracer kinetics, relaxivity and quantification on arrays.

No nipype and no files: every function takes numpy arrays, so the core runs from a
notebook (see ``docs/api.md``). The models follow one shape (dipy's)::

    fit = DeconvolutionModel(aif, dt, "osvd").fit(concentration, mask=brain)
    fit.cbf, fit.tmax                    # full-volume maps, 0 outside the mask

and so do :class:`LeakageModel` (leakage correction) and, in :mod:`bids_perfusion.nn.phae`,
``PHAEModel``. The names below are imported from their submodules on first use, so that
importing one submodule stays cheap.
"""

from typing import TYPE_CHECKING

from bids_perfusion.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from bids_perfusion.dsc.aif import AIFSelection, aif_from_mask, select_aif
    from bids_perfusion.dsc.deconvolution import (
        CirculantSVDParameters,
        DeconvolutionFit,
        DeconvolutionModel,
        OscillationIndexSVDParameters,
        StandardSVDParameters,
        TikhonovParameters,
    )
    from bids_perfusion.dsc.first_pass import (
        GammaVariateFit,
        fit_gamma_variate,
        gamma_variate_area,
        gamma_variate_curve,
    )
    from bids_perfusion.dsc.kinetics import (
        convolve,
        dispersion_kernel,
        gamma_variate,
        residue_exponential,
        residue_gamma,
    )
    from bids_perfusion.dsc.leakage import (
        LeakageFit,
        LeakageModel,
        bidirectional_correction,
        bsw_correction,
        non_enhancing,
        reference_curve,
    )
    from bids_perfusion.dsc.lowdose import simulate_low_dose, simulate_low_dose_run
    from bids_perfusion.dsc.maps import DSCMaps, cbf_from_fit, cbv_area_ratio, mean_transit_time
    from bids_perfusion.dsc.normalisation import (
        automatic_nawm_mask,
        relative_map,
        white_matter_from_baseline,
    )
    from bids_perfusion.dsc.relaxivity import (
        Relaxivities,
        at_field,
        blood_concentration,
        blood_delta_r2star,
        delta_r2star_to_signal,
        dual_echo_delta_r2star,
        signal_to_delta_r2star,
        tissue_concentration,
        tissue_delta_r2star,
    )
    from bids_perfusion.dsc.signal import brain_delta_r2star, series_to_delta_r2star
    from bids_perfusion.dsc.timing import (
        baseline_window,
        bolus_arrival_time,
        bolus_end,
        estimate_noise_sd,
        steady_state_frames,
        time_to_peak,
    )
    from bids_perfusion.dsc.truncated_svd import oscillation_index

__all__ = [
    "AIFSelection", "CirculantSVDParameters", "DSCMaps", "DeconvolutionFit", "DeconvolutionModel",
    "GammaVariateFit", "LeakageFit", "LeakageModel", "OscillationIndexSVDParameters",
    "Relaxivities", "StandardSVDParameters", "TikhonovParameters", "aif_from_mask", "at_field",
    "automatic_nawm_mask", "baseline_window", "bidirectional_correction", "blood_concentration",
    "blood_delta_r2star", "bolus_arrival_time", "bolus_end", "brain_delta_r2star",
    "bsw_correction", "cbf_from_fit", "cbv_area_ratio", "convolve", "delta_r2star_to_signal",
    "dispersion_kernel", "dual_echo_delta_r2star", "estimate_noise_sd", "fit_gamma_variate",
    "gamma_variate", "gamma_variate_area", "gamma_variate_curve", "mean_transit_time",
    "non_enhancing", "oscillation_index", "reference_curve", "relative_map", "residue_exponential",
    "residue_gamma", "select_aif", "series_to_delta_r2star", "signal_to_delta_r2star",
    "simulate_low_dose", "simulate_low_dose_run", "steady_state_frames", "time_to_peak",
    "tissue_concentration", "tissue_delta_r2star", "white_matter_from_baseline",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__, __all__)
