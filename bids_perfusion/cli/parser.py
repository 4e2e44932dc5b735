"""Argument parser of ``bids-perfusion``: BIDS-App conventions, light imports only."""

import argparse
import os
import re
from pathlib import Path

from bids_perfusion import __version__, constants
from bids_perfusion.workflows.options import DSC_METHODS


def _label(value):
    """Accept 'sub-01' or '01'."""
    return value.removeprefix("sub-").removeprefix("ses-")


def _methods(value):
    methods = [m.strip().lower() for m in value.split(",") if m.strip()]
    if unknown := sorted(set(methods) - set(DSC_METHODS)):
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {unknown}; choose from {','.join(DSC_METHODS)}")
    return tuple(m for m in DSC_METHODS if m in methods)


def _dose(value):
    dose = float(value)
    if not 0 < dose < 1:
        raise argparse.ArgumentTypeError(f"a simulated dose must be in (0, 1), got {value}")
    return dose


#: Device files of the GPU drivers torch uses (NVIDIA's; AMD's ROCm, which torch serves as
#: ``cuda``); without any of them torch cannot see a GPU.
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")


def _device(value):
    """A ``--device`` value, lower-cased and checked for its form only (no torch import);
    ``auto`` is ``cpu`` on a machine without a GPU driver's device file
    (:data:`GPU_DEVICE_FILES`), so that no node imports torch (about a second per process)
    only to find that out, and the run's configuration records the CPU."""
    value = value.lower()
    if not re.fullmatch(constants.DEVICE_PATTERN, value):
        raise argparse.ArgumentTypeError(f"{value}: use auto, cpu, cuda or cuda:N")
    if value == "auto" and not any(os.path.exists(path) for path in GPU_DEVICE_FILES):
        return "cpu"
    return value


def _existing_path(value):
    """A path resolved against the current directory now, so that nodes running elsewhere
    find it; argparse refuses one that does not exist."""
    path = Path(value).expanduser().absolute()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{value}: no such file or folder")
    return path


def _count(minimum):
    """An integer of at least ``minimum``."""
    def parse(value):
        number = int(value)
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return number
    return parse


def _positive(value):
    number = float(value)
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return number


def _fraction(value):
    fraction = float(value)
    if not 0 < fraction <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return fraction


def _m0_fraction(value):
    fraction = float(value)
    if not 0 <= fraction < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return fraction


class SuperResScale(argparse.Action):
    """``--superres-scale SPACE TIME``: a positive in-plane scale and a whole number of
    frames per acquired frame interval, at least 1, stored as ``(float, int)``."""

    def __call__(self, parser, namespace, values, option_string=None):
        space, time = values
        if not 0 < space < float("inf") or time != int(time) or time < 1:
            parser.error(f"{option_string} {space:g} {time:g}: give a positive in-plane "
                         "scale and a whole number of frames per acquired frame, at "
                         "least 1 (e.g. 2 4)")
        setattr(namespace, self.dest, (space, int(time)))


def field_strength(value):
    """``--field-strength``: tesla, within the tolerance of a field whose DSC relaxivities
    are tabulated (:data:`bids_perfusion.constants.DSC_RELAXIVITY`)."""
    from bids_perfusion.dsc.relaxivity import nominal_field

    tesla = float(value)
    if not 0 < tesla < float("inf") or nominal_field(tesla) is None:
        raise argparse.ArgumentTypeError(
            f"{value} T: DSC relaxivities are tabulated at "
            f"{', '.join(f'{b:g}' for b in sorted(constants.DSC_RELAXIVITY))} T only")
    return tesla


def _nonnegative(value):
    number = float(value)
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return number


def _odd_kernel(value):
    """An odd number of voxels, at least 3 (a kernel centred on its voxel)."""
    number = int(value)
    if number < 3 or number % 2 == 0:
        raise argparse.ArgumentTypeError(f"must be an odd number of voxels, 3 or more, got "
                                         f"{value}")
    return number




