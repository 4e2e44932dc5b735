"""The spatial core: output spaces, co-registration, normalisation, one-step resampling."""

import numpy as np
import pytest

from bids_perfusion.spatial import registration, spaces, transforms


def rotation(degrees, axis, shift):
    """A rigid 4×4 transform: ``degrees`` about ``axis`` (0, 1, 2), then ``shift`` (mm)."""
    angle = np.deg2rad(degrees)
    plane = [i for i in range(3) if i != axis]
    matrix = np.eye(4)
    matrix[np.ix_(plane, plane)] = [[np.cos(angle), -np.sin(angle)],
                                    [np.sin(angle), np.cos(angle)]]
    matrix[:3, 3] = shift
    return matrix


@pytest.fixture(scope="module")
def head():
    """A 4 mm brain (nilearn's MNI152 2009a template, shipped offline) and its affine."""
    from nilearn.datasets import load_mni152_template

    image = load_mni152_template(resolution=4)
    return np.asarray(image.dataobj, dtype=np.float64), image.affine


def resampled(image, affine, matrix, shape, new_affine, kind="map"):
    """``image`` read at ``matrix`` (new world to ``image`` world) of a new grid."""
    points = transforms.source_points(shape, new_affine, to_source=matrix)
    return transforms.resample(image, affine, points, shape, kind)


# --- --output-spaces ---------------------------------------------------------------------

def test_spaces_parse_fmriprep_syntax():
    parsed = spaces.parse_spaces(["run", "T1w", "MNI152NLin2009aSym:res-2",
                                  "MNI152NLin2009aSym", "T1w"])
    assert [str(space) for space in parsed] == ["run", "T1w", "MNI152NLin2009aSym:res-2",
                                                "MNI152NLin2009aSym"]
    assert parsed[0].entities == {} and not parsed[0].needs_t1w
    assert parsed[1].entities == {"space": "T1w"} and parsed[1].needs_t1w
    assert parsed[2].entities == {"space": "MNI152NLin2009aSym", "resolution": "2"}
    assert parsed[2].voxel_size_mm == 2 and parsed[3].voxel_size_mm == 1


@pytest.mark.parametrize("value, words", [
    ("MNI152NLin2009cAsym", ["unknown space 'MNI152NLin2009cAsym'", "nothing is downloaded",
                             "MNI152NLin2009aSym:res-N"]),
    ("native", ["unknown space 'native'", "run, T1w"]),
    ("MNI152NLin2009aSym:res-0", ["unknown modifier 'res-0'"]),
    ("MNI152NLin2009aSym:den-2", ["unknown modifier 'den-2'"]),
    ("T1w:res-2", ["T1w takes no modifier"]),
])
def test_spaces_refuse_with_the_option_and_the_fix(value, words):
    with pytest.raises(ValueError) as error:
        spaces.parse_space(value)
    assert str(error.value).startswith(f"--output-spaces {value}: ")
    for word in words:
        assert word in str(error.value)


# --- co-registration ---------------------------------------------------------------------

def test_rigid_coregistration_recovers_a_known_offset(head):
    """A run-like image (other voxel size, fewer slices, inverted contrast) 4° and 3 mm off
    the T1w: the recovered transform moves brain points by < 1 mm from the truth, < 1°."""
    t1w, affine = head
    truth = rotation(4.0, 2, [3.0, -2.0, 1.5]) @ rotation(-3.0, 0, [0, 0, 0])
    run_affine = np.diag([3.5, 3.5, 5.0, 1.0])
    run_affine[:3, 3] = [-80, -110, -40]
    run_shape = (48, 56, 20)
    # the run's image at run point z is the T1w at truth⁻¹ z: the anatomy moved by truth
    run = resampled(t1w, affine, np.linalg.inv(truth), run_shape, run_affine)
    run = np.where(run > 0.1 * run.max(), 1.2 * run.max() - run, 0.0)  # other contrast
    quick = registration.Pyramid((50, 20), (1.0, 0.0), (2, 1))  # ≤ 5 s on a loaded core
    found = registration.rigid_coregistration(t1w, affine, run, run_affine, quick)
    brain = registration.grid_points(t1w.shape, affine)[:, t1w.ravel() > 0.2 * t1w.max()]
    error_mm = np.linalg.norm(transforms.apply_affine(found - truth, brain), axis=0)
    angle = np.degrees(np.arccos(np.clip((np.trace(found[:3, :3] @ truth[:3, :3].T) - 1) / 2,
                                         -1, 1)))
    assert error_mm.max() < 1.0 and angle < 1.0
    # the identity is 3 mm wrong: the test can fail
    assert np.linalg.norm(transforms.apply_affine(np.eye(4) - truth, brain), axis=0).max() > 3


