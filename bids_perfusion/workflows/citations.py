"""References cited by the workflows' methods text (``[@key]`` in ``__desc__``), and
``logs/CITATION.md``, the methods of every run of a derivatives dataset."""

import re
from pathlib import Path

from bids_perfusion import atomic, records

REFERENCES = {
    "rosen1990": "Rosen BR, Belliveau JW, Vevea JM, Brady TJ. Perfusion imaging with NMR "
                 "contrast agents. Magn Reson Med 1990;14:249-265.",
    "vonken1999": "Vonken EP, van Osch MJ, Bakker CJ, Viergever MA. Measurement of cerebral "
                  "perfusion with dual-echo multi-slice quantitative dynamic susceptibility "
                  "contrast MRI. J Magn Reson Imaging 1999;10:109-117.",
    "kjolby2006": "Kjølby BF, Østergaard L, Kiselev VG. Theoretical model of intravascular "
                  "paramagnetic tracers effect on tissue relaxation. Magn Reson Med "
                  "2006;56:187-197.",
    "yablonskiy1994": "Yablonskiy DA, Haacke EM. Theory of NMR signal behavior in "
                      "magnetically inhomogeneous tissues: the static dephasing regime. Magn "
                      "Reson Med 1994;32:749-763.",
    "kiselev2005": "Kiselev VG. Transverse relaxation effect of MRI contrast agents: a "
                   "crucial issue for quantitative measurements of cerebral perfusion. J Magn "
                   "Reson Imaging 2005;22:693-696.",
    "ostergaard1996": "Østergaard L, Weisskoff RM, Chesler DA, Gyldensted C, Rosen BR. High "
                      "resolution measurement of cerebral blood flow using intravascular "
                      "tracer bolus passages. Part I. Magn Reson Med 1996;36:715-725.",
    "wu2003": "Wu O, Østergaard L, Weisskoff RM, Benner T, Rosen BR, Sorensen AG. Tracer "
              "arrival timing-insensitive technique for estimating flow in MR perfusion-"
              "weighted imaging using singular value decomposition with a block-circulant "
              "deconvolution matrix. Magn Reson Med 2003;50:164-174.",
    "calamante2003": "Calamante F, Gadian DG, Connelly A. Quantification of bolus-tracking "
                     "MRI: improved characterization of the tissue residue function using "
                     "Tikhonov regularization. Magn Reson Med 2003;50:1237-1247.",
    "rempp1994": "Rempp KA, Brix G, Wenz F, Becker CR, Gückel F, Lorenz WJ. Quantification "
                 "of regional cerebral blood flow and volume with dynamic susceptibility "
                 "contrast-enhanced MR imaging. Radiology 1994;193:637-641.",
    "stewart1894": "Stewart GN. Researches on the circulation time in organs and on the "
                   "influences which affect it. J Physiol 1894;15:1-89.",
    "boxerman2006": "Boxerman JL, Schmainda KM, Weisskoff RM. Relative cerebral blood volume "
                    "maps corrected for contrast agent extravasation significantly correlate "
                    "with glioma tumor grade, whereas uncorrected maps do not. AJNR Am J "
                    "Neuroradiol 2006;27:859-867.",
    "leu2016": "Leu K, Boxerman JL, Cloughesy TF, et al. Improved leakage correction for "
               "single-echo dynamic susceptibility contrast perfusion MRI estimates of "
               "relative cerebral blood volume in high-grade gliomas by accounting for "
               "bidirectional contrast agent exchange. AJNR Am J Neuroradiol "
               "2016;37:1440-1446.",
    "bjornerud2011": "Bjørnerud A, Sorensen AG, Mouridsen K, Emblem KE. T1- and T2*-dominant "
                     "extravasation correction in DSC-MRI: part I—theoretical considerations "
                     "and implications for assessment of tumor hemodynamic properties. J Cereb "
                     "Blood Flow Metab 2011;31:2041-2053.",
    "wetzel2002": "Wetzel SG, Cha S, Johnson G, et al. Relative cerebral blood volume "
                  "measurements in intracranial mass lesions: interobserver and "
                  "intraobserver reproducibility study. Radiology 2002;224:797-803.",
    "madsen1992": "Madsen MT. A simplified formulation of the gamma variate function. Phys "
                  "Med Biol 1992;37:1597-1600.",
    "benner1997": "Benner T, Heiland S, Erb G, Forsting M, Sartor K. Accuracy of gamma-"
                  "variate fits to concentration-time curves from dynamic susceptibility-"
                  "contrast enhanced MRI: influence of time resolution, maximal signal drop "
                  "and signal-to-noise. Magn Reson Imaging 1997;15:307-317.",
    "mouridsen2006": "Mouridsen K, Christensen S, Gyldensted L, Østergaard L. Automatic "
                     "selection of arterial input function using cluster analysis. Magn "
                     "Reson Med 2006;55:524-531.",
    "friston1995": "Friston KJ, Ashburner J, Frith CD, Poline JB, Heather JD, Frackowiak RSJ. "
                   "Spatial registration and normalization of images. Hum Brain Mapp "
                   "1995;3:165-189.",
    "power2012": "Power JD, Barnes KA, Snyder AZ, Schlaggar BL, Petersen SE. Spurious but "
                 "systematic correlations in functional connectivity MRI networks arise from "
                 "subject motion. NeuroImage 2012;59:2142-2154.",
    "alsop2015": "Alsop DC, Detre JA, Golay X, et al. Recommended implementation of arterial "
                 "spin-labeled perfusion MRI for clinical applications: a consensus of the "
                 "ISMRM perfusion study group and the European consortium for ASL in "
                 "dementia. Magn Reson Med 2015;73:102-116.",
    "buxton1998": "Buxton RB, Frank LR, Wong EC, Siewert B, Warach S, Edelman RR. A general "
                  "kinetic model for quantitative perfusion imaging with arterial spin "
                  "labeling. Magn Reson Med 1998;40:383-396.",
    "ulas2018": "Ulas C, Tetteh G, Kaczmarz S, Preibisch C, Menze BH. DeepASL: kinetic "
                "model incorporated loss for denoising arterial spin labeled MRI via deep "
                "residual learning. MICCAI 2018, LNCS 11070:30-38.",
    "kim2018": "Kim KH, Choi SH, Park SH. Improving arterial spin labeling by using deep "
               "learning. Radiology 2018;287:658-666.",
    "dai2012": "Dai W, Robson PM, Shankaranarayanan A, Alsop DC. Reduced resolution transit "
               "delay prescan for quantitative continuous arterial spin labeling perfusion "
               "imaging. Magn Reson Med 2012;67:1252-1265.",
    "asllani2008": "Asllani I, Borogovac A, Brown TR. Regression algorithm correcting for "
                   "partial volume effects in arterial spin labeling MRI. Magn Reson Med "
                   "2008;60:1362-1371.",
    "wansapura1999": "Wansapura JP, Holland SK, Dunn RS, Ball WS Jr. NMR relaxation times in "
                     "the human brain at 3.0 tesla. J Magn Reson Imaging 1999;9:531-538.",
    "stanisz2005": "Stanisz GJ, Odrobina EE, Pun J, et al. T1, T2 relaxation and "
                   "magnetization transfer in tissue at 3T. Magn Reson Med 2005;54:507-512.",
    "phae": "Physics-informed autoencoder for DSC-MRI perfusion post-processing: "
            "application to glioma grading. arXiv:2510.13886, 2025.",
    "stunet": "Veron Vialard J, Rohé MM, Robert P, Nicolas F, Bône A. Going beyond "
              "voxel-wise deconvolution in perfusion MRI: learning and leveraging "
              "spatio-temporal regularities with the stU-Net. 2021, hal-03128610.",
    "superres": "Lee, Choi, Park, Hwang, Chung, Choi. Spatio-temporal super-resolution of "
                "DSC-MRI with a bi-directional neural ODE and a local implicit image "
                "function. Proc Intl Soc Mag Reson Med 2024;32:0658.",
    "liif": "Chen Y, Liu S, Wang X. Learning continuous image representation with local "
            "implicit image function. Proc IEEE/CVF CVPR 2021:8628-8638.",
    "chen2018node": "Chen RTQ, Rubanova Y, Bettencourt J, Duvenaud D. Neural ordinary "
                    "differential equations. Adv Neural Inf Process Syst 2018;31.",
    # spatial normalisation and co-registration (workflows/spatial.py)
    "fonov2011": "Fonov V, Evans AC, Botteron K, Almli CR, McKinstry RC, Collins DL. "
                 "Unbiased average age-appropriate atlases for pediatric studies. "
                 "NeuroImage 2011;54:313-327.",
    "garyfallidis2014": "Garyfallidis E, Brett M, Amirbekian B, et al. Dipy, a library for "
                        "the analysis of diffusion MRI data. Front Neuroinform 2014;8:8.",
    "mattes2003": "Mattes D, Haynor DR, Vesselle H, Lewellen TK, Eubank W. PET-CT image "
                  "registration in the chest using free-form deformations. IEEE Trans Med "
                  "Imaging 2003;22:120-128.",
    "avants2008": "Avants BB, Epstein CL, Grossman M, Gee JC. Symmetric diffeomorphic image "
                  "registration with cross-correlation: evaluating automated labeling of "
                  "elderly and neurodegenerative brain. Med Image Anal 2008;12:26-41.",
}


