"""Every parameter of the digital perfusion phantom, its default and its source.

Physical constants shared with the pipelines (kH, rho, relaxivities, λ, T1 of blood) live
in :mod:`bids_perfusion.constants`; this module holds what describes the simulated
subjects and acquisitions. :meth:`PhantomConfig.validate` checks a configuration before
anything is written.
"""

import math
from dataclasses import asdict, dataclass, field, replace

from bids_perfusion import constants
from bids_perfusion.phantom.dsc_population import DSCPopulation

GRADES = ("LGG", "HGG")
#: Grade of a subject without lesion (``population`` only).
HEALTHY = "healthy"
#: Scale of image intensities: a fully relaxed voxel of proton density 1 reads this value.
RECEIVER_GAIN = 1000.0
ASL_TYPES = ("PCASL", "PASL")
M0_TYPES = ("Separate", "Included")
RESIDUES = ("exponential", "gamma")
BLOOD_RELAXIVITIES = ("linear", "quadratic")
READOUTS = ("3D", "2D")
#: Leakage models of the DSC phantom (:class:`DSCAcquisition`.leakage).
LEAKAGE_MODELS = ("bsw", "t2star", "tofts")
#: DSC forward models (:attr:`PhantomConfig.forward_model`; ``phantom/forward.py``).
FORWARD_MODELS = ("simple", "realistic")


@dataclass(frozen=True)
class Tissue:
    """Perfusion and relaxation properties of one tissue class.

    cbf: mL/100 g/min; cbv: mL/100 g; delay: bolus arrival after the measured AIF, s;
    dispersion: time constant of the exponential transport kernel, s; att: ASL arterial
    transit time, s; m0: relative proton density; t1: s at 3 T; r2star: baseline R2*,
    s^-1 at 3 T; k2: Boxerman-Schmainda-Weisskoff leakage coefficient, s^-1.
    """

    cbf: float
    cbv: float
    delay: float
    dispersion: float
    att: float
    m0: float
    t1: float
    r2star: float
    k2: float = 0.0

    @property
    def mtt(self):
        """Mean transit time MTT = CBV / CBF (central volume theorem), s."""
        return 60.0 * self.cbv / self.cbf if self.cbf > 0 else 0.0


#: Normal tissue. Flow and volume: typical adult PET values (Leenders et al., Brain
#: 1990;113:27: GM CBF 50-60, WM 20-25 mL/100 g/min; CBV GM 4-5, WM 2-2.5 mL/100 g).
#: Transit times: GM about 1.2 s, WM about 1.6 s at 3 T with PCASL (Dai et al., MRM
#: 2012;67:1252). T1: Wansapura et al. 1999; T2* of GM/WM about 55/50 ms at 3 T.
#: Delays and dispersions are the phantom's choice: WM fed later and more dispersed.
NORMAL_TISSUES = {
    "GM": Tissue(cbf=60.0, cbv=4.0, delay=0.5, dispersion=0.5, att=1.2, m0=0.80, t1=1.33,
                 r2star=18.0),
    "WM": Tissue(cbf=22.0, cbv=2.0, delay=1.0, dispersion=1.0, att=1.6, m0=0.70, t1=0.83,
                 r2star=20.0),
    "CSF": Tissue(cbf=0.0, cbv=0.0, delay=0.0, dispersion=0.0, att=1.6, m0=1.0, t1=4.16,
                  r2star=4.0),
}


@dataclass(frozen=True)
class GradeModel:
    """How a glioma of one grade is drawn; ranges are sampled uniformly per subject.

    rcbv: enhancing-rim (or solid tumour) CBV relative to normal white matter; literature
    ranges of NAWM-normalised rCBV: about 1-1.7 in low-grade and 3-7 in high-grade glioma
    (Law et al., AJNR 2003;24:1989). rcbf_over_rcbv: rCBF / rCBV, below 1 because tumour
    vessels are tortuous and slow (longer MTT). k2: leakage in the rim, s^-1, positive
    for T1-dominant leakage (Boxerman et al., AJNR 2006;27:859); its range is the
    phantom's choice and lowers uncorrected rim CBV by roughly 10-40 %.
    necrosis: radius of the necrotic core as a fraction of the tumour radius;
    oedema: outer radius of the oedema as a multiple of it.
    """

    radius_mm: tuple = (10.0, 20.0)
    rcbv: tuple = (1.0, 1.7)
    rcbf_over_rcbv: tuple = (0.8, 1.0)
    k2: tuple = (0.0, 0.001)
    necrosis: float = 0.0
    oedema: float = 1.3


