"""Reading and writing the NIfTI files that interfaces exchange (TSV: bids_perfusion.tsv)."""

from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_perfusion.errors import InputDataError


def load(path, dtype=np.float32):
    """The image's data as an array of ``dtype`` (scaling applied)."""
    return np.asarray(nib.load(path).dataobj, dtype=dtype)


def load_mask(path, shape):
    """A mask as a boolean array; InputDataError naming the file if empty or mismatched."""
    mask = load(path) > 0
    if mask.shape[:3] != tuple(shape[:3]):
        raise InputDataError(f"{path}: mask of shape {mask.shape} does not match the series "
                             f"{tuple(shape[:3])}; resample it onto the series grid.")
    if not mask.any():
        raise InputDataError(f"{path}: the mask is empty; give a mask with at least one "
                             "voxel.")
    return mask.reshape(shape[:3])


def voxel_size(path):
    """Voxel size (mm) along the three axes of an image, from its affine."""
    affine = nib.load(path).affine
    return np.sqrt((affine[:3, :3] ** 2).sum(axis=0))


@contextmanager
def refused(path, fix=""):
    """Re-raise the ``ValueError`` of a data check as :class:`InputDataError`.

    Wrap only calls whose ``ValueError`` means bad data (the checks of the cores);
    an :class:`InputDataError` raised inside, which names its own file, passes unchanged.
    The message becomes one line: ``"<path>: <problem and fix of the check>"``, followed by
    ``fix`` when given (the remedy a user of the command line can apply).
    """
    try:
        yield
    except InputDataError:
        raise
    except ValueError as error:
        text = " ".join(str(error).split())
        if text.startswith(f"{path}: "):
            text = text[len(f"{path}: "):]
        text = f"{path}: {text.rstrip('.')}" + (f"; {fix}" if fix else "") + "."
        raise InputDataError(text) from None


def save_like(data, reference, name, dtype=np.float32, keep_nonfinite=False):
    """Write ``data`` with the affine and header of ``reference`` to ``name`` in the cwd.

    Non-finite values become 0, so that no NaN reaches the derivatives, unless
    ``keep_nonfinite`` (an intermediate series whose NaN the next checks must see).
    """
    reference = nib.load(reference)
    data = np.asarray(data, dtype=dtype)
    if not (keep_nonfinite or np.isfinite(data).all()):  # the check alone costs no copy
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    image = nib.Nifti1Image(data, reference.affine, header)
    image.header.set_xyzt_units("mm", "sec")
    path = Path(name).absolute()
    image.to_filename(path)
    return str(path)
