"""Population anatomy (``PhantomConfig.population``): each subject a different brain.

Drawn per subject, in this order, from :data:`RANGES`:

- head size: the similarity transform of :func:`bids_perfusion.phantom.anatomy.random_rigid`
  with an isotropic scale of U(±``head_scale``) (8 %: intracranial volume −22 % to +26 %,
  about ±2 SD of the adult spread, whose coefficient of variation is about 10 %;
  Buckner et al., NeuroImage 2004;23:724);
- a smooth non-linear deformation (:mod:`bids_perfusion.phantom.deformation`): RMS
  displacement U(``deformation_rms_mm``), smoothness FWHM U(``deformation_fwhm_mm``), below
  the 5-10 mm by which cortical landmarks of different subjects still disagree after
  affine registration (Hellier et al., IEEE Trans Med Imaging 2003;22:1120);
- the volume of the ventricles relative to the template's, U(``ventricle_volume``), reached
  by the flow of :mod:`bids_perfusion.phantom.ventricles`:
  ventricular volume grows about two- to three-fold from young adulthood to old age
  (Walhovd et al., Neurobiol Aging 2005;26:1261; Scahill et al., Arch Neurol
  2003;60:989), and the MNI152 2009 template averages young adults (Fonov et al.,
  NeuroImage 2011;54:313), hence 0.7-2.5;
- the lesions (:mod:`bids_perfusion.phantom.irregular_lesion`), see :func:`draw_lesions`.
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from bids_perfusion.phantom import anatomy, deformation, irregular_lesion, lesion, ventricles
from bids_perfusion.phantom.config import HEALTHY


@dataclass(frozen=True)
class LesionRanges:
    """Ranges of the lesions of one grade, drawn uniformly per lesion: ``count`` (integers,
    inclusive), ``necrosis`` (core radius / surface), ``oedema`` (outer radius / surface),
    ``roughness`` (RMS of the relative radius perturbation δ)."""

    count: tuple
    necrosis: tuple = (0.0, 0.0)
    oedema: tuple = (1.05, 1.4)
    roughness: tuple = (0.1, 0.3)


#: Lesion ranges by grade (the phantom's choice). Graded subjects carry one or two
#: lesions (multifocal glioma, in about a tenth of glioblastomas in vivo, is
#: over-represented on purpose) in one hemisphere, so that the contralateral NAWM stays
#: lesion-free; a ``healthy`` subject has none. Necrosis, the hallmark of glioblastoma
#: (Louis et al., Acta Neuropathol 2016;131:803), spans 0.2-0.7 of the HGG radius about
#: the fixed model's 0.45 and is absent from LGG; oedema extends further around HGG
#: (about the fixed models' 1.6 and 1.3).
LESION_RANGES = {
    "HGG": LesionRanges(count=(1, 2), necrosis=(0.2, 0.7), oedema=(1.2, 2.0)),
    "LGG": LesionRanges(count=(1, 2)),
    HEALTHY: LesionRanges(count=(0, 0)),
}


@dataclass(frozen=True)
class AnatomyRanges:
    """Ranges of the population anatomy (see the module's docstring for their sources)."""

    head_scale: float = 0.08
    deformation_rms_mm: tuple = (1.0, 3.0)
    deformation_fwhm_mm: tuple = (20.0, 40.0)
    ventricle_volume: tuple = (0.7, 2.5)
    lesions: dict = field(default_factory=lambda: dict(LESION_RANGES))


RANGES = AnatomyRanges()


@dataclass(frozen=True)
class DrawnAnatomy:
    """A subject's template-from-world similarity, its :class:`~deformation.Warp` and
    every drawn value, for the ground truth."""

    transform: np.ndarray
    warp: deformation.Warp
    parameters: dict


def draw_anatomy(rng, jitter=True, ranges=RANGES):
    """Head size and position (when ``jitter``), deformation and ventricle size."""
    transform = (anatomy.random_rigid(rng, max_scale=ranges.head_scale) if jitter
                 else np.eye(4))
    rms = float(rng.uniform(*ranges.deformation_rms_mm))
    fwhm = float(rng.uniform(*ranges.deformation_fwhm_mm))
    volume = float(rng.uniform(*ranges.ventricle_volume))
    beta = ventricles.beta_for_volume(volume)
    warp, factor = deformation.random_warp(rng, rms, fwhm,
                                           lambda points: ventricles.dilate(points, beta))
    magnitude = np.sqrt(np.sum(warp.displacement**2, axis=0))  # of W(p) − p, ventricles included
    parameters = {
        # template_from_world scales template coordinates by s: the head is 1/s the template's
        "head_size_factor": float(np.linalg.det(transform[:3, :3]) ** (-1.0 / 3.0)),
        "deformation_rms_mm_drawn": rms,
        "deformation_gradient_bound_factor": factor,
        "deformation_rms_mm": float(np.sqrt(np.mean(magnitude**2))),
        "deformation_max_mm": float(magnitude.max()),
        "deformation_fwhm_mm": fwhm,
        "deformation_lattice_mm": deformation.LATTICE_MM,
        "deformation_min_jacobian": float(warp.jacobian_determinant().min()),
        "ventricle_volume_factor": volume,
        "ventricle_flow_beta_mm2": beta,
        "ventricle_volume_factor_after_deformation": ventricles.volume_factor(warp=warp),
    }
    return DrawnAnatomy(transform, warp, parameters)


def draw_lesions(rng, grade, model, grid, parenchyma, brain, ranges=RANGES):
    """The lesions of a subject of ``grade`` and the :class:`~lesion.Tumour` that carries
    their perfusion (None for a healthy subject).

    The count is drawn from the grade's :class:`LesionRanges`; every lesion its mean
    radius from ``model.radius_mm``, its necrosis, oedema and roughness from the ranges,
    and its centre uniformly among the voxels of mostly parenchyma (GM + WM > 0.5) in the
    central slices of one hemisphere (drawn once per subject), at least the oedema
    radius deep and clear of the earlier lesions' oedema where possible (these
    conditions are relaxed in turn when the grid holds no such voxel). The perfusion of
    the enhancing tissue (rCBV, rCBF, k2) is drawn once from ``model``, shared by the
    lesions; the Tumour records the first lesion's centre and radius.
    """
    limits = ranges.lesions[grade]
    count = int(rng.integers(limits.count[0], limits.count[1] + 1))
    if count == 0:
        return None, ()
    hemisphere = "left" if rng.random() < 0.5 else "right"
    depth, region = lesion.placement_region(grid, brain, hemisphere)
    voxel_mm = grid.sub_voxel_world(np.zeros(3)).reshape(3, *grid.shape)
    lesions = []
    for _ in range(count):
        radius = float(rng.uniform(*model.radius_mm))
        necrosis = float(rng.uniform(*limits.necrosis))
        oedema = float(rng.uniform(*limits.oedema))
        roughness = float(rng.uniform(*limits.roughness))
        coefficients, offset = irregular_lesion.draw_shape(rng, roughness)
        clear = np.ones(grid.shape, dtype=bool)
        for other in lesions:
            gap = np.linalg.norm(voxel_mm - np.asarray(other.centre_mm)[:, None, None, None],
                                 axis=0)
            clear &= gap > other.radius_mm * other.oedema + radius * oedema
        candidates = _candidates(parenchyma > 0.5, region, depth, clear,
                                 (oedema * radius, radius, 0.0))
        voxel = candidates[rng.integers(len(candidates))]
        centre = grid.affine[:3, :3] @ voxel + grid.affine[:3, 3]
        lesions.append(irregular_lesion.IrregularLesion(
            tuple(float(c) for c in centre), radius, necrosis, oedema, roughness,
            coefficients, offset))
    first = lesions[0]
    tumour = lesion.Tumour(grade, first.centre_mm, first.radius_mm, (1.0, 1.0, 1.0),
                           hemisphere, *lesion.draw_perfusion(rng, model))
    return tumour, tuple(lesions)


def _candidates(tissue, region, depth, clear, margins):
    """Voxel indices where a lesion centre may go, relaxing the depth (margin by margin),
    then the separation from earlier lesions."""
    for separated in (clear, np.ones_like(clear)):
        for margin in margins:
            candidates = np.argwhere(tissue & region & (depth > margin) & separated)
            if len(candidates):
                return candidates
    raise ValueError("Phantom grid too small to hold a lesion: enlarge 'matrix'.")


def describe_lesions(lesions):
    """The lesions as plain values, for the ground-truth JSON."""
    return [asdict(item) for item in lesions]
