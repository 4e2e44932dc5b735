"""Choice of the torch device (``--device auto|cpu|cuda|cuda:N``) and batch sizes that fit it.

- :func:`select_device`: the :class:`torch.device` of a ``--device`` value; ``auto`` falls
  back to the CPU (with a log line) when torch sees no CUDA device; ``cuda`` without one
  is an error that names the option and the fix.
- :func:`batch_size`: items per forward pass (voxels, strips, slices, queries) that fit the
  device's free memory on CUDA (``torch.cuda.mem_get_info``), a fixed default on the CPU.
- :data:`INFERENCE_BYTES`: the memory one item of each model's inference needs, which
  :func:`batch_size` divides the free memory by.
- :func:`describe`: the device as written in the sidecars (``"cpu"``, ``"cuda:0 (NVIDIA
  H200)"``).
"""

import logging
import re

import torch

from bids_perfusion.constants import DEVICE_PATTERN

LOGGER = logging.getLogger("nipype.interface")

#: Values accepted by ``--device`` (and ``cuda:N``, N the index of a visible GPU).
DEVICES = ("auto", "cpu", "cuda")

#: Bytes one item of each model's inference needs, per float32 value of the item's input
#: (a voxel's T frames for PHAE, a strip's width × size × T for the stU-Net, a slice's
#: pixels for DeepASL) or per query (super-resolution decoder): the outputs of every layer
#: of one forward pass summed, measured with forward hooks on the bundled weights (PHAE
#: 390 kB per 80-frame curve, stU-Net 13.3 MB per 16 × 64 × 80 strip, DeepASL 50.5 MB per
#: 128 × 128 slice, decoder 14.4 kB per query). Inference frees each layer's input as it
#: goes, so this sum is an upper bound of the peak.
INFERENCE_BYTES = {"phae": 1220 * 4, "stunet": 41 * 4, "deepasl": 771 * 4,
                   "superres": 14_400}

#: Share of the free device memory that one batch may take.
MEMORY_FRACTION = 0.5


class DeviceError(RuntimeError):
    """``--device`` asks for a device torch cannot use; the message names the fix."""


def check_request(request):
    """``request`` lower-cased if it is a ``--device`` value
    (:data:`bids_perfusion.constants.DEVICE_PATTERN`), else ValueError."""
    request = str(request or "auto").lower()
    if not re.fullmatch(DEVICE_PATTERN, request):
        raise ValueError(f"unknown device {request!r}; use one of {DEVICES} (or cuda:N)")
    return request


def select_device(request="auto"):
    """The :class:`torch.device` for a ``--device`` value.

    ``auto`` picks ``cuda`` (the current CUDA device) when torch sees one and the CPU
    otherwise, saying so in the log; ``cuda`` or ``cuda:N`` raises :class:`DeviceError`
    when no CUDA device (or no device N) is visible, rather than falling back silently.
    """
    request = check_request(request)
    if request == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        LOGGER.info("--device auto: torch %s sees no CUDA device; the models and the "
                    "deconvolution run on the CPU", torch.__version__)
        return torch.device("cpu")
    if request == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"--device {request} was requested but torch sees no CUDA device "
                          f"(torch {torch.__version__}, CUDA build "
                          f"{torch.version.cuda or 'none'}); use --device cpu or auto, or "
                          "run where a GPU and its driver are visible (docker --gpus all, "
                          "apptainer --nv).")
    device = torch.device(request)
    if device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    if device.index >= torch.cuda.device_count():
        raise DeviceError(f"--device {request}: only {torch.cuda.device_count()} CUDA "
                          f"device(s) are visible; use cuda:0 to cuda:"
                          f"{torch.cuda.device_count() - 1}, or cuda.")
    return device


def batch_size(device, item_bytes, default, *, maximum=None):
    """Items per batch on ``device``: on CUDA ``⌊f · free / item_bytes⌋`` with ``free`` the
    device's free memory (``torch.cuda.mem_get_info``) and ``f`` = :data:`MEMORY_FRACTION`,
    at least 1 and at most ``maximum`` (when given); on the CPU, ``default`` (the
    throughput of a CPU does not grow with the batch, and its memory is shared with the
    other nodes).
    """
    device = torch.device(device)
    if device.type != "cuda":
        return int(default)
    free, _total = torch.cuda.mem_get_info(device)
    size = max(1, int(MEMORY_FRACTION * free // max(1, int(item_bytes))))
    return size if maximum is None else min(size, int(maximum))


def describe(device):
    """``device`` as the sidecars record it: ``"cpu"`` or ``"cuda:N (<GPU name>)"``."""
    device = torch.device(device)
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type
