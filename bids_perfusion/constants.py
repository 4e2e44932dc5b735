"""Physical constants used by the simulator and the quantification pipelines.

This module is the single home of every physical constant in the package: the phantom
that simulates data and the pipelines that quantify it read the same numbers, so that a
change of convention (say, another haematocrit correction) is made in one place and is
written into every output sidecar.

Units: seconds, millimolar (mM), millilitres, grams, tesla.
"""

# --- DSC: haematocrit and density -------------------------------------------------------
#: Haematocrit correction kH = (1 - Hct_large vessels) / (1 - Hct_small vessels)
#: = (1 - 0.45) / (1 - 0.25), so that CBV = kH / rho * int C_tissue / int C_artery.
#: Rempp et al., Radiology 1994;193:637-641.
KH = 0.733
#: Density of brain tissue in g/mL (Rempp et al. 1994).
RHO_BRAIN = 1.04

# --- DSC: transverse relaxivity of gadolinium (gradient echo), by field strength ---------
#: Per magnetic field strength (tesla): ``tissue`` r_t in ΔR2* = r_t C_tissue (s^-1 mM^-1,
#: C per unit tissue volume); ``blood_linear`` a (s^-1 mM^-1) and ``blood_quadratic`` b
#: (s^-1 mM^-2) in whole blood, ΔR2* = a C + b C².
#:
#: 1.5 T: Kjolby et al., MRM 2006;56:187-197 (tissue 87; blood 7.6 C + 0.574 C²).
#:
#: 3 T: *scaled* from 1.5 T, not measured. ΔR2* is a function of the frequency offset
#: δω = γ Δχ B0 with Δχ proportional to C: in the static-dephasing regime of tissue
#: ΔR2* ∝ δω, so r_t and the linear blood term scale with B0 (Yablonskiy and Haacke,
#: MRM 1994;32:749-763; Kiselev, JMRI 2005;22:693-696; Kjolby et al. 2006); the quadratic
#: blood term is second order in δω (C² B0²) and scales with B0². Hence 3 T values are
#: 2 x 87, 2 x 7.6 and 4 x 0.574. With the linear blood model the ratio a/r_t, and so
#: the absolute CBV and CBF, is the same at both fields; with the quadratic model the AIF
#: and the absolute maps change with the field. Measured values (e.g. Blockley et al.,
#: MRM 2008;60:1313 for blood at 3 T) depend on agent and haematocrit; give your own by
#: editing this table, not the code.
#:
#: Other fields: the nearest tabulated field within :data:`FIELD_TOLERANCE` is used
#: (a Siemens "3 T" of 2.89 T is 3 T); beyond it, a run is refused (DSC) rather than
#: quantified with the constants of another field.
DSC_RELAXIVITY = {
    1.5: {"tissue": 87.0, "blood_linear": 7.6, "blood_quadratic": 0.574},
    3.0: {"tissue": 2.0 * 87.0, "blood_linear": 2.0 * 7.6, "blood_quadratic": 4.0 * 0.574},
}
#: Where the relaxivities of each field come from (written into the DSC sidecars).
DSC_RELAXIVITY_SOURCE = {
    1.5: "Kjolby et al., MRM 2006;56:187 (1.5 T)",
    3.0: "Kjolby et al. 2006 scaled from 1.5 T: linear terms x B0/1.5 T, quadratic blood "
         "term x (B0/1.5 T)^2 (static dephasing; Yablonskiy and Haacke 1994; Kiselev 2005)",
}
#: Largest distance (tesla) from a tabulated field that still counts as that field
#: (scanners report nominal 3 T as 2.89 T or 3.0 T). Used by DSC and ASL.
FIELD_TOLERANCE = 0.25
#: The 1.5 T values, defaults of the functions of :mod:`bids_perfusion.dsc.relaxivity`;
#: the pipeline passes the run's own field values explicitly.
R2STAR_TISSUE = DSC_RELAXIVITY[1.5]["tissue"]
R2STAR_BLOOD_LINEAR = DSC_RELAXIVITY[1.5]["blood_linear"]
R2STAR_BLOOD_QUADRATIC = DSC_RELAXIVITY[1.5]["blood_quadratic"]

