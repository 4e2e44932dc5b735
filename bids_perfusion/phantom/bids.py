"""Write a phantom cohort as a BIDS dataset, with its ground truth as a derivatives dataset.

Layout (DSC follows the project's convention, listed in ``.bidsignore``)::

    OUT_DIR/dataset_description.json, README, participants.tsv/.json, .bidsignore
    OUT_DIR/sub-01/anat/sub-01_T1w.nii.gz
    OUT_DIR/sub-01/perf/sub-01[_acq-doseNN]_ce-gadolinium[_echo-N]_dsc.nii.gz (+ .json)
    OUT_DIR/sub-01/perf/sub-01_asl.nii.gz, _asl.json, _aslcontext.tsv, _m0scan.nii.gz
    OUT_DIR/derivatives/phantom-truth/...   maps, masks, AIF and parameters

The dataset is assembled in a temporary folder beside ``OUT_DIR`` and moved into place
only when complete, so a failure leaves nothing half-written.
"""

import json
import logging
import shutil
import uuid
from dataclasses import asdict, replace
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_perfusion import __version__, constants
from bids_perfusion.naming import dose_label
from bids_perfusion.phantom import config as phantom_config
from bids_perfusion.phantom.anatomy import make_grid
from bids_perfusion.phantom.asl import simulate_asl
from bids_perfusion.phantom.dsc import blood_delta_r2star, simulate_dsc
from bids_perfusion.phantom.dsc_population import draw_dsc_acquisition
from bids_perfusion.phantom.forward import CBV_DEFINITIONS
from bids_perfusion.phantom.lesion import ABSENT
from bids_perfusion.phantom.motion import motion_rng, move_asl, move_dsc
from bids_perfusion.phantom.mr import spoiled_gre_steady_state
from bids_perfusion.phantom.subject import BLOOD, COMPARTMENTS, at_field, make_subject
from bids_perfusion.tsv import write_tsv

LOGGER = logging.getLogger("bids_perfusion.phantom")
BIDS_VERSION = "1.10.0"
TRUTH = Path("derivatives") / "phantom-truth"
GENERATOR = {"Name": "bids-perfusion-phantom", "Version": __version__,
             "Description": "Digital perfusion reference object of bids-perfusion"}
#: Ground-truth maps: suffix -> (units, description).
TRUTH_MAPS = {
    "cbf": ("mL/100g/min", "Cerebral blood flow of the tissue in the voxel"),
    "cbv": ("mL/100g", "Cerebral blood volume (CBV = kH/rho * 100 * int C_t / int C_a)"),
    "mtt": ("s", "Mean transit time, CBV / CBF"),
    "tmax": ("s", "Time to maximum of the flow-scaled residue seen from the AIF"),
    "bat": ("s", "Bolus arrival time in the tissue (AIF arrival + delay)"),
    "delay": ("s", "Bolus delay relative to the AIF (flow-weighted in mixed voxels)"),
    "k2": ("1/s", "Leakage coefficient of Boxerman-Schmainda-Weisskoff (effective; negative "
                  "for T2*-dominant leakage, 0 with the Tofts leakage model)"),
    "ktrans": ("1/min", "Tofts volume transfer constant Ktrans of the leaky rim (leakage "
                        "model 'tofts' only)"),
    "ve": ("1", "Tofts extravascular extracellular volume fraction (leakage model 'tofts')"),
    "att": ("s", "Arterial transit time of the ASL label (flow-weighted)"),
    "m0map": ("arbitrary", "Equilibrium magnetisation M0 of the tissue"),
}
#: Spoiled gradient-echo T1w in steady state: TR, TE (s), flip (degrees).
T1W = {"tr": 0.01, "te": 0.004, "flip": 15.0}


def dsc_name(subject, dose, echo, n_echoes):
    acq = None if dose == 1.0 else dose_label(dose)  # the acq label of a reduced dose
    parts = [f"sub-{subject}", *([f"acq-{acq}"] if acq else []), "ce-gadolinium",
             *([f"echo-{echo + 1}"] if n_echoes > 1 else []), "dsc"]
    return "_".join(parts)


