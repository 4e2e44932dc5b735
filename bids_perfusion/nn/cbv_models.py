"""CBV from raw DSC with a strip model (stU-Net or the Hess et al. baseline).

The registry of strip models, their weights (configuration = architecture plus
:class:`~bids_perfusion.nn.cbv_preprocessing.PreprocessingConfig` in the model card),
training samples (strips of prepared runs) and inference on a whole series:
preprocessing (:mod:`~bids_perfusion.nn.cbv_preprocessing`), strips every
``test_stride`` rows averaged (:mod:`~bids_perfusion.nn.strips`), back to the native grid
and, given a CBV map in physical units, to mL/100 g.
"""

import time

import numpy as np
import torch

from bids_perfusion.nn import hess, stunet
from bids_perfusion.nn.cbv_preprocessing import (
    PreprocessingConfig,
    calibrate_scale,
    calibrate_units,
    decode_prediction,
    prepare_run,
    to_native,
)
from bids_perfusion.nn.strips import extract_strips, predict_slices
from bids_perfusion.nn.weights import config_from_dict

#: Strip models: name -> (module class, configuration class).
MODELS = {stunet.MODEL_NAME: (stunet.StUNet, stunet.StUNetConfig),
          hess.MODEL_NAME: (hess.Hess, hess.HessConfig)}


def configuration(architecture, preprocessing):
    """The model card's configuration of a strip model."""
    return {"architecture": architecture.as_dict(), "preprocessing": preprocessing.as_dict()}


def build_model(name, configuration, state_dict=None, device="cpu"):
    """The strip model ``name`` of a card configuration, in eval mode on ``device``, and its
    :class:`PreprocessingConfig`."""
    module, config_class = MODELS[name]
    model = module(config_from_dict(config_class, configuration["architecture"]))
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return (model.to(device).eval(),
            config_from_dict(PreprocessingConfig, configuration["preprocessing"]))


def bundled_weights():
    """Path of the stU-Net weights shipped with the package (trained on phantom data)."""
    from bids_perfusion.nn.weights import bundled_weights

    return bundled_weights("stunet")


def load_model(path=None, device="cpu"):
    """``(model, preprocessing, card)`` of a weights file (default: the bundled stU-Net).

    The model is the one named in the card (stU-Net or Hess); the file is checked against
    the card's sha256 (:func:`bids_perfusion.nn.weights.load_weights`).
    """
    from bids_perfusion.nn.weights import WeightsError, load_weights

    state, card = load_weights(path or bundled_weights())
    if card.get("model") not in MODELS:
        raise WeightsError(f"{path}: the model card is for {card.get('model')!r}, not a CBV "
                           f"strip model ({sorted(MODELS)}).")
    model, preprocessing = build_model(card["model"], card["configuration"], state, device)
    return model, preprocessing, card


def strip_arrays(runs, config, n_frames=None):
    """Training samples of prepared runs (with ``cbv``): strips every ``train_stride`` rows
    of every slice holding brain, as float32 tensors ``dsc`` (N, w, size, T), ``cbv`` and
    ``mask`` (N, w, size). Runs are cropped to ``n_frames`` (default: the shortest).
    Returns ``(arrays, n_frames)``."""
    n_frames = n_frames or min(run.dsc.shape[-1] for run in runs)
    if min(run.dsc.shape[-1] for run in runs) < n_frames:
        raise ValueError(f"a run has fewer than the {n_frames} frames asked for: pass the "
                         "shortest frame count of all runs (training, validation, test)")
    columns = {"dsc": [], "cbv": [], "mask": []}
    for run in runs:
        for z in range(run.dsc.shape[2]):
            if not run.mask[..., z].any():
                continue
            mask, _starts = extract_strips(run.mask[..., z], config.strip_width,
                                           config.train_stride)
            keep = mask.any(axis=(1, 2))
            columns["mask"].append(mask[keep])
            for key, values in (("dsc", run.dsc[:, :, z, :n_frames]), ("cbv", run.cbv[..., z])):
                columns[key].append(extract_strips(values, config.strip_width,
                                                   config.train_stride)[0][keep])
    return {key: torch.from_numpy(np.concatenate(value).astype(np.float32))
            for key, value in columns.items()}, n_frames


def predict_standardised(model, preprocessing, series, brain, batch_size=64, device=None):
    """The prepared run of ``series`` (X, Y, Z, T) and the model's CBV (size, size, Z) in
    its target's representation (``preprocessing.target``), strips every
    ``test_stride`` rows averaged; 0 outside the brain."""
    run = prepare_run(series, brain, preprocessing)
    prediction = predict_slices(model, run.dsc, run.mask, preprocessing.strip_width,
                                preprocessing.test_stride, batch_size, device)
    return run, np.where(run.mask, prediction, 0.0).astype(np.float32)


def to_units(native, reference_cbv, brain, preprocessing):
    """A native-grid prediction (X, Y, Z) in the units of ``reference_cbv``, 0 outside the
    brain, and the calibration ``(α, β)``: CBV = α + β·ŷ fitted to the reference
    (:func:`~bids_perfusion.nn.cbv_preprocessing.calibrate_units`) for the
    ``"standardised"`` target; CBV = β·exp(ŷ), β fitted through the origin
    (:func:`~bids_perfusion.nn.cbv_preprocessing.calibrate_scale`), for ``"logRelative"``,
    which keeps the predicted ratios (tumour/NAWM) whatever the reference's noise."""
    brain = np.asarray(brain, dtype=bool)
    decoded = decode_prediction(native, preprocessing)
    if preprocessing.target == "logRelative":
        alpha, beta = 0.0, calibrate_scale(decoded, reference_cbv, brain,
                                           preprocessing.clip)
    else:
        alpha, beta = calibrate_units(decoded, reference_cbv, brain, preprocessing.clip)
    return np.where(brain, alpha + beta * decoded, 0.0).astype(np.float32), alpha, beta


def estimate_cbv(model, preprocessing, series, brain, reference_cbv, batch_size=64,
                 device=None):
    """CBV (X, Y, Z) in the units of ``reference_cbv`` (e.g. mL/100 g), 0 outside the brain.

    The prediction is resampled to the native grid and mapped to units by
    :func:`to_units` against ``reference_cbv``, the run's own (noisy) area-ratio CBV.
    Returns ``(cbv, info)``, ``info`` holding the fit (α, β), its description and the
    seconds spent.
    """
    started = time.perf_counter()
    brain = np.asarray(brain, dtype=bool)
    run, prediction = predict_standardised(model, preprocessing, series, brain, batch_size,
                                           device)
    cbv, alpha, beta = to_units(to_native(prediction, run.crop), reference_cbv, brain,
                                preprocessing)
    described = ("least-squares fit through the origin CBV = scale * exp(prediction) of the "
                 "run's area-ratio CBV over the brain (offset 0)"
                 if preprocessing.target == "logRelative"
                 else "least-squares fit CBV = offset + scale * prediction of the run's "
                      "area-ratio CBV over the brain")
    return cbv, {"offset": alpha, "scale": beta, "description": described,
                 "seconds": time.perf_counter() - started}