# --- ASL: ISMRM perfusion study group consensus (Alsop et al., MRM 2015;73:102-116) -------
#: Brain/blood partition coefficient, mL/g.
BLOOD_BRAIN_PARTITION = 0.9
#: Longitudinal relaxation time of arterial blood, s, by field strength in tesla.
T1_BLOOD = {1.5: 1.35, 3.0: 1.65}
#: Labelling efficiency without background suppression.
LABEL_EFFICIENCY = {"PCASL": 0.85, "CASL": 0.68, "PASL": 0.98}
#: Inversion efficiency of one background-suppression pulse; the labelling efficiency
#: is multiplied by this factor once per pulse. Garcia et al., MRM 2005;54:366-372.
BACKGROUND_SUPPRESSION_PULSE_EFFICIENCY = 0.95

# --- Tissue relaxation at 3 T --------------------------------------------------------------
#: Longitudinal relaxation time of brain tissue, s, at 3 T.
#: Grey and white matter: Wansapura et al., JMRI 1999;9:531-538; CSF: Lin et al.,
#: MRM 2001;45:1040 (about 4.2 s).
T1_TISSUE_3T = {"GM": 1.33, "WM": 0.83, "CSF": 4.16}
#: T1 of grey matter (s) by field strength (T): 1.5 T from Stanisz et al., MRM
#: 2005;54:507; 3 T as above. Used to correct M0 for incomplete recovery.
T1_GREY_MATTER = {1.5: 1.124, 3.0: T1_TISSUE_3T["GM"]}
#: T1 of white matter (s) by field strength (T): 1.5 T from Stanisz et al., MRM
#: 2005;54:507; 3 T as above. With :data:`T1_GREY_MATTER`, the tissue T1 of the voxelwise
#: multi-delay ASL model (:mod:`bids_perfusion.asl.tissue`).
T1_WHITE_MATTER = {1.5: 0.884, 3.0: T1_TISSUE_3T["WM"]}

# --- ASL: M0 safeguards, defaults of the command line (bids_perfusion.asl.m0) -------------
#: Default of ``--m0-min-fraction``: brain voxels whose M0 is below this fraction of the
#: median M0 of the brain are excluded from CBF. Tissue stays well above it: the proton
#: density of white matter is about 0.7 and of grey matter 0.8 (Tofts, *Quantitative MRI
#: of the brain*, 2003, ch. 4), so the M0 of every tissue and of CSF is within a factor of
#: 2 of the brain median, and a voxel below 0.2 of it is mostly outside the brain, a
#: signal void or an artefact. There ΔM / M0 multiplies the noise of ΔM by 5 or more
#: relative to the median voxel. ExploreASL's conventional M0 masking searches its
#: threshold between 20 and 60 % of the maximum M0 (``xASL_im_ProcessM0Conventional``;
#: Mutsaerts et al., NeuroImage 2020;219:117031), above this default.
M0_MIN_FRACTION = 0.2
#: Default of ``--m0-smoothing-fwhm``, mm: no smoothing. The M0 and ΔM images then share
#: the same resolution and partial volumes, so CBF = ΔM / M0 is exact voxel by voxel (a
#: smoothed M0 mixes the high M0 of CSF into the tissue voxels around the ventricles and
#: lowers their CBF). With a noisy M0, 5 mm (ASLPrep's ``--smooth_kernel``) or 8 mm
#: (ExploreASL's conventional processing, after the consensus paper) lowers its noise.
M0_SMOOTHING_FWHM = 0.0

