"""Population anatomy of the phantom (``--population``): deformation, head and ventricle
size, irregular lesions, their ground truth, and the unchanged default."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import read_tsv

from bids_perfusion.cli.phantom import main
from bids_perfusion.phantom import PhantomConfig, deformation, irregular_lesion, write_dataset
from bids_perfusion.phantom import anatomy_population as population
from bids_perfusion.phantom import ventricles as ventricles_module
from bids_perfusion.phantom.anatomy import make_grid, tissue_fractions
from bids_perfusion.phantom.bids import TRUTH
from bids_perfusion.phantom.config import GRADE_MODELS
from bids_perfusion.phantom.dsc import simulate_dsc
from bids_perfusion.phantom.subject import make_subject

TINY = {"matrix": (32, 32, 8), "fov_mm": 220.0, "slab_mm": 128.0}
#: Summary (:func:`_summary`) of the dataset of :func:`_frozen_config` as the generator
#: wrote it before the population anatomy existed (commit 6406101, with its default grade
#: ranges, ``separated``), plus the two keys the forward-model option added to the truth
#: CBV sidecars (``ForwardModel``, ``Definition``); every image and every other file is
#: 6406101's. Numbers are compared to a relative 1e-6, not by digest: a sha256 of the
#: images, even rounded, changed with the CPU and numpy build (the last bits of float32
#: exp/log flip a rounding now and then).
FROZEN_SUMMARY = Path(__file__).parent / "data" / "phantom_frozen_summary.json"


def _frozen_config():
    return PhantomConfig(grades=("HGG", "LGG"), seed=7, grade_ranges="separated", **TINY).with_(
        dsc={"n_frames": 20, "baseline_frames": 4}, asl={"n_pairs": (2,)})


def _numbers_or_text(value):
    """A JSON value with every leaf kept (numbers compared approximately later)."""
    if isinstance(value, dict):
        return {key: _numbers_or_text(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return [_numbers_or_text(item) for item in value]
    return value


def _tsv_cells(text):
    """A TSV's cells, numbers as floats."""
    def cell(item):
        try:
            return float(item)
        except ValueError:
            return item
    return [[cell(item) for item in line.split("\t")] for line in text.splitlines()]


def _summary(root):
    """Every file of the dataset: NIfTI as shape, sum, sum of squares and extremes of the
    data; JSON and TSV as their values (the parameters file without its ``config`` and
    ``constants`` blocks, which list every option and constant, new ones included); other
    files as their text."""
    summary = {}
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        if name.endswith(".nii.gz"):
            data = np.asarray(nib.load(path).dataobj, dtype=np.float64)
            summary[name] = {"shape": list(data.shape), "sum": data.sum(),
                             "sumsq": (data**2).sum(), "min": data.min(), "max": data.max()}
        elif name.endswith(".json"):
            payload = json.loads(path.read_text())
            if name.endswith("phantom_parameters.json"):
                payload.pop("config")
                payload.pop("constants")
            summary[name] = _numbers_or_text(payload)
        elif name.endswith(".tsv"):
            summary[name] = _tsv_cells(path.read_text())
        else:
            summary[name] = path.read_text()
    return json.loads(json.dumps(summary))  # floats as JSON writes them, like the file


