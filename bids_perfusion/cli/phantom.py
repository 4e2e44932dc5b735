"""``bids-perfusion-phantom OUT_DIR [options]``: write a phantom BIDS dataset.

Every option maps to a field of :class:`bids_perfusion.phantom.config.PhantomConfig`;
defaults shown by ``--help`` are read from it, so there is one source for each.
"""

import argparse
import logging
import sys
from pathlib import Path


def _defaults():
    from bids_perfusion.phantom.config import ASLAcquisition, DSCAcquisition, PhantomConfig

    return PhantomConfig(), DSCAcquisition(), ASLAcquisition()


def build_parser():
    from bids_perfusion.phantom.config import PRESETS

    cohort, dsc, asl = _defaults()
    parser = argparse.ArgumentParser(
        prog="bids-perfusion-phantom",
        description="Write a BIDS dataset of simulated DSC-MRI and ASL with gliomas, and its "
                    "ground truth under OUT_DIR/derivatives/phantom-truth.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="folder to create (must be new or empty)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT_DIR if it exists and is not empty")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    parser.add_argument("--preset", choices=tuple(PRESETS),
                        help="start from a named configuration whose values replace the "
                             "defaults below (options given still win). deepasl: the "
                             "synthetic set of DeepASL (Ulas et al. 2018): ASL only, PCASL, "
                             "100 pairs, tau 1.6 s, PLD 2.2 s, GM/WM CBF 65/20, no flow "
                             "scaling or modulation, SNR 200 and 0.5 %% physiological noise. "
                             "deepasl-multidelay: ASL only, PCASL, tau 1.6 s, PLDs 0.5, 1, "
                             "1.5, 2, 2.5 s with 30 pairs each, the same noise")

    group = parser.add_argument_group("cohort")
    group.add_argument("--n-subjects", type=int, default=len(cohort.grades),
                       help="number of subjects")
    group.add_argument("--hgg-fraction", type=float, default=0.5,
                       help="fraction of subjects with a high-grade glioma")
    group.add_argument("--grades", nargs="+", metavar="GRADE",
                       help="grade of each subject (LGG or HGG, or healthy with "
                            "--population); overrides --n-subjects")
    group.add_argument("--seed", type=int, default=cohort.seed, help="random seed")
    group.add_argument("--matrix", type=int, nargs=3, default=cohort.matrix,
                       metavar=("X", "Y", "Z"), help="voxel grid of every series")
    group.add_argument("--fov", type=float, default=cohort.fov_mm,
                       help="in-plane field of view, mm")
    group.add_argument("--slab", type=float, default=cohort.slab_mm,
                       help="coverage through slices, mm")
    group.add_argument("--no-jitter", action="store_true",
                       help="same head position and size for every subject")
    group.add_argument("--flow-scale", type=float, nargs=2, default=cohort.flow_scale,
                       metavar=("LOW", "HIGH"), help="range of the global CBF scaling")
    group.add_argument("--heterogeneity", type=float, default=cohort.heterogeneity,
                       help="SD of the smooth log-normal modulation of CBF and CBV")
    group.add_argument("--no-arteries", action="store_true", help="no arterial voxels")
    group.add_argument("--tissue-cbf", type=float, nargs=2, default=cohort.tissue_cbf,
                       metavar=("GM", "WM"),
                       help="CBF of grey and white matter, mL/100 g/min (default: the "
                            "phantom's tissue values)")
    group.add_argument("--grade-ranges", choices=("separated", "overlapping"),
                       default=cohort.grade_ranges,
                       help="tumour rCBV ranges of the grades: overlapping as measured "
                            "by Law et al. (AJNR 2003;24:1989), LGG 1-3.5 and HGG 2-7, so "
                            "that grading can fail; or separated, the typical and disjoint "
                            "LGG 1-1.7 and HGG 3-7 (the default before phantom v2)")
    group.add_argument("--population", action="store_true",
                       help="draw every subject from a population: anatomy (head and "
                            "ventricle size, a smooth non-linear deformation, 1-2 irregular "
                            "lesions per graded subject, none for grade 'healthy'), DSC "
                            "arterial input (shape, peak, arrival, injection, recirculation, "
                            "dispersion), acquisition (TR, TE, flip angle, frames, field) and "
                            "nuisance (drift, physiological noise); every draw is written to "
                            "the ground truth (docs/phantom.md)")
    group.add_argument("--forward-model", choices=("simple", "realistic"),
                       default=cohort.forward_model,
                       help="DSC signal model: simple, the one the pipeline inverts; "
                            "realistic, complex-signal partial volume of arterial voxels, "
                            "extravascular dephasing and blooming, Tofts leakage through T1 "
                            "and T2*, CBV truth with the vessels' blood (docs/phantom.md)")
    group.add_argument("--motion", type=float, default=cohort.motion, metavar="A",
                       help="rigid head motion during the DSC and ASL series: drift and "
                            "jerks of up to about A mm and A degrees, with the true "
                            "parameters in the ground truth (0: a still head)")

    group = parser.add_argument_group("DSC acquisition")
    group.add_argument("--no-dsc", action="store_true", help="do not simulate DSC")
    group.add_argument("--snr", type=float, default=dsc.snr,
                       help="DSC baseline SNR (mean brain S0 / noise SD); 'inf' for no noise")
    group.add_argument("--tr", type=float, default=dsc.tr, help="DSC repetition time, s")
    group.add_argument("--te", type=float, nargs="+", default=dsc.echo_times,
                       help="echo time(s), s; two or more make a multi-echo series")
    group.add_argument("--flip-angle", type=float, default=dsc.flip_angle, help="degrees")
    group.add_argument("--n-frames", type=int, default=dsc.n_frames, help="number of frames")
    group.add_argument("--baseline-frames", type=int, default=dsc.baseline_frames,
                       help="frames before the bolus reaches the arteries")
    group.add_argument("--doses", type=float, nargs="+", default=dsc.doses,
                       help="dose factors; each is a separate injection with fresh noise")
    group.add_argument("--preload", action="store_true",
                       help="a preload dose was given (reduces T1 leakage effects)")
    group.add_argument("--leakage", choices=("bsw", "t2star", "tofts"),
                       help="how the enhancing rim leaks: bsw, K2 * integral of the normal "
                            "brain's curve (T1 effect, K2 > 0); t2star, the same with K2 < 0 "
                            "(T2*-dominant); tofts, Tofts Ktrans/ve extravasation through "
                            f"the spoiled gradient-echo T1 effect (default: {dsc.leakage}; "
                            "tofts with --forward-model realistic, which needs it)")
    group.add_argument("--residue", choices=("exponential", "gamma"), default=dsc.residue,
                       help="residue function of tissue")
    group.add_argument("--blood-relaxivity", choices=("linear", "quadratic"),
                       default=dsc.blood_relaxivity,
                       help="ΔR2* of arterial blood: linear, or linear + quadratic (Kjølby)")
    group.add_argument("--dsc-field-strength", type=float, choices=(1.5, 3.0),
                       default=dsc.field_strength,
                       help="tesla of the DSC series (sets the relaxivities it is simulated "
                            "with and its MagneticFieldStrength)")
    group.add_argument("--extra-delay", type=float, default=dsc.extra_delay,
                       help="additional bolus delay of every tissue relative to the AIF, s")

    group = parser.add_argument_group("ASL acquisition")
    group.add_argument("--no-asl", action="store_true", help="do not simulate ASL")
    group.add_argument("--asl-type", choices=("PCASL", "PASL"), default=asl.label_type)
    group.add_argument("--plds", type=float, nargs="+", default=asl.plds,
                       help="post-labelling delays (PCASL) or inversion times TI (PASL), s")
    group.add_argument("--n-pairs", type=int, nargs="+", default=asl.n_pairs,
                       help="control/label pairs: one number, or one per delay")
    group.add_argument("--labeling-duration", type=float, default=asl.labeling_duration,
                       help="PCASL labelling duration, s")
    group.add_argument("--bolus-cutoff", type=float, default=asl.bolus_cutoff,
                       help="PASL QUIPSS II bolus cut-off delay TI1, s")
    group.add_argument("--label-first", action="store_true",
                       help="order each pair label, control")
    group.add_argument("--m0-type", choices=("Separate", "Included"), default=asl.m0_type)
    group.add_argument("--m0-tr", type=float, default=asl.m0_tr,
                       help="repetition time of the M0 volumes, s")
    group.add_argument("--background-suppression", action="store_true",
                       help="background suppression pulses (lower static signal and efficiency)")
    group.add_argument("--asl-snr", type=float, default=asl.snr,
                       help="ASL SNR (mean brain M0 / noise SD); 'inf' for no noise")
    group.add_argument("--asl-physiological-noise", type=float,
                       default=asl.physiological_noise,
                       help="SD of physiological noise in control and label volumes, as a "
                            "fraction of their static signal (0: none)")
    group.add_argument("--asl-readout", choices=("3D", "2D"), default=asl.readout,
                       help="2D readouts lengthen the delay slice by slice")
    group.add_argument("--field-strength", type=float, choices=(1.5, 3.0),
                       default=asl.field_strength, help="tesla (sets the T1 of blood)")
    return parser