def methods_text(description):
    """The methods text followed by the references it cites, in order of first citation."""
    keys = list(dict.fromkeys(re.findall(r"@(\w+)", description)))
    unknown = [key for key in keys if key not in REFERENCES]
    if unknown:
        raise KeyError(f"methods text cites unknown references {unknown}")
    listing = "\n".join(f"{i}. [{key}] {REFERENCES[key]}" for i, key in
                        enumerate(keys, start=1))
    return f"{description.strip()}\n\n### References\n\n{listing}\n"


def write_citation(output_dir):
    """Write ``output_dir/logs/CITATION.md``: the methods of every run with a completion
    record (:mod:`bids_perfusion.records`), each paragraph once, with their references.

    Paragraphs follow the order of the records (sorted by run name), so a later run with
    other options adds its methods to those of the earlier runs instead of replacing
    them. Returns the path, or None when no run has a record yet.

    Subjects run in parallel processes (docs/hpc.md) each write this file when their runs
    end. It is replaced atomically, and rewritten until the records read before writing
    are those on disk after: whichever process writes last has then seen every record
    written before its check, and a record written after that check is followed by its
    own process's write. No lock is needed (cluster file systems often lack them).
    """
    path = Path(output_dir) / "logs" / "CITATION.md"
    while True:
        seen = records.read_records(output_dir)
        paragraphs = []
        for record in seen.values():
            for paragraph in re.split(r"\n\s*\n", str(record.get("Methods", ""))):
                if paragraph.strip() and paragraph.strip() not in paragraphs:
                    paragraphs.append(paragraph.strip())
        if not paragraphs:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, methods_text("\n\n".join(paragraphs)))
        if records.read_records(output_dir) == seen:
            return path
