"""ASLDRO (the ``asldro`` package: an independent implementation of the general kinetic
model and of the MRI signal) on a small block phantom, for the tests that compare with it.

Skipped when asldro is not installed, a failure in CI (``helpers.require``).
"""

import json

import nibabel as nib
import numpy as np
from helpers import require_package

#: asldro's HRGT (hrgt_icbm_2009a_nls_3t) tissue values: perfusion (mL/100 g/min), transit
#: time (s), T1, T2, T2* (s), M0; label 1 grey matter, 2 white matter.
ASLDRO_TISSUES = {1: (60.0, 0.8, 1.33, 0.08, 0.066, 74.62), 2: (20.0, 1.2, 0.83, 0.11, 0.053,
                                                                  64.72)}
ASLDRO_QUANTITIES = ["perfusion_rate", "transit_time", "t1", "t2", "t2_star", "m0", "seg_label"]
ASLDRO_PLDS = (0.5, 1.0, 1.5, 2.0, 2.5)
TAU = 1.8


def asldro_generate(folder):
    """A small block phantom (GM | WM) through asldro: one series per PLD + ground truth."""
    import logging
    import zipfile

    hint = "install it with 'pip install asldro --no-deps' and 'pip install jsonschema'"
    run_full_pipeline = require_package("asldro.examples", hint).run_full_pipeline
    get_example_input_params = require_package("asldro.validators.user_parameter_input",
                                               hint).get_example_input_params

    logging.getLogger("asldro").setLevel(logging.WARNING)
    shape = (16, 16, 6)
    seg = np.zeros(shape)
    seg[2:8, 2:14, 1:5], seg[8:14, 2:14, 1:5] = 1, 2
    data = np.zeros((*shape, 1, 7), np.float32)
    for label, values in ASLDRO_TISSUES.items():
        for index, value in enumerate(values):
            data[..., 0, index][seg == label] = value
    data[..., 0, 6] = seg
    affine = np.eye(4)
    affine[:3, 3] = -np.array(shape) / 2.0
    nib.save(nib.Nifti1Image(data, affine), folder / "gt.nii.gz")
    (folder / "gt.json").write_text(json.dumps({
        "quantities": ASLDRO_QUANTITIES, "units": ["ml/100g/min", "s", "s", "s", "s", "", ""],
        "segmentation": {"grey_matter": 1, "white_matter": 2},
        "parameters": {"lambda_blood_brain": 0.9, "t1_arterial_blood": 1.65,
                       "magnetic_field_strength": 3}}))
    params = get_example_input_params()
    params["global_configuration"]["ground_truth"] = {"nii": str(folder / "gt.nii.gz"),
                                                      "json": str(folder / "gt.json")}
    asl, ground_truth = params["image_series"][:2]
    ground_truth["series_parameters"]["acq_matrix"] = list(shape)
    series = []
    for pld in (1.8, *ASLDRO_PLDS):
        item = json.loads(json.dumps(asl))
        item["series_parameters"].update(
            acq_matrix=list(shape), desired_snr=0.0, signal_time=TAU + pld,
            label_duration=TAU, label_efficiency=0.85, asl_context="m0scan control label",
            echo_time=[0.01] * 3, repetition_time=[10.0, 5.0, 5.0],
            **{k: [0.0] * 3 for k in ("rot_x", "rot_y", "rot_z", "transl_x", "transl_y",
                                       "transl_z")})
        series.append(item)
    params["image_series"] = [*series, ground_truth]
    run_full_pipeline(params, str(folder / "asldro.zip"))
    zipfile.ZipFile(folder / "asldro.zip").extractall(folder / "asldro")
    return folder / "asldro"
