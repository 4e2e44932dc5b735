"""Co-registration of a run to its T1w, and normalisation of the T1w to the template.

Both use dipy's ``dipy.align`` (Garyfallidis et al., Front Neuroinform 2014;8:8), which
needs no external binary:

- :func:`rigid_coregistration`: rigid (6 parameters) registration maximising the mutual
  information ``I(A; B) = H(A) + H(B) - H(A, B)`` of the joint intensity histogram of the
  two images (Mattes et al., IEEE Trans Med Imaging 2003;22:120), a cost that does not
  assume any relation between the contrasts (T2*-weighted EPI or M0 against T1w). It
  starts from the alignment of the centres of mass, then a translation, then the rigid
  transform, each on a Gaussian pyramid.
- :func:`normalise`: the same for an affine (12 parameters) transform of the T1w to the
  template, then the symmetric diffeomorphic registration SyN with a local cross-
  correlation metric (Avants et al., Med Image Anal 2008;12:26), which both images being
  T1-weighted suits.

A transform is returned in world coordinates (scanner RAS, mm), as the points of the
*moving* image at the points of the *static* one: that is what resampling needs (a value
of the moving image is read at every point of the output grid).
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage


@dataclass(frozen=True)
class Pyramid:
    """A multi-resolution schedule: ``iterations`` at each level, from the coarsest, with
    the image smoothed by a Gaussian of ``sigmas`` voxels and subsampled by ``factors``."""

    iterations: tuple[int, ...]
    sigmas: tuple[float, ...]
    factors: tuple[int, ...]


@dataclass(frozen=True)
class NormalisationSetting:
    """Schedules of the affine and SyN stages of :func:`normalise`; ``syn_iterations``
    are the SyN iterations per level, from the coarsest (a level of 0 iterations is
    skipped); ``resolution_mm`` is the spacing of the template grid registered to."""

    affine: Pyramid
    syn_iterations: tuple[int, ...]
    resolution_mm: int = 2


#: Rigid co-registration: the images are small (a perfusion run is a few mm per voxel).
COREGISTRATION = Pyramid(iterations=(200, 100, 50), sigmas=(2.0, 1.0, 0.0),
                         factors=(4, 2, 1))
#: Normalisation settings of ``--normalisation``: ``full`` is dipy's recommended affine
#: and SyN schedules on the template's 2 mm grid; ``fast`` (quick trials) registers to a 4 mm
#: grid with fewer iterations, enough for perfusion maps of 3 to 5 mm voxels.
NORMALISATION = {
    "full": NormalisationSetting(Pyramid((1000, 200, 50), (3.0, 1.0, 0.0), (4, 2, 1)),
                                 syn_iterations=(10, 10, 5), resolution_mm=2),
    "fast": NormalisationSetting(Pyramid((200, 50), (1.0, 0.0), (2, 1)),
                                 syn_iterations=(10, 5), resolution_mm=4),
}
#: Bins of the joint histogram of the mutual information.
HISTOGRAM_BINS = 32
#: Radius (voxels) of the windows of SyN's local cross-correlation.
CC_RADIUS = 4
#: Margin of the brain mask of a T1w skull-stripped through the template (mm).
BRAIN_MARGIN_MM = 3.0


@dataclass(frozen=True)
class Normalisation:
    """The normalisation of a T1w to the template: ``affine`` (4×4, template world to T1w
    world, the affine stage) and ``positions`` (X, Y, Z, 3): the T1w world point of every
    voxel of the template grid ``grid_affine``, affine and SyN stages together."""

    affine: NDArray[np.float64]
    positions: NDArray[np.float64]
    grid_affine: NDArray[np.float64]


def _pyramid(schedule: Pyramid, shape: tuple[int, ...]) -> Pyramid:
    """``schedule`` without the levels whose subsampled grid would have fewer than 4 voxels
    along an axis (a run of 12 slices has no level at factor 4)."""
    keep = [i for i, factor in enumerate(schedule.factors) if min(shape) // factor >= 4]
    keep = keep or [len(schedule.factors) - 1]
    return Pyramid(tuple(schedule.iterations[i] for i in keep),
                   tuple(schedule.sigmas[i] for i in keep),
                   tuple(schedule.factors[i] for i in keep))


def _checked(image: ArrayLike, affine: ArrayLike, what: str
             ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    image, affine = np.asarray(image, dtype=np.float64), np.asarray(affine, dtype=np.float64)
    if image.ndim != 3 or min(image.shape) < 2:
        raise ValueError(f"the {what} must be a 3-D image, got shape {image.shape}")
    if not np.all(np.isfinite(image)) or image.max() == image.min():
        raise ValueError(f"the {what} holds non-finite values or is constant")
    if affine.shape != (4, 4) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise ValueError(f"the {what} has a singular voxel-to-world affine")
    return image, affine


def _linear_registration(static: NDArray[np.float64], static_affine: NDArray[np.float64],
                         moving: NDArray[np.float64], moving_affine: NDArray[np.float64],
                         schedule: Pyramid, stages: tuple[str, ...],
                         static_mask: NDArray[np.bool_] | None = None) -> NDArray[np.float64]:
    """Centres of mass, then each transform of ``stages`` ('translation', 'rigid',
    'affine') in turn, each from the previous one, by mutual information (over the
    voxels of ``static_mask`` when given)."""
    from dipy.align.imaffine import (
        AffineRegistration,
        MutualInformationMetric,
        transform_centers_of_mass,
    )
    from dipy.align.transforms import (
        AffineTransform3D,
        RigidTransform3D,
        TranslationTransform3D,
    )

    transforms = {"translation": TranslationTransform3D, "rigid": RigidTransform3D,
                  "affine": AffineTransform3D}
    schedule = _pyramid(schedule, static.shape)
    registration = AffineRegistration(
        metric=MutualInformationMetric(nbins=HISTOGRAM_BINS, sampling_proportion=None),
        level_iters=list(schedule.iterations), sigmas=list(schedule.sigmas),
        factors=list(schedule.factors), verbosity=0)
    current = transform_centers_of_mass(static, static_affine, moving, moving_affine).affine
    for stage in stages:
        current = registration.optimize(static, moving, transforms[stage](), None,
                                        static_grid2world=static_affine,
                                        moving_grid2world=moving_affine,
                                        starting_affine=current,
                                        static_mask=None if static_mask is None
                                        else static_mask.astype(np.int32)).affine
    return np.asarray(current, dtype=np.float64)


def rigid_coregistration(static: ArrayLike, static_affine: ArrayLike, moving: ArrayLike,
                         moving_affine: ArrayLike, schedule: Pyramid = COREGISTRATION
                         ) -> NDArray[np.float64]:
    """The rigid transform (4×4) that maps a world point of ``static`` (the T1w) to the
    same anatomy in ``moving`` (a run's reference image), by mutual information (see the
    module docstring). ``static_affine``/``moving_affine`` are the images' voxel-to-world
    affines.

    The cost is evaluated on the grid of the run's reference (tens of thousands of voxels,
    against millions for a 1 mm T1w), the T1w interpolated at its points, and the
    transform found (run to T1w) is inverted.

    Raises ValueError for an image that is not 3-D, not finite or constant.
    """
    static, static_affine = _checked(static, static_affine, "T1w")
    moving, moving_affine = _checked(moving, moving_affine, "run reference image")
    run_to_t1w = _linear_registration(moving, moving_affine, static, static_affine,
                                      schedule, ("translation", "rigid"))
    return np.asarray(np.linalg.inv(run_to_t1w), dtype=np.float64)


def normalise(template: ArrayLike, template_affine: ArrayLike, t1w: ArrayLike,
              t1w_affine: ArrayLike, setting: NormalisationSetting = NORMALISATION["full"],
              *, template_mask: ArrayLike | None = None, t1w_mask: ArrayLike | None = None
              ) -> Normalisation:
    """The affine then SyN registration of the brain of ``t1w`` to the skull-stripped
    ``template`` (see the module docstring).

    The brain of the T1w is ``t1w_mask`` when given. Otherwise, with ``template_mask``
    (the template's brain), the affine stage is driven by the template's brain voxels
    only, and the T1w is then skull-stripped by the template's brain mask brought into
    the T1w by that affine, dilated by :data:`BRAIN_MARGIN_MM` (the registration-based
    brain extraction of atlas methods, in its simplest affine form); a T1w that is
    already skull-stripped (zero outside the brain) loses nothing.

    ``positions`` are the T1w world points that dipy's diffeomorphic map (affine stage
    and SyN fields together) reads at every template voxel: the map's own ``transform``
    of the T1w grid's world coordinates, which trilinear interpolation reproduces exactly
    since they are linear in the voxel index. Template voxels whose point falls outside
    the T1w grid are NaN (no data there).
    """
    from dipy.align.imwarp import SymmetricDiffeomorphicRegistration
    from dipy.align.metrics import CCMetric

    template, template_affine = _checked(template, template_affine, "template")
    t1w, t1w_affine = _checked(t1w, t1w_affine, "T1w")
    if t1w_mask is not None:
        t1w = np.where(np.asarray(t1w_mask, dtype=bool), t1w, 0.0)
    brain = None if template_mask is None else np.asarray(template_mask, dtype=bool)
    prealign = _linear_registration(template, template_affine, t1w, t1w_affine,
                                    setting.affine, ("translation", "rigid", "affine"),
                                    static_mask=brain if t1w_mask is None else None)
    if t1w_mask is None and brain is not None:
        t1w = np.where(_brain_in_t1w(brain, template_affine, prealign, t1w.shape,
                                     t1w_affine), t1w, 0.0)
    iterations = list(setting.syn_iterations)
    if not any(iterations):
        positions = prealign[:3, :3] @ grid_points(template.shape, template_affine) \
            + prealign[:3, 3:4]
        return Normalisation(prealign, positions.T.reshape(*template.shape, 3),
                             template_affine)
    syn = SymmetricDiffeomorphicRegistration(CCMetric(3, radius=CC_RADIUS),
                                             level_iters=iterations)
    mapping = syn.optimize(template, t1w, static_grid2world=template_affine,
                           moving_grid2world=t1w_affine, prealign=prealign)
    coordinates = grid_points(t1w.shape, t1w_affine).reshape(3, *t1w.shape)
    warped = np.stack([mapping.transform(image, interpolation="linear")
                       for image in (*coordinates, np.ones(t1w.shape))]).astype(np.float64)
    positions = np.where(warped[3] > 1 - 1e-4, warped[:3], np.nan)
    return Normalisation(prealign, np.moveaxis(positions, 0, -1), template_affine)


def _brain_in_t1w(brain: NDArray[np.bool_], template_affine: NDArray[np.float64],
                  prealign: NDArray[np.float64], shape: tuple[int, ...],
                  t1w_affine: NDArray[np.float64]) -> NDArray[np.bool_]:
    """The template's brain mask on the T1w grid through the affine ``prealign`` (template
    to T1w world), dilated by :data:`BRAIN_MARGIN_MM`."""
    to_template = np.linalg.inv(template_affine) @ np.linalg.inv(prealign) @ t1w_affine
    index = np.indices(shape, dtype=np.float64).reshape(3, -1)
    voxels = to_template[:3, :3] @ index + to_template[:3, 3:4]
    mask = ndimage.map_coordinates(brain.astype(np.float64), voxels, order=0,
                                   mode="constant").reshape(shape) > 0.5
    zooms = np.sqrt((t1w_affine[:3, :3] ** 2).sum(axis=0))
    margin = np.maximum(np.round(BRAIN_MARGIN_MM / zooms).astype(int), 1)
    structure = np.ones(tuple(2 * margin + 1), dtype=bool)
    return np.asarray(ndimage.binary_dilation(mask, structure=structure))


def grid_points(shape: tuple[int, ...], affine: ArrayLike) -> NDArray[np.float64]:
    """World points (3, N) of the voxels of a grid, in C order."""
    affine = np.asarray(affine, dtype=np.float64)
    index = np.indices(shape[:3], dtype=np.float64).reshape(3, -1)
    return affine[:3, :3] @ index + affine[:3, 3:4]