#: Method parameters left unset take the defaults of the parameter classes in
#: ``dsc/deconvolution.py``, their one home; the values shown in --help are a reminder.
LITERATURE = "; the value used is recorded in every sidecar"
#: (option destination, method, parameter name)
METHOD_OPTIONS = (("ssvd_threshold", "ssvd", "threshold"),
                  ("csvd_threshold", "csvd", "threshold"),
                  ("osvd_oi", "osvd", "oi_threshold"),
                  ("tikhonov_criterion", "tikhonov", "criterion"),
                  ("tikhonov_lambda", "tikhonov", "lam"))


def build_parser():
    parser = argparse.ArgumentParser(
        prog="bids-perfusion",
        description="Quantitative perfusion maps (DSC-MRI and ASL) from a BIDS dataset.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("bids_dir", type=Path, help="the input BIDS dataset (read only)")
    parser.add_argument("output_dir", type=Path, help="where derivatives are written")
    parser.add_argument("analysis_level", choices=["participant", "group"],
                        help="processing stage")
    parser.add_argument("--version", action="version", version=f"bids-perfusion {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v: nipype's log on the console too (it is always written in "
                             "full to output_dir/logs/); -vv: debug messages")

    group = parser.add_argument_group("selecting data")
    group.add_argument("--participant-label", nargs="+", type=_label, metavar="LABEL",
                       default=argparse.SUPPRESS, help="subjects to process (default: all)")
    group.add_argument("--session-label", nargs="+", type=_label, metavar="LABEL",
                       default=argparse.SUPPRESS, help="sessions to process (default: all)")
    group.add_argument("--bids-filter-file", type=_existing_path, metavar="FILE",
                       help="JSON of pybids filters for the 'dsc' query, e.g. "
                            '{"dsc": {"acquisition": null}}')
    group.add_argument("--derivatives", nargs="+", type=_existing_path, default=[],
                       metavar="PATH",
                       help="derivatives folders with masks: *_label-{brain,tumor,NAWM,"
                            "arteries,GM,WM}_mask.nii.gz on the DSC grid")
    group.add_argument("--skip-bids-validation", action="store_true",
                       help="do not run the BIDS validator on the input")

    group = parser.add_argument_group("resources")
    group.add_argument("-w", "--work-dir", type=Path, default=Path("work"),
                       help="intermediate results; reusing it resumes finished steps "
                            "(never inside the input dataset)")
    group.add_argument("--nprocs", type=_count(0), default=0,
                       help="parallel processes (0: all CPUs); nipype's MultiProc "
                            "plugin runs the runs of several subjects, sessions or doses "
                            "side by side, and a single run (or --nprocs 1) runs in this "
                            "process with the Linear plugin, which is faster for one series")
    group.add_argument("--omp-nthreads", type=_count(0), default=0,
                       help="threads per process for linear algebra (0: nprocs)")
    group.add_argument("--mem", type=_positive, metavar="GB",
                       help="memory limit of the run, GB")

    group = parser.add_argument_group("head motion")
    group.add_argument("--no-motion-correction", action="store_true",
                       help="do not realign the DSC and ASL series (no confounds table)")
    group.add_argument("--fd-threshold", type=_positive, default=constants.FD_THRESHOLD,
                       metavar="MM",
                       help="framewise displacement (Power et al. 2012) above which a "
                            "volume is flagged a motion outlier in the confounds table "
                            "(default: %(default)s, as fMRIPrep and ASLPrep)")
    group.add_argument("--exclude-motion-outliers", action="store_true",
                       help="ASL: leave the control/label pairs that hold a motion outlier "
                            "out of the mean ΔM and CBF (DSC outliers are flagged only)")
    group.add_argument("--write-series", action="store_true",
                       help="also write the motion-corrected series (desc-preproc_dsc, "
                            "first echo; desc-preproc_asl)")

    group = parser.add_argument_group("DSC quantification")
    group.add_argument("--dsc-methods", type=_methods, default=("osvd",), metavar="M[,M...]",
                       help=f"deconvolution methods among {','.join(DSC_METHODS)}")
    group.add_argument("--ssvd-threshold", type=_fraction, default=argparse.SUPPRESS,
                       help="sSVD truncation, relative to the largest singular value "
                            f"(default: 0.2){LITERATURE}")
    group.add_argument("--csvd-threshold", type=_fraction, default=argparse.SUPPRESS,
                       help="cSVD truncation, relative to the largest singular value "
                            f"(default: 0.1){LITERATURE}")
    group.add_argument("--osvd-oi", type=_positive, default=argparse.SUPPRESS,
                       help=f"oSVD oscillation-index threshold (default: 0.035){LITERATURE}")
    group.add_argument("--tikhonov-criterion", choices=["lcurve", "gcv", "fixed"],
                       default=argparse.SUPPRESS,
                       help=f"choice of the Tikhonov parameter λ (default: gcv){LITERATURE}")
    group.add_argument("--tikhonov-lambda", type=_fraction, default=argparse.SUPPRESS,
                       help="λ relative to the largest singular value, for criterion 'fixed' "
                            f"(default: 0.2){LITERATURE}")
    group.add_argument("--kh", type=_positive, default=constants.KH,
                       help="haematocrit correction kH of CBV and CBF")
    group.add_argument("--rho", type=_positive, default=constants.RHO_BRAIN,
                       help="brain density, g/mL")
    group.add_argument("--no-scaling", action="store_true",
                       help="no kH/rho: CBV in mL/100 mL, CBF in mL/100 mL/min")
    group.add_argument("--blood-relaxivity", choices=["linear", "quadratic"],
                       default="linear", help="ΔR2* of whole blood (Kjolby et al. 2006)")
    group.add_argument("--field-strength", type=field_strength, metavar="T", default=None,
                       help="magnetic field strength in tesla, replacing the DSC sidecars' "
                            "MagneticFieldStrength (required when they lack it); it selects "
                            "the tissue and blood relaxivities (1.5 or 3)")
    group.add_argument("--leakage-correction",
                       choices=["bsw", "bidirectional", "bsw-transit", "none"], default="bsw",
                       help="leakage model of the corrected CBV (desc-<model>_cbv, _k2): bsw, "
                            "Boxerman-Schmainda-Weisskoff 2006 as published (default); "
                            "bidirectional, with interstitial back-flux (Leu 2016); "
                            "bsw-transit, BSW with transit-time terms (tumour of longer MTT)")
    group.add_argument("--no-leakage-correction", action="store_true",
                       help="same as --leakage-correction none")
    group.add_argument("--first-pass", choices=["none", "gamma"], default="none",
                       help="gamma: CBV and CBF from gamma-variate fits of the first pass "
                            "of the tissue curves and the AIF, without recirculation "
                            "(Madsen 1992)")
    group.add_argument("--device", default="auto", type=_device,
                       help="where the torch models (PHAE, stU-Net, super-resolution, "
                            "DeepASL) and the classical deconvolutions run: auto (the GPU "
                            "when torch sees one, else the CPU), cpu (the numpy "
                            "deconvolution), cuda or cuda:N; docs/gpu.md")
    group.add_argument("--phae-weights", type=_existing_path, metavar="FILE",
                       default=argparse.SUPPRESS,
                       help="PHAE weights (.safetensors beside its .json model card; "
                            "default: the bundled ones, trained on the phantom)")
    group.add_argument("--stunet-weights", type=_existing_path, metavar="FILE",
                       default=argparse.SUPPRESS,
                       help="stU-Net weights (.safetensors beside its .json model card; "
                            "default: the bundled ones, trained on the phantom)")
    group.add_argument("--simulate-dose", nargs="+", type=_dose, default=[], metavar="D",
                       help="also process each run at simulated dose fractions D in (0, 1)")
    group.add_argument("--lowdose-model", choices=constants.LOWDOSE_MODELS,
                       default="exponential",
                       help="signal model of --simulate-dose: exponential (default) scales "
                            "ΔR2* by D, S_d = S0 (S̄/S0)^D + (S - S̄), exact for the "
                            "gradient-echo signal; linear is the stU-Net paper's Eq. 1, "
                            "S_d = S - (1 - D)(S̄ - S0), wrong where the signal drops a lot")
    group.add_argument("--lowdose-average", choices=("temporal", "spatial"),
                       default="temporal",
                       help="local average S̄ of --simulate-dose: temporal (default), a "
                            "Savitzky-Golay smoother of order 2 over ~7.5 s; spatial, a "
                            "3x3x3 box (mixes arteries and tissue)")
    group.add_argument("--dsc-superres", choices=constants.SUPERRES_METHODS,
                       default=None,
                       help="also quantify each acquired run after spatio-temporal "
                            "super-resolution: node-liif, the bi-directional neural ODE "
                            "with a local implicit image function (Lee et al., ISMRM "
                            "2024); linear, bilinear in plane and linear in time. The "
                            "series is written (desc-superres_dsc) and its maps carry "
                            "res-nodeliif or res-linear, beside the native ones")
    group.add_argument("--superres-scale", nargs=2, type=float, default=(2.0, 4),
                       action=SuperResScale,
                       metavar=("SPACE", "TIME"),
                       help="in-plane scale (any positive number) and frames per acquired "
                            "frame interval (an integer) of --dsc-superres (default: 2 4, "
                            "the factors the bundled model was trained at)")
    group.add_argument("--superres-weights", type=_existing_path, metavar="FILE",
                       default=argparse.SUPPRESS,
                       help="weights of --dsc-superres node-liif (.safetensors beside its "
                            ".json model card; default: the bundled ones, trained on the "
                            "phantom)")
    group.add_argument("--superres-max-nmse", type=_positive,
                       default=constants.SUPERRES_MAX_NMSE, metavar="E",
                       help="refuse a super-resolved run whose frames at the acquired times, "
                            "brought back to the acquired grid, differ from the acquired "
                            "frames by a normalised squared error above E (default "
                            f"{constants.SUPERRES_MAX_NMSE:g}): weights that do not fit "
                            "the data")

    group = parser.add_argument_group("ASL quantification")
    group.add_argument("--m0-scale", type=_positive, default=1.0,
                       help="multiply M0 by this factor (relative gain of M0 and ASL images)")
    group.add_argument("--labeling-efficiency", type=_fraction,
                       default=argparse.SUPPRESS,
                       help="labelling efficiency, overriding the sidecar and the consensus "
                            "value (0.85 PCASL, 0.98 PASL, times 0.95 per background-"
                            "suppression pulse)")
    group.add_argument("--t1-blood", type=_positive, metavar="S",
                       default=argparse.SUPPRESS,
                       help="T1 of arterial blood, s (default: 1.35 at 1.5 T, 1.65 at 3 T)")
    group.add_argument("--t1-tissue", type=_positive, metavar="S",
                       default=argparse.SUPPRESS,
                       help="T1 of tissue in the multi-delay model (default: voxelwise from "
                            "the GM/WM probsegs given with --derivatives, else the consensus "
                            "single-compartment assumption T1' = T1 of blood)")
    group.add_argument("--m0-t1", type=_positive, metavar="S",
                       default=argparse.SUPPRESS,
                       help="T1 used to correct M0 for incomplete recovery (default: grey "
                            "matter at the field strength)")
    group.add_argument("--no-m0-recovery-correction", action="store_true",
                       help="use M0 as acquired, without T1-recovery correction")
    group.add_argument("--m0-min-fraction", type=_m0_fraction,
                       default=constants.M0_MIN_FRACTION, metavar="F",
                       help="exclude brain voxels whose M0 is below F times the median M0 "
                            "of the brain from CBF and ROI statistics (default: %(default)s; 0 "
                            "keeps every voxel with positive M0)")
    group.add_argument("--m0-smoothing-fwhm", type=_nonnegative,
                       default=constants.M0_SMOOTHING_FWHM, metavar="MM",
                       help="smooth M0 within the brain by a Gaussian of this FWHM in mm "
                            "before the division (default: %(default)s, none; ASLPrep uses 5, "
                            "ExploreASL 8)")
    group.add_argument("--asl-denoise", choices=["deepasl", "dilatedconv"], default=None,
                       help="also denoise the mean ΔM before a second CBF map "
                            "(desc-<model>_deltam, desc-<model>_cbf): deepasl, the residual "
                            "network with the kinetic-model loss of Ulas et al. 2018 (on "
                            "multi-delay runs its multi-delay variant, each delay denoised, "
                            "CBF and ATT fitted again); dilatedconv, the baseline of Kim et "
                            "al. 2018, single-delay runs (default: off)")
    group.add_argument("--asl-denoise-weights", type=_existing_path, metavar="FILE",
                       default=None,
                       help="weights of --asl-denoise (.safetensors beside its .json model "
                            "card, from bids-perfusion-train deepasl|dilatedconv|deepasl-"
                            "multidelay; they serve the runs of their kind, single- or "
                            "multi-delay; default: the bundled ones, trained on the phantom)")
    group.add_argument("--asl-pvc", choices=constants.ASL_PVC_METHODS, default="lr",
                       help="partial-volume correction of CBF for runs with GM and WM "
                            "partial-volume maps (label-GM_probseg, label-WM_probseg in "
                            "--derivatives): lr, the linear regression of Asllani et al. "
                            "2008 (desc-pvGM_cbf, desc-pvWM_cbf, beside the uncorrected "
                            "maps); none (default: %(default)s)")
    group.add_argument("--pvc-kernel", type=_odd_kernel, default=constants.ASL_PVC_KERNEL,
                       metavar="N",
                       help="in-plane side of the N x N x 1 regression kernel of --asl-pvc "
                            "lr, voxels (default: %(default)s)")

    add_spatial_arguments(parser)
    add_group_arguments(parser)
    return parser


def _space(value):
    from bids_perfusion.spatial.spaces import parse_space

    try:
        return parse_space(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).split(": ", 1)[1]) from None


