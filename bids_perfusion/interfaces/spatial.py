"""Co-registration, normalisation and resampling nodes (core: :mod:`bids_perfusion.spatial`).

Transforms travel between nodes as the files written to the derivatives (ITK affine text,
ITK displacement field), so that what a node applies is what a user reads. The template
is nilearn's copy of the MNI152 2009a symmetric template and its brain mask (package
data: nothing is downloaded).
"""

import logging
from importlib import metadata
from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    Str,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_perfusion.interfaces.nifti import load, load_mask, refused, save_like
from bids_perfusion.spatial import reference, registration, spaces, transforms


def _quiet_dipy():
    """dipy logs every pyramid level at INFO on a handler of its own (set up when
    ``dipy.align`` is imported): keep the console and the node logs to the App's."""
    import dipy.align.imaffine  # noqa: F401 (creates dipy's logger)

    logging.getLogger("dipy").setLevel(logging.WARNING)


#: What the template is, in every sidecar that names it.
TEMPLATE_DESCRIPTION = (
    "MNI152NLin2009aSym: ICBM 2009a nonlinear symmetric template (Fonov et al., "
    "NeuroImage 2011;54:313), skull-stripped T1w, as shipped by nilearn "
    "(nilearn.datasets.load_mni152_template)")


def template_image(resolution_mm=1):
    """nilearn's template resampled to ``resolution_mm`` (its own 1 mm grid for 1)."""
    from nilearn.datasets import load_mni152_template

    return load_mni152_template(resolution=resolution_mm)


def template_brain(resolution_mm=1):
    """nilearn's brain mask of the template at ``resolution_mm``."""
    from nilearn.datasets import load_mni152_brain_mask

    return load_mni152_brain_mask(resolution=resolution_mm)


def software():
    """The ``Software`` sidecar entry of a registration."""
    return f"dipy {metadata.version('dipy')} (dipy.align)"


def _image3d(path, what):
    image = nib.load(path)
    data = np.asarray(image.dataobj, dtype=np.float64)
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"the {what} must be 3-D, got shape {data.shape}")
    return data, image.affine


class _RunReferenceInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="the run's series (DSC: first echo)")
    kind = traits.Enum("dsc", "mean", usedefault=True,
                       desc="dsc: mean of the pre-bolus frames; mean: temporal mean")


class _OutFileSpec(TraitedSpec):
    out_file = File(exists=True)


class RunReference(SimpleInterface):
    """The image of a run that is co-registered to the T1w
    (:func:`bids_perfusion.spatial.reference.dsc_reference`, or the temporal mean)."""

    input_spec = _RunReferenceInputSpec
    output_spec = _OutFileSpec

    def _run_interface(self, runtime):
        series = load(self.inputs.in_file)
        with refused(self.inputs.in_file, "co-registration needs a pre-bolus baseline"):
            image = (reference.dsc_reference(series) if self.inputs.kind == "dsc"
                     else series.mean(axis=-1) if series.ndim == 4 else series)
        self._results["out_file"] = save_like(image, self.inputs.in_file, "reference.nii.gz")
        return runtime


class _CoregisterInputSpec(BaseInterfaceInputSpec):
    reference = File(exists=True, mandatory=True, desc="the run's reference image")
    t1w = File(exists=True, mandatory=True, desc="the subject's T1w")


class _CoregisterOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="ITK affine text: T1w points to run points")
    reference_t1w = File(exists=True, desc="the reference resampled onto the T1w grid")
    metadata = traits.Dict()


