"""Model weights on disk: a safetensors file and its JSON model card.

``name.safetensors`` holds the tensors of a ``state_dict``; ``name.json`` beside it is the
model card: the model name, its configuration, the data it was trained on, the subject
split, the command that trained it, its metrics, the library versions and the sha256 of
the weights file. :func:`load_weights` recomputes the sha256 and refuses a file that does
not match its card, and reads tensors only (safetensors, or ``torch.load`` with
``weights_only=True`` for ``.pt`` files): no pickled code is ever executed.
"""

import io
import json
import platform
import sys
from pathlib import Path

import numpy as np

from bids_perfusion.records import sha256

#: Weights shipped with the package, per deep method: the file under
#: ``bids_perfusion/data`` and the models its card may name (stU-Net weights may hold
#: the Hess et al. baseline, which predicts the same CBV; superres is the neural-ODE +
#: LIIF super-resolution of DSC; deepasl, dilatedconv and deepasl-multidelay the ASL
#: denoisers).
BUNDLED = {"phae": ("phae/phae.safetensors", ("phae",)),
           "stunet": ("stunet/stunet.safetensors", ("stunet", "hess")),
           "superres": ("superres/superres.safetensors", ("superres",)),
           "deepasl": ("deepasl/deepasl.safetensors", ("deepasl",)),
           "dilatedconv": ("deepasl/dilatedconv.safetensors", ("dilatedconv",)),
           "deepasl-multidelay": ("deepasl/deepasl-multidelay.safetensors",
                                  ("deepasl-multidelay",))}

#: Keys every model card holds.
CARD_KEYS = ("model", "configuration", "data", "split", "command", "metrics", "libraries",
             "sha256")


def config_from_dict(cls, values):
    """The dataclass ``cls`` of a model card's configuration: unknown keys are ignored and
    JSON lists become tuples again (the configurations are frozen, hashable dataclasses)."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{key: tuple(value) if isinstance(value, list) else value
                  for key, value in dict(values).items() if key in fields})


def bundled_weights(method):
    """Path of the weights shipped for ``method`` (a key of :data:`BUNDLED`; trained on
    phantom data, see their model cards)."""
    from importlib.resources import files

    return files("bids_perfusion") / "data" / BUNDLED[method][0]


class WeightsError(ValueError):
    """A weights file that is missing, corrupt, or does not match its model card."""


def card_path(weights_path):
    """The model card of ``weights_path``: the same name with the suffix ``.json``."""
    return Path(weights_path).with_suffix(".json")


def library_versions():
    """Versions of the libraries that trained or ran a model, for the card."""
    import safetensors
    import torch

    from bids_perfusion import __version__

    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "safetensors": safetensors.__version__,
            "bids_perfusion": __version__, "platform": sys.platform}


def save_weights(state_dict, path, card):
    """Write ``state_dict`` to ``path`` (safetensors) and its model card beside it.

    ``card`` holds at least ``model`` and ``configuration``; ``libraries`` and ``sha256``
    are filled in here. Tensors are stored contiguous, on the CPU. Returns the card written.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: weights are written as .safetensors files")
    missing = [key for key in ("model", "configuration") if key not in card]
    if missing:
        raise ValueError(f"the model card needs {missing}")
    tensors = {key: value.detach().cpu().contiguous().clone()
               for key, value in state_dict.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"model": str(card["model"])})
    full = {key: card.get(key) for key in CARD_KEYS}
    full.update({key: value for key, value in card.items() if key not in full})
    full["libraries"] = library_versions()
    full["sha256"] = sha256(path)
    full["weights_file"] = path.name
    card_path(path).write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    return full


def read_card(weights_path):
    """The model card of a weights file, or WeightsError naming the missing or bad file."""
    card_file = card_path(weights_path)
    try:
        card = json.loads(card_file.read_text())
    except FileNotFoundError:
        raise WeightsError(f"{weights_path}: no model card {card_file.name} beside it; "
                           "weights are only loaded with their card (it holds the sha256 "
                           "and the configuration).") from None
    except json.JSONDecodeError as error:
        raise WeightsError(f"{card_file}: not valid JSON ({error}).") from None
    if not isinstance(card, dict) or "sha256" not in card:
        raise WeightsError(f"{card_file}: the model card has no 'sha256' field.")
    return card


def weights_sidecar(path, card):
    """The sidecar entries of maps made with the weights at ``path`` and their ``card``:
    the file's name, its sha256, what it was trained on and the model's configuration."""
    return {"ModelWeights": Path(str(path)).name, "ModelWeightsSHA256": card["sha256"],
            "ModelTrainingData": "synthetic (bids-perfusion phantom)"
                                 if card.get("data", {}).get("synthetic") else "see model card",
            "ModelConfiguration": card["configuration"]}


def verify_weights(path, expected_models=None):
    """The model card of a weights file once the file is known to be the one it describes.

    Raises WeightsError when the file or its card is missing, when the file's sha256
    differs from the card's (a changed, truncated or swapped file), or when the card names
    a model not in ``expected_models``. Reads bytes only: no tensor is made, so that this
    can run in a process that forks workers afterwards (torch's thread pools do not
    survive a fork).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found.")
    card = read_card(path)
    if expected_models is not None and card.get("model") not in expected_models:
        raise WeightsError(f"{path}: the model card is for model {card.get('model')!r}, "
                           f"not {' or '.join(map(repr, expected_models))}.")
    if (digest := sha256(path)) != card["sha256"]:
        raise WeightsError(
            f"{path}: sha256 {digest} does not match the model card "
            f"{card_path(path).name} ({card['sha256']}); the file is corrupt or was "
            "replaced. Re-download or retrain it, or write a new card with save_weights.")
    return card


def load_weights(path, expected_model=None):
    """The ``state_dict`` of a weights file and its model card, after checking the sha256
    (:func:`verify_weights`); WeightsError also when the file cannot be parsed."""
    import torch

    path = Path(path)
    card = verify_weights(path, None if expected_model is None else (expected_model,))
    data = path.read_bytes()
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load as load_safetensors

            state = load_safetensors(data)
        else:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # safetensors and torch raise several types
        raise WeightsError(f"{path}: cannot read the weights ({error}).") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise WeightsError(f"{path}: the file does not hold a dict of tensors.")
    return state, card
