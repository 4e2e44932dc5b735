"""Benchmark: dipy's co-registration and normalisation (what ``--output-spaces`` runs).

Times, on the cores this process may use, the three registrations of the spatial core
(:mod:`bids_perfusion.spatial.registration`):

- the rigid mutual-information co-registration of a run's reference image (64 × 64 × 16,
  3.4 × 3.4 × 8 mm, with the grey/white contrast inverted as in T2*-weighted EPI) to a
  1 mm T1w;
- the normalisation (affine + SyN) of that 1 mm T1w to nilearn's MNI152 2009a template,
  with the ``full`` and ``fast`` settings of ``--normalisation``;
- the normalisation of the digital phantom's T1w (the demo's, 64 × 64 × 16) with the
  ``fast`` setting.

The 1 mm T1w is synthetic: nilearn's 1 mm template (already skull-stripped, so that the
skull-stripping step has nothing to remove) moved by a known rigid transform (5°, 4 mm)
and a smooth non-linear deformation (up to 3 mm). The accuracy printed is the distance
between the recovered and the true mappings over the brain (mm). With ``--ants`` and
``/work/venv-ants/bin/python`` (antspyx, installed apart from the project), the same
registrations are timed with ANTs (``ants.registration`` Rigid and SyN) for comparison.
Run on 2 cores as::

    NIPYPE_NO_ET=1 taskset -c 0,1 .venv/bin/python benchmarks/bench_registration.py [--ants]

Wall time and process CPU time are printed: on a shared machine the CPU time is the
steadier figure.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ANTS_PYTHON = Path("/work/venv-ants/bin/python")


def _timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def synthetic_t1w(template, affine):
    """``(t1w, truth)``: the 1 mm template moved by a rigid transform and a smooth warp,
    and the true template-to-T1w point mapping (a function of points (3, N))."""
    from scipy import ndimage

    from bids_perfusion.spatial import registration, transforms

    angle = np.deg2rad(5.0)
    rigid = np.eye(4)
    rigid[:3, :3] = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                     [0, 0, 1]]
    rigid[:3, 3] = [4.0, -3.0, 2.0]

    def bend(points):
        return points + 3.0 * np.sin(points[[1, 2, 0]] / 20.0)

    def truth(points):  # template point -> T1w point
        return transforms.apply_affine(rigid, bend(points))

    # the T1w at its point y is the template at truth⁻¹(y): invert by fixed point
    points = registration.grid_points(template.shape, affine)
    inverse_rigid = transforms.apply_affine(np.linalg.inv(rigid), points)
    source = inverse_rigid.copy()
    for _ in range(20):
        source = inverse_rigid - 3.0 * np.sin(source[[1, 2, 0]] / 20.0)
    t1w = transforms.resample(template, affine, source, template.shape)
    return ndimage.gaussian_filter(t1w, 0.5) * 1000.0, truth


def run_reference(t1w, affine, offset):
    """A run's reference image made from the T1w: 64 × 64 × 16 voxels of 3.4 × 3.4 × 8 mm,
    inverted contrast, the anatomy moved by ``offset`` (run point = offset · T1w point)."""
    from bids_perfusion.spatial import transforms

    run_affine = np.diag([3.4, 3.4, 8.0, 1.0])
    run_affine[:3, 3] = [-108.0, -126.0, -52.0]
    points = transforms.source_points((64, 64, 16), run_affine,
                                      to_source=np.linalg.inv(offset))
    image = transforms.resample(t1w, affine, points, (64, 64, 16))
    return np.where(image > 50, 1.3 * image.max() - image, 0.0), run_affine


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ants", action="store_true", help="also time antspyx "
                        f"({ANTS_PYTHON})")
    parser.add_argument("--skip-full", action="store_true",
                        help="leave out the full normalisation of the 1 mm T1w")
    args = parser.parse_args()
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    from bids_perfusion.spatial import registration, transforms

    print(f"CPU cores available: {len(os.sched_getaffinity(0))}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    one = load_mni152_template(resolution=1)
    template1 = np.asarray(one.dataobj, dtype=np.float64)
    t1w, truth = synthetic_t1w(template1, one.affine)
    print(f"T1w: synthetic 1 mm {t1w.shape} (nilearn's template, rigid 5°/4 mm + smooth "
          "warp of 3 mm)")

    offset = np.eye(4)
    angle = np.deg2rad(3.0)
    offset[1:3, 1:3] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    offset[:3, 3] = [2.0, 3.0, -2.5]
    reference, run_affine = run_reference(t1w, one.affine, offset)
    wall, cpu, found = _timed(lambda: registration.rigid_coregistration(
        t1w, one.affine, reference, run_affine))
    brain = registration.grid_points(t1w.shape, one.affine)[:, t1w.ravel() > 100][:, ::50]
    error = np.linalg.norm(transforms.apply_affine(found - offset, brain), axis=0)
    print(f"dipy rigid co-registration (64x64x16 run -> 1 mm T1w): wall {wall:.1f} s, "
          f"CPU {cpu:.1f} s, error over the brain mean {error.mean():.2f} mm, "
          f"max {error.max():.2f} mm")

    results = {}
    for setting in ("fast", *(() if args.skip_full else ("full",))):
        chosen = registration.NORMALISATION[setting]
        template = load_mni152_template(resolution=chosen.resolution_mm)
        mask = np.asarray(load_mni152_brain_mask(resolution=chosen.resolution_mm).dataobj) > 0
        wall, cpu, found = _timed(lambda chosen=chosen, template=template, mask=mask:
                                  registration.normalise(
                                      np.asarray(template.dataobj, dtype=np.float64),
                                      template.affine, t1w, one.affine, chosen,
                                      template_mask=mask))
        inside = mask & np.isfinite(found.positions).all(axis=-1)
        points = registration.grid_points(template.shape, template.affine)[:, inside.ravel()]
        error = np.linalg.norm(found.positions[inside].T - truth(points), axis=0)
        results[setting] = (wall, cpu)
        print(f"dipy normalisation ({setting}: {chosen.resolution_mm} mm grid, SyN "
              f"{list(chosen.syn_iterations)}) of the 1 mm T1w: wall {wall:.1f} s, CPU "
              f"{cpu:.1f} s, error over the template brain median "
              f"{np.median(error):.2f} mm, 95th percentile {np.percentile(error, 95):.2f} mm")

    _phantom(registration)
    if args.ants:
        _ants(t1w, one, reference, run_affine)


def _phantom(registration):
    """The fast normalisation of the digital phantom's T1w (the demo's)."""
    import nibabel as nib
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    from bids_perfusion.phantom import PhantomConfig, write_dataset

    with tempfile.TemporaryDirectory() as folder:
        root = write_dataset(Path(folder) / "bids", PhantomConfig(grades=("HGG",), asl=None))
        image = nib.load(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
        t1w = np.asarray(image.dataobj, dtype=np.float64)
        setting = registration.NORMALISATION["fast"]
        template = load_mni152_template(resolution=setting.resolution_mm)
        mask = np.asarray(load_mni152_brain_mask(resolution=setting.resolution_mm)
                          .dataobj) > 0
        wall, cpu, _ = _timed(lambda: registration.normalise(
            np.asarray(template.dataobj, dtype=np.float64), template.affine, t1w,
            image.affine, setting, template_mask=mask))
    print(f"dipy normalisation (fast) of the digital phantom's T1w {t1w.shape}: wall "
          f"{wall:.1f} s, CPU {cpu:.1f} s")


ANTS_SCRIPT = """
import json, sys, time, ants
t1w, reference, template = (ants.image_read(p) for p in sys.argv[1:4])
timings = {}
for name, fixed, moving, kind in (("rigid", reference, t1w, "Rigid"),
                                  ("syn", template, t1w, "SyN")):
    wall, cpu = time.perf_counter(), time.process_time()
    ants.registration(fixed=fixed, moving=moving, type_of_transform=kind,
                      aff_metric="mattes")
    timings[name] = (time.perf_counter() - wall, time.process_time() - cpu)
