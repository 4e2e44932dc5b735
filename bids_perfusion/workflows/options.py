"""What the user asked of the DSC pipeline, and the runs it applies to.

Plain dataclasses, cheap to import: the command line builds them before any heavy import.
"""

from dataclasses import dataclass, field

from bids_perfusion import constants

#: Classical deconvolution methods (one Deconvolve node each).
DECONVOLUTION_METHODS = ("ssvd", "csvd", "osvd", "tikhonov")
#: Quantification methods in the order they are reported: classical deconvolution, the
#: physics-informed autoencoder (CBF, MTT), the stU-Net (CBV from the raw series).
DSC_METHODS = (*DECONVOLUTION_METHODS, "phae", "stunet")


@dataclass(frozen=True)
class DSCOptions:
    """Options of the DSC quantification, recorded in every output sidecar.

    Attributes
    ----------
    methods : tuple of str
        Quantification methods among :data:`DSC_METHODS`.
    method_parameters : dict
        Per method, keyword parameters of its parameter class (``deconvolution.py``);
        omitted ones take the literature defaults.
    kh, rho : float
        Haematocrit correction and brain density of CBV and CBF (``constants.py``).
    scaled : bool
        Apply ``kH/rho``; ``False`` gives mL/100 mL and mL/100 mL/min.
    blood_relaxivity : {"linear", "quadratic"}
    field_strength : float or None
        ``--field-strength``, tesla: replaces the runs' ``MagneticFieldStrength`` (it is
        applied to :class:`DSCRun` metadata when the runs are collected).
    leakage_correction : {"bsw", "bidirectional", "bsw-transit", "none"}
        Leakage model (:mod:`bids_perfusion.dsc.leakage`); ``bsw`` (default) is the
        published Boxerman-Schmainda-Weisskoff model. ``True``/``False`` are read as
        ``"bsw"``/``"none"``.
    first_pass : {"none", "gamma"}
        ``gamma``: area-ratio CBV and deconvolution use gamma-variate fits of the first
        pass of the tissue curves and the AIF (:mod:`bids_perfusion.dsc.first_pass`).
    simulate_doses : tuple of float
        Dose factors in (0, 1) processed as extra runs simulated from each acquired one.
    lowdose_model : {"exponential", "linear"}
        Signal model of the simulation (:mod:`bids_perfusion.dsc.lowdose`): exponential
        scales ΔR2* (exact for the gradient-echo signal); linear is the stU-Net Eq. 1.
    lowdose_average : {"temporal", "spatial"}
        Local average of the simulation: Savitzky–Golay along time or a 3×3×3 box.
    device : str
        Where deep models run: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    phae_weights : str or None
        PHAE weights (with their model card); None: the bundled ones.
    stunet_weights : str or None
        stU-Net weights (with their model card); None: the bundled ones.
    superres : {"node-liif", "linear"} or None
        ``--dsc-superres``: each acquired run is also quantified after spatio-temporal
        super-resolution (:mod:`bids_perfusion.nn.superres_inference`), its maps
        written with a ``res`` entity beside the native ones.
    superres_scale : tuple of (float, int)
        In-plane scale and frames per acquired frame interval of the super-resolution.
    superres_weights : str or None
        Weights of the ``node-liif`` model (with their model card); None: the bundled ones.
    superres_max_nmse : float
        A super-resolved run whose frames at the acquired times do not reproduce the
        acquired frames within this normalised squared error is refused.
    motion_correction : bool
        Realign every frame to the pre-bolus reference before ΔR2*
        (:mod:`bids_perfusion.motion`); ``--no-motion-correction`` turns it off.
    fd_threshold : float
        Framewise displacement (mm) above which a frame is flagged a motion outlier in
        the confounds table (``--fd-threshold``; DSC frames are flagged, not dropped).
    write_series : bool
        Also write the motion-corrected series (``--write-series``).
    """

    methods: tuple = ("osvd",)
    method_parameters: dict = field(default_factory=dict)
    kh: float = constants.KH
    rho: float = constants.RHO_BRAIN
    scaled: bool = True
    blood_relaxivity: str = "linear"
    field_strength: float | None = None
    leakage_correction: str = "bsw"
    first_pass: str = "none"
    simulate_doses: tuple = ()
    lowdose_model: str = "exponential"
    lowdose_average: str = "temporal"
    device: str = "auto"
    phae_weights: str | None = None
    stunet_weights: str | None = None
    superres: str | None = None
    superres_scale: tuple = (2.0, 4)
    superres_weights: str | None = None
    superres_max_nmse: float = constants.SUPERRES_MAX_NMSE
    motion_correction: bool = True
    fd_threshold: float = constants.FD_THRESHOLD
    write_series: bool = False

    def __post_init__(self):
        from bids_perfusion.dsc.leakage import MODELS

        model = self.leakage_correction
        if isinstance(model, bool):  # the former boolean option
            object.__setattr__(self, "leakage_correction", "bsw" if model else "none")
        elif model not in (*MODELS, "none"):
            raise ValueError(f"leakage_correction {model!r}: use one of {(*MODELS, 'none')}")

    @property
    def leakage_label(self):
        """``desc`` label of the leakage-corrected maps (``bswTransit``), None without."""
        from bids_perfusion.dsc.leakage import output_label

        model = self.leakage_correction
        return None if model == "none" else output_label(model)

    @property
    def cbv_units(self):
        """Units of CBV maps: per 100 g of tissue with kH/ρ, per 100 mL without."""
        return "mL/100 g" if self.scaled else "mL/100 mL"

    @property
    def cbf_units(self):
        """Units of CBF maps (:attr:`cbv_units` per minute)."""
        return f"{self.cbv_units}/min"


@dataclass(frozen=True)
class DSCRun:
    """One DSC run: its echo files (ascending TE), validated metadata and optional masks.

    ``masks`` maps 'brain', 'tumor', 'NAWM', 'arteries', 'GM', 'WM' to mask files given
    with ``--derivatives``; missing ones are derived from the series where needed.
    """

    subject: str
    session: str | None
    files: tuple
    metadata: object
    masks: dict = field(default_factory=dict)

    @property
    def name(self):
        """A node-safe identifier: the first echo's file name without echo and suffix."""
        stem = self.files[0].rsplit("/", 1)[-1].split(".nii")[0]
        parts = [p for p in stem.split("_") if not p.startswith("echo-") and p != "dsc"]
        return "_".join(parts).replace("-", "_")