_HGG = GradeModel(radius_mm=(12.0, 22.0), rcbv=(3.0, 7.0), rcbf_over_rcbv=(0.7, 0.95),
                 k2=(0.004, 0.015), necrosis=0.45, oedema=1.6)

#: Grade models by name. ``overlapping`` (the default of :class:`PhantomConfig`): ranges
#: spanning the spread Law et al. (AJNR 2003;24:1989) measured, rCBV 2.14 ± 1.67 in
#: low-grade and 5.18 ± 3.60 in high-grade glioma (their best cut-off, 1.75, gave 95 %
#: sensitivity and 57.5 % specificity): LGG 1.0-3.5 and HGG 2.0-7.0, so that a grading
#: AUC can fall below 1 and measures the method. ``separated``: the typical ranges
#: above, which never overlap, so that any method grades a cohort perfectly (the default
#: before phantom v2, kept for the data of the tables measured then).
GRADE_MODELS = {
    "separated": {"LGG": GradeModel(), "HGG": _HGG},
    "overlapping": {"LGG": GradeModel(rcbv=(1.0, 3.5)), "HGG": replace(_HGG, rcbv=(2.0, 7.0))},
}

#: Tumour compartments other than the enhancing rim, relative to normal white matter.
#: Necrosis: almost avascular; oedema: vasogenic, mildly reduced perfusion (the
#: phantom's choice, consistent with peritumoural rCBV below 1 in metastases and
#: gliomas; Law et al. 2003). Relaxation: more free water than white matter.
NECROSIS = Tissue(cbf=3.0, cbv=0.4, delay=1.5, dispersion=1.5, att=1.8, m0=0.95, t1=2.5,
                  r2star=8.0)
OEDEMA_SCALE = 0.8
OEDEMA = Tissue(cbf=OEDEMA_SCALE * 22.0, cbv=OEDEMA_SCALE * 2.0, delay=1.2, dispersion=1.5,
                att=1.7, m0=0.90, t1=1.8, r2star=12.0)
#: Relaxation of solid tumour tissue (enhancing rim).
TUMOUR_RELAXATION = {"m0": 0.85, "t1": 1.6, "r2star": 14.0, "delay": 0.5, "dispersion": 0.7,
                     "att": 1.1}

#: Tissue T1 at 1.5 T as a fraction of the 3 T ``t1`` of the compartments above, used for
#: the DSC series of a population subject drawn at 1.5 T (``phantom.subject.at_field``).
#: GM and WM: the ratio of the T1 that Wright et al. (MAGMA 2008;21:121) measured with one
#: method (MPRAGE) in the same subjects at both fields, GM 1197 / 1607 ms and WM
#: 646 / 838 ms (Stanisz et al., MRM 2005;54:507, with inversion recovery: GM 1124 / 1820,
#: WM 884 / 1084 ms); a ratio rather than their absolute values, which differ between
#: methods (Wansapura et al.'s 3 T values are kept). CSF: free water, taken field
#: independent (the assumption of Wang et al., NeuroImage 2020;213:116700). Tumour (the
#: phantom's choice): solid tumour as GM (cellular), oedema as WM (the tissue it
#: infiltrates), necrosis as CSF (mostly free water). Blood: ``constants.T1_BLOOD``.
T1_RATIO_1P5T = {"GM": 1197.0 / 1607.0, "WM": 646.0 / 838.0, "CSF": 1.0,
                 "enhancing": 1197.0 / 1607.0, "necrosis": 1.0, "oedema": 646.0 / 838.0}


