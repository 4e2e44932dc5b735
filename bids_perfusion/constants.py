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

# --- DSC: transverse relaxivity of gadolinium (gradient echo, 1.5 T) ---------------------
#: Tissue: Delta R2* = R2STAR_TISSUE * C_tissue, in s^-1 mM^-1, C the contrast agent
#: concentration per unit tissue volume. Kjolby et al., MRM 2006;56:187-197.
R2STAR_TISSUE = 87.0
#: Whole blood, linear term: Delta R2* = a C + b C^2 (Kjolby et al. 2006), s^-1 mM^-1.
R2STAR_BLOOD_LINEAR = 7.6
#: Whole blood, quadratic term (Kjolby et al. 2006), s^-1 mM^-2.
R2STAR_BLOOD_QUADRATIC = 0.574

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

#: Conversion from mL/g/s to mL/100 g/min.
PER_SECOND_TO_PER_100G_MIN = 6000.0