def write_dataset(out_dir, config, overwrite=False):
    """Simulate ``config`` and write it to ``out_dir``; returns the output path.

    Raises ValueError before writing anything if the configuration is invalid or if
    ``out_dir`` exists, is not empty and ``overwrite`` is False.
    """
    config.validate()
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise ValueError(f"Output folder {out_dir} exists and is not empty: choose another "
                         "folder or pass --overwrite to replace it.")
    created = [p for p in (out_dir.parent, *out_dir.parent.parents) if not p.exists()]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # made with mkdir, not mkdtemp (0700): the dataset gets the permissions of the umask,
    # so that other users (a container's user) can read it
    staging = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        _write_all(staging, config)
        if out_dir.exists():
            shutil.rmtree(out_dir) if out_dir.is_dir() else out_dir.unlink()
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for parent in created:  # innermost first: folders this call made, now empty
            parent.rmdir()
        raise
    return out_dir


def _write_all(root, config):
    grid = make_grid(config.matrix, config.fov_mm, config.slab_mm)
    _write_dataset_files(root, config)
    rows = []
    for index, grade in enumerate(config.grades):
        label = f"{index + 1:02d}"
        LOGGER.info("Simulating sub-%s (%s), %d of %d", label, grade, index + 1,
                    len(config.grades))
        anatomy_rng, dsc_rng, asl_rng, population_rng = (
            np.random.default_rng(s)
            for s in np.random.SeedSequence([config.seed, index]).spawn(4))
        subject = make_subject(label, grade, config, anatomy_rng, grid)
        rows.append({"participant_id": f"sub-{label}",
                     **(ABSENT if subject.tumour is None else subject.tumour.describe()),
                     "flow_scale": round(subject.flow_scale, 4),
                     **({"n_lesions": len(subject.lesions)} if config.population else {})})
        extra, cbv = {}, None
        moving = motion_rng(config.seed, index)
        _write_anatomy(root, subject)
        if config.dsc is not None:
            acq, dsc_subject = config.dsc, subject
            if config.population:
                acq, extra["dsc_acquisition"] = draw_dsc_acquisition(
                    population_rng, config.dsc, config.dsc_population)
                # Tissue T1 of the drawn field (the template's are 3 T values).
                dsc_subject = at_field(subject, acq.field_strength)
                extra["dsc_t1"] = {**{name: tissue.t1 for name, tissue in
                                      zip(COMPARTMENTS, dsc_subject.tissues, strict=True)},
                                   "blood": dsc_subject.blood_t1}
            dsc = simulate_dsc(dsc_subject, acq, dsc_rng, config.forward_model)
            if config.motion:
                dsc, motion = move_dsc(dsc, grid.affine, moving, config.motion)
                for dose, parameters in motion.items():
                    _write_motion(root, subject, "Dsc", parameters, dose)
            _write_dsc(root, subject, acq, dsc)
            extra["dsc_noise_sd"] = dsc.noise_sd
            if dsc.r2star_ev is not None:
                extra["dsc_r2star_extravascular"] = dsc.r2star_ev
            cbv = dsc.cbv
        if config.asl is not None:
            asl = simulate_asl(subject, config.asl, asl_rng)
            if config.motion:
                asl, parameters = move_asl(asl, grid.affine, moving, config.motion)
                _write_motion(root, subject, "Asl", parameters)
            _write_asl(root, subject, config.asl, asl)
            extra.update(asl_noise_sd=asl.noise_sd,
                         asl_labeling_efficiency=asl.labeling_efficiency,
                         asl_t1_blood=asl.t1_blood)
        _write_truth(root, subject, extra, config.forward_model, cbv)
    _write_participants(root, rows)


def _json(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_plain) + "\n")


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot serialise {type(value)}")


