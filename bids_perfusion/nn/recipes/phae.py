"""Recipe of the physics-informed autoencoder (:mod:`bids_perfusion.nn.phae`):
self-supervised on the tissue curves of DSC runs (:mod:`bids_perfusion.nn.samples`)."""

from dataclasses import dataclass

from bids_perfusion.nn.recipes import fit_model, option, register


@dataclass(frozen=True)
class PHAEOptions:
    """Options of the PHAE model and of its samples."""

    residue: str = option("lorentzian", "PHAE: residue function of the decoder",
                          choices=("lorentzian", "exponential"))
    pool_size: int = option(1, "PHAE: output length of the average pooling (1: global)")
    frame_interval: float | None = option(
        None, "PHAE: frame interval of the model, s (default: the first run's); runs at "
              "other intervals are resampled", type=float)
    tissue_quantile: float = option(
        0.999, "PHAE: quantile of voxel peaks that scales tissue to [0, 1]")


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
        """Train on the curves of the split's subjects, at one frame interval."""
        import torch

        from bids_perfusion.nn import phae
        from bids_perfusion.nn.samples import training_arrays

        options = request.options
        dt = options.frame_interval or float(curves[0].frame_times[1]
                                             - curves[0].frame_times[0])
        config = phae.PHAEConfig(residue=options.residue, pool_size=options.pool_size,
                                 dt=dt, tissue_quantile=options.tissue_quantile)
        arrays, n_frames = {}, None
        for part in ("train", "val", "test"):
            runs = [c for c in curves if c.subject in split[part]]
            if not runs:
                arrays[part] = None
                continue
            values, n_frames = training_arrays(runs, dt, config.tissue_quantile,
                                               request.max_voxels_per_subject, n_frames,
                                               seed=request.seed)
            values.pop("subject")
            arrays[part] = {k: torch.from_numpy(v) for k, v in values.items()}
        _model, result, metrics, extra = fit_model(
            lambda: phae.PHAE(config), phae.loss, arrays, request, device, log,
            sample_key="tissue", loss="mean absolute error of the normalised tissue curve")
        return result, config.as_dict(), metrics, {"n_frames": n_frames, **extra}