@dataclass(frozen=True)
class DSCAcquisition:
    """Gradient-echo EPI DSC series.

    Defaults are those of a standard clinical protocol (Boxerman et al., AJNR
    2020;41:1 consensus: TR 1-1.5 s, TE 25-35 ms at 3 T, flip angle 60 degrees,
    at least 30-50 baseline-free frames and 120 s; the phantom's default is shorter for
    speed). The AIF is a gamma variate (alpha 3, beta 1.5 s) arriving after
    ``baseline_frames`` frames, with a dispersed second pass (recirculation).
    """

    tr: float = 1.5
    echo_times: tuple = (0.03,)
    flip_angle: float = 60.0
    n_frames: int = 60
    baseline_frames: int = 12
    snr: float = 50.0
    doses: tuple = (1.0,)
    preload: bool = False
    residue: str = "exponential"
    residue_shape: float = 2.0
    blood_relaxivity: str = "linear"
    #: Tesla, written into the DSC sidecars; the phantom simulates ΔR2* with the
    #: relaxivities of this field (``constants.DSC_RELAXIVITY``), the same the pipeline
    #: reads back. 1.5 T keeps the signals of the published tables (the DSC phantom
    #: has always used the 1.5 T constants).
    field_strength: float = 1.5
    extra_delay: float = 0.0
    aif_peak_mM: float = 6.0
    aif_alpha: float = 3.0
    aif_beta: float = 1.5
    recirculation_fraction: float = 0.25
    recirculation_delay: float = 8.0
    recirculation_dispersion: float = 3.0
    #: Fraction of the T1 leakage effect left when a preload dose saturates it
    #: (Boxerman et al., AJNR 2012;33:1081; phantom's choice of magnitude).
    preload_leakage_factor: float = 0.3
    time_oversampling: int = 10
    #: How the enhancing rim leaks (:data:`LEAKAGE_MODELS`). ``bsw``: ΔR2* − K2 ∫ref with
    #: K2 > 0, an echo-independent T1 effect (the form of Boxerman et al., AJNR
    #: 2006;27:859; the default, and the data of the published tables). ``t2star``: the
    #: same form with K2 < 0 (K2 = −k2 of the grade model), a true ΔR2* (susceptibility)
    #: effect of extravasated agent that no dual-echo acquisition removes.
    #: ``tofts``: extravascular concentration of the Tofts model,
    #: ``C_e(t) = Ktrans ∫ C_p(τ) e^(−Ktrans/ve (t−τ)) dτ`` with ``C_p = C_a / (1 − Hct)``
    #: (Tofts et al., JMRI 1999;10:223), whose T1 shortening ``R1 = 1/T10 + r1 C_e``
    #: raises the spoiled gradient-echo signal by ``SPGR(R1(t)) / SPGR(1/T10)`` (Ernst
    #: equation at the series' TR and flip angle; r1 from ``constants.R1_RELAXIVITY``).
    leakage: str = "bsw"
    #: Tofts Ktrans of the rim, min^-1, per unit of the grade model's k2 (s^-1): the HGG
    #: k2 range 0.004-0.015 s^-1 becomes Ktrans 0.05-0.2 min^-1, the range measured in
    #: glioma (about 0.1 min^-1, Skinner et al., AJNR 2016;37:80). Proportional to k2 so
    #: that no extra random draw changes the other maps (phantom's choice).
    tofts_ktrans_per_k2: float = 13.3
    #: Tofts ve of the rim (Skinner et al. 2016 measured about 0.29 in enhancing glioma).
    tofts_ve: float = 0.3
    #: Arrival of the bolus at the artery (start of the gamma variate), s after the first
    #: frame; None: ``baseline_frames * tr``. When set, ``baseline_frames`` must be
    #: ⌊aif_arrival / tr⌋ (the population draws both; :mod:`.dsc_population`).
    aif_arrival: float | None = None
    #: Injection duration, s: the AIF is convolved with a unit-area box of this length
    #: (0: an instantaneous injection, the gamma variate as it is).
    injection_duration: float = 0.0
    #: Time constant, s, of an exponential transport kernel common to every tissue, on
    #: top of each tissue's own dispersion (Calamante et al., MRM 2000;44:466).
    extra_dispersion: float = 0.0
    #: Multiplicative signal drift ``1 + c1 τ + c2 τ²`` over the series, τ in [0, 1]
    #: (:mod:`.nuisance`; Smith et al., NeuroImage 1999;9:526); 0: none.
    drift_linear: float = 0.0
    drift_quadratic: float = 0.0
    #: Physiological noise: standard deviation as a fraction of the signal (Krüger and
    #: Glover, MRM 2001;46:631), AR(1) in time with lag-1 autocorrelation
    #: ``physiological_noise_ar``; 0 (the default) adds none.
    physiological_noise: float = 0.0
    physiological_noise_ar: float = 0.0
    #: Excitations before the first saved frame (the scanner's dummy scans, BIDS
    #: ``NumberOfVolumesDiscardedByScanner``): the approach to the spoiled gradient-echo
    #: steady state starts that many TRs before the first frame. 0: none.
    dummy_scans: int = 0