def add_spatial_arguments(parser):
    """``--output-spaces`` and ``--normalisation`` (argparse group 'spaces')."""
    group = parser.add_argument_group("spaces (co-registration to the T1w, template)")
    group.add_argument("--output-spaces", nargs="+", type=_space, default=["run"],
                       metavar="SPACE",
                       help="spaces the maps are written in, fMRIPrep's syntax: run (the "
                            "run's own grid, default), T1w (the subject's anat/ T1w), "
                            "MNI152NLin2009aSym[:res-N] (nilearn's template, 1 mm or N mm)")
    group.add_argument("--normalisation", choices=("full", "fast"), default="full",
                       help="schedule of the T1w-to-template registration: full (the "
                            "template's 2 mm grid, SyN 10, 10, 5 iterations), fast (4 mm "
                            "grid, SyN 10, 5: quick trials)")
    return group


def add_group_arguments(parser):
    """The group-level options of ``bids-perfusion`` (argparse group 'group level')."""
    group = parser.add_argument_group("group level (glioma grading)")
    group.add_argument("--grade-column", default="grade", metavar="COLUMN",
                       help="column of participants.tsv with the class of each subject")
    group.add_argument("--positive-class", default="HGG", metavar="VALUE",
                       help="value of --grade-column called positive (expected higher "
                            "tumour/NAWM ratio)")
    group.add_argument("--grading-roi", default="tumor", metavar="ROI",
                       help="ROI whose ratio to NAWM is graded")
    group.add_argument("--n-bootstrap", type=int, default=2000, metavar="N",
                       help="bootstrap resamples of the AUC and cut-off CIs (0: none)")
    group.add_argument("--bootstrap-seed", type=int, default=0, metavar="SEED",
                       help="seed of the bootstrap (same seed, same intervals)")
    return group


