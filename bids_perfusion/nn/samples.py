"""Training samples from DSC series: tissue concentration curves of brain voxels and the AIF.

For one run (one or two echoes, frame interval Δt), the same steps as the participant
pipeline, without nipype and without any reference map (self-supervised):

1. brain mask from the temporal mean of the first echo (:func:`bids_perfusion.dsc.
   brain_mask.brain_mask`), unless given;
2. steady-state frames dropped and the baseline window found on the mean brain curve
   (:mod:`bids_perfusion.dsc.timing`); ``ΔR2* = −ln(S/S0)/TE``, or the dual-echo
   ``ln[(S1/S1,0)/(S2/S2,0)]/(TE2−TE1)`` (:mod:`bids_perfusion.dsc.relaxivity`);
3. the AIF selected automatically (:func:`bids_perfusion.dsc.aif.select_aif`) and converted
   to concentration with the blood relaxivity, the tissue with the tissue relaxivity,
   both at the run's magnetic field;
4. the end of the first pass of the mean tissue curve (:func:`bids_perfusion.dsc.timing.
   bolus_end`), the upper limit of the CBV integral.

:func:`training_arrays` then draws at most ``max_voxels`` voxels per subject and makes
PHAE's encoder inputs of them (:func:`bids_perfusion.nn.phae.encoder_inputs`).
"""

import dataclasses

import numpy as np

from bids_perfusion.dsc import aif as aif_selection
from bids_perfusion.dsc import brain_mask as brain_masks
from bids_perfusion.dsc import relaxivity, timing
from bids_perfusion.dsc.signal import series_to_delta_r2star


@dataclasses.dataclass
class RunCurves:
    """Concentration curves of one DSC run, ready for a model.

    ``tissue`` (N, T) mM of the brain voxels (``mask`` (x, y, z)); ``aif`` (T,) mM;
    ``frame_times`` (T,) s from the first kept frame; ``cbv_end``: frames of the CBV
    integral; ``subject``: identifier used by the split; ``info``: how it was computed.
    """

    subject: str
    tissue: np.ndarray
    aif: np.ndarray
    frame_times: np.ndarray
    mask: np.ndarray
    cbv_end: int
    info: dict


def run_curves(series, echo_times, repetition_time, subject, brain=None, aif_mask=None,
               blood_relaxivity="linear", *, field_strength):
    """:class:`RunCurves` of one run from its echo arrays (see the module docstring).

    ``field_strength`` (tesla) selects the relaxivities
    (:func:`bids_perfusion.dsc.relaxivity.at_field`), as the pipeline does.

    ``brain`` and ``aif_mask`` (x, y, z) are optional given masks; without ``aif_mask`` the
    AIF is selected automatically, with it the AIF is the mean ΔR2* over the mask
    (:func:`bids_perfusion.dsc.aif.aif_from_mask`), as the pipeline does with a
    ``--derivatives`` arterial mask.
    """
    series = [np.asarray(s, dtype=np.float32) for s in series]
    if brain is None:
        brain = brain_masks.brain_mask(series[0].mean(axis=-1))
    brain = np.asarray(brain, dtype=bool)
    delta, start, _stop = series_to_delta_r2star(series, echo_times, brain)
    times = (start + np.arange(delta.shape[-1])) * float(repetition_time)
    if aif_mask is None:
        selection = aif_selection.select_aif(delta, brain, times, echo_time=echo_times[0])
    else:
        selection = aif_selection.aif_from_mask(delta, np.asarray(aif_mask, dtype=bool))
    relax = relaxivity.at_field(field_strength, blood_relaxivity)
    aif = relaxivity.blood_concentration(selection.curve, relax.blood_linear,
                                         relax.blood_quadratic)
    tissue = relaxivity.tissue_concentration(delta[brain], relax.tissue).astype(np.float32)
    end = timing.bolus_end(tissue.mean(axis=0))
    return RunCurves(subject, tissue, aif, times, brain, end,
                     {"first_frame": start, "aif_voxels": int(selection.mask.sum()),
                      "aif": "automatic" if aif_mask is None else "given mask",
                      "brain_voxels": int(brain.sum()), "blood_relaxivity": blood_relaxivity,
                      **relax.sidecar()})


def load_run(files, echo_times, repetition_time, subject, brain_file=None, aif_mask_file=None,
             **kwargs):
    """:func:`run_curves` of NIfTI echo files (and optional brain and arterial mask files)."""
    import nibabel as nib

    def mask(path):
        return None if path is None else np.asarray(nib.load(str(path)).dataobj) > 0

    series = [np.asarray(nib.load(str(f)).dataobj, dtype=np.float32) for f in files]
    return run_curves(series, echo_times, repetition_time, subject, mask(brain_file),
                      mask(aif_mask_file), **kwargs)


def training_arrays(runs, config, max_voxels=None, seed=0):
    """Encoder inputs of several runs: a dict of float32/int64 arrays, one row per voxel.

    ``tissue`` (N, W) and ``aif`` (N, W) from :func:`bids_perfusion.nn.phae.
    encoder_inputs` with the PHAE configuration ``config`` (resampled, windowed on the
    AIF peak, each curve divided by its own peak); ``subject`` (N,) the index of the run
    in ``runs``. At most ``max_voxels`` voxels are drawn per run without replacement,
    seeded by ``seed``.
    """
    from bids_perfusion.nn.phae import encoder_inputs

    rng = np.random.default_rng(seed)
    columns = {"tissue": [], "aif": [], "subject": []}
    for index, run in enumerate(runs):
        rows = np.arange(len(run.tissue))
        if max_voxels is not None and len(rows) > max_voxels:
            rows = np.sort(rng.choice(rows, max_voxels, replace=False))
        tissue, aif = encoder_inputs(run.tissue[rows], run.aif, run.frame_times, config)
        columns["tissue"].append(tissue)
        columns["aif"].append(np.broadcast_to(aif, tissue.shape))
        columns["subject"].append(np.full(len(rows), index, dtype=np.int64))
    return {key: np.concatenate(value) for key, value in columns.items()}
