"""Experiment configuration: CLI options and TOML protocol files, resolved into one object.

A TOML protocol (``protocols/*.toml``) holds the same keys as the command-line
options; options given on the command line win. Unknown keys and bad values are
reported with the file and the key.

Example (``protocols/urbansound8k-randomcnn-small.toml``)::

    protocol = "randomcnn"
    dataset = "urbansound8k:/data/UrbanSound8K"
    frontends = ["vgg", "timbral", "sample_level", "mfcc"]
    width = "small"
    classifiers = ["svm", "elm"]
    runs = 3
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ..data.sampler import parse_n
from ..exceptions import ParameterError
from ..methods import parse_methods, pipeline_name

__all__ = ["ExperimentConfig", "load_protocol_file", "QUICK"]

#: What ``--quick`` changes (printed and recorded in the run's config).
QUICK = {"folds": "first fold only", "runs": 2, "epochs": 20, "patience": "off", "backbones": "narrow"}

PROTOCOLS = ("randomcnn", "run")


@dataclass
class ExperimentConfig:
    """Everything a protocol needs, resolved from defaults, a TOML file and CLI options.

    ``identity`` fields decide the run folder (a change means a new folder);
    ``extent`` fields (methods, n, runs, folds) only add units to it.
    """

    protocol: str = "run"
    dataset: str = "synth"
    methods: list[str] = field(default_factory=list)
    n: list[int | str] = field(default_factory=lambda: ["all"])
    runs: int | None = None
    folds: list[str] | None = None
    seed: int = 0
    n_folds: int = 5
    cap: bool = False
    quick: bool = False
    epochs: int = 200
    patience: int = 200
    max_epochs: int = 1000
    seconds: float | None = None
    on_error: str = "fail"
    device: str = "auto"
    cache_dir: str | None = None
    out: str | None = None
    batch_size: int | None = None
    bn_momentum: float | None = None
    narrow: bool = False

    IDENTITY = ("protocol", "seed", "n_folds", "cap", "quick", "epochs", "patience", "max_epochs",
                "seconds", "on_error", "bn_momentum", "narrow")
    EXTENT = ("methods", "n", "runs", "folds")

    def validate(self) -> ExperimentConfig:
        """Check every value; return self. Raises :class:`ParameterError` naming the option."""
        if self.protocol not in PROTOCOLS:
            raise ParameterError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {self.protocol!r}")
        self.methods = [m.text for m in parse_methods(self.methods)] if self.methods else []
        if not self.methods:
            raise ParameterError("--method is empty; give e.g. 'vgg-small+svm,mfcc+knn' or 'protonet,vgg'")
        self.n = _unique([parse_n(v) for v in self.n])
        for name in ("runs", "epochs", "patience", "max_epochs", "n_folds", "batch_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ParameterError(f"--{name.replace('_', '-')} must be a positive int; got {value!r}")
        if self.n_folds < 2:
            raise ParameterError(f"--folds-count must be at least 2; got {self.n_folds}")
        if self.seconds is not None and not self.seconds > 0:
            raise ParameterError(f"--seconds must be positive; got {self.seconds}")
        if self.on_error not in ("fail", "skip"):
            raise ParameterError(f"--on-error must be 'fail' or 'skip'; got {self.on_error!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ParameterError(f"--device must be auto, cpu or cuda; got {self.device!r}")
        if self.folds is not None:
            self.folds = _unique([str(f).strip() for f in self.folds if str(f).strip()])
        if self.bn_momentum is not None and not 0 < self.bn_momentum <= 1:
            raise ParameterError(f"bn_momentum must be in (0, 1] or absent; got {self.bn_momentum!r}")
        if self.quick:
            self.narrow = True
            self.epochs = min(self.epochs, 20)
            self.runs = self.runs or 2
        return self

    def identity(self, dataset_id: str) -> dict:
        """The settings hashed into the run folder's name."""
        d = {k: getattr(self, k) for k in self.IDENTITY}
        d["dataset"] = dataset_id
        return d

    def extent(self) -> dict:
        """The settings that only add units to a run folder."""
        return {k: getattr(self, k) for k in self.EXTENT}

    def to_dict(self) -> dict:
        return asdict(self)


def _unique(values: list) -> list:
    out: list = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def split_list(value: str | list | None) -> list[str] | None:
    """``"a,b"`` or ``["a", "b"]`` → ``["a", "b"]``; None stays None."""
    if value is None:
        return None
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(v).strip() for v in items if str(v).strip()]


def expand_pipelines(frontends: list[str], classifiers: list[str], width: str | None) -> list[str]:
    """Every ``FRONTEND[-WIDTH]+CLASSIFIER`` combination (fixed front-ends such as mfcc take no width)."""
    from ..frontends import frontend_has_width

    out = []
    for fe in frontends:
        for clf in classifiers:
            w = width if frontend_has_width(fe) else None
            out.append(pipeline_name(fe, w, clf))
    return out


_TOML_KEYS = {f.name for f in fields(ExperimentConfig)} | {"frontends", "classifiers", "width", "method"}


def load_protocol_file(path: str | Path) -> dict:
    """Read a TOML protocol into a dict of option values (keys as in :class:`ExperimentConfig`).

    ``frontends`` × ``classifiers`` (with ``width``) expand to pipeline methods.
    Raises :class:`ParameterError` naming the file and the key.
    """
    p = Path(path)
    if not p.is_file():
        raise ParameterError(f"--protocol {path}: no such file; expected a TOML file such as protocols/*.toml")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ParameterError(f"--protocol {path}: not valid TOML ({err})") from None
    unknown = sorted(set(data) - _TOML_KEYS)
    if unknown:
        raise ParameterError(f"{path}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(_TOML_KEYS))}")
    out = dict(data)
    if "method" in out:
        out["methods"] = out.pop("method")
    if "methods" in out:
        out["methods"] = split_list(out["methods"])
    if "frontends" in out or "classifiers" in out:
        fes = split_list(out.pop("frontends", None)) or []
        clfs = split_list(out.pop("classifiers", None)) or []
        if not fes or not clfs:
            raise ParameterError(f"{path}: 'frontends' and 'classifiers' must be given together")
        out["methods"] = (out.get("methods") or []) + expand_pipelines(fes, clfs, out.pop("width", "small"))
    out.pop("width", None)
    if "n" in out:
        out["n"] = out["n"] if isinstance(out["n"], list) else split_list(str(out["n"]))
    if "folds" in out:
        out["folds"] = [str(f) for f in (out["folds"] if isinstance(out["folds"], list) else split_list(out["folds"]))]
    for key, value in out.items():
        expected = {f.name: f.type for f in fields(ExperimentConfig)}.get(key)
        if expected and "int" == expected and not isinstance(value, int):
            raise ParameterError(f"{path}: key {key!r} must be an int; got {value!r}")
    return out


def resolve(defaults: ExperimentConfig, toml: dict | None, cli: dict) -> ExperimentConfig:
    """Defaults, then the TOML file, then the CLI options that were given (not None)."""
    cfg = defaults
    if toml:
        cfg = replace(cfg, **toml)
    given = {k: v for k, v in cli.items() if v is not None}
    cfg = replace(cfg, **given)
    return cfg.validate()