def run_config(args, bids_dir, output_dir, work_dir):
    """The :class:`~bids_perfusion.config.RunConfig` of parsed arguments, with the folders
    resolved by the command line's guards."""
    from bids_perfusion.config import ExecutionOptions, GroupOptions, RunConfig

    labels = {name: tuple(getattr(args, name)) if hasattr(args, name) else None
              for name in ("participant_label", "session_label")}
    execution = ExecutionOptions(
        bids_dir=bids_dir, output_dir=output_dir, analysis_level=args.analysis_level,
        **labels, bids_filter_file=args.bids_filter_file,
        derivatives=tuple(args.derivatives), skip_bids_validation=args.skip_bids_validation,
        work_dir=work_dir, nprocs=args.nprocs, omp_nthreads=args.omp_nthreads, mem=args.mem,
        verbose=args.verbose, output_spaces=tuple(str(s) for s in args.output_spaces),
        normalisation=args.normalisation)
    group = GroupOptions(grade_column=args.grade_column, positive_class=args.positive_class,
                         grading_roi=args.grading_roi, n_bootstrap=args.n_bootstrap,
                         bootstrap_seed=args.bootstrap_seed)
    return RunConfig(execution=execution, dsc=dsc_options(args), asl=asl_options(args),
                     group=group)