@dataclass(frozen=True)
class ASLAcquisition:
    """ASL series following the consensus recommendations (Alsop et al. 2015).

    PCASL: labelling duration 1.8 s, PLD 1.8 s. PASL (QUIPSS II): TI 1.8 s
    (``plds``), bolus cut-off TI1 0.8 s. ``plds`` with several values makes a multi-delay
    acquisition; ``n_pairs`` gives the control/label pairs for every delay (one value) or
    for each delay (one value per delay). ``m0_tr`` is the
    repetition time of the M0 volumes (long by default: fully relaxed M0).
    """

    label_type: str = "PCASL"
    plds: tuple = (1.8,)
    labeling_duration: float = 1.8
    bolus_cutoff: float = 0.8
    n_pairs: tuple = (8,)
    label_first: bool = False
    m0_type: str = "Separate"
    n_m0: int = 2
    m0_tr: float = 10.0
    tr: float = 4.5
    echo_time: float = 0.012
    background_suppression: bool = False
    background_suppression_pulses: int = 2
    #: Static tissue left by background suppression, as a fraction of the control signal.
    background_suppression_residual: float = 0.1
    snr: float = 100.0
    #: Physiological noise: Gaussian noise of standard deviation this fraction of the
    #: static signal of each control and label volume, drawn per voxel and volume (the
    #: model sigma_phys = c S of Krüger and Glover, MRM 2001;46:631), so that the noise
    #: of ΔM varies from voxel to voxel as in vivo. 0 (the default) adds none.
    physiological_noise: float = 0.0
    readout: str = "3D"
    slice_duration: float = 0.04
    t1_tissue_decay: bool = False
    field_strength: float = 3.0


