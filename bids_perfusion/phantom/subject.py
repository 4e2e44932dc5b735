"""One phantom subject: anatomy, glioma, arteries and the ground-truth maps they imply.

A voxel is a mixture of compartments (GM, WM, CSF, enhancing tumour, necrosis, oedema)
with fractions ``w_k`` that sum to its brain fraction, plus a blood fraction ``a`` in
arterial voxels; the tissue fractions are scaled by ``1 - a``. A smooth log-normal field
``s`` modulates flow and volume together. The ground truth of a voxel is therefore

    CBV = s Σ_k w_k CBV_k,  CBF = s Σ_k w_k CBF_k,  MTT = CBV / CBF,

exactly what the simulated curves encode (tissue concentration mixes linearly).
Transit times and bolus delays of mixed voxels are flow-weighted means.
"""

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from bids_perfusion import constants
from bids_perfusion.phantom import anatomy, anatomy_population, arteries, irregular_lesion, lesion
from bids_perfusion.phantom.config import (
    GRADE_MODELS,
    NECROSIS,
    NORMAL_TISSUES,
    OEDEMA,
    T1_RATIO_1P5T,
    TUMOUR_RELAXATION,
    Tissue,
)

COMPARTMENTS = ("GM", "WM", "CSF", *lesion.COMPARTMENTS)
#: Relaxation of arterial blood at 3 T (T1: Lu et al., MRM 2004;52:679; T2* of
#: oxygenated blood about 40 ms; proton density 0.9).
BLOOD = {"m0": 0.9, "t1": constants.T1_BLOOD[3.0], "r2star": 25.0}
#: Grubb's exponent relating CBV to CBF (Grubb et al., Stroke 1974;5:630).
GRUBB_EXPONENT = 0.38


@dataclass(frozen=True)
class Subject:
    """A phantom subject on its grid; ``weights`` has shape (compartments, x, y, z).

    ``tumour`` is None for a healthy subject; ``lesions`` and ``population`` (the drawn
    anatomy, for the ground truth) are set with the population anatomy only.
    """

    label: str
    grid: anatomy.Grid
    tissues: tuple
    weights: np.ndarray
    scale: np.ndarray
    artery: np.ndarray
    tumour: lesion.Tumour | None
    flow_scale: float
    template_from_world: np.ndarray
    lesions: tuple = ()
    population: dict | None = None
    #: The population anatomy's deformation (:class:`~bids_perfusion.phantom.deformation.Warp`).
    warp: object = None
    #: T1 of arterial blood, s (3 T; :func:`at_field` changes it with the tissues' T1).
    blood_t1: float = BLOOD["t1"]

    def mixture(self, attribute, flow_weighted=False):
        """Voxel value of a tissue attribute: fraction-weighted sum over compartments, or
        flow-weighted mean (``Σ w F x / Σ w F``) for timing attributes."""
        values = np.array([getattr(t, attribute) for t in self.tissues])
        if not flow_weighted:
            return np.tensordot(values, self.weights, axes=1)
        flows = np.array([t.cbf for t in self.tissues])
        num = np.tensordot(values * flows, self.weights, axes=1)
        den = np.tensordot(flows, self.weights, axes=1)
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    def relaxation(self, attribute):
        """Voxel M0, T1 or R2*: volume-weighted over tissue and arterial blood."""
        blood = self.blood_t1 if attribute == "t1" else BLOOD[attribute]
        return self.mixture(attribute) + self.artery * blood

    @property
    def cbf(self):
        """Ground-truth CBF, mL/100 g/min."""
        return self.scale * self.mixture("cbf")

    @property
    def cbv(self):
        """Ground-truth CBV, mL/100 g."""
        return self.scale * self.mixture("cbv")

    @property
    def mtt(self):
        """Ground-truth MTT = CBV / CBF (central volume theorem), s."""
        cbf = self.cbf
        return np.divide(60.0 * self.cbv, cbf, out=np.zeros_like(cbf), where=cbf > 0)

    def fraction(self, name):
        return self.weights[COMPARTMENTS.index(name)]

    def masks(self):
        """Binary ground-truth masks (fraction >= 0.5 unless stated)."""
        tumour = self.fraction("enhancing") + self.fraction("necrosis")
        lesional = tumour + self.fraction("oedema")
        brain = self.weights.sum(axis=0) + self.artery
        world_x = self.grid.affine[0, 0] * np.indices(self.grid.shape)[0] + self.grid.affine[0, 3]
        hemisphere = None if self.tumour is None else self.tumour.hemisphere
        contralateral = {"left": world_x > 5.0, "right": world_x < -5.0,
                         None: np.abs(world_x) > 5.0}[hemisphere]
        far = ndimage.distance_transform_edt(lesional < 0.01, sampling=self.grid.zooms) > 10.0
        return {
            "brain": brain >= 0.5,
            "GM": self.fraction("GM") >= 0.5,
            "WM": self.fraction("WM") >= 0.5,
            "CSF": self.fraction("CSF") >= 0.5,
            "tumor": tumour >= 0.5,
            "enhancing": self.fraction("enhancing") >= 0.5,
            "necrosis": self.fraction("necrosis") >= 0.5,
            "edema": self.fraction("oedema") >= 0.5,
            # Contralateral normal-appearing white matter: nearly pure WM, no artery,
            # more than 10 mm from any lesion.
            "NAWM": (self.fraction("WM") >= 0.8) & contralateral & far & (self.artery == 0),
            "arteries": self.artery > 0,
        }