def _nifti(path, data, grid, tr=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(np.asarray(data), grid.affine)
    image.header.set_xyzt_units("mm", "sec")
    if tr is not None:
        image.header["pixdim"][4] = tr
    image.header.set_qform(grid.affine, code=1)
    image.header.set_sform(grid.affine, code=1)
    # nibabel writes gzip with mtime 0: the same seed gives identical bytes.
    image.to_filename(str(path))


def _write_dataset_files(root, config):
    _json(root / "dataset_description.json", {
        "Name": "bids-perfusion digital perfusion phantom",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "raw",
        "License": "CC0",
        "Authors": ["bids-perfusion developers"],
        "GeneratedBy": [GENERATOR],
    })
    (root / "README").write_text(
        "Synthetic DSC-MRI and ASL dataset written by bids-perfusion-phantom "
        f"{__version__} (seed {config.seed}).\nGround truth: derivatives/phantom-truth/.\n"
        "DSC series follow the bids-perfusion convention "
        "(perf/*_ce-<agent>_dsc.nii.gz) and are listed in .bidsignore.\n")
    (root / ".bidsignore").write_text("*_dsc.*\n")
    _json(root / TRUTH / "dataset_description.json", {
        "Name": "bids-perfusion phantom ground truth",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [GENERATOR],
        "SourceDatasets": [{"URL": "bids::"}],
    })
    _json(root / TRUTH / "phantom_parameters.json", {
        "config": config.as_dict(),
        "constants": {k: v for k, v in vars(constants).items()  # the physical ones
                      if k.isupper() and isinstance(v, (int, float, dict))},
        "normal_tissues": {k: asdict(v) for k, v in phantom_config.NORMAL_TISSUES.items()},
        "grade_models": {k: asdict(v) for k, v in
                         phantom_config.GRADE_MODELS[config.grade_ranges].items()},
        "necrosis": asdict(phantom_config.NECROSIS),
        "oedema": asdict(phantom_config.OEDEMA),
        "tumour_relaxation": phantom_config.TUMOUR_RELAXATION,
        "blood_relaxation": BLOOD,
        "receiver_gain": phantom_config.RECEIVER_GAIN,
        # tissue T1 of a population subject's DSC series at 1.5 T, over the 3 T t1 above
        **({"t1_ratio_1p5t": phantom_config.T1_RATIO_1P5T} if config.population else {}),
    })


def _write_participants(root, rows):
    columns = list(rows[0])
    write_tsv(rows, columns, root / "participants.tsv")
    descriptions = {
        "grade": "Glioma grade: LGG (low grade) or HGG (high grade)",
        "tumor_hemisphere": "Hemisphere holding the tumour",
        "tumor_radius_mm": "Radius of the tumour (enhancing/solid part), mm",
        "tumor_center_x_mm": "Tumour centre, x (scanner RAS), mm",
        "tumor_center_y_mm": "Tumour centre, y (scanner RAS), mm",
        "tumor_center_z_mm": "Tumour centre, z (scanner RAS), mm",
        "tumor_rcbv": "True CBV of the enhancing/solid tumour relative to normal white matter",
        "tumor_rcbf": "True CBF of the enhancing/solid tumour relative to normal white matter",
        "tumor_k2": "True leakage coefficient K2 of the enhancing rim, 1/s (before preload)",
        "flow_scale": "Global CBF scaling of this subject",
        "n_lesions": "Number of lesions (population phantom; the tumor_* columns describe "
                     "the first)",
    }
    payload = {c: {"Description": descriptions[c]} for c in columns if c in descriptions}
    payload["grade"]["Levels"] = {"LGG": "low-grade glioma", "HGG": "high-grade glioma"}
    if "n_lesions" in columns:  # the population phantom may hold healthy subjects
        payload["grade"]["Description"] += ("; n/a for a subject without lesion, left out "
                                            "of grading")
    _json(root / "participants.json", payload)


def _write_anatomy(root, subject):
    anat = root / f"sub-{subject.label}" / "anat"
    m0 = phantom_config.RECEIVER_GAIN * subject.relaxation("m0")
    t1w = m0 * spoiled_gre_steady_state(subject.relaxation("t1"), T1W["tr"], T1W["flip"])
    _nifti(anat / f"sub-{subject.label}_T1w.nii.gz", t1w.astype(np.float32), subject.grid)
    _json(anat / f"sub-{subject.label}_T1w.json", {
        "RepetitionTime": T1W["tr"], "EchoTime": T1W["te"], "FlipAngle": T1W["flip"],
        "MagneticFieldStrength": 3, "Manufacturer": "bids-perfusion phantom",
        "MRAcquisitionType": "3D", "PulseSequenceType": "Spoiled gradient echo"})


def _write_dsc(root, subject, acq, sim):
    perf = root / f"sub-{subject.label}" / "perf"
    for (dose, echo), data in sim.signals.items():
        name = dsc_name(subject.label, dose, echo, len(acq.echo_times))
        _nifti(perf / f"{name}.nii.gz", data, subject.grid, tr=acq.tr)
        _json(perf / f"{name}.json", {
            "EchoTime": acq.echo_times[echo],
            "RepetitionTime": acq.tr,
            "FlipAngle": acq.flip_angle,
            "MagneticFieldStrength": acq.field_strength,
            "MRAcquisitionType": "2D",
            "PulseSequenceType": "Gradient echo EPI",
            "Manufacturer": "bids-perfusion phantom",
            "ContrastBolusIngredient": "GADOLINIUM",
            "ContrastAgentDoseFactor": dose,
            "ContrastAgentPreload": acq.preload,
            "NumberOfBaselineFrames": acq.baseline_frames,
            **({"NumberOfVolumesDiscardedByScanner": acq.dummy_scans}
               if acq.dummy_scans else {}),
        })
    truth = root / TRUTH / f"sub-{subject.label}" / "perf"
    # the realistic forward model's blood relaxes by the quadratic model (forward.py)
    blood = acq if sim.r2star_ev is None else replace(acq, blood_relaxivity="quadratic")
    for dose, aif in sim.aif.items():
        acq_label = None if dose == 1.0 else dose_label(dose)
        stem = f"sub-{subject.label}{f'_acq-{acq_label}' if acq_label else ''}_desc-truth_aif"
        rows = [{"time": float(t), "concentration": float(c),
                 "delta_r2star": float(r)}
                for t, c, r in zip(sim.frame_times, aif, blood_delta_r2star(aif, blood),
                                   strict=True)]
        write_tsv(rows, ["time", "concentration", "delta_r2star"], truth / f"{stem}.tsv")
        _json(truth / f"{stem}.json", {
            "time": {"Description": "Frame time from the first frame", "Units": "s"},
            "concentration": {"Description": "Noise-free arterial concentration",
                              "Units": "mM"},
            "delta_r2star": {"Description": "Noise-free arterial Delta R2*", "Units": "1/s"},
            "DoseFactor": dose,
        })
    for name in ("tmax", "bat", "delay", "k2", "ktrans", "ve"):
        if getattr(sim, name) is not None:
            _write_map(root, subject, name, getattr(sim, name))


def _write_asl(root, subject, acq, sim):
    perf = root / f"sub-{subject.label}" / "perf"
    stem = perf / f"sub-{subject.label}"
    _nifti(Path(f"{stem}_asl.nii.gz"), sim.series, subject.grid, tr=acq.tr)
    write_tsv([{"volume_type": v} for v in sim.volume_types], ["volume_type"],
              Path(f"{stem}_aslcontext.tsv"))
    zooms = [round(float(z), 4) for z in subject.grid.zooms]
    sidecar = {
        "ArterialSpinLabelingType": acq.label_type,
        "PostLabelingDelay": sim.plds if len(set(sim.plds)) > 1 else sim.plds[0],
        "BackgroundSuppression": acq.background_suppression,
        "M0Type": acq.m0_type,
        "TotalAcquiredPairs": sim.volume_types.count("label"),
        "MagneticFieldStrength": acq.field_strength,
        "MRAcquisitionType": acq.readout,
        "RepetitionTimePreparation": acq.tr,
        "RepetitionTime": acq.tr,
        "EchoTime": acq.echo_time,
        "FlipAngle": 90,
        "AcquisitionVoxelSize": zooms,
        "VascularCrushing": False,
        "Manufacturer": "bids-perfusion phantom",
    }
    if acq.m0_type == "Included":
        sidecar["RepetitionTimePreparation"] = [
            acq.m0_tr if v == "m0scan" else acq.tr for v in sim.volume_types]
    if acq.label_type == "PCASL":
        sidecar.update(LabelingDuration=acq.labeling_duration, PCASLType="balanced")
    else:
        sidecar.update(BolusCutOffFlag=True, BolusCutOffTechnique="QUIPSSII",
                       BolusCutOffDelayTime=acq.bolus_cutoff, PASLType="FAIR")
    if acq.background_suppression:
        sidecar["BackgroundSuppressionNumberPulses"] = acq.background_suppression_pulses
    if sim.slice_timing is not None:
        sidecar["SliceTiming"] = sim.slice_timing
    _json(Path(f"{stem}_asl.json"), sidecar)
    if sim.m0scan is not None:
        _nifti(Path(f"{stem}_m0scan.nii.gz"), sim.m0scan, subject.grid, tr=acq.m0_tr)
        _json(Path(f"{stem}_m0scan.json"), {
            "RepetitionTimePreparation": acq.m0_tr, "RepetitionTime": acq.m0_tr,
            "EchoTime": acq.echo_time, "FlipAngle": 90,
            "MagneticFieldStrength": acq.field_strength, "MRAcquisitionType": acq.readout,
            "IntendedFor": [f"bids::sub-{subject.label}/perf/sub-{subject.label}_asl.nii.gz"],
            "AcquisitionVoxelSize": zooms, "Manufacturer": "bids-perfusion phantom",
            **({"SliceTiming": sim.slice_timing} if sim.slice_timing is not None else {}),
        })
    _write_map(root, subject, "att", sim.att)
    _write_map(root, subject, "m0map", sim.m0)


def _write_motion(root, subject, modality, parameters, dose=1.0):
    """The true head motion of a series, ``desc-truth<modality>_motion.tsv`` (the columns
    of the pipeline's ``desc-confounds_timeseries.tsv``)."""
    from bids_perfusion.motion.realign import grid_centre
    from bids_perfusion.motion.rigid import PARAMETER_NAMES, framewise_displacement

    acq = "" if dose == 1.0 else f"_acq-{dose_label(dose)}"
    stem = (root / TRUTH / f"sub-{subject.label}" / "perf"
            / f"sub-{subject.label}{acq}_desc-truth{modality}_motion")
    fd = framewise_displacement(parameters)
    rows = [{**dict(zip(PARAMETER_NAMES, map(float, row), strict=True)),
             "framewise_displacement": float(d) if i else None}  # n/a first, as fMRIPrep
            for i, (row, d) in enumerate(zip(parameters, fd, strict=True))]
    write_tsv(rows, [*PARAMETER_NAMES, "framewise_displacement"], Path(f"{stem}.tsv"))
    _json(Path(f"{stem}.json"), {
        "Description": "True rigid head motion of each frame: a point x of the head in the "
                       "pose of the ground-truth maps (the first frame) is at "
                       "R (x - c) + c + t in the frame, R = Rz Ry Rx",
        "CentreOfRotation": [float(v) for v in grid_centre(subject.grid.shape,
                                                           subject.grid.affine)],
        **{name: {"Units": "mm" if name.startswith("trans") else "rad"}
           for name in PARAMETER_NAMES},
        "framewise_displacement": {"Units": "mm", "Description": "Power et al. 2012, "
                                                                 "50 mm sphere"},
        "DoseFactor": dose,
    })


def _write_map(root, subject, suffix, data, **fields):
    truth = root / TRUTH / f"sub-{subject.label}" / "perf"
    stem = truth / f"sub-{subject.label}_desc-truth_{suffix}"
    _nifti(Path(f"{stem}.nii.gz"), np.asarray(data, dtype=np.float32), subject.grid)
    units, description = TRUTH_MAPS[suffix]
    _json(Path(f"{stem}.json"), {"Units": units, "Description": description, **fields})


def _write_truth(root, subject, extra, forward_model, cbv=None):
    """Truth maps, masks and parameters; ``cbv`` replaces the subject's CBV when the
    forward model defines it otherwise (``realistic``: the vessels' blood counts)."""
    _write_map(root, subject, "cbf", subject.cbf)
    _write_map(root, subject, "cbv", subject.cbv if cbv is None else cbv,
               ForwardModel=forward_model, Definition=CBV_DEFINITIONS[forward_model])
    _write_map(root, subject, "mtt", subject.mtt)
    truth = root / TRUTH / f"sub-{subject.label}" / "perf"
    prefix = truth / f"sub-{subject.label}"
    for name, mask in subject.masks().items():
        _nifti(Path(f"{prefix}_label-{name}_mask.nii.gz"), mask.astype(np.uint8), subject.grid)
    fractions = dict(zip(COMPARTMENTS, subject.weights, strict=True))
    probsegs = {"GM": fractions["GM"], "WM": fractions["WM"], "CSF": fractions["CSF"],
                "enhancing": fractions["enhancing"], "necrosis": fractions["necrosis"],
                "edema": fractions["oedema"], "arteries": subject.artery}
    for name, fraction in probsegs.items():
        _nifti(Path(f"{prefix}_label-{name}_probseg.nii.gz"), fraction.astype(np.float32),
               subject.grid)
    _json(Path(f"{prefix}_desc-truth_parameters.json"), {
        "tumour": None if subject.tumour is None else asdict(subject.tumour),
        "flow_scale": subject.flow_scale,
        "compartments": {name: {**asdict(t), "mtt": t.mtt}
                         for name, t in zip(COMPARTMENTS, subject.tissues, strict=True)},
        "template_from_world": subject.template_from_world,
        "heterogeneity_scale_range": [float(subject.scale.min()), float(subject.scale.max())],
        **({"population": subject.population} if subject.population is not None else {}),
        **extra,
    })