class CoregisterToT1w(SimpleInterface):
    """Rigid mutual-information co-registration of the run's reference to the T1w
    (:func:`bids_perfusion.spatial.registration.rigid_coregistration`)."""

    input_spec = _CoregisterInputSpec
    output_spec = _CoregisterOutputSpec

    def _run_interface(self, runtime):
        _quiet_dipy()
        t1w, t1w_affine = _image3d(self.inputs.t1w, "T1w")
        ref, ref_affine = _image3d(self.inputs.reference, "run reference")
        with refused(self.inputs.t1w, "check the T1w of anat/"):
            matrix = registration.rigid_coregistration(t1w, t1w_affine, ref, ref_affine)
        out = Path("coregistration.txt").absolute()
        out.write_text(transforms.itk_affine_text(matrix))
        points = transforms.source_points(t1w.shape, t1w_affine, to_source=matrix)
        resampled = transforms.resample(ref, ref_affine, points, t1w.shape)
        self._results["out_file"] = str(out)
        self._results["reference_t1w"] = save_like(resampled, self.inputs.t1w,
                                                   "reference_t1w.nii.gz")
        self._results["metadata"] = {
            "Software": software(), "Type": "rigid (6 parameters)",
            "Metric": f"mutual information ({registration.HISTOGRAM_BINS} bins)",
            "FixedImage": "T1w", "Convention": "ITK (LPS): maps T1w points to points of "
                                               "the run's reference image"}
        return runtime


class _NormaliseInputSpec(BaseInterfaceInputSpec):
    t1w = File(exists=True, mandatory=True, desc="the subject's T1w")
    brain_mask = File(exists=True, desc="the T1w's brain mask; none: through the template")
    setting = traits.Enum(*registration.NORMALISATION, usedefault=True,
                          desc="schedule of registration.NORMALISATION")


class _NormaliseOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="ITK displacement field: template points to T1w")
    t1w_template = File(exists=True, desc="the T1w on the registration grid")
    metadata = traits.Dict()


class NormaliseT1w(SimpleInterface):
    """Affine + SyN normalisation of the T1w to the template
    (:func:`bids_perfusion.spatial.registration.normalise`) on the template's grid of
    the setting's ``resolution_mm``."""

    input_spec = _NormaliseInputSpec
    output_spec = _NormaliseOutputSpec

    def _run_interface(self, runtime):
        _quiet_dipy()
        t1w, t1w_affine = _image3d(self.inputs.t1w, "T1w")
        setting = registration.NORMALISATION[self.inputs.setting]
        template = template_image(setting.resolution_mm)
        brain = template_brain(setting.resolution_mm)
        given = isdefined(self.inputs.brain_mask)
        mask = load_mask(self.inputs.brain_mask, t1w.shape) if given else None
        with refused(self.inputs.t1w, "check the T1w of anat/"):
            found = registration.normalise(
                np.asarray(template.dataobj, dtype=np.float64), template.affine, t1w,
                t1w_affine, setting, template_mask=np.asarray(brain.dataobj) > 0,
                t1w_mask=mask)
        field = transforms.itk_displacement_field(found.positions, found.grid_affine)
        image = nib.Nifti1Image(field, found.grid_affine)
        image.header.set_intent("vector", (), "")
        image.header.set_xyzt_units("mm")
        out = Path("template_warp.nii.gz").absolute()
        image.to_filename(out)
        points = found.positions.reshape(-1, 3).T
        warped = transforms.resample(t1w, t1w_affine, points, template.shape)
        warped_path = Path("t1w_template.nii.gz").absolute()
        nib.Nifti1Image(warped.astype(np.float32), template.affine).to_filename(warped_path)
        self._results.update(out_file=str(out), t1w_template=str(warped_path), metadata={
            "Software": software(), "Template": TEMPLATE_DESCRIPTION,
            "RegistrationGrid": f"{setting.resolution_mm} mm isotropic",
            "Setting": self.inputs.setting,
            "AffineIterations": list(setting.affine.iterations),
            "SyNIterations": list(setting.syn_iterations),
            "Metric": f"mutual information (affine), local cross-correlation of radius "
                      f"{registration.CC_RADIUS} voxels (SyN)",
            "SkullStripping": "the given brain mask" if given else (
                "the template's brain mask through the affine stage, dilated "
                f"{registration.BRAIN_MARGIN_MM:g} mm"),
            "Convention": "ITK displacement field (LPS, mm) on the template grid: maps "
                          "template points to T1w points; NaN outside the T1w's field "
                          "of view"})
        return runtime