def test_normalise_positions_are_dipys_own_mapping(head):
    """The position field equals dipy's map: the T1w read at the positions is what the
    diffeomorphic map's ``transform`` makes of it (inside the field of view)."""
    from dipy.align.imwarp import SymmetricDiffeomorphicRegistration
    from dipy.align.metrics import CCMetric

    template, affine = head
    template = template[12:36, 14:42, 10:34]
    affine = affine @ np.array([[1, 0, 0, 12], [0, 1, 0, 14], [0, 0, 1, 10], [0, 0, 0, 1]])
    t1w_affine = np.diag([4.5, 4.5, 5.0, 1.0])
    t1w_affine[:3, 3] = affine[:3, 3] - 6
    t1w_shape = (24, 28, 22)
    t1w = resampled(template, affine, rotation(5.0, 2, [2.0, -1.0, 1.0]), t1w_shape,
                    t1w_affine)
    setting = registration.NormalisationSetting(registration.Pyramid((30,), (0.0,), (1,)),
                                                syn_iterations=(5, 5))
    found = registration.normalise(template, affine, t1w, t1w_affine, setting)
    mapping = SymmetricDiffeomorphicRegistration(
        CCMetric(3, radius=registration.CC_RADIUS), level_iters=[5, 5]).optimize(
        template, t1w, static_grid2world=affine, moving_grid2world=t1w_affine,
        prealign=found.affine)
    theirs = mapping.transform(t1w)
    points = found.positions.reshape(-1, 3).T
    ours = transforms.resample(t1w, t1w_affine, points, template.shape)
    inside = np.isfinite(found.positions).all(axis=-1)
    assert inside.mean() > 0.8
    assert np.abs(ours - theirs)[inside].max() < 1e-3 * t1w.max()
    # registration helped: the T1w read at the positions matches the template better than
    # the T1w read at the template's own points
    unregistered = transforms.resample(t1w, t1w_affine, registration.grid_points(
        template.shape, affine), template.shape)
    assert np.corrcoef(ours[inside], template[inside])[0, 1] > np.corrcoef(
        unregistered[inside], template[inside])[0, 1] + 0.1


# --- resampling once, interpolation by kind ------------------------------------------------

def smooth_map(shape, affine):
    """A smooth positive map (waves of 6 to 8 cm) on a grid."""
    x, y, z = registration.grid_points(shape, affine)
    return (100 + 40 * np.sin(x / 10) * np.cos(y / 12) + 20 * np.sin(z / 9)).reshape(shape)


def test_map_to_template_and_back_stays_within_interpolation_error():
    """A smooth map on a 3 mm run grid, taken to a 2 mm 'template' through a rigid
    co-registration and a smooth non-linear position field, then back through the inverse
    chain, differs from the original by the interpolation error only (< 1 % inside)."""
    run_affine = np.diag([3.0, 3.0, 3.0, 1.0])
    run_affine[:3, 3] = -30
    shape = (20, 20, 20)
    values = smooth_map(shape, run_affine)
    to_run = rotation(6.0, 1, [2.0, 1.0, -1.0])            # T1w point -> run point
    grid_shape, grid_affine = (34, 34, 34), np.diag([2.0, 2.0, 2.0, 1.0])
    grid_affine[:3, 3] = -34
    grid = registration.grid_points(grid_shape, grid_affine)

    def bend(points, sign):
        """A smooth invertible warp (template -> T1w with sign 1)."""
        return points + sign * 1.5 * np.sin(points[[1, 2, 0]] / 15.0)

    positions = bend(grid, 1).T.reshape(*grid_shape, 3)
    points = transforms.source_points(grid_shape, grid_affine, positions=positions,
                                      positions_affine=grid_affine, to_source=to_run)
    in_template = transforms.resample(values, run_affine, points, grid_shape)
    # back: run point -> T1w point (to_run⁻¹) -> template point (bend⁻¹ by fixed point)
    t1w_points = transforms.apply_affine(np.linalg.inv(to_run),
                                         registration.grid_points(shape, run_affine))
    template_points = t1w_points.copy()
    for _ in range(30):
        template_points = t1w_points - 1.5 * np.sin(template_points[[1, 2, 0]] / 15.0)
    back = transforms.resample(in_template, grid_affine, template_points, shape)
    core = (slice(5, 15),) * 3
    error = np.abs(back - values)[core]
    # trilinear interpolation errs by at most h²/8 Σ|∂²f/∂x_i²| (h the spacing), once on
    # the 2 mm grid and once on the 3 mm grid
    curvature = 40 / 10 ** 2 + 40 / 12 ** 2 + 20 / 9 ** 2
    bound = (3.0 ** 2 + 2.0 ** 2) / 8 * curvature
    assert error.max() < bound and error.mean() < 0.5 * bound
    # without the warp on the way back the error is far larger: the test can fail
    wrong = transforms.resample(in_template, grid_affine, t1w_points, shape)
    assert np.abs(wrong - values)[core].max() > 2 * bound


