"""Grey- and white-matter fractions of ASL voxels, and the tissue T1 they imply.

The partial-volume maps (probabilistic segmentations, ``label-GM_probseg`` and
``label-WM_probseg``) give the fraction P_GM, P_WM of each voxel's volume in each tissue,
0 <= P <= 1 and P_GM + P_WM <= 1 (the rest is CSF or outside the brain).

Tissue T1 of the kinetic model (:mod:`bids_perfusion.asl.kinetics`): after arrival the label
decays with T1' = 1/(1/T1 + f/λ), where T1 is that of the tissue the label has entered. One
global T1 cannot serve grey matter (1.33 s at 3 T) and white matter (0.83 s) at once: on
ASLDRO's noise-free multi-delay data a fit with T1' = T1 of blood reads grey-matter CBF 16 %
and white-matter CBF 46 % low. :func:`tissue_t1` gives every voxel the T1 of its tissue
mixture, the fraction-weighted relaxation rate of grey and white matter::

    1/T1 = (P_GM / T1_GM + P_WM / T1_WM) / (P_GM + P_WM)

(the relaxation rate of a mixture in fast exchange is the volume-weighted mean of the
rates of its parts), exact in pure voxels; in a mixed voxel the label of each tissue decays
with its own T1, which a single T1' approximates. Voxels without
grey or white matter (CSF, outside the brain) take the grey-matter T1, the T1 the consensus
uses for brain tissue (Alsop et al., MRM 2015;73:102).

Grids: maps made on another grid of the same world space (e.g. segmented from the T1w in
scanner coordinates) are resampled onto the ASL grid by their affines, trilinear
(:func:`resample_linear`); linear interpolation of fractions keeps them in [0, 1] and keeps
P_GM + P_WM <= 1.
"""

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bids_perfusion.spatial.transforms import resample, source_points

#: Rounding allowed beyond [0, 1] and beyond P_GM + P_WM = 1 (fractions stored as float32,
#: or written by tools that normalise each class separately to 1e-4).
FRACTION_TOLERANCE = 1e-3
#: Voxels whose P_GM + P_WM is below this hold no tissue (tissue T1: grey matter).
NO_TISSUE = 1e-6
#: Half a voxel, plus rounding: how far outside its first and last voxel centres an image
#: still covers a point.
COVERAGE_MARGIN = 0.5 + 1e-6


def check_fraction(fraction: ArrayLike, name: str) -> NDArray[np.float64]:
    """``fraction`` as a float array, or ValueError saying what is wrong and the fix:
    non-finite values, or values outside [0, 1] (beyond :data:`FRACTION_TOLERANCE`)."""
    values = np.asarray(fraction, dtype=float)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"the {name} fractions hold {int(np.sum(~np.isfinite(values)))} "
                         "non-finite values; give a partial-volume map with values in "
                         "[0, 1] everywhere")
    low, high = float(values.min()), float(values.max())
    if low < -FRACTION_TOLERANCE or high > 1.0 + FRACTION_TOLERANCE:
        raise ValueError(f"the {name} fractions range from {low:g} to {high:g}, outside "
                         "[0, 1]; give a partial-volume (probabilistic) segmentation, not "
                         "labels, a percentage or an intensity image")
    return np.clip(values, 0.0, 1.0)


def check_tissue_sum(gm: ArrayLike, wm: ArrayLike) -> None:
    """ValueError when P_GM + P_WM exceeds 1 (beyond :data:`FRACTION_TOLERANCE`) anywhere."""
    total = np.asarray(gm, dtype=float) + np.asarray(wm, dtype=float)
    over = total > 1.0 + FRACTION_TOLERANCE
    if over.any():
        raise ValueError(f"grey- and white-matter fractions sum to more than 1 in "
                         f"{int(over.sum())} voxels (up to {float(total.max()):.3g}); they "
                         "must be fractions of the same voxel: give the GM and WM maps of "
                         "one segmentation (e.g. FSL FAST's pve_1 and pve_2), each voxel's "
                         "classes summing to at most 1")


def tissue_t1(gm: ArrayLike, wm: ArrayLike, t1_gm: float, t1_wm: float) -> NDArray[np.float64]:
    """Tissue T1 of every voxel, s: ``1/T1 = (P_GM/T1_GM + P_WM/T1_WM) / (P_GM + P_WM)``;
    ``t1_gm`` where P_GM + P_WM < :data:`NO_TISSUE`."""
    gm = np.asarray(gm, dtype=float)
    wm = np.asarray(wm, dtype=float)
    total = gm + wm
    tissue = total >= NO_TISSUE
    safe = np.where(tissue, total, 1.0)
    rate = np.where(tissue, (gm / t1_gm + wm / t1_wm) / safe, 1.0 / t1_gm)
    return 1.0 / rate


def resample_linear(data: ArrayLike, source_affine: ArrayLike, target_affine: ArrayLike,
                    target_shape: tuple[int, ...]) -> NDArray[np.float64]:
    """A 3-D map resampled onto another grid of the same world space, trilinear.

    Target voxel ``v`` takes the source value at ``inv(A_source) A_target v`` (voxel to world
    to voxel; :func:`bids_perfusion.spatial.transforms.resample`, edge values just outside
    the source's last voxel centres). ValueError when the source does not cover every
    target voxel centre (within half a voxel of its own first and last centres): values
    there would be invented.
    The data are returned unchanged when the grids are the same.
    """
    data = np.asarray(data, dtype=float)
    source_affine = np.asarray(source_affine, dtype=float)
    target_affine = np.asarray(target_affine, dtype=float)
    target_shape = tuple(int(n) for n in target_shape[:3])
    if data.shape == target_shape and np.allclose(source_affine, target_affine, atol=1e-6):
        return data
    mapping = np.linalg.solve(source_affine, target_affine)
    # Only the corners of the target grid are needed to test coverage (the map is affine).
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in target_shape], indexing="ij"))
    corners = mapping[:3, :3] @ corners.reshape(3, -1) + mapping[:3, 3:]
    limits = np.asarray(data.shape, dtype=float)[:, None] - 1.0
    if np.any(corners < -COVERAGE_MARGIN) or np.any(corners > limits + COVERAGE_MARGIN):
        raise ValueError(
            f"its grid ({data.shape}) does not cover the ASL grid ({target_shape}) in world "
            "coordinates; give the map in the ASL grid, or on a grid that covers the whole "
            "ASL field of view (same scanner space, e.g. from the T1w)")
    return resample(data, source_affine, source_points(target_shape, target_affine),
                    target_shape, "map", outside="nearest")