def asl_options(args):
    """The :class:`ASLOptions` of parsed arguments."""
    from bids_perfusion.workflows.asl_options import ASLOptions

    overrides = {name: getattr(args, name) for name in
                 ("labeling_efficiency", "t1_blood", "t1_tissue", "m0_t1") if hasattr(args, name)}
    return ASLOptions(m0_scale=args.m0_scale, **overrides,
                      m0_recovery_correction=not args.no_m0_recovery_correction,
                      m0_min_fraction=args.m0_min_fraction,
                      m0_smoothing_fwhm=args.m0_smoothing_fwhm,
                      denoise=args.asl_denoise,
                      denoise_weights=(str(args.asl_denoise_weights)
                                       if args.asl_denoise_weights else None),
                      device=args.device, pvc=args.asl_pvc, pvc_kernel=args.pvc_kernel,
                      motion_correction=not args.no_motion_correction,
                      fd_threshold=args.fd_threshold,
                      exclude_motion_outliers=args.exclude_motion_outliers,
                      write_series=args.write_series)


def dsc_options(args):
    """The :class:`DSCOptions` of parsed arguments."""
    from bids_perfusion.workflows.options import DSCOptions

    parameters = {}
    for option, method, name in METHOD_OPTIONS:
        if hasattr(args, option):
            parameters.setdefault(method, {})[name] = getattr(args, option)
    return DSCOptions(
        methods=args.dsc_methods,
        method_parameters=parameters,
        kh=args.kh, rho=args.rho, scaled=not args.no_scaling,
        blood_relaxivity=args.blood_relaxivity,
        field_strength=args.field_strength,
        leakage_correction="none" if args.no_leakage_correction else args.leakage_correction,
        first_pass=args.first_pass,
        simulate_doses=tuple(sorted(set(args.simulate_dose), reverse=True)),
        lowdose_model=args.lowdose_model,
        lowdose_average=args.lowdose_average,
        device=args.device,
        phae_weights=str(args.phae_weights) if hasattr(args, "phae_weights") else None,
        stunet_weights=str(args.stunet_weights) if hasattr(args, "stunet_weights") else None,
        superres=args.dsc_superres,
        superres_scale=tuple(args.superres_scale),
        superres_weights=(str(args.superres_weights) if hasattr(args, "superres_weights")
                          else None),
        superres_max_nmse=args.superres_max_nmse,
        motion_correction=not args.no_motion_correction,
        fd_threshold=args.fd_threshold,
        write_series=args.write_series,
    )

