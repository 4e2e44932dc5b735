"""Rigid head motion of the phantom, with known parameters per frame.

The head moves as a whole between frames (no motion within a frame): a slow drift
from the first frame's pose to a random pose, plus :data:`JERKS` sudden moves at random
frames, each settling over two frames. With amplitude ``A`` (``PhantomConfig.motion``),
each translation drifts by up to ``A/2`` mm and each rotation by up to ``A/2`` degrees,
and each jerk adds up to ``A/2`` more: a few millimetres and degrees for ``A`` of 2-3, the
range of patients who move during a DSC bolus. The first frame is in the pose of the
ground-truth maps (parameters 0).

Frame ``i`` of the moved series is ``S_i(y) = S_i(T_i⁻¹(y))``, the simulated frame
resampled (cubic B-spline, edge values repeated beyond the slab) with the rigid transform
``T_i`` of :func:`bids_perfusion.motion.rigid.rigid_matrix` about the centre of the grid:
the parameters a realignment to the first frame should recover. The noise of the
simulated frame moves with the head and is slightly smoothed by the interpolation.
"""

import numpy as np

from bids_perfusion.motion.realign import grid_centre, resample_frame
from bids_perfusion.motion.rigid import rigid_matrix

#: Number of sudden moves in a series.
JERKS = 2
#: Entropy added to the subject's seed for its motion, so that motion draws nothing from
#: the streams of the anatomy, DSC and ASL (no motion: the same data as before).
MOTION_STREAM = 19


def motion_rng(seed, subject_index):
    """The random generator of a subject's motion, independent of its other draws."""
    return np.random.default_rng(np.random.SeedSequence([seed, subject_index,
                                                         MOTION_STREAM]))


def motion_trajectory(rng, n_frames, amplitude):
    """Parameters ``(n_frames, 6)`` (mm, rad; :data:`~bids_perfusion.motion.rigid.
    PARAMETER_NAMES`) of a drift plus :data:`JERKS` jerks of ``amplitude`` (module
    docstring); the first frame's are 0."""
    if n_frames < 1:
        raise ValueError(f"a series needs at least one frame, got {n_frames}")
    if not amplitude >= 0:
        raise ValueError(f"the motion amplitude must be >= 0, got {amplitude}")
    half = amplitude / 2.0
    units = np.array([1.0, 1.0, 1.0, *np.deg2rad([1.0, 1.0, 1.0])])
    ramp = np.linspace(0.0, 1.0, n_frames)[:, None]
    parameters = ramp * rng.uniform(-half, half, 6) * units
    for _ in range(JERKS if n_frames > 2 else 0):
        frame = int(rng.integers(1, n_frames))
        step = np.clip(np.arange(n_frames) - frame + 1, 0, 2)[:, None] / 2.0  # over 2 frames
        parameters += step * rng.uniform(-half, half, 6) * units
    return parameters


def move_series(series, affine, parameters):
    """``series`` (x, y, z, T) with frame ``i`` moved by the rigid transform of
    ``parameters[i]`` (module docstring); float32."""
    series = np.asarray(series)
    parameters = np.asarray(parameters, dtype=float)
    if parameters.shape != (series.shape[-1], 6):
        raise ValueError(f"motion parameters of shape {parameters.shape} for a series of "
                         f"{series.shape[-1]} frames; give one row of 6 per frame")
    centre = grid_centre(series.shape, affine)
    moved = np.empty(series.shape, dtype=np.float32)
    for index, frame_parameters in enumerate(parameters):
        if not frame_parameters.any():
            moved[..., index] = series[..., index]
            continue
        inverse = np.linalg.inv(rigid_matrix(frame_parameters, centre))
        moved[..., index] = resample_frame(series[..., index], affine, inverse,
                                           series.shape, affine, order=3)
    return moved


def move_dsc(simulation, affine, rng, amplitude):
    """The :class:`~bids_perfusion.phantom.dsc.DSCSimulation` with every run moved (one
    trajectory per dose, shared by its echoes, which are acquired together), and
    ``{dose: parameters}``."""
    from dataclasses import replace

    n_frames = next(iter(simulation.signals.values())).shape[-1]
    trajectories = {dose: motion_trajectory(rng, n_frames, amplitude)
                    for dose in dict.fromkeys(dose for dose, _echo in simulation.signals)}
    signals = {(dose, echo): move_series(data, affine, trajectories[dose])
               for (dose, echo), data in simulation.signals.items()}
    return replace(simulation, signals=signals), trajectories


def move_asl(simulation, affine, rng, amplitude):
    """The :class:`~bids_perfusion.phantom.asl.ASLSimulation` with its series moved (the
    separate M0 scan, acquired first, stays in the pose of the first volume), and the
    parameters."""
    from dataclasses import replace

    parameters = motion_trajectory(rng, simulation.series.shape[-1], amplitude)
    return (replace(simulation, series=move_series(simulation.series, affine, parameters)),
            parameters)
