"""User front-ends: ``--frontend path/to/file.py:Name`` or ``package.module:Name``, and HEAR modules.

**A user front-end file is Python code that fewshot imports and runs**; only
point it at files you trust.

``Name`` may be

- an ``nn.Module`` subclass: instantiated with ``seed=`` if its ``__init__``
  accepts it, else with no arguments;
- a factory (any other callable): called with ``seed=`` if it accepts it;
- an ``nn.Module`` instance: used as it is (the seed does not change it).

Classes and factories are built inside ``torch.random.fork_rng`` with the global
torch RNG seeded from ``seed``, so a network initialised with PyTorch's default
initialisers is reproducible under ``--seed`` (and the global RNG is restored
afterwards). The module maps a batch of waveforms ``[batch, n_samples]``, or of
log-mels ``[batch, 1, n_frames, n_mels]``, to a list of feature maps ``[batch,
channels, ...]`` (or one such tensor); the features are the per-channel means of
the maps. It may declare:

==============  ==========================================  ==============================
attribute       meaning                                     default
==============  ==========================================  ==============================
``input``       ``"waveform"`` or ``"logmel"``              ``"waveform"``
``sr``          sample rate of the waveforms                16000 (most pretrained audio
                                                            models, HEAR, VGGish)
``spectrogram`` log-mel configuration name (logmel input)   ``"elmarc"`` (12 kHz, 96 mels)
``min_length``  fewest samples / frames; shorter clips are  1
                repeat-padded
==============  ==========================================  ==============================

A module (``path/to/file.py``, ``path/to/file.py:`` or ``package.module:``, or a
``Name`` that is a module) following the HEAR API [1]_ — ``load_model()`` returning
a model with ``sample_rate``, and ``get_scene_embeddings(audio [batch, n_samples],
model) -> [batch, d]`` — works too.

References
----------
.. [1] J. Turian et al., "HEAR: Holistic Evaluation of Audio Representations",
   NeurIPS 2021 competition track; API: hearbenchmark.com/hear-api.html.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import types
from typing import Any

import torch
from torch import nn

from ..exceptions import FewShotError, ParameterError
from ._base import CODE_VERSION, ELMARC_LOGMEL, Frontend, check_maps

__all__ = ["load_user_frontend", "is_user_spec", "is_random_user_spec", "resolve_user_spec", "UserFrontend"]

DEFAULT_SR = 16000
_IMPORTED: dict[str, tuple[int, types.ModuleType]] = {}


def is_user_spec(spec: str) -> bool:
    """Whether ``spec`` names a user front-end (contains ':' or ends in '.py')."""
    return isinstance(spec, str) and (":" in spec or spec.endswith(".py"))


def _split(spec: str) -> tuple[str, str | None]:
    if spec.endswith(".py") or ":" not in spec:
        return spec, None
    target, _, attr = spec.rpartition(":")
    return target, (attr or None)


def _import_file(spec: str, path: str) -> types.ModuleType:
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise ParameterError(f"front-end {spec!r}: file {path!r} does not exist")
    mtime = os.stat(full).st_mtime_ns
    cached = _IMPORTED.get(full)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    name = "fewshot_user_" + hashlib.sha1(full.encode()).hexdigest()[:12]
    loader_spec = importlib.util.spec_from_file_location(name, full)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    folder = os.path.dirname(full)
    sys.path.insert(0, folder)
    try:
        loader_spec.loader.exec_module(module)
    except Exception as err:
        sys.modules.pop(name, None)
        raise FewShotError(f"front-end {spec!r}: importing {path!r} failed: {type(err).__name__}: {err}") from err
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    _IMPORTED[full] = (mtime, module)
    return module


def resolve_user_spec(spec: str) -> tuple[Any, str]:
    """Import what ``spec`` names; return (object, source fingerprint).

    Raises
    ------
    ParameterError
        The file or module does not exist, or has no such attribute.
    FewShotError
        Importing it failed.
    """
    target, attr = _split(spec)
    if target.endswith(".py") or os.sep in target or "/" in target:
        module = _import_file(spec, target)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as err:
            raise ParameterError(f"front-end {spec!r}: no module named {target!r} ({err})") from err
        except Exception as err:
            raise FewShotError(f"front-end {spec!r}: importing {target!r} failed: {type(err).__name__}: {err}") from err
    obj: Any = module
    if attr is not None:
        if not hasattr(module, attr):
            names = sorted(n for n in vars(module) if not n.startswith("_"))
            raise ParameterError(
                f"front-end {spec!r}: {target!r} has no attribute {attr!r}; it defines: {', '.join(names)}"
            )
        obj = getattr(module, attr)
    return obj, _fingerprint(obj if isinstance(obj, types.ModuleType) else module)


def _fingerprint(module: types.ModuleType) -> str:
    path = getattr(module, "__file__", None)
    if path and os.path.isfile(path):
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()[:16]
    return f"{module.__name__}=={getattr(module, '__version__', '?')}"


def _is_hear(obj: Any) -> bool:
    return isinstance(obj, types.ModuleType) and callable(getattr(obj, "load_model", None)) \
        and callable(getattr(obj, "get_scene_embeddings", None))


def is_random_user_spec(spec: str) -> bool:
    """Whether the user front-end is drawn from its seed (a class or a factory; not an instance or HEAR module)."""
    obj, _ = resolve_user_spec(spec)
    return not isinstance(obj, types.ModuleType | nn.Module) and callable(obj)


def _accepts_seed(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "seed" in params


class _HearAdapter(nn.Module):
    """Wraps a HEAR module + model as ``waveforms [batch, n_samples] -> [[batch, d]]``."""

    def __init__(self, hear: types.ModuleType, model: Any) -> None:
        super().__init__()
        self.hear = hear
        self.model = model  # an nn.Module is registered, so .to(device) moves it
        self.sr = int(getattr(model, "sample_rate", DEFAULT_SR))
        self.input = "waveform"

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.hear.get_scene_embeddings(x, self.model)]


def _build(spec: str, obj: Any, seed: int) -> tuple[Any, bool]:
    """(callable module, drawn from the seed?) for what the spec named."""
    if isinstance(obj, types.ModuleType):
        if not _is_hear(obj):
            raise ParameterError(
                f"front-end {spec!r}: a module needs load_model() and get_scene_embeddings() (the HEAR API); "
                "otherwise name a class or factory in it as path/to/file.py:Name or package.module:Name"
            )
        return _HearAdapter(obj, _call(spec, obj.load_model, None)), False
    if isinstance(obj, nn.Module):
        return obj, False
    if not callable(obj):
        raise ParameterError(
            f"front-end {spec!r}: expected an nn.Module class, instance or factory; got a {type(obj).__name__}"
        )
    return _call(spec, obj, seed), True


def _call(spec: str, fn: Any, seed: int | None) -> Any:
    kwargs = {"seed": seed} if seed is not None and _accepts_seed(fn) else {}
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed if seed is not None else 0)
            return fn(**kwargs)
    except Exception as err:
        raise FewShotError(f"front-end {spec!r}: building it failed: {type(err).__name__}: {err}") from err


class UserFrontend(Frontend):
    """A user module behind the :class:`Frontend` interface (layers ``map0``, ``map1``, … found by a probe)."""

    def __init__(self, spec: str, module: Any, *, seed: int, random: bool, fingerprint: str,
                 seconds: float | None = None) -> None:
        inp = getattr(module, "input", "waveform")
        if inp not in ("waveform", "logmel"):
            raise ParameterError(f"front-end {spec!r}: attribute input must be 'waveform' or 'logmel'; got {inp!r}")
        spectrogram = getattr(module, "spectrogram", "elmarc") if inp == "logmel" else None
        sr = getattr(module, "sr", ELMARC_LOGMEL["sr"] if inp == "logmel" else DEFAULT_SR)
        min_length = getattr(module, "min_length", 1)
        for key, value in (("sr", sr), ("min_length", min_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"front-end {spec!r}: attribute {key} must be a positive int; got {value!r}")
        n_mels = getattr(module, "n_mels", ELMARC_LOGMEL["n_mels"] if spectrogram == "elmarc" else None)
        super().__init__(name=spec, width=None, filters=None, seed=seed, input=inp, sr=sr, min_length=min_length,
                         layer_sizes={}, seconds=seconds, spectrogram=spectrogram, n_mels=n_mels)
        self.random = random
        self.fingerprint = fingerprint
        self.module = module if isinstance(module, nn.Module) else None  # registered: moves with .to()
        self._fn = None if isinstance(module, nn.Module) else module
        self._layer_sizes = None

    @property
    def layer_sizes(self) -> dict[str, int]:
        """Channels per returned map, found once by running a one-second (or 128-frame) probe."""
        if self._layer_sizes is None:
            n = max(self.min_length, self.sr if self.input == "waveform" else 128)
            g = torch.Generator().manual_seed(0)
            if self.input == "waveform":
                x = 0.1 * torch.randn(1, n, generator=g)
            else:
                x = -40.0 + 10.0 * torch.randn(1, 1, n, self.n_mels or ELMARC_LOGMEL["n_mels"], generator=g)
            params = list(self.parameters())
            with torch.inference_mode():
                maps = self.forward(x.to(params[0].device) if params else x)
            self._layer_sizes = {f"map{i}": int(m.shape[1]) for i, m in enumerate(maps)}
        return self._layer_sizes

    @property
    def identity(self) -> str:
        return "|".join([
            f"user:{self.name}", f"source={self.fingerprint}", f"seed={self.seed if self.random else '-'}",
            f"input={self.input}", f"sr={self.sr}", f"spectrogram={self.spectrogram}", f"seconds={self.seconds}",
            f"min_length={self.min_length}", f"code=frontends-v{CODE_VERSION}",
        ])

    def default_batch_size(self, device: str | torch.device) -> int:
        return 1 if torch.device(device).type != "cuda" else 8

    def _maps(self, x: torch.Tensor, plain: bool) -> list[torch.Tensor]:
        try:
            out = self.module(x) if self.module is not None else self._fn(x)
        except FewShotError:
            raise
        except Exception as err:
            raise FewShotError(
                f"front-end {self.name!r} failed on a batch of shape {tuple(x.shape)}: {type(err).__name__}: {err}"
            ) from err
        return check_maps(self.name, out, x.shape[0])


def load_user_frontend(spec: str, *, seed: int = 0, seconds: float | None = None) -> UserFrontend:
    """Load a user front-end from ``path/to/file.py:Name``, ``package.module:Name`` or a HEAR module.

    Parameters
    ----------
    spec : str
        See the module docstring.
    seed : int, default=0
        Passed to classes and factories that accept ``seed``; also seeds the
        (forked, then restored) global torch RNG while they are built.
    seconds : float, optional
        Cut / repeat-pad clips to this length (None: whole clips).

    Returns
    -------
    UserFrontend

    Raises
    ------
    ParameterError
        Missing file, module or attribute; bad declared attributes.
    FewShotError
        Importing or building it failed.
    """
    obj, fingerprint = resolve_user_spec(spec)
    module, random = _build(spec, obj, seed)
    if not callable(module):
        raise ParameterError(f"front-end {spec!r}: building it gave a {type(module).__name__}, not a callable module")
    if isinstance(module, nn.Module):
        module.eval()
    return UserFrontend(spec, module, seed=seed, random=random, fingerprint=fingerprint, seconds=seconds)
