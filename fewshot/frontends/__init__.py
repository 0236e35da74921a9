"""Front-ends: random-weight CNNs, the MFCC baseline and user front-ends, and feature extraction.

A front-end turns a batch of waveforms or log-mels into feature maps; the feature
vector of a clip is the per-channel mean of every map (see
:mod:`fewshot.frontends._base` for the contract and ``docs/frontends.md``).

Examples
--------
>>> import torch
>>> from fewshot.frontends import create_frontend
>>> fe = create_frontend("sample_level", width="small", seed=0)
>>> fe.n_features, fe.input, fe.sr
(161, 'waveform', 12000)
>>> fe.features(torch.zeros(2, 3000)).shape
torch.Size([2, 161])
"""

from __future__ import annotations

from typing import Any

from ..exceptions import ParameterError
from ._base import CODE_VERSION, ELMARC_LOGMEL, FRONTENDS, REFERENCE_SECONDS, Frontend, repeat_pad
from .probe import check_probe_name, create_probe_frontend, is_probe_name
from .random_cnn import MFCC, VGG, CnnMusic, FrameLevel, FrameLevelMany, SampleLevel, Vertical
from .user import is_user_spec

__all__ = [
    "FRONTENDS",
    "CODE_VERSION",
    "ELMARC_LOGMEL",
    "REFERENCE_SECONDS",
    "Frontend",
    "create_frontend",
    "list_frontends",
    "check_frontend_name",
    "frontend_has_width",
    "is_random_frontend",
    "repeat_pad",
    "VGG",
    "Vertical",
    "CnnMusic",
    "SampleLevel",
    "FrameLevel",
    "FrameLevelMany",
    "MFCC",
]

_USER_HINT = "; or a user front-end as path/to/file.py:Name or package.module:Name"


def _unknown(name: str) -> ParameterError:
    return ParameterError(f"unknown front-end {name!r}; available: {', '.join(FRONTENDS.names())}{_USER_HINT}")


def create_frontend(name: str, *, width: str | None = "small", filters: int | None = None, seed: int = 0,
                    **kwargs: Any) -> Frontend:
    """Build a front-end by registered name, or load a user front-end.

    Registered names win; a name containing ':' or ending in '.py' is a user
    front-end (:func:`fewshot.frontends.user.load_user_frontend`).

    Parameters
    ----------
    name : str
        A registered name (:func:`list_frontends`) or a user spec.
    width : "small", "large" or "f<F>", default="small"
        Ignored by fixed front-ends (mfcc, user front-ends).
    filters : int, optional
        Explicit filter count F (overrides ``width``).
    seed : int, default=0
        Seed of the weights (the protocol passes ``derive_seed(seed, "frontend", run)``).
    **kwargs
        ``seconds=`` (cut / repeat-pad clips to this length), and architecture options.

    Returns
    -------
    Frontend

    Raises
    ------
    ParameterError
        Unknown name, bad width or filters.
    """
    if name in FRONTENDS:
        return FRONTENDS.create(name, width=width if width is not None else "small", filters=filters, seed=seed,
                                **kwargs)
    if is_probe_name(name):  # probe:<pretrained>: frozen pretrained embeddings (fewshot/frontends/probe.py)
        return create_probe_frontend(name, width=width, filters=filters, seed=seed, **kwargs)
    if is_user_spec(name):
        if filters is not None:
            raise ParameterError(f"front-end {name!r}: a user front-end takes no filters; got filters={filters!r}")
        from .user import load_user_frontend

        return load_user_frontend(name, seed=seed, **kwargs)
    raise _unknown(name)


def check_frontend_name(name: str) -> None:
    """Raise ParameterError unless ``name`` is registered or a user front-end that can be imported."""
    if name in FRONTENDS:
        return
    if is_probe_name(name):
        check_probe_name(name)
        return
    if is_user_spec(name):
        from .user import resolve_user_spec

        resolve_user_spec(name)
        return
    raise _unknown(name)


def frontend_has_width(name: str) -> bool:
    """Whether method names carry a width for this front-end (random CNNs yes; mfcc and user front-ends no)."""
    if name in FRONTENDS:
        return FRONTENDS.get(name).meta["widths"] is not None
    if is_probe_name(name) or is_user_spec(name):
        return False
    raise _unknown(name)


def is_random_frontend(name: str) -> bool:
    """Whether runs draw new weights (random CNNs, user classes/factories) or not (mfcc, instances, HEAR)."""
    if name in FRONTENDS:
        return bool(FRONTENDS.get(name).meta["random"])
    if is_probe_name(name):
        return False
    if is_user_spec(name):
        from .user import is_random_user_spec

        return is_random_user_spec(name)
    raise _unknown(name)


def list_frontends() -> list[dict[str, Any]]:
    """One row per registered front-end: name, description, input, filters and feature sizes per width."""
    rows = []
    for entry in FRONTENDS:
        widths = entry.meta["widths"]
        count = entry.meta["count"]
        rows.append({
            "name": entry.name,
            "description": entry.description,
            "input": entry.meta["input"],
            "filters": dict(widths) if widths else None,
            "n_features": {w: count(f) for w, f in widths.items()} if widths else {"-": count(None)},
        })
    return rows
