"""Voxelwise group maps in the template: mean, SD and count against numpy."""

import json

import nibabel as nib
import numpy as np
import pytest

from bids_perfusion import records
from bids_perfusion.group import write_group_maps
from bids_perfusion.stats.voxelwise import group_mean_sd

SPACE = "space-MNI152NLin2009aSym_res-2"


def test_group_mean_sd_is_numpys_over_the_valid_subjects():
    rng = np.random.default_rng(3)
    maps = rng.normal(50, 10, (5, 4, 3, 2))
    valid = rng.random(maps.shape) > 0.3
    maps[0, 0, 0, 0] = np.nan  # a non-finite value counts as missing
    mean, sd, count = group_mean_sd(maps, valid)
    masked = np.ma.masked_array(maps, ~(valid & np.isfinite(maps)))
    expected_count = (~masked.mask).sum(axis=0)
    assert np.array_equal(count, expected_count)
    assert np.allclose(mean[count > 0], masked.mean(axis=0)[count > 0])
    assert np.allclose(sd[count > 1], masked.std(axis=0, ddof=1)[count > 1])
    assert np.all(sd[count < 2] == 0) and np.all(mean[count == 0] == 0)
    with pytest.raises(ValueError, match="share one shape"):
        group_mean_sd(maps, valid[:, 0])


def test_group_maps_of_complete_runs_within_brain_masks(tmp_path):
    """Three subjects' CBF in the template (one with a smaller brain mask): the written
    mean and SD are numpy's over the voxels of each subject's mask; a run without a
    complete record is left out."""
    rng = np.random.default_rng(0)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    maps, masks = rng.normal(60, 8, (4, 5, 5, 5)), np.ones((4, 5, 5, 5), bool)
    masks[1, :2] = False
    for index in range(4):
        subject = f"sub-0{index + 1}"
        perf = tmp_path / subject / "perf"
        perf.mkdir(parents=True)
        cbf = perf / f"{subject}_ce-gadolinium_{SPACE}_desc-osvd_cbf.nii.gz"
        mask = perf / f"{subject}_ce-gadolinium_{SPACE}_desc-brain_mask.nii.gz"
        nib.Nifti1Image(maps[index].astype(np.float32), affine).to_filename(cbf)
        nib.Nifti1Image(masks[index].astype(np.uint8), affine).to_filename(mask)
        cbf.with_name(cbf.name.replace(".nii.gz", ".json")).write_text(
            json.dumps({"Units": "mL/100 g/min"}))
        if index < 3:  # the fourth run has no completion record
            records.write_record(tmp_path, f"{subject}_run", [cbf, mask], options={},
                                 methods="", version="test")
    out = tmp_path / "group"
    out.mkdir()
    written = write_group_maps(tmp_path, out)
    stem = f"group_ce-gadolinium_{SPACE}_desc-osvd"
    assert sorted(p.name for p in written) == sorted(
        f"{stem}_stat-{stat}_cbf.nii.gz" for stat in ("mean", "sd", "n"))
    kept = np.ma.masked_array(maps[:3].astype(np.float32), ~masks[:3])
    mean = np.asarray(nib.load(out / f"{stem}_stat-mean_cbf.nii.gz").dataobj)
    sd = np.asarray(nib.load(out / f"{stem}_stat-sd_cbf.nii.gz").dataobj)
    count = np.asarray(nib.load(out / f"{stem}_stat-n_cbf.nii.gz").dataobj)
    assert np.allclose(mean, kept.mean(axis=0), rtol=1e-5)
    assert np.allclose(sd, kept.std(axis=0, ddof=1), rtol=1e-5)
    assert count[0].max() == 2 and count[2:].min() == 3
    sidecar = json.loads((out / f"{stem}_stat-mean_cbf.json").read_text())
    assert sidecar["Units"] == "mL/100 g/min" and sidecar["NumberOfSubjects"] == 3