def config_from_args(args):
    """The :class:`PhantomConfig` described by parsed arguments."""
    from bids_perfusion.phantom.config import ASLAcquisition, DSCAcquisition, PhantomConfig

    dsc = None if args.no_dsc else DSCAcquisition(
        tr=args.tr, echo_times=tuple(args.te), flip_angle=args.flip_angle,
        n_frames=args.n_frames, baseline_frames=args.baseline_frames, snr=args.snr,
        doses=tuple(args.doses), preload=args.preload, residue=args.residue,
        blood_relaxivity=args.blood_relaxivity, field_strength=args.dsc_field_strength,
        extra_delay=args.extra_delay,
        leakage=args.leakage or ("tofts" if args.forward_model == "realistic"
                                 else DSCAcquisition.leakage))
    asl = None if args.no_asl else ASLAcquisition(
        label_type=args.asl_type, plds=tuple(args.plds), n_pairs=tuple(args.n_pairs),
        labeling_duration=args.labeling_duration, bolus_cutoff=args.bolus_cutoff,
        label_first=args.label_first, m0_type=args.m0_type, m0_tr=args.m0_tr,
        background_suppression=args.background_suppression, snr=args.asl_snr,
        physiological_noise=args.asl_physiological_noise,
        readout=args.asl_readout, field_strength=args.field_strength)
    common = dict(seed=args.seed, matrix=tuple(args.matrix), fov_mm=args.fov,
                  slab_mm=args.slab, jitter=not args.no_jitter,
                  flow_scale=tuple(args.flow_scale), heterogeneity=args.heterogeneity,
                  tissue_cbf=tuple(args.tissue_cbf) if args.tissue_cbf else None,
                  arteries=not args.no_arteries, grade_ranges=args.grade_ranges,
                  population=args.population, forward_model=args.forward_model,
                  motion=args.motion, dsc=dsc, asl=asl)
    if args.grades:
        return PhantomConfig(grades=tuple(args.grades), **common)
    return PhantomConfig.cohort(args.n_subjects, args.hgg_fraction, **common)


