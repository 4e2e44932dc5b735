"""Open an image's header and check it before any processing: readable, complete, sane.

A file named ``.nii.gz`` that is not NIfTI, a truncated download, a header whose
dimensions would need terabytes, or a mask on another grid are refused here with the
file named and the fix, instead of a traceback, a MemoryError or wrong numbers later.
Only the header and the last bytes of the file are read.
"""

import gzip
import os
import zlib
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from bids_perfusion.errors import InputDataError

#: Largest number of voxels along a spatial axis (clinical matrices are 64-512).
MAX_EXTENT = 2048
#: Largest number of volumes in a series (DSC has 40-200 frames, ASL up to a few hundred).
MAX_VOLUMES = 10_000
#: Largest series, bytes as float32, that a run may need in memory.
MAX_BYTES = 32 * 1024**3
#: Affines of two images on one grid differ by less than this, mm.
GRID_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ImageHeader:
    """What the checks read of an image: its shape, voxel-to-world affine and voxel size."""

    shape: tuple
    affine: np.ndarray
    zooms: tuple


def check_image(path, kind="image"):
    """The :class:`ImageHeader` of a NIfTI file, or InputDataError naming file and fix.

    ``kind`` names the file's role in messages ('DSC series', 'mask', 'M0 scan').
    """
    fix = f"re-export the {kind} as NIfTI (.nii or .nii.gz)"
    try:
        image = nib.load(path)
    except Exception as error:  # nibabel, gzip and zlib each raise their own types
        raise InputDataError(f"{path}: not a readable NIfTI image ({error}); {fix}.") from None
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise InputDataError(f"{path}: a {type(image).__name__}, not NIfTI; {fix}.")
    shape = tuple(int(n) for n in image.shape)
    if not 3 <= len(shape) <= 4 or min(shape) < 1:
        raise InputDataError(f"{path}: dimensions {shape}; a {kind} has 3 spatial "
                             "dimensions (and time as the 4th); fix the header's 'dim'.")
    if max(shape[:3]) > MAX_EXTENT or (len(shape) == 4 and shape[3] > MAX_VOLUMES):
        raise InputDataError(
            f"{path}: the header claims dimensions {shape}, beyond {MAX_EXTENT} voxels per "
            f"axis or {MAX_VOLUMES} volumes; the header is corrupt: {fix}.")
    if 4 * np.prod(shape, dtype=float) > MAX_BYTES:
        raise InputDataError(f"{path}: dimensions {shape} need more than "
                             f"{MAX_BYTES / 1024**3:.0f} GiB as float32; crop the {kind}.")
    affine = image.affine
    zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputDataError(f"{path}: the voxel-to-world affine is singular or not finite; "
                             "fix the header's qform/sform.")
    if not all(np.isfinite(z) and z > 0 for z in zooms):
        raise InputDataError(f"{path}: voxel sizes {zooms}; they must be positive mm; fix "
                             "the header's 'pixdim'.")
    expected = int(image.header.get_data_offset()) + int(
        np.prod(shape) * image.header.get_data_dtype().itemsize)
    if (stored := _stored_bytes(path, expected)) < expected:
        raise InputDataError(f"{path}: the file holds {stored} bytes of the {expected} its "
                             f"header announces; it is truncated: copy or {fix} again.")
    return ImageHeader(shape, affine, zooms)


def _stored_bytes(path, expected):
    """Bytes of the uncompressed file (``expected`` when that is all that can be told).

    A gzip file whose trailer (ISIZE: the size modulo 2**32) agrees with ``expected`` is
    complete; the stream of one that disagrees is read through and counted (a truncated
    one ends early).
    """
    path = os.fspath(path)
    if not path.endswith(".gz"):
        return os.path.getsize(path)
    with open(path, "rb") as handle:
        handle.seek(-4, os.SEEK_END)
        if int.from_bytes(handle.read(4), "little") == expected % 2**32:
            return expected
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while block := stream.read(1 << 24):
                total += len(block)
    except (EOFError, OSError, zlib.error):  # truncated or corrupt stream
        pass
    return total


def check_same_grid(paths, headers, what="echo files"):
    """InputDataError unless every image has the spatial shape and affine of the first."""
    first = headers[0]
    for path, header in zip(paths[1:], headers[1:], strict=True):
        if header.shape[:3] != first.shape[:3]:
            raise InputDataError(
                f"{path}: grid {header.shape[:3]} does not match {paths[0]} "
                f"{first.shape[:3]}; the {what} must be on the series grid: resample it.")
        if not np.allclose(header.affine, first.affine, atol=GRID_TOLERANCE):
            raise InputDataError(
                f"{path}: its affine differs from that of {paths[0]} (same shape, another "
                f"position or orientation); the {what} must be on the series grid: resample "
                "it or fix its header.")
