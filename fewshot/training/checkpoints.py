"""Checkpoints of trained models: tensors plus a JSON config, never pickled code.

``fewshot pretrain`` writes one file with :func:`save_checkpoint`::

    torch.save({"format": "fewshot-checkpoint", "version": 1,
                "config": "<JSON text>", "state_dict": {name: tensor, ...}}, path)

Only strings, ints and tensors are stored, so :func:`load_checkpoint` reads it with
``torch.load(weights_only=True)``: no code from the file ever runs. The JSON config
holds ``model`` (a name in :data:`fewshot.training.MODELS`), ``params`` (its keyword
arguments), ``n_classes``, ``classes``, ``spectrogram`` (the name of the log-mel
configuration of its inputs), ``patch_frames``, ``n_mels``, ``train_config`` (the
:class:`~fewshot.training.TrainConfig` fields), ``dataset`` and ``seed``.

``fewshot run --pretrained NAME=PATH`` registers a checkpoint under ``NAME``
(:func:`register_pretrained`), so methods address it as ``finetune:NAME``,
``protonet:NAME`` or ``probe:NAME+svm``. ``--pretrained vggish=PATH`` names the
VGGish weights file instead (torchvggish layout, :mod:`fewshot.pretrained.vggish`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..exceptions import DataError, ParameterError

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "register_pretrained", "parse_pretrained_option",
           "user_pretrained", "clear_pretrained", "file_digest"]

FORMAT = "fewshot-checkpoint"
VERSION = 1
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")

#: Checkpoints registered for this process: name -> path (``--pretrained NAME=PATH``).
_USER: dict[str, Path] = {}
#: Environment variable mirroring the registrations (``NAME=PATH`` joined by os.pathsep), so that
#: worker processes started afterwards (``--executor dask``) see the same names.
ENV_VAR = "FEWSHOT_PRETRAINED"


def file_digest(path: str | os.PathLike) -> str:
    """First 16 hex digits of the file's SHA-256 (part of cache keys of features from it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, model_name: str, n_classes: int,
                    classes: list[str], spectrogram: str, patch_frames: int, n_mels: int,
                    params: dict[str, Any] | None = None, train_config: Any = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s tensors and its config to ``path`` (atomically: temporary file, then rename).

    Parameters
    ----------
    path : path
    model : torch.nn.Module
        A model built by :func:`fewshot.training.create_model` (its ``state_dict`` is saved).
    model_name : str
        Its name in :data:`fewshot.training.MODELS`.
    n_classes : int
    classes : list of str
        Class names, in label order.
    spectrogram : str
        Name of the log-mel configuration of its inputs (``"fewdata"``).
    patch_frames, n_mels : int
        Input patch size.
    params : dict, optional
        Keyword arguments the model was built with.
    train_config : TrainConfig or dict, optional
    extra : dict, optional
        More JSON-able metadata (dataset, seed, folds).

    Returns
    -------
    Path
    """
    if dataclasses.is_dataclass(train_config):
        train_config = dataclasses.asdict(train_config)
    config = {
        "model": model_name, "params": _jsonable(params or {}), "n_classes": int(n_classes),
        "classes": [str(c) for c in classes], "spectrogram": spectrogram, "patch_frames": int(patch_frames),
        "n_mels": int(n_mels), "train_config": _jsonable(train_config or {}), **_jsonable(extra or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = {"format": FORMAT, "version": VERSION, "config": json.dumps(config, sort_keys=True),
            "state_dict": state}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, out)
    return out


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config, state_dict)`` of a checkpoint file, read with ``weights_only=True``.

    Raises
    ------
    DataError
        Missing file, not a fewshot checkpoint, or an unknown format version.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"checkpoint {str(p)!r}: no such file; write one with fewshot pretrain")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is an input error
        raise DataError(f"checkpoint {str(p)!r}: not a tensors-only checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise DataError(f"checkpoint {str(p)!r}: not a fewshot checkpoint (no format={FORMAT!r}); "
                        "VGGish weights go in as --pretrained vggish=PATH")
    if blob.get("version") != VERSION:
        raise DataError(f"checkpoint {str(p)!r}: format version {blob.get('version')!r}; this fewshot reads {VERSION}")
    return json.loads(blob["config"]), dict(blob["state_dict"])


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model of a checkpoint with its weights, in eval mode.

    Returns
    -------
    model : torch.nn.Module
        With ``patch_frames`` (and ``hop`` when the training config had one) set, so
        :func:`fewshot.training.predict_clips` works on it.
    config : dict
    """
    from . import create_model

    config, state = read_checkpoint(path)
    params = dict(config.get("params") or {})
    for key, value in params.items():  # JSON turned tuples into lists
        if isinstance(value, list):
            params[key] = tuple(value)
    model = create_model(config["model"], n_classes=int(config["n_classes"]), n_mels=int(config["n_mels"]),
                         n_frames=int(config["patch_frames"]), **params)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise DataError(f"checkpoint {str(path)!r}: weights do not fit model {config['model']!r}: {err}") from None
    model.hop = int((config.get("train_config") or {}).get("hop", 43))
    return model.to(device).eval(), config


def parse_pretrained_option(text: str) -> tuple[str, Path]:
    """``"NAME=PATH"`` → ``(NAME, Path(PATH))``; a bare path is named after its file stem."""
    raw = str(text).strip()
    name, sep, path = raw.partition("=")
    if not sep:
        name, path = Path(raw).stem, raw
    name, path = name.strip(), path.strip()
    if not _NAME.match(name) or not path:
        raise ParameterError(f"--pretrained {text!r}: expected NAME=PATH with NAME made of letters, digits, "
                             "'_', '.', '-' (e.g. mine=ckpt.pt or vggish=/path/vggish.pth)")
    return name, Path(path).expanduser()


def register_pretrained(name: str, path: str | os.PathLike) -> None:
    """Make ``name`` address the checkpoint (or, for ``vggish``, the VGGish weights) at ``path``.

    Raises
    ------
    ParameterError
        ``name`` is a built-in musicnn model.
    DataError
        The file is missing or, for a checkpoint, unreadable.
    """
    from ..pretrained import PRETRAINED

    if name in PRETRAINED:
        raise ParameterError(f"--pretrained {name}=...: {name!r} is a built-in model; choose another name")
    p = Path(path).expanduser()
    if name == "vggish":
        from ..pretrained.vggish import vggish_path

        vggish_path(p)
    else:
        read_checkpoint(p)
    _USER[name] = p
    os.environ[ENV_VAR] = os.pathsep.join(f"{k}={v}" for k, v in _USER.items())


def user_pretrained() -> dict[str, Path]:
    """The registered ``name -> path`` map (this process's, plus those inherited through ``$FEWSHOT_PRETRAINED``)."""
    out: dict[str, Path] = {}
    for item in os.environ.get(ENV_VAR, "").split(os.pathsep):
        name, sep, path = item.partition("=")
        if sep and name and path:
            out[name] = Path(path)
    out.update(_USER)
    return out


def clear_pretrained() -> None:
    """Forget every registered checkpoint (tests)."""
    _USER.clear()
    os.environ.pop(ENV_VAR, None)
