"""Recipe of the spatio-temporal super-resolution model (:mod:`bids_perfusion.nn.superres`):
self-supervised on the DSC runs themselves, whose low-resolution inputs are made by
under-sampling them (:mod:`bids_perfusion.nn.superres_data`), with the L1 loss."""

import zlib
from dataclasses import dataclass

from bids_perfusion.constants import SUPERRES_DEGRADATIONS, SUPERRES_TEMPORAL
from bids_perfusion.nn.recipes import fit_model, option, register


@dataclass(frozen=True)
class SuperResOptions:
    """Options of the super-resolution model and of its training items."""

    scale_space: int = option(2, "superres: in-plane under-sampling factor of the inputs "
                                 "(abstract: 2)")
    scale_time: int = option(4, "superres: temporal under-sampling factor of the inputs "
                                "(abstract: 4)")
    degradation: str = option("kspace", "superres: in-plane under-sampling: central k-space "
                                        "truncation (as a scanner acquires) or block "
                                        "averaging", choices=SUPERRES_DEGRADATIONS)
    baseline_frames: int = option(3, "superres: low-resolution frames whose mean scales "
                                     "the intensities of a series")
    temporal: str = option("ode", "superres: temporal model: the bi-directional neural ODE, "
                                  "or linear interpolation of the latent features (the "
                                  "ablation of the ODE, VideoINR-style)",
                           choices=SUPERRES_TEMPORAL)
    latent_width: int = option(32, "superres: channels of the latent features")
    encoder_blocks: int = option(4, "superres: residual blocks of the encoder")
    ode_hidden: int = option(32, "superres: hidden channels of the ODE flows")
    ode_method: str = option("rk4", "superres: fixed-step ODE solver",
                             choices=("rk4", "euler"))
    ode_step: float = option(0.25, "superres: ODE step on the normalised flow time [0, 1]")
    mlp_hidden: tuple = option((128, 128, 128, 128), "superres: hidden widths of the "
                               "LIIF decoder's MLP", type=int, nargs="+")
    patch_size: int = option(12, "superres: side of the low-resolution training patches")
    queries_per_item: int = option(256, "superres: high-resolution pixels queried per "
                                        "training patch")
    items_per_run: int = option(64, "superres: training items drawn from each run")


@dataclass(frozen=True)
class SuperResItems:
    """The training items of one run and the intensity scale of its series."""

    subject: str
    items: dict
    scale: float
    n_frames: int


@register
class SuperResRecipe:
    """Spatio-temporal super-resolution (bi-directional neural ODE + LIIF)."""

    name = "superres"
    batch_size = 8
    help = ("spatio-temporal super-resolution of DSC (neural ODE + LIIF), self-supervised "
            "on under-sampled runs")
    options = SuperResOptions
    description = None

    @staticmethod
    def degradation(options):
        """The :class:`~bids_perfusion.nn.superres_data.Degradation` of the options."""
        from bids_perfusion.nn.superres_data import Degradation

        return Degradation(space=options.scale_space, time=options.scale_time,
                           method=options.degradation,
                           baseline_frames=options.baseline_frames)

    @classmethod
    def load(cls, request, run):
        """Items of one run, drawn with a generator seeded by the seed and the run's key."""
        import nibabel as nib
        import numpy as np

        from bids_perfusion.nn.superres_data import make_pair, sample_items

        options = request.options
        series = np.asarray(nib.load(str(run.files[0])).dataobj, dtype=np.float32)
        pair = make_pair(series, cls.degradation(options))
        rng = np.random.default_rng([request.seed, zlib.crc32(run.key.encode())])
        items = sample_items(pair, options.items_per_run, options.patch_size,
                             options.queries_per_item, rng)
        return SuperResItems(run.key, items, pair.scale, series.shape[-1])

    @classmethod
    def fit(cls, request, loaded, split, device, log):
        """Train on the items of the split's subjects with the L1 loss."""
        import dataclasses

        import numpy as np
        import torch

        from bids_perfusion.nn import superres

        options = request.options
        arrays = {}
        for part in ("train", "val", "test"):
            runs = [item.items for item in loaded if item.subject in split[part]]
            arrays[part] = None if not runs else {
                key: torch.from_numpy(np.concatenate([r[key] for r in runs]))
                for key in runs[0]}
        config = superres.SuperResConfig(
            temporal=options.temporal, width=options.latent_width,
            encoder_blocks=options.encoder_blocks,
            ode_hidden=options.ode_hidden, ode_method=options.ode_method,
            ode_step=options.ode_step, mlp_hidden=tuple(options.mlp_hidden))
        model, result, metrics, extra = fit_model(
            lambda: superres.SuperResolution(config), superres.l1_loss, arrays, request,
            device, log, sample_key="frame0",
            loss="mean absolute error of the queried intensities (divided by the "
                 "series' baseline scale)")
        metrics["parameters"] = superres.parameter_count(model)
        degradation = cls.degradation(options)
        return result, {**config.as_dict(), "degradation": dataclasses.asdict(degradation)}, \
            metrics, {
                "n_frames": sorted({item.n_frames for item in loaded}), **extra,
                "data": {"aif": "not used (the model reads the raw series)",
                         "max_voxels_per_subject": None,
                         "low_resolution": (
                             f"{degradation.space} × {degradation.space} in plane "
                             f"({degradation.method}), every {degradation.time}th frame"),
                         "intensity_scale": (
                             "each series divided by the mean of its first "
                             f"{degradation.baseline_frames} low-resolution frames over "
                             "the voxels above 10% of the brightest"),
                         "scales": [[item.subject, item.scale] for item in loaded],
                         "patch_size": options.patch_size,
                         "queries_per_item": options.queries_per_item,
                         "samples_are": "patches of pairs of consecutive low-resolution "
                                        "frames, a time between them and queried "
                                        "high-resolution pixels"}}
