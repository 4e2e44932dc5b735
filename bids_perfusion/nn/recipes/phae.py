"""Recipe of the physics-informed autoencoder (:mod:`bids_perfusion.nn.phae`):
self-supervised on the tissue curves of DSC runs (:mod:`bids_perfusion.nn.samples`) and
on synthetic curves drawn across acquisitions (:mod:`bids_perfusion.nn.phae_synthetic`)."""

from dataclasses import dataclass

from bids_perfusion.nn.recipes import fit_model, option, register

#: Parts of the split, in the order that seeds their synthetic subjects.
PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class PHAEOptions:
    """Options of the PHAE model and of its samples."""

    residue: str = option("lorentzian", "PHAE: residue function of the decoder",
                          choices=("lorentzian", "exponential"))
    pool_size: int = option(8, "PHAE: time segments of the average pooling (1: global, "
                               "as the paper)")
    frame_interval: float = option(1.0, "PHAE: frame interval of the encoder's window, s; "
                                        "runs at other intervals are resampled", type=float)
    window: int = option(64, "PHAE: frames of the encoder's window (from 12 s before the "
                             "AIF peak)")
    channels: tuple = option((32, 64, 128, 256), "PHAE: filters of the encoder blocks "
                             "(paper: 32 64 128 256)", type=int, nargs="+", metavar="N")
    synthetic_subjects: int = option(
        0, "PHAE: synthetic subjects (one acquisition and AIF each, drawn across "
           "acquisitions) added to the datasets' runs, split with the same fractions")
    synthetic_voxels: int = option(256, "PHAE: voxels per synthetic subject")
    synthetic_repetition_time: tuple = option(
        (1.0, 2.0), "PHAE: range of the synthetic subjects' TR, s (narrow it to hold an "
                    "acquisition band out of training)", type=float, nargs=2,
        metavar=("LOW", "HIGH"))
    synthetic_frames: tuple = option(
        (50, 120), "PHAE: range of the synthetic subjects' number of frames", type=int,
        nargs=2, metavar=("LOW", "HIGH"))
    truth_weight: float = option(
        0.0, "PHAE: weight of the supervised term on the synthetic curves (their drawn MTT "
             "and delay) beside the reconstruction loss; 0: self-supervised only, as the "
             "paper")


@register
class PHAERecipe:
    """Physics-informed autoencoder (self-supervised on DSC curves)."""

    name = "phae"
    batch_size = 1024
    help = "physics-informed autoencoder for DSC-MRI (self-supervised)"
    options = PHAEOptions
    description = None

    @staticmethod
    def load(request, run):
        """The tissue curves of one run (:func:`bids_perfusion.nn.samples.load_run`)."""
        from bids_perfusion.nn.samples import load_run

        return load_run(run.files, run.metadata.echo_times, run.metadata.repetition_time,
                        run.key, brain_file=run.masks.get("brain"),
                        aif_mask_file=run.masks.get("arteries"),
                        blood_relaxivity=request.blood_relaxivity,
                        field_strength=run.metadata.magnetic_field_strength)

    @staticmethod
    def fit(request, curves, split, device, log):
        """Train on the curves of the split's subjects and on synthetic subjects."""
        import numpy as np
        import torch

        from bids_perfusion.nn import phae
        from bids_perfusion.nn.phae_synthetic import CurveRanges, synthetic_arrays
        from bids_perfusion.nn.samples import training_arrays
        from bids_perfusion.nn.training_ranges import dsc_acquisition, envelope

        options = request.options
        config = phae.PHAEConfig(residue=options.residue, pool_size=options.pool_size,
                                 dt=options.frame_interval, window=options.window,
                                 channels=tuple(options.channels))
        counts = synthetic_counts(options.synthetic_subjects, request.val_fraction,
                                  request.test_fraction)
        ranges = CurveRanges(repetition_time=tuple(options.synthetic_repetition_time),
                             frames=tuple(options.synthetic_frames))
        arrays = {}
        for index, part in enumerate(PARTS):
            sets = []
            runs = [c for c in curves if c.subject in split[part]]
            if runs:
                values = training_arrays(runs, config, request.max_voxels_per_subject,
                                         seed=request.seed)
                unknown = np.full(len(values["tissue"]), np.nan, dtype=np.float32)
                sets.append({"tissue": values["tissue"], "aif": values["aif"],
                             "mtt": unknown, "delay": unknown})
            if counts[part]:
                sets.append(synthetic_arrays(config, counts[part], options.synthetic_voxels,
                                             seed=(request.seed, index), ranges=ranges))
            arrays[part] = None if not sets else {
                key: torch.from_numpy(np.ascontiguousarray(np.concatenate(
                    [s[key] for s in sets]))) for key in ("tissue", "aif", "mtt", "delay")}
        description = "mean absolute error of the tissue curves, each divided by its own peak"
        if options.truth_weight:
            description += (f", plus {options.truth_weight:g} x mean(|ln(MTT/MTT_true)| + "
                            f"|delay - delay_true| / {phae.DELAY_SCALE:g} s) over the "
                            "synthetic curves (times their fraction of the batch)")
        _model, result, metrics, extra = fit_model(
            lambda: phae.PHAE(config),
            lambda model, batch: phae.loss(model, batch, options.truth_weight), arrays,
            request, device, log, sample_key="tissue", loss=description)
        records = [dsc_acquisition(c.aif, c.frame_times, c.info["MagneticFieldStrength"])
                   for c in curves]
        if options.synthetic_subjects:
            records.append(ranges.training_ranges())
        data = {"synthetic_curves": {
            "generator": "bids_perfusion.nn.phae_synthetic.simulate_subject",
            "subjects": counts, "voxels_per_subject": options.synthetic_voxels,
            "ranges": ranges.as_dict()}} if options.synthetic_subjects else {}
        return result, config.as_dict(), metrics, {
            "n_frames": config.window, "data": data, "training_ranges": envelope(records),
            **extra}



def synthetic_counts(total, val_fraction, test_fraction):
    """Synthetic subjects per part, cut as :func:`bids_perfusion.nn.training.
    split_subjects` cuts real subjects (``total`` 0: none anywhere)."""
    from bids_perfusion.nn.training import split_subjects

    if not total:
        return dict.fromkeys(PARTS, 0)
    split = split_subjects([str(i) for i in range(total)], val_fraction, test_fraction)
    return {part: len(split[part]) for part in PARTS}
