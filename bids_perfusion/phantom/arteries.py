"""Arterial voxels of the phantom: the vessels that carry the arterial input function.

Centre lines of the proximal cerebral arteries (middle cerebral M1-M2, anterior cerebral
A1-A2 and posterior cerebral P1-P2, both sides), given in MNI millimetres, are drawn
into the grid. Voxels on a centre line are filled with blood (blood fraction 1); their
in-plane neighbours get partial volume, a blood fraction drawn from 0.2-0.6. Real
arteries are thinner than DSC voxels: the phantom idealises them so that a few voxels
carry an undistorted AIF while their neighbours show partial-volume effects.
"""

import itertools

import numpy as np

#: Centre lines (MNI mm) of the right-hemisphere arteries; the left side is mirrored.
CENTRE_LINES = (
    ((8.0, 2.0, -14.0), (24.0, 4.0, -12.0), (40.0, 4.0, -4.0), (42.0, -4.0, 14.0)),  # MCA
    ((4.0, 10.0, -10.0), (3.0, 28.0, 4.0), (3.0, 26.0, 26.0), (3.0, 6.0, 40.0)),  # ACA
    ((6.0, -20.0, -12.0), (20.0, -40.0, -6.0), (24.0, -66.0, 2.0)),  # PCA
)
#: Range of blood fractions of the partial-volume neighbours.
PARTIAL_VOLUME = (0.2, 0.6)


def centre_line_voxels(grid, world_from_template=None, warp=None):
    """Per segment of every centre line: the voxel indices it crosses (3, N) and its unit
    direction in world coordinates (3,).

    With a ``warp`` (:class:`bids_perfusion.phantom.deformation.Warp`, the deformation
    the tissue was sampled through), the centre lines are moved by its inverse first, so
    that the arteries follow the deformed anatomy.
    """
    transform = np.eye(4) if world_from_template is None else world_from_template
    voxel_from_world = np.linalg.inv(grid.affine) @ transform
    segments = []
    for line in CENTRE_LINES:
        for side in (1.0, -1.0):
            points = np.array(line) * np.array([side, 1.0, 1.0])
            for start, end in itertools.pairwise(points):
                n = int(np.ceil(np.linalg.norm(end - start) / 0.5)) + 1
                segments.append(start + np.linspace(0.0, 1.0, n)[:, None] * (end - start))
    if warp is not None:  # one inverse for every point: the fixed point is iterative
        moved = warp.inverse(np.concatenate(segments).T).T
        segments = np.split(moved, np.cumsum([len(mm) for mm in segments])[:-1])
    for mm in segments:
        ijk = np.rint(voxel_from_world[:3, :3] @ mm.T + voxel_from_world[:3, 3:4])
        inside = np.all((ijk >= 0) & (ijk < np.array(grid.shape)[:, None]), axis=0)
        direction = transform[:3, :3] @ (mm[-1] - mm[0])
        yield ijk[:, inside].astype(int), direction / np.linalg.norm(direction)


def artery_fraction(rng, grid, world_from_template=None, warp=None):
    """Blood fraction of every voxel (x, y, z): 1 on the centre lines, partial around
    (the centre lines of :func:`centre_line_voxels`, moved by ``warp`` when given)."""
    core = np.zeros(grid.shape, dtype=bool)
    for ijk, _ in centre_line_voxels(grid, world_from_template, warp):
        core[tuple(ijk)] = True
    fraction = core.astype(float)
    shell = np.zeros(grid.shape, dtype=bool)
    for axis in (0, 1):
        for step in (1, -1):
            shell |= np.roll(core, step, axis=axis)
    shell &= ~core
    fraction[shell] = rng.uniform(*PARTIAL_VOLUME, size=int(shell.sum()))
    return fraction