print(json.dumps(timings))
"""


def _ants(t1w, one, reference, run_affine):
    """The same registrations with antspyx in its own environment (ANTs' defaults:
    ``Rigid`` with Mattes mutual information, the run's reference fixed as dipy's;
    ``SyN`` = affine + SyN on the 2 mm template); CPU time counts every ITK thread."""
    import nibabel as nib
    from nilearn.datasets import load_mni152_template

    if not ANTS_PYTHON.exists():
        print(f"antspyx: {ANTS_PYTHON} not found; skipped")
        return
    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / name for name in ("t1w.nii.gz", "reference.nii.gz",
                                                  "template.nii.gz")]
        nib.Nifti1Image(t1w.astype(np.float32), one.affine).to_filename(paths[0])
        nib.Nifti1Image(reference.astype(np.float32), run_affine).to_filename(paths[1])
        load_mni152_template(resolution=2).to_filename(paths[2])
        environment = {**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": str(
            len(os.sched_getaffinity(0)))}
        result = subprocess.run([str(ANTS_PYTHON), "-c", ANTS_SCRIPT,
                                 *(str(path) for path in paths)],
                                capture_output=True, text=True, env=environment, check=False)
    if result.returncode:
        print(f"antspyx failed: {result.stderr[-500:]}")
        return
    timings = json.loads(result.stdout.strip().splitlines()[-1])
    print("antspyx rigid co-registration (same images, the run's grid fixed as for dipy): "
          "wall {:.1f} s, CPU {:.1f} s".format(*timings["rigid"]))
    print("antspyx SyN normalisation (ANTs' 'SyN': affine + SyN, 1 mm T1w to the 2 mm "
          "template): wall {:.1f} s, CPU {:.1f} s".format(*timings["syn"]))


if __name__ == "__main__":
    sys.exit(main())