@dataclass(frozen=True)
class PhantomConfig:
    """A cohort of phantom subjects and how they are acquired.

    ``grades`` lists one grade per subject; ``matrix`` is the voxel grid of every series
    (x, y, slices) over a field of view of ``fov_mm`` in plane and ``slab_mm`` through
    slices, centred on the brain. ``jitter`` adds a small random rigid motion and scaling
    per subject; ``flow_scale`` bounds a global CBF scaling per subject (CBV follows
    Grubb's law, CBV ∝ CBF^0.38; Grubb et al., Stroke 1974;5:630). ``heterogeneity`` is
    the standard deviation of a smooth log-normal field that modulates CBF and CBV
    voxel by voxel (MTT unchanged). ``grade_ranges`` names the tumour ranges of
    :data:`GRADE_MODELS`: ``overlapping`` (the default; Law et al., AJNR 2003;24:1989) or
    ``separated`` (the default before phantom v2). With ``population``, each
    subject's DSC arterial input, acquisition and nuisance are drawn from the ranges of
    ``dsc_population`` (:class:`~bids_perfusion.phantom.dsc_population.DSCPopulation`).
    """

    grades: tuple = ("HGG", "LGG", "HGG", "LGG")
    seed: int = 0
    matrix: tuple = (64, 64, 16)
    fov_mm: float = 220.0
    slab_mm: float = 128.0
    jitter: bool = True
    flow_scale: tuple = (0.85, 1.15)
    heterogeneity: float = 0.1
    heterogeneity_fwhm_mm: float = 12.0
    #: (GM, WM) CBF, mL/100 g/min, replacing those of :data:`NORMAL_TISSUES` (None: keep
    #: them); CBV and the tumours are unchanged.
    tissue_cbf: tuple | None = None
    arteries: bool = True
    grade_ranges: str = "overlapping"
    #: DSC forward model (``phantom/forward.py``). ``simple``: the signal the pipeline
    #: inverts (linear ΔR2* mixing, its relaxivities, the leakage of ``dsc.leakage``; the
    #: data of the published tables). ``realistic``: complex-signal partial volume of
    #: arterial voxels, extravascular dephasing and blooming, Tofts leakage through T1
    #: and T2* (needs ``dsc.leakage = "tofts"``), CBV truth with the vessels' blood.
    forward_model: str = "simple"
    #: Population (``--population``): per-subject anatomy
    #: (:mod:`bids_perfusion.phantom.anatomy_population`: head and ventricle size, a smooth
    #: non-linear deformation, 0-2 irregular lesions) and DSC arterial input, acquisition
    #: and nuisance (``dsc_population``); False keeps every subject the jittered template
    #: with one ellipsoidal glioma, acquired with ``dsc``.
    population: bool = False
    #: Amplitude of rigid head motion during the DSC and ASL series, mm and degrees
    #: (:mod:`bids_perfusion.phantom.motion`); 0: a still head.
    motion: float = 0.0
    dsc: DSCAcquisition | None = field(default_factory=DSCAcquisition)
    asl: ASLAcquisition | None = field(default_factory=ASLAcquisition)
    #: Ranges of the per-subject DSC draws (AIF, acquisition, nuisance) when
    #: ``population`` is on; they replace the fields of ``dsc`` subject by subject.
    dsc_population: DSCPopulation = field(default_factory=DSCPopulation)

    @classmethod
    def cohort(cls, n_subjects, hgg_fraction=0.5, **kwargs):
        """A cohort of ``n_subjects`` alternating so that ``hgg_fraction`` of them are HGG."""
        if n_subjects < 1:
            raise ValueError(f"n_subjects must be at least 1 (got {n_subjects})")
        if not 0.0 <= hgg_fraction <= 1.0:
            raise ValueError(f"hgg_fraction must be within [0, 1] (got {hgg_fraction})")
        n_hgg = round(n_subjects * hgg_fraction)
        # Spread the HGG subjects evenly through the list (Bresenham-like).
        grades = tuple(
            "HGG" if math.floor((i + 1) * n_hgg / n_subjects) > math.floor(i * n_hgg / n_subjects)
            else "LGG"
            for i in range(n_subjects)
        )
        return cls(grades=grades, **kwargs)

    @classmethod
    def preset(cls, name, **kwargs):
        """A configuration of :data:`PRESETS` (``asl=`` takes a dict of further changes)."""
        values = dict(PRESETS[name])
        asl = {**values.pop("asl"), **kwargs.pop("asl", {})}
        return cls(**{**values, **kwargs}).with_(asl=asl)

    def with_(self, **changes):
        """A copy with some fields changed (``dsc=`` / ``asl=`` / ``dsc_population=`` take
        dicts of changes)."""
        for name in ("dsc", "asl", "dsc_population"):
            if isinstance(changes.get(name), dict):
                changes[name] = replace(getattr(self, name), **changes[name])
        return replace(self, **changes)

    def as_dict(self):
        """Every parameter, for the ground-truth JSON (the DSC population's ranges only
        when ``population`` draws from them)."""
        values = asdict(self)
        if not (self.population and self.dsc is not None):
            del values["dsc_population"]
        return values

    def validate(self):
        """Raise ValueError, naming the option and the fix, for any impossible setting."""
        _check(len(self.grades) >= 1, "grades", "give at least one subject")
        for grade in self.grades:
            _check(grade in GRADES or (grade == HEALTHY and self.population), "grades",
                   f"unknown grade {grade!r}; use one of {GRADES}, or {HEALTHY!r} (no "
                   "lesion) with the population anatomy")
        _check(self.grade_ranges in GRADE_MODELS, "grade_ranges",
               f"use one of {tuple(GRADE_MODELS)}")
        _check(self.forward_model in FORWARD_MODELS, "forward_model",
               f"use one of {FORWARD_MODELS}")
        _check(self.forward_model == "simple" or self.dsc is None
               or self.dsc.leakage == "tofts", "forward_model",
               "the realistic forward model leaks by the Tofts model through T1 and T2*: "
               "set dsc.leakage to 'tofts' (--leakage tofts)")
        _check(isinstance(self.population, bool), "population", "give True or False")
        _check(len(self.matrix) == 3 and min(self.matrix) >= 4, "matrix",
               "give three sizes (x y slices), each at least 4")
        _check(self.fov_mm > 0 and self.slab_mm > 0, "fov_mm/slab_mm", "must be positive")
        _check(len(self.flow_scale) == 2 and 0 < self.flow_scale[0] <= self.flow_scale[1],
               "flow_scale", "give a positive range (low <= high)")
        _check(self.heterogeneity >= 0, "heterogeneity", "must be >= 0")
        _check(self.tissue_cbf is None or (len(self.tissue_cbf) == 2
                                           and min(self.tissue_cbf) > 0),
               "tissue_cbf", "give two positive values, GM and WM CBF (mL/100 g/min)")
        _check(0 <= self.motion <= 10, "motion",
               "give an amplitude in [0, 10] (mm and degrees; 0: no motion)")
        _check(self.dsc is not None or self.asl is not None, "dsc/asl",
               "simulate at least one modality")
        if self.dsc is not None:
            _validate_dsc(self.dsc)
        if self.population and self.dsc is not None:
            for name, fix in self.dsc_population.problems():
                _check(False, f"dsc_population.{name}", fix)
        if self.asl is not None:
            _validate_asl(self.asl)