class _ComposeInputSpec(BaseInterfaceInputSpec):
    space = Str(mandatory=True, desc="an --output-spaces value other than run")
    t1w = File(exists=True, mandatory=True, desc="the T1w (grid of space T1w)")
    coregistration = File(exists=True, mandatory=True, desc="ITK affine: T1w to run")
    template_warp = File(exists=True, desc="ITK displacement field: template to T1w")


class ComposeTransforms(SimpleInterface):
    """The run's world points at every voxel of an output space's grid, the transforms
    composed once per run and space
    (:func:`bids_perfusion.spatial.transforms.source_points`): a 4-D image (X, Y, Z, 3)
    on the output grid, NaN where no run point is defined."""

    input_spec = _ComposeInputSpec
    output_spec = _OutFileSpec

    def _run_interface(self, runtime):
        space = spaces.parse_space(self.inputs.space)
        to_run = transforms.affine_from_itk_text(Path(self.inputs.coregistration).read_text())
        if space.name == spaces.T1W:
            target = nib.load(self.inputs.t1w)
            shape, affine, positions, field_affine = target.shape[:3], target.affine, None, None
        else:
            one = template_image(1)
            shape, affine = transforms.template_grid(one.shape, one.affine,
                                                     space.voxel_size_mm)
            warp = nib.load(self.inputs.template_warp)
            field_affine = warp.affine
            positions = transforms.positions_from_itk_field(np.asarray(warp.dataobj),
                                                            field_affine)
        points = transforms.source_points(shape, affine, positions=positions,
                                          positions_affine=field_affine, to_source=to_run)
        image = nib.Nifti1Image(points.T.reshape(*shape, 3).astype(np.float32), affine)
        path = Path("run_points.nii").absolute()
        image.to_filename(path)
        self._results["out_file"] = str(path)
        return runtime


class _ResampleInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="a 3-D (or 4-D) map or mask")
    kind = traits.Enum(*transforms.INTERPOLATION, usedefault=True,
                       desc="map: trilinear; mask: nearest neighbour")
    points = File(exists=True, mandatory=True,
                  desc="the run points of the output grid (ComposeTransforms)")
    space = Str(mandatory=True, desc="the output space (T1w: scanner xform codes)")


class ResampleToSpace(SimpleInterface):
    """A map resampled once into an output space at the composed points of
    :class:`ComposeTransforms` (:func:`bids_perfusion.spatial.transforms.resample`)."""

    input_spec = _ResampleInputSpec
    output_spec = _OutFileSpec

    def _run_interface(self, runtime):
        grid = nib.load(self.inputs.points)
        shape, affine = grid.shape[:3], grid.affine
        points = np.asarray(grid.dataobj, dtype=np.float64).reshape(-1, 3).T
        source = nib.load(self.inputs.in_file)
        data = np.asarray(source.dataobj, dtype=np.float64)
        volumes = data.reshape(*data.shape[:3], -1)
        out = np.stack([transforms.resample(volumes[..., i], source.affine, points, shape,
                                            self.inputs.kind)
                        for i in range(volumes.shape[-1])], axis=-1)
        out = out.reshape(*shape, *data.shape[3:])
        dtype = np.uint8 if self.inputs.kind == "mask" else np.float32
        header = source.header.copy()
        header.set_data_dtype(dtype)
        image = nib.Nifti1Image(out.astype(dtype), affine, header)
        code = 1 if spaces.parse_space(self.inputs.space).name == spaces.T1W else 4
        image.set_qform(affine, code)
        image.set_sform(affine, code)
        path = Path(Path(self.inputs.in_file).name.split(".")[0] + "_space.nii.gz").absolute()
        image.to_filename(path)
        self._results["out_file"] = str(path)
        return runtime
