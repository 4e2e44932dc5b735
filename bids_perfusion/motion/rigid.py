"""Rigid transforms of the head and framewise displacement.

Six parameters per frame, in the order and units of fMRIPrep's confounds:
``trans_x, trans_y, trans_z`` (mm, along the world axes of the image, RAS+) and
``rot_x, rot_y, rot_z`` (radians, about the same axes). A point ``x`` of the head in the
reference pose sits at

    T(x) = R (x − c) + c + t,   R = R_z(rot_z) R_y(rot_y) R_x(rot_x),

in the frame, with ``c`` the centre of rotation (the centre of the image grid, as MCFLIRT
rotates about the centre of the volume; Jenkinson et al., NeuroImage 2002;17:825).
"""

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Names of the six parameters, the columns of ``desc-confounds_timeseries.tsv``.
PARAMETER_NAMES = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
#: Radius of the sphere that turns rotations into displacements in the framewise
#: displacement (Power et al., NeuroImage 2012;59:2142), mm.
HEAD_RADIUS_MM = 50.0


def rotation_matrix(angles: ArrayLike) -> NDArray[np.float64]:
    """``R_z(γ) R_y(β) R_x(α)`` of ``angles = (α, β, γ)`` in radians."""
    cx, cy, cz = np.cos(np.asarray(angles, dtype=float))
    sx, sy, sz = np.sin(np.asarray(angles, dtype=float))
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    return rz @ ry @ rx


def rotation_angles(rotation: ArrayLike) -> NDArray[np.float64]:
    """The angles ``(α, β, γ)`` of :func:`rotation_matrix` (|β| < π/2)."""
    r = np.asarray(rotation, dtype=float)
    beta = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    return np.array([np.arctan2(r[2, 1], r[2, 2]), beta, np.arctan2(r[1, 0], r[0, 0])])


def rigid_matrix(parameters: ArrayLike, centre: ArrayLike) -> NDArray[np.float64]:
    """The 4 × 4 world transform ``T(x) = R (x − c) + c + t`` of six ``parameters``
    (:data:`PARAMETER_NAMES`) about ``centre`` ``c`` (mm)."""
    parameters = np.asarray(parameters, dtype=float)
    centre = np.asarray(centre, dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation_matrix(parameters[3:])
    matrix[:3, 3] = centre - matrix[:3, :3] @ centre + parameters[:3]
    return matrix


def rigid_parameters(matrix: ArrayLike, centre: ArrayLike) -> NDArray[np.float64]:
    """The six parameters of a rigid 4 × 4 ``matrix`` about ``centre`` (inverse of
    :func:`rigid_matrix`)."""
    matrix = np.asarray(matrix, dtype=float)
    centre = np.asarray(centre, dtype=float)
    translation = matrix[:3, 3] - centre + matrix[:3, :3] @ centre
    return np.concatenate([translation, rotation_angles(matrix[:3, :3])])


def framewise_displacement(parameters: ArrayLike,
                           radius: float = HEAD_RADIUS_MM) -> NDArray[np.float64]:
    """Framewise displacement of Power et al. (NeuroImage 2012;59:2142), mm, per frame:

        FD_i = |Δtx_i| + |Δty_i| + |Δtz_i| + r (|Δα_i| + |Δβ_i| + |Δγ_i|),

    ``Δ`` the difference from frame ``i − 1``, rotations (radians) taken as arcs on a
    sphere of radius ``r`` (50 mm, about the distance from the cortex to the centre of
    the head). ``parameters`` has shape ``(T, 6)`` (:data:`PARAMETER_NAMES`); FD of the
    first frame is 0.
    """
    parameters = np.asarray(parameters, dtype=float)
    if parameters.ndim != 2 or parameters.shape[1] != 6:
        raise ValueError(f"motion parameters must have shape (frames, 6), got "
                         f"{parameters.shape}")
    steps = np.abs(np.diff(parameters, axis=0))
    fd = steps[:, :3].sum(axis=1) + radius * steps[:, 3:].sum(axis=1)
    return np.concatenate([[0.0], fd])