#: Command-line destinations of the fields of a preset (``asl.`` for its ASL fields).
PRESET_OPTIONS = {"tissue_cbf": "tissue_cbf", "flow_scale": "flow_scale",
                  "heterogeneity": "heterogeneity", "asl.plds": "plds",
                  "asl.labeling_duration": "labeling_duration", "asl.n_pairs": "n_pairs",
                  "asl.snr": "asl_snr", "asl.physiological_noise": "asl_physiological_noise"}


def parse_args(parser, argv=None):
    """Parse ``argv``; with ``--preset``, the preset's values become the defaults."""
    from bids_perfusion.phantom.config import PRESETS

    args = parser.parse_args(argv)
    if args.preset:
        preset = PRESETS[args.preset]
        values = {**{k: v for k, v in preset.items() if k != "asl"},
                  **{f"asl.{k}": v for k, v in preset["asl"].items()}}
        parser.set_defaults(**{PRESET_OPTIONS[k]: v for k, v in values.items()
                               if k in PRESET_OPTIONS},
                            no_dsc=preset.get("dsc", True) is None)
        args = parser.parse_args(argv)
    return args


def main(argv=None):
    parser = build_parser()
    args = parse_args(parser, argv)
    from bids_perfusion.phantom import write_dataset
    from bids_perfusion.phantom.summary import summarise

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        config = config_from_args(args)
        out_dir = write_dataset(args.out_dir, config, overwrite=args.overwrite)
    except ValueError as error:
        parser.error(str(error))
    print(summarise(out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