def _check(condition, option, fix):
    if not condition:
        raise ValueError(f"Invalid phantom option '{option}': {fix}.")


def _validate_dsc(dsc):
    _check(dsc.tr > 0, "dsc.tr", f"repetition time must be positive seconds (got {dsc.tr})")
    _check(len(dsc.echo_times) >= 1, "dsc.echo_times", "give at least one echo time")
    for te in dsc.echo_times:
        _check(0 < te < 0.2, "dsc.echo_times",
               f"echo time {te} is not in seconds (expected 0 < TE < 0.2 s, e.g. 0.03)")
    _check(list(dsc.echo_times) == sorted(set(dsc.echo_times)), "dsc.echo_times",
           "echo times must be distinct and increasing")
    _check(dsc.snr > 0, "dsc.snr", f"SNR must be positive, or inf for no noise (got {dsc.snr})")
    _check(dsc.n_frames >= 10, "dsc.n_frames", "simulate at least 10 frames")
    _check(2 <= dsc.baseline_frames < dsc.n_frames - 5, "dsc.baseline_frames",
           "need at least 2 baseline frames and at least 5 frames after them")
    _check(all(0 < d <= 1 for d in dsc.doses), "dsc.doses", "dose factors must be in (0, 1]")
    _check(len(set(dsc.doses)) == len(dsc.doses), "dsc.doses", "dose factors must be distinct")
    _check(dsc.residue in RESIDUES, "dsc.residue", f"use one of {RESIDUES}")
    _check(dsc.leakage in LEAKAGE_MODELS, "dsc.leakage", f"use one of {LEAKAGE_MODELS}")
    _check(dsc.tofts_ktrans_per_k2 >= 0 and 0 < dsc.tofts_ve <= 1, "dsc.tofts_ve",
           "tofts_ktrans_per_k2 must be >= 0 and tofts_ve in (0, 1]")
    _check(dsc.blood_relaxivity in BLOOD_RELAXIVITIES, "dsc.blood_relaxivity",
           f"use one of {BLOOD_RELAXIVITIES}")
    _check(dsc.field_strength in constants.DSC_RELAXIVITY, "dsc.field_strength",
           f"use one of {sorted(constants.DSC_RELAXIVITY)} (tesla)")
    _check(dsc.extra_delay >= 0, "dsc.extra_delay", "must be >= 0 s")
    _check(0 < dsc.flip_angle <= 90, "dsc.flip_angle", "must be in (0, 90] degrees")
    _check(dsc.time_oversampling >= 1, "dsc.time_oversampling", "must be >= 1")
    _check(dsc.aif_arrival is None or (dsc.aif_arrival >= 0 and int(dsc.aif_arrival // dsc.tr)
                                       == dsc.baseline_frames),
           "dsc.aif_arrival", "must be >= 0 s, with baseline_frames = floor(aif_arrival / tr)")
    _check(min(dsc.injection_duration, dsc.extra_dispersion) >= 0,
           "dsc.injection_duration/dsc.extra_dispersion", "must be >= 0 s")
    _check(max(abs(dsc.drift_linear), abs(dsc.drift_quadratic)) < 0.5,
           "dsc.drift_linear/dsc.drift_quadratic", "drift fractions must be below 0.5 in size")
    _check(0 <= dsc.physiological_noise < 0.2 and 0 <= dsc.physiological_noise_ar < 1,
           "dsc.physiological_noise", "a fraction of the signal in [0, 0.2), with an AR(1) "
           "coefficient physiological_noise_ar in [0, 1)")
    _check(dsc.dummy_scans >= 0, "dsc.dummy_scans", "must be >= 0")


def _validate_asl(asl):
    _check(asl.label_type in ASL_TYPES, "asl.label_type", f"use one of {ASL_TYPES}")
    _check(len(asl.plds) >= 1 and all(p > 0 for p in asl.plds), "asl.plds",
           "give one or more positive post-labelling delays (s)")
    _check(len(asl.n_pairs) in (1, len(asl.plds)), "asl.n_pairs",
           f"give one number of pairs, or one per delay ({len(asl.plds)} delays were given "
           f"but {len(asl.n_pairs)} pair counts)")
    _check(all(n >= 1 for n in asl.n_pairs), "asl.n_pairs",
           "need at least one control/label pair per delay")
    _check(asl.m0_type in M0_TYPES, "asl.m0_type", f"use one of {M0_TYPES}")
    _check(asl.n_m0 >= 1, "asl.n_m0", "need at least one M0 volume")
    _check(asl.snr > 0, "asl.snr", f"SNR must be positive, or inf for no noise (got {asl.snr})")
    _check(asl.physiological_noise >= 0, "asl.physiological_noise",
           "must be >= 0 (a fraction of the static signal)")
    _check(asl.readout in READOUTS, "asl.readout", f"use one of {READOUTS}")
    _check(asl.tr > 0 and asl.m0_tr > 0, "asl.tr/asl.m0_tr", "repetition times must be > 0")
    _check(asl.field_strength in (1.5, 3.0), "asl.field_strength", "use 1.5 or 3 (tesla)")
    if asl.label_type == "PCASL":
        _check(asl.labeling_duration > 0, "asl.labeling_duration", "must be > 0 s for PCASL")
    else:
        _check(0 < asl.bolus_cutoff < min(asl.plds), "asl.bolus_cutoff",
               "TI1 must be positive and shorter than every TI")


#: Named configurations. ``deepasl``: the synthetic set of DeepASL (Ulas et al., MICCAI
#: 2018, §3): PCASL with 100 control/label pairs, τ 1.6 s, PLD 2.2 s, ground-truth CBF
#: 65 mL/100 g/min in GM and 20 in WM (no global scaling, no smooth modulation), and
#: noise that varies from voxel to voxel (thermal at SNR 200 plus physiological noise of
#: 0.5 % of the static signal; the paper's per-voxel standard deviations came from 30
#: real repetitions, which the phantom does not have). ASL only.
#: ``deepasl-multidelay``: the multi-delay set of the multi-delay DeepASL
#: (:mod:`bids_perfusion.nn.deepasl_multidelay`): PCASL, τ 1.6 s, five PLDs 0.5-2.5 s
#: (white-matter ATT, 1.6 s, lies within them) with 30 pairs each, the same noise; the
#: phantom's usual tissue CBF, ATT, global scaling and heterogeneity. ASL only.
PRESETS = {
    "deepasl": {
        "tissue_cbf": (65.0, 20.0), "flow_scale": (1.0, 1.0), "heterogeneity": 0.0,
        "dsc": None,
        "asl": {"plds": (2.2,), "labeling_duration": 1.6, "n_pairs": (100,), "snr": 200.0,
                "physiological_noise": 0.005},
    },
    "deepasl-multidelay": {
        "dsc": None,
        "asl": {"plds": (0.5, 1.0, 1.5, 2.0, 2.5), "labeling_duration": 1.6,
                "n_pairs": (30,), "snr": 200.0, "physiological_noise": 0.005},
    },
}