# --- ASL: partial-volume correction (bids_perfusion.asl.partial_volume) -----------------
#: Methods of ``--asl-pvc``: none, or the linear regression of Asllani et al., MRM
#: 2008;60:1362 (named here so that the command line offers them without numpy).
ASL_PVC_METHODS = ("none", "lr")
#: Default of ``--pvc-kernel``: the in-plane side, voxels, of the regression kernel
#: (n x n x 1). A larger kernel gives the regression more voxels (less noise) and smooths
#: the tissue CBF over a larger region (Asllani et al. 2008); 5 x 5 x 1 is ExploreASL's
#: default (Mutsaerts et al., NeuroImage 2020;219:117031).
ASL_PVC_KERNEL = 5

#: Conversion from mL/g/s to mL/100 g/min.
PER_SECOND_TO_PER_100G_MIN = 6000.0

# --- Leakage physics of the DSC phantom (bids_perfusion.phantom.dsc) ----------------------
#: Longitudinal relaxivity r1 of gadolinium chelates in plasma at 37 °C, s^-1 mM^-1, per
#: field (tesla): Gd-DTPA 4.1 at 1.5 T and 3.7 at 3 T (Rohrer et al., Invest Radiol
#: 2005;40:715-724). Used for the T1 effect of extravasated agent, ΔR1 = r1 C_e.
R1_RELAXIVITY = {1.5: 4.1, 3.0: 3.7}
#: Large-vessel haematocrit: plasma concentration C_p = C_a / (1 - Hct) (the 0.45 of kH).
HCT_LARGE_VESSELS = 0.45

# --- Low-dose simulation (bids_perfusion.dsc.lowdose) -----------------------------------
#: Signal models of the low-dose simulation, named here (as in ``dsc.lowdose.MODELS``) so
#: that the command lines offer them without importing a numerical library.
LOWDOSE_MODELS = ("exponential", "linear")

#: Representations of the CBV target of the strip models (stU-Net, Hess et al.):
#: bids_perfusion.nn.cbv_preprocessing.
CBV_TARGETS = ("standardised", "logRelative")

# --- Super-resolution training data (bids_perfusion.nn.superres_data) -------------------
#: In-plane degradations that make the low-resolution inputs, named here so that the
#: training command offers them without importing a numerical library.
SUPERRES_DEGRADATIONS = ("kspace", "block")
#: Temporal models of the super-resolution model (``SuperResConfig.temporal``): the
#: bi-directional neural ODE, or linear interpolation of the latent features (the
#: ablation of the ODE, VideoINR-style).
SUPERRES_TEMPORAL = ("ode", "linear")
#: Methods of ``--dsc-superres``: the neural-ODE + LIIF model, or interpolation (bilinear
#: in plane, linear in time) on the same grid.
SUPERRES_METHODS = ("node-liif", "linear")
#: ``res`` entity label of the maps of a super-resolved run, per method.
SUPERRES_LABELS = {"node-liif": "nodeliif", "linear": "linear"}
#: Largest normalised squared error between the acquired frames and the super-resolved
#: series brought back to them (``nn.superres_inference.acquired_frames_nmse``) before a
#: super-resolved run is refused: 0.02, eight times what bilinear interpolation leaves
#: on the phantom at scale 2 (0.0026), far below an untrained model (about 1).
SUPERRES_MAX_NMSE = 0.02

# --- Head motion ----------------------------------------------------------------------
#: Default of ``--fd-threshold``, mm: volumes whose framewise displacement (Power et al.,
#: NeuroImage 2012;59:2142) exceeds it are motion outliers. 0.5 mm is the threshold Power
#: et al. used to flag volumes, and the default of fMRIPrep's and ASLPrep's
#: ``--fd-spike-threshold``, so that the flags read the same across those tools.
FD_THRESHOLD = 0.5

# --- Devices --------------------------------------------------------------------------
#: ``--device`` values, a regular expression: auto (the GPU when torch sees one, else the
#: CPU), cpu, cuda, or cuda:N with N the index of a visible GPU (``nn.device``).
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"