def test_masks_stay_binary_maps_do_not():
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    mask = np.zeros((16, 16, 16))
    mask[4:12, 5:11, 3:13] = 1
    new_affine = np.diag([1.3, 1.3, 1.3, 1.0])
    shape = (40, 40, 40)
    moved = rotation(7.0, 0, [0.7, -0.4, 0.9])
    as_mask = resampled(mask, affine, moved, shape, new_affine, kind="mask")
    as_map = resampled(mask, affine, moved, shape, new_affine, kind="map")
    assert set(np.unique(as_mask)) == {0.0, 1.0}
    assert len(np.unique(as_map)) > 2
    # the volume is kept (nearest neighbour at 1.3 mm): within 10 %
    assert abs(as_mask.sum() * 1.3 ** 3 / (mask.sum() * 27) - 1) < 0.1


def test_points_outside_the_field_are_zero():
    affine = np.eye(4)
    positions = np.full((4, 4, 4, 3), np.nan)
    points = transforms.source_points((4, 4, 4), affine, positions=positions,
                                      positions_affine=affine)
    assert np.isnan(points).all()
    assert not transforms.resample(np.ones((4, 4, 4)), affine, points, (4, 4, 4)).any()


def test_template_grid_matches_nilearns_resampling():
    from nilearn.datasets import load_mni152_template

    one = load_mni152_template(resolution=1)
    shape, affine = transforms.template_grid(one.shape, one.affine, 2)
    two = load_mni152_template(resolution=2)
    assert shape == two.shape and np.allclose(affine, two.affine)


# --- ITK conventions -------------------------------------------------------------------------

def test_itk_affine_is_lps_and_round_trips():
    matrix = rotation(10.0, 2, [1.0, 2.0, 3.0])
    text = transforms.itk_affine_text(matrix)
    assert "Transform: AffineTransform_double_3_3" in text
    parameters = [float(v) for v in text.split("Parameters: ")[1].split("\n")[0].split()]
    assert parameters[9:] == pytest.approx([-1.0, -2.0, 3.0])  # RAS (1, 2, 3) in LPS
    assert np.allclose(transforms.affine_from_itk_text(text), matrix)
    # a centre of rotation (as ANTs writes) is folded into the translation
    centred = text.replace("FixedParameters: 0 0 0", "FixedParameters: 5 -3 2")
    centre = np.array([5.0, -3.0, 2.0])
    lps = transforms.LPS @ matrix @ transforms.LPS
    expected = lps.copy()
    expected[:3, 3] = lps[:3, 3] + centre - lps[:3, :3] @ centre
    assert np.allclose(transforms.affine_from_itk_text(centred),
                       transforms.LPS @ expected @ transforms.LPS)
    with pytest.raises(ValueError, match="not an ITK 3-D affine"):
        transforms.affine_from_itk_text("Transform: Euler3DTransform_double_3_3\n")


def test_itk_displacement_field_round_trips_in_lps():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    grid = registration.grid_points((3, 4, 5), affine).T.reshape(3, 4, 5, 3)
    positions = grid + np.array([1.0, 2.0, 3.0])
    field = transforms.itk_displacement_field(positions, affine)
    assert field.shape == (3, 4, 5, 1, 3)
    assert np.allclose(field[..., 0, :], [-1.0, -2.0, 3.0])
    assert np.allclose(transforms.positions_from_itk_field(field, affine), positions)
