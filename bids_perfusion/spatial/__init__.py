"""Spatial core: output spaces, co-registration, normalisation, one-step resampling.

No nipype and no files: :mod:`~bids_perfusion.spatial.spaces` parses ``--output-spaces``;
:mod:`~bids_perfusion.spatial.registration` estimates the rigid co-registration of a run's
reference image to the T1w and the affine + SyN normalisation of the T1w to the template
(dipy's ``dipy.align``); :mod:`~bids_perfusion.spatial.transforms` composes them so that a
map is resampled once from its native grid, and converts them to ITK's file conventions.
"""