def _tumour_tissues(tumour, wm):
    """Enhancing tumour, necrosis and oedema; without tumour (fractions 0) the enhancing
    compartment has the perfusion of white matter."""
    relax = TUMOUR_RELAXATION
    if tumour is None:
        enhancing = Tissue(cbf=wm.cbf, cbv=wm.cbv, **relax)
    else:
        enhancing = Tissue(cbf=tumour.rcbf * wm.cbf, cbv=tumour.rcbv * wm.cbv, k2=tumour.k2,
                           **relax)
    return enhancing, NECROSIS, OEDEMA


def _scaled(tissue, flow_scale):
    return replace(tissue, cbf=tissue.cbf * flow_scale,
                   cbv=tissue.cbv * flow_scale**GRUBB_EXPONENT)


def _smooth_lognormal(rng, grid, sd, fwhm_mm):
    if sd == 0:
        return np.ones(grid.shape)
    sigma = fwhm_mm / np.sqrt(8.0 * np.log(2.0)) / grid.zooms
    field = ndimage.gaussian_filter(rng.standard_normal(grid.shape), sigma, mode="wrap")
    field /= field.std()
    return np.exp(sd * field - sd**2 / 2.0)


def at_field(subject, field_strength):
    """``subject`` with the T1 of its tissues and blood at ``field_strength`` (tesla).

    The compartments' ``t1`` are 3 T values; at 1.5 T each is multiplied by its
    :data:`~bids_perfusion.phantom.config.T1_RATIO_1P5T` and blood takes
    ``constants.T1_BLOOD[1.5]`` (Lu et al., MRM 2004;52:679 at 3 T; 1.35 s at 1.5 T).
    Perfusion, geometry and every other property are unchanged. At 3 T: ``subject``.
    """
    if field_strength == 3.0:
        return subject
    if field_strength != 1.5:
        raise ValueError(f"tissue T1 is tabulated at 1.5 T and 3 T, not {field_strength} T")
    tissues = tuple(replace(tissue, t1=tissue.t1 * T1_RATIO_1P5T[name])
                    for name, tissue in zip(COMPARTMENTS, subject.tissues, strict=True))
    return replace(subject, tissues=tissues, blood_t1=constants.T1_BLOOD[1.5])


def make_subject(label, grade, config, rng, grid):
    """Draw one subject of ``grade`` from ``rng`` (anatomy, tumour, arteries, flow).

    With ``config.population`` the anatomy and lesions are those of
    :mod:`bids_perfusion.phantom.anatomy_population`; otherwise the template under a
    small similarity transform with one ellipsoidal glioma (and the same draws as ever).
    """
    drawn, lesions = None, ()
    if config.population:
        drawn = anatomy_population.draw_anatomy(rng, jitter=config.jitter)
        transform, warp = drawn.transform, drawn.warp
    else:
        transform = anatomy.random_rigid(rng) if config.jitter else np.eye(4)
        warp = None
    gm, wm, csf = anatomy.tissue_fractions(grid, transform, warp)
    model = GRADE_MODELS[config.grade_ranges].get(grade)  # None: healthy, no lesion
    if config.population:
        tumour, lesions = anatomy_population.draw_lesions(rng, grade, model, grid, gm + wm,
                                                          gm + wm + csf)
    else:
        tumour = lesion.draw_tumour(rng, grade, model, grid, wm, gm + wm + csf)
    flow_scale = float(rng.uniform(*config.flow_scale))
    normal = [NORMAL_TISSUES[name] for name in ("GM", "WM", "CSF")]
    if config.tissue_cbf is not None:
        normal[:2] = [replace(t, cbf=float(f))
                      for t, f in zip(normal[:2], config.tissue_cbf, strict=True)]
    normal = [_scaled(t, flow_scale) for t in normal]
    tumour_tissues = [_scaled(t, flow_scale)
                      for t in _tumour_tissues(tumour, NORMAL_TISSUES["WM"])]
    fractions = (irregular_lesion.lesion_fractions(lesions, grid) if config.population
                 else lesion.tumour_fractions(tumour, model, grid)) * (gm + wm)
    remaining = 1.0 - fractions.sum(axis=0) / np.maximum(gm + wm, 1e-12)
    weights = np.concatenate([np.stack([gm * remaining, wm * remaining, csf]), fractions])
    artery = (arteries.artery_fraction(rng, grid, np.linalg.inv(transform), warp)
              if config.arteries else np.zeros(grid.shape))
    scale = _smooth_lognormal(rng, grid, config.heterogeneity, config.heterogeneity_fwhm_mm)
    population = None if drawn is None else {
        **drawn.parameters, "n_lesions": len(lesions),
        "lesion_shape_exponents": irregular_lesion.EXPONENTS,
        "lesions": anatomy_population.describe_lesions(lesions)}
    return Subject(label, grid, (*normal, *tumour_tissues), weights * (1.0 - artery), scale,
                   artery, tumour, flow_scale, transform, lesions, population, warp)