def _assert_same(actual, expected, where=""):
    """``actual`` equals ``expected`` leaf by leaf, numbers to a relative 1e-6."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), where
        for key in expected:
            _assert_same(actual[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_same(a, e, f"{where}[{index}]")
    elif isinstance(expected, float) and not isinstance(actual, bool):
        assert actual == pytest.approx(expected, rel=1e-6, abs=1e-9, nan_ok=True), where
    else:
        assert actual == expected, where


def test_population_off_writes_the_same_dataset_as_before(tmp_path):
    root = write_dataset(tmp_path / "bids", _frozen_config())
    _assert_same(_summary(root), json.loads(FROZEN_SUMMARY.read_text()))
    parameters = json.loads((root / TRUTH / "phantom_parameters.json").read_text())
    assert parameters["config"]["population"] is False
    assert "n_lesions" not in read_tsv(root / "participants.tsv")[0]


# --- deformation ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed, ventricles", [(0, 0.7), (1, 2.5), (2, 1.0)])
def test_deformation_is_invertible_and_smooth(seed, ventricles):
    rms, fwhm = 3.0, 20.0  # the roughest corner of the population's ranges
    beta = ventricles_module.beta_for_volume(ventricles)
    warp, _ = deformation.random_warp(np.random.default_rng(seed), rms, fwhm,
                                      lambda p: ventricles_module.dilate(p, beta))
    assert warp.jacobian_determinant().min() > 0.0
    # smooth: neighbouring lattice nodes (4 mm apart) move almost together
    for axis in (1, 2, 3):
        a = np.moveaxis(warp.displacement, axis, 1)
        assert np.corrcoef(a[:, :-1].ravel(), a[:, 1:].ravel())[0, 1] > 0.9
    points = np.random.default_rng(seed).uniform(-70.0, 70.0, (3, 200))
    np.testing.assert_allclose(warp.inverse(warp(points)), points, atol=1e-6)
    assert ventricles_module.volume_factor(warp=warp) == pytest.approx(ventricles, rel=0.1)


def test_random_displacement_has_the_requested_rms_and_bounded_gradient():
    shape = (30, 30, 30)
    for rms, fwhm, rough in ((1.0, 40.0, False), (3.0, 8.0, True)):
        field, factor = deformation.random_displacement(np.random.default_rng(1), shape,
                                                        4.0, rms, fwhm)
        assert np.sqrt(np.mean((field**2).sum(axis=0))) == pytest.approx(rms * factor)
        norm = deformation.gradient_norm(field, 4.0)
        assert norm.max() <= deformation.MAX_GRADIENT + 1e-9
        assert (factor < 1.0) == rough  # too rough: scaled down to the bound
        jacobian = np.stack([np.stack(np.gradient(c, 4.0)) for c in field])
        det = np.linalg.det(np.moveaxis(jacobian + np.eye(3)[:, :, None, None, None],
                                        (0, 1), (-2, -1)))
        assert det.min() > 0.0


def test_ventricles_reach_the_requested_volume_and_stay_invertible():
    for target in population.RANGES.ventricle_volume:
        beta = ventricles_module.beta_for_volume(target)
        assert ventricles_module.volume_factor(beta) == pytest.approx(target, rel=0.02)
    assert ventricles_module.volume_factor(0.0) == pytest.approx(1.0)
    _, beta_max = ventricles_module.flow_field()
    points = np.random.default_rng(0).uniform(-40.0, 40.0, (3, 300))
    h = 1e-3
    for beta in (-beta_max, beta_max):
        jac = np.stack([(ventricles_module.dilate(points + h * e[:, None], beta)
                         - ventricles_module.dilate(points - h * e[:, None], beta)) / (2 * h)
                        for e in np.eye(3)], axis=-1)
        assert np.linalg.det(np.moveaxis(jac, 0, 1)).min() > 0.0
    with pytest.raises(ValueError, match="outside what the flow reaches"):
        ventricles_module.beta_for_volume(50.0)


# --- subjects ------------------------------------------------------------------------------


def _tiny_subject(grade, seed):
    config = PhantomConfig(grades=(grade,), population=True, **TINY)
    grid = make_grid(config.matrix, config.fov_mm, config.slab_mm)
    return make_subject("01", grade, config, np.random.default_rng(seed), grid), grid


def test_fractions_sum_to_the_brain_fraction_of_the_deformed_template():
    subject, grid = _tiny_subject("HGG", 5)
    drawn = population.draw_anatomy(np.random.default_rng(5))  # the subject's first draws
    np.testing.assert_array_equal(drawn.transform, subject.template_from_world)
    gm, wm, csf = tissue_fractions(grid, drawn.transform, drawn.warp)
    tissue = 1.0 - subject.artery
    np.testing.assert_allclose(subject.weights.sum(axis=0), (gm + wm + csf) * tissue,
                               atol=1e-12)
    np.testing.assert_allclose(subject.fraction("CSF"), csf * tissue, atol=1e-12)
    assert subject.weights.min() >= -1e-12  # rounding of 1 − lesion / parenchyma
    lesional = subject.weights[3:].sum(axis=0)  # lesions replace parenchyma, not CSF
    assert lesional.max() > 0.5
    assert np.all(lesional <= (gm + wm) * tissue + 1e-12)


def test_population_subject_is_reproducible_and_differs_from_the_template():
    first, _ = _tiny_subject("LGG", 9)
    again, _ = _tiny_subject("LGG", 9)
    np.testing.assert_array_equal(first.weights, again.weights)
    assert first.population == again.population
    other, _ = _tiny_subject("LGG", 10)
    assert not np.array_equal(first.weights, other.weights)


def test_healthy_subject_has_no_lesion_and_nawm_on_both_sides():
    subject, grid = _tiny_subject("healthy", 2)
    assert subject.tumour is None and subject.lesions == ()
    assert subject.population["n_lesions"] == 0
    assert subject.weights[3:].max() == 0.0
    nawm = subject.masks()["NAWM"]
    x = grid.affine[0, 0] * np.indices(grid.shape)[0] + grid.affine[0, 3]
    assert nawm[x < 0].any() and nawm[x > 0].any()


def test_grade_ranges_change_only_the_tumour_perfusion():
    """The default ranges are the overlapping ones of Law et al. (2003); ``separated`` maps
    the same uniform draw into its own range, so anatomy, every other draw and the DSC
    series outside the tumour are those of the other ranges."""
    assert PhantomConfig().grade_ranges == "overlapping"
    grid = make_grid(TINY["matrix"], TINY["fov_mm"], TINY["slab_mm"])
    config = _frozen_config().with_(asl=None)
    for index, grade in enumerate(config.grades):
        subjects, signals = {}, {}
        for ranges in ("separated", "overlapping"):
            rngs = [np.random.default_rng(s)
                    for s in np.random.SeedSequence([config.seed, index]).spawn(2)]
            subject = make_subject("01", grade, config.with_(grade_ranges=ranges), rngs[0],
                                   grid)
            subjects[ranges] = subject
            signals[ranges] = simulate_dsc(subject, config.dsc, rngs[1]).signals[(1.0, 0)]
        a, b = subjects["separated"], subjects["overlapping"]
        np.testing.assert_array_equal(a.weights, b.weights)
        np.testing.assert_array_equal(a.scale, b.scale)
        np.testing.assert_array_equal(a.artery, b.artery)
        draws = [(s.tumour.rcbv - GRADE_MODELS[r][grade].rcbv[0])
                 / np.diff(GRADE_MODELS[r][grade].rcbv)[0] for r, s in subjects.items()]
        assert draws[0] == pytest.approx(draws[1])  # the same uniform draw
        assert a.tumour.rcbv != b.tumour.rcbv
        outside = b.fraction("enhancing") == 0
        np.testing.assert_array_equal(signals["separated"][outside],
                                      signals["overlapping"][outside])
        assert not np.array_equal(signals["separated"], signals["overlapping"])


def test_lesions_are_drawn_within_the_configured_ranges():
    grid = make_grid(TINY["matrix"], TINY["fov_mm"], TINY["slab_mm"])
    gm, wm, csf = tissue_fractions(grid)
    counts = set()
    for seed in range(12):
        rng = np.random.default_rng(seed)
        grade = ("HGG", "LGG")[seed % 2]
        model, limits = GRADE_MODELS["separated"][grade], population.RANGES.lesions[grade]
        tumour, lesions = population.draw_lesions(rng, grade, model, grid, gm + wm,
                                                  gm + wm + csf)
        counts.add(len(lesions))
        assert limits.count[0] <= len(lesions) <= limits.count[1]
        assert tumour.grade == grade and tumour.centre_mm == lesions[0].centre_mm
        assert model.rcbv[0] <= tumour.rcbv <= model.rcbv[1]
        for item in lesions:
            assert model.radius_mm[0] <= item.radius_mm <= model.radius_mm[1]
            for name in ("necrosis", "oedema", "roughness"):
                low, high = getattr(limits, name)
                assert low <= getattr(item, name) <= high
            delta = item.radius_factor(irregular_lesion.sphere_points()) - 1.0
            assert np.sqrt(np.mean(delta**2)) == pytest.approx(item.roughness, rel=0.1)
            side = item.centre_mm[0] < -5.0 if tumour.hemisphere == "left" else \
                item.centre_mm[0] > 5.0
            assert side
    assert counts == {1, 2}
    tumour, lesions = population.draw_lesions(np.random.default_rng(0), "healthy", None,
                                              grid, gm + wm, gm + wm + csf)
    assert tumour is None and lesions == ()


def test_lesion_volume_matches_the_integral_of_its_surface():
    """Volume of a star-shaped body: V = (R³/3) ∮ (1 + δ(n))³ dΩ."""
    grid = make_grid((40, 40, 40), 80.0, 80.0)
    centre = tuple(float(c) for c in grid.affine[:3, :3] @ np.full(3, 19.5)
                   + grid.affine[:3, 3])
    coefficients, offset = irregular_lesion.draw_shape(np.random.default_rng(4), 0.25)
    lesion = irregular_lesion.IrregularLesion(centre, 14.0, 0.5, 1.5, 0.25, coefficients,
                                              offset)
    fractions = irregular_lesion.lesion_fractions((lesion,), grid)
    voxel = np.prod(grid.zooms)
    factor = lesion.radius_factor(irregular_lesion.sphere_points(20000))
    solid = 4.0 * np.pi / 3.0 * lesion.radius_mm**3 * np.mean(factor**3)
    assert fractions[:2].sum() * voxel == pytest.approx(solid, rel=0.02)
    assert fractions[1].sum() * voxel == pytest.approx(solid * 0.5**3, rel=0.05)
    assert fractions[2].sum() * voxel == pytest.approx(solid * (1.5**3 - 1.0), rel=0.02)
    assert fractions.sum(axis=0).max() <= 1.0 + 1e-12


# --- files ---------------------------------------------------------------------------------


def test_population_flag_writes_every_draw_into_the_truth(tmp_path, capsys):
    out = tmp_path / "bids"
    status = main([str(out), "--population", "--grades", "HGG", "healthy", "--no-asl",
                   "--matrix", "32", "32", "8", "--n-frames", "20", "--baseline-frames", "4",
                   "--seed", "3", "-q"])
    assert status == 0
    rows = {r["participant_id"]: r for r in read_tsv(out / "participants.tsv")}
    assert rows["sub-02"]["grade"] == "n/a" and rows["sub-02"]["n_lesions"] == "0"
    assert rows["sub-01"]["grade"] == "HGG" and rows["sub-01"]["n_lesions"] in ("1", "2")
    truth = json.loads((out / TRUTH / "sub-01" / "perf"
                        / "sub-01_desc-truth_parameters.json").read_text())["population"]
    ranges = population.RANGES
    assert abs(truth["head_size_factor"] - 1.0) <= ranges.head_scale / (1 - ranges.head_scale)
    low, high = ranges.ventricle_volume
    assert low <= truth["ventricle_volume_factor"] <= high
    assert truth["deformation_min_jacobian"] > 0.0
    assert len(truth["lesions"]) == int(rows["sub-01"]["n_lesions"])
    assert set(truth["lesions"][0]) >= {"centre_mm", "radius_mm", "necrosis", "oedema",
                                         "roughness", "coefficients"}
    assert "sub-02" in capsys.readouterr().out  # the summary copes with a healthy subject


def test_healthy_grade_needs_the_population():
    with pytest.raises(ValueError, match=r"'grades'.*population"):
        PhantomConfig(grades=("healthy",)).validate()
    PhantomConfig(grades=("healthy",), population=True).validate()
