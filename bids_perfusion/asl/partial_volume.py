"""Partial-volume correction of CBF by linear regression (Asllani et al., MRM 2008;60:1362).

The ASL signal of a voxel is the sum of its tissues' signals weighted by their volume
fractions, ΔM = P_GM ΔM_GM + P_WM ΔM_WM (CSF carries no perfusion signal). Asllani, Borogovac
and Brown assume the tissue signals constant within a small kernel around each voxel and
solve this equation over the kernel's voxels by least squares. Here it is applied to CBF,
as ExploreASL does (Mutsaerts et al., NeuroImage 2020;219:117031)::

    CBF(v) = P_GM(v) CBF_GM + P_WM(v) CBF_WM,     v in the n x n x 1 kernel of each voxel

which is Asllani's equation divided by M0 voxel by voxel: exact when M0 (the proton
density) is uniform within the kernel, as in the phantom, whose ΔM is M0 times the
fraction-weighted tissue CBF. It serves single-delay CBF and the CBF of a multi-delay fit
alike.

The least-squares solution of every voxel's kernel comes from the 2 x 2 normal equations::

    | Σ g²  Σ gw | |CBF_GM|   | Σ g c |
    | Σ gw  Σ w² | |CBF_WM| = | Σ w c |      (g = P_GM, w = P_WM, c = CBF; sums over the kernel)

built for all voxels at once by box filters of the products (``uniform_filter``) and
solved by Cramer's rule. Only voxels of the mask enter the sums. The system is singular
when the kernel's GM and WM fractions are proportional (e.g. uniform 50/50): the variance
of each tissue's CBF is 1/r times that of a one-tissue fit, r = det / (Σg² Σw²) the
relative determinant. Where one tissue is absent from the kernel (its Σ p² below
:data:`ABSENT_TISSUE` of the other's) the present tissue takes the one-tissue fit
Σ p c / Σ p² and the absent one is undetermined; elsewhere, below
:data:`MIN_RELATIVE_DETERMINANT` the split between the tissues is undetermined and both
are 0. A tissue's map is written where the voxel holds that tissue (P > 0) and the mask;
elsewhere it is 0.
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from bids_perfusion.asl.tissue import check_fraction, check_tissue_sum
from bids_perfusion.voxels import voxel_mask

#: Below this relative determinant of the 2 x 2 system the kernel's GM and WM fractions
#: are nearly proportional: each tissue's CBF would carry more than 10 times (1/sqrt(r))
#: the noise of a one-tissue fit, and the voxel is left undetermined.
MIN_RELATIVE_DETERMINANT = 0.01
#: A tissue whose Σ P² over the kernel is below this fraction of the other's counts as
#: absent from the kernel (one-tissue fit for the other).
ABSENT_TISSUE = 1e-3


@dataclass(frozen=True)
class PartialVolumeCBF:
    """CBF of grey and white matter (mL/100 g/min), 0 where undetermined or where the voxel
    holds none of the tissue; ``undetermined``: mask voxels holding a tissue whose CBF
    their kernel could not determine."""

    gm: NDArray[np.float64]
    wm: NDArray[np.float64]
    undetermined: NDArray[np.bool_]


def linear_regression_pvc(cbf: ArrayLike, gm: ArrayLike, wm: ArrayLike, mask: ArrayLike,
                          kernel: int) -> PartialVolumeCBF:
    """Asllani's regression of ``cbf`` on the fractions ``gm``, ``wm`` in an
    ``kernel`` x ``kernel`` x 1 neighbourhood of every voxel of ``mask`` (3-D arrays of one
    shape; ``kernel`` odd, >= 3)."""
    c = np.asarray(cbf, dtype=float)
    if c.ndim != 3:
        raise ValueError(f"CBF must be a 3-D map, got shape {c.shape}")
    if kernel < 3 or kernel % 2 == 0:
        raise ValueError(f"the kernel must be an odd number of voxels >= 3, got {kernel}")
    inside = voxel_mask(mask, c.shape)
    g = np.where(inside, check_fraction(gm, "grey-matter"), 0.0)
    w = np.where(inside, check_fraction(wm, "white-matter"), 0.0)
    check_tissue_sum(g, w)
    c = np.where(inside, c, 0.0)

    def box(values: NDArray[np.float64]) -> NDArray[np.float64]:
        return ndimage.uniform_filter(values, size=(kernel, kernel, 1), mode="constant")

    a, b, d = box(g * g), box(g * w), box(w * w)
    u, v = box(g * c), box(w * c)
    det = a * d - b * b
    scale = a * d
    # The box filters' running sums leave about 1e-17 where a product is 0 over the whole
    # kernel: an absent tissue is recognised first, by its share of Σ P².
    gm_only = (a > 0) & (d <= ABSENT_TISSUE * a)
    wm_only = (d > 0) & (a <= ABSENT_TISSUE * d)
    with np.errstate(divide="ignore", invalid="ignore"):
        both = ~gm_only & ~wm_only & (scale > 0) & (det >= MIN_RELATIVE_DETERMINANT * scale)
        gm_cbf = np.where(both, (d * u - b * v) / det, np.where(gm_only, u / a, 0.0))
        wm_cbf = np.where(both, (a * v - b * u) / det, np.where(wm_only, v / d, 0.0))
    has_gm, has_wm = inside & (g > 0), inside & (w > 0)
    gm_known, wm_known = both | gm_only, both | wm_only
    return PartialVolumeCBF(
        gm=np.where(has_gm & gm_known, gm_cbf, 0.0),
        wm=np.where(has_wm & wm_known, wm_cbf, 0.0),
        undetermined=(has_gm & ~gm_known) | (has_wm & ~wm_known))
