"""What the user asked of the ASL pipeline, and the runs it applies to.

Plain dataclasses, cheap to import: the command line builds them before any heavy import.
"""

from dataclasses import dataclass, field

from bids_perfusion import constants


@dataclass(frozen=True)
class ASLOptions:
    """Options of the ASL quantification, recorded in every CBF sidecar.

    Attributes
    ----------
    m0_scale : float
        M0 is multiplied by this factor (``--m0-scale``): the relative scale of the M0
        and ASL images, e.g. when the M0 scan was reconstructed with another gain.
    labeling_efficiency : float or None
        Overrides the sidecar's ``LabelingEfficiency`` and the consensus value.
    t1_blood : float or None
        T1 of arterial blood, s; None: the consensus value for the field strength.
    partition : float
        Blood-brain partition coefficient λ, mL/g.
    t1_tissue : float or None
        T1 of tissue for the multi-delay model (T1' = 1/(1/T1 + f/λ)); None: voxelwise
        from the GM/WM partial-volume maps when the run has them
        (:mod:`bids_perfusion.asl.tissue`), else T1' = T1b, the consensus assumption.
    m0_t1 : float or None
        T1 of the M0 T1-recovery correction, s; None: grey matter at the field strength
        (:data:`bids_perfusion.asl.m0.T1_GREY_MATTER`).
    m0_recovery_correction : bool
        Correct M0 for incomplete T1 recovery at its repetition time.
    m0_min_fraction : float
        Brain voxels whose M0 is below this fraction of the median M0 of the brain are
        excluded from CBF and ROI statistics (``--m0-min-fraction``; default and reasons:
        :data:`bids_perfusion.constants.M0_MIN_FRACTION`).
    m0_smoothing_fwhm : float
        FWHM, mm, of the Gaussian smoothing of M0 before the division
        (``--m0-smoothing-fwhm``; :data:`bids_perfusion.constants.M0_SMOOTHING_FWHM`).
    denoise : {"deepasl", "dilatedconv"} or None
        Denoise the mean ΔM of single-delay runs with this model before a second CBF map
        (``--asl-denoise``; :mod:`bids_perfusion.nn.deepasl`); None: no denoising.
    denoise_weights : str or None
        Weights of the denoiser (``--asl-denoise-weights``); None: the bundled ones.
    device : str
        Where the denoiser runs (``--device``): ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    pvc : {"lr", "none"}
        Partial-volume correction of CBF where the run has GM and WM partial-volume maps
        (``--asl-pvc``): ``lr``, the linear regression of Asllani et al. 2008
        (:mod:`bids_perfusion.asl.partial_volume`); ``none``.
    pvc_kernel : int
        In-plane side, voxels, of the regression kernel (``--pvc-kernel``).
    motion_correction : bool
        Realign every control, label and M0 volume to the M0 image before the
        subtraction (:mod:`bids_perfusion.motion`); ``--no-motion-correction`` turns it
        off.
    fd_threshold : float
        Framewise displacement (mm) above which a volume is a motion outlier
        (``--fd-threshold``).
    exclude_motion_outliers : bool
        Leave the pairs that hold a motion outlier out of the mean ΔM
        (``--exclude-motion-outliers``).
    write_series : bool
        Also write the motion-corrected series (``--write-series``).
    """

    m0_scale: float = 1.0
    labeling_efficiency: float | None = None
    t1_blood: float | None = None
    partition: float = constants.BLOOD_BRAIN_PARTITION
    t1_tissue: float | None = None
    m0_t1: float | None = None
    m0_recovery_correction: bool = True
    m0_min_fraction: float = constants.M0_MIN_FRACTION
    m0_smoothing_fwhm: float = constants.M0_SMOOTHING_FWHM
    denoise: str | None = None
    denoise_weights: str | None = None
    device: str = "auto"
    pvc: str = "lr"
    pvc_kernel: int = constants.ASL_PVC_KERNEL
    motion_correction: bool = True
    fd_threshold: float = constants.FD_THRESHOLD
    exclude_motion_outliers: bool = False
    write_series: bool = False


@dataclass(frozen=True)
class ASLRun:
    """One ASL run: its series, validated metadata (which names the M0 file) and masks.

    ``masks`` maps 'brain', 'tumor', 'NAWM', 'GM', 'WM' to mask files given with
    ``--derivatives``; a missing brain mask is derived from M0. ``probsegs`` maps 'GM' and
    'WM' to their partial-volume maps (``label-GM_probseg``, ``label-WM_probseg``), both
    or neither.
    """

    subject: str
    session: str | None
    file: str
    metadata: object
    masks: dict = field(default_factory=dict)
    probsegs: dict = field(default_factory=dict)

    @property
    def files(self):
        """The run's inputs, series first (the interface of :class:`DSCRun`)."""
        m0_file = self.metadata.m0_file
        return (self.file,) + ((m0_file,) if m0_file else ())

    @property
    def name(self):
        """A node-safe identifier: the series' file name without suffix and extension."""
        stem = self.file.rsplit("/", 1)[-1].split(".nii")[0]
        parts = [p for p in stem.split("_") if p != "asl"]
        return "_".join(parts).replace("-", "_")
