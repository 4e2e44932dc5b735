"""Choice of the torch device: ``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``."""

import torch

#: Values accepted by ``--device``.
DEVICES = ("auto", "cpu", "cuda")


def select_device(request="auto"):
    """The :class:`torch.device` for a ``--device`` value.

    ``auto`` picks ``cuda`` when a CUDA device is usable and ``cpu`` otherwise; ``cuda``
    (or ``cuda:N``) raises RuntimeError, saying so, when no CUDA device is available, rather
    than falling back silently.
    """
    request = str(request or "auto").lower()
    if request == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if request == "cpu":
        return torch.device("cpu")
    if request.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {request} was requested but torch sees no CUDA "
                               f"device (torch {torch.__version__}); use --device cpu or auto.")
        device = torch.device(request)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"--device {request}: only {torch.cuda.device_count()} CUDA "
                               "device(s) are visible.")
        return device
    raise ValueError(f"unknown device {request!r}; use one of {DEVICES} (or cuda:N)")


def describe(device):
    """A short human-readable name of ``device`` for sidecars and model cards."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type
