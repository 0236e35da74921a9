"""Evaluating one unit: from an n-shot subset to test-fold predictions.

Three kinds of method (see :mod:`fewshot.methods`):

- feature pipelines ``FRONTEND+CLASSIFIER``: per-clip features from a (random or
  fixed) front-end, cached on disk per (front-end identity, audio settings, clip);
  a classifier tuned on the training subset only (or on the dataset's own
  validation split when the whole pool is used). The clips a run's random network
  lacks are extracted together with the next runs' networks (same architecture,
  their own seeds) in one stacked pass where that was measured faster
  (:mod:`fewshot.frontends.stacked`); each network's rows are stored under its own
  identity, so cached rows and results do not depend on it;
- trained models ``MODEL``: trained on the subset's log-mels without validation data;
- ``random``: the chance baseline (uniform random labels from the unit's seed).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.audio import clip_identity, fix_length, read_clip
from ..data.cache import ArrayCache
from ..data.datasets import Dataset
from ..data.sampler import Subset, default_runs
from ..exceptions import ParameterError
from ..methods import MethodSpec
from ..results.store import Unit
from ..seeds import derive_seed, numpy_rng
from .config import ExperimentConfig

__all__ = ["Context", "check_method", "predict_unit"]

#: Version of the feature computation; bump to invalidate cached features.
FEATURE_VERSION = 1


def _clip_id(dataset: Dataset, index: int):
    return clip_identity(dataset, dataset.clips[index])


@dataclass
class Context:
    """What every unit of one experiment shares: data, cache, device and in-memory memos.

    ``stack_runs`` (default True): extract the rows a run's random network lacks
    together with the later runs' networks (``config.runs``) in one stacked pass
    where stacking pays; False extracts only the asked-for network (``fewshot extract``).
    """

    dataset: Dataset
    config: ExperimentConfig
    cache: ArrayCache | None
    device: str
    _features: OrderedDict = field(default_factory=OrderedDict)
    _logmels: dict = field(default_factory=dict)
    _frontends: dict = field(default_factory=dict)
    stack_runs: bool = True
    _ahead: OrderedDict = field(default_factory=OrderedDict)  # rows of later runs' networks, extracted ahead

    # ----------------------------------------------------------- audio inputs
    def waveform(self, index: int, sr: int) -> np.ndarray:
        """Mono float32 waveform of clip ``index`` at ``sr``, cut or repeat-padded to ``--seconds``."""
        wav = read_clip(self.dataset, self.dataset.clips[index], sr=sr, cache=self.cache)
        if self.config.seconds is not None:
            wav = fix_length(wav, int(round(self.config.seconds * sr)), mode="repeat")
        return wav

    def log_mel(self, index: int, spectrogram: str) -> np.ndarray:
        """Log-mel ``float32 [n_frames, n_mels]`` of clip ``index`` in a named spectrogram config."""
        from ..data.spectrogram import SPECTROGRAMS, log_mel

        key = (index, spectrogram)
        if key not in self._logmels:
            cfg = SPECTROGRAMS[spectrogram]

            def compute() -> np.ndarray:
                wav = self.waveform(index, cfg.sr)
                return log_mel(torch.from_numpy(wav), cfg).numpy()

            if self.cache is None:
                value = compute()
            else:
                ck = self.cache.key(
                    namespace="logmel", clip=_clip_id(self.dataset, index), spectrogram=cfg.key(),
                    seconds=self.config.seconds,
                )
                value = self.cache.get_or_compute(ck, compute)
            if spectrogram != "elmarc":  # training inputs are reused across units; front-end inputs are not
                self._logmels[key] = value
            return value
        return self._logmels[key]

    # ----------------------------------------------------------- features
    def frontend(self, spec: MethodSpec, run: int):
        """The front-end of a pipeline method for a run (random weights from ``derive_seed(seed, "frontend", run)``)."""
        key = self._frontend_key(spec, run)
        if key not in self._frontends:
            self._frontends.clear()
            self._frontends[key] = self._build_frontend(spec, run)
        return self._frontends[key]

    def _frontend_key(self, spec: MethodSpec, run: int) -> tuple:
        from ..frontends import is_random_frontend

        fseed = derive_seed(self.config.seed, "frontend", run) if is_random_frontend(spec.frontend) else 0
        return (spec.frontend, spec.width, spec.filters, fseed)

    def _build_frontend(self, spec: MethodSpec, run: int):
        from ..frontends import create_frontend

        width = spec.width if spec.width in ("small", "large") else "small"
        return create_frontend(spec.frontend, width=width, filters=spec.filters, seed=self._frontend_key(spec, run)[3])

    def features(self, spec: MethodSpec, run: int, indices: np.ndarray) -> np.ndarray:
        """Feature matrix ``float32 [len(indices), n_features]`` of a pipeline's front-end."""
        frontend = self.frontend(spec, run)
        memo_key = self._memo_key(frontend)
        memo = self._features.get(memo_key)
        if memo is None:
            memo = self._ahead.pop(memo_key, None) or {}  # rows extracted ahead with an earlier run's network
            self._features[memo_key] = memo
            while len(self._features) > 2:  # keep the two most recent front-ends in memory
                self._features.popitem(last=False)
        missing = self._lookup(memo_key, memo, indices)
        if missing:
            group = [(frontend, memo_key, memo), *self._later_runs(spec, run, frontend, missing)]
            inputs = self._inputs(frontend, missing)
            computed = self._extract_many([fe for fe, _, _ in group], inputs)
            for (_, key, rows), X in zip(group, computed, strict=True):
                for i, row in zip(missing, X, strict=True):
                    if i not in rows:  # a later run may hold some of these clips already: keep its rows
                        rows[i] = row
                        if self.cache is not None:
                            self.cache.put(self._row_key(key, i), {"x": row})
        return np.stack([memo[int(i)] for i in indices]).astype(np.float32, copy=False)

    def _memo_key(self, frontend) -> str:
        return frontend.identity + f"|seconds={self.config.seconds}"

    def _row_key(self, memo_key: str, index: int) -> str:
        return self.cache.key(namespace="features", frontend=memo_key, clip=_clip_id(self.dataset, index),
                              version=FEATURE_VERSION)

    def _lookup(self, memo_key: str, memo: dict, indices) -> list[int]:
        """Fill ``memo`` from the disk cache for ``indices``; return the indices still missing."""
        missing = [int(i) for i in indices if int(i) not in memo]
        if missing and self.cache is not None:
            for i in missing:
                hit = self.cache.get(self._row_key(memo_key, i))
                if hit is not None:
                    memo[i] = hit["x"]
            missing = [i for i in missing if i not in memo]
        return missing

    def _later_runs(self, spec: MethodSpec, run: int, frontend, missing: list[int]) -> list[tuple]:
        """(front-end, memo key, rows) of the later runs' networks that lack some of ``missing``, as many as
        stack with ``frontend`` in one pass where that pays (:func:`fewshot.frontends.stacked.stack_size`)."""
        from ..frontends.stacked import MAX_SEEDS, stack_size

        if not self.stack_runs or not frontend.random:
            return []
        n_runs = max((self.config.runs or default_runs(n) for n in self.config.n), default=1)
        later = range(run + 1, min(n_runs, run + stack_size(frontend, self.device)))
        group = []
        for r in later:
            fe = self._build_frontend(spec, r)
            key = self._memo_key(fe)
            rows = self._features.get(key)
            if rows is None:
                rows = self._ahead.setdefault(key, {})
                self._ahead.move_to_end(key)
            if self._lookup(key, rows, missing):
                group.append((fe, key, rows))
        while len(self._ahead) > MAX_SEEDS:  # bounded: networks of runs that will not come here (another worker)
            self._ahead.popitem(last=False)
        return group

    def _inputs(self, frontend, indices: list[int]) -> list[np.ndarray]:
        if frontend.input == "logmel":
            return [self.log_mel(i, frontend.spectrogram) for i in indices]
        return [self.waveform(i, frontend.sr) for i in indices]  # waveform; mfcc: fixed vectors from the waveform

    def _extract(self, frontend, indices: list[int]) -> np.ndarray:
        (X,) = self._extract_many([frontend], self._inputs(frontend, indices))
        return X

    def _extract_many(self, frontends: list, inputs: list[np.ndarray]) -> list[np.ndarray]:
        from ..frontends.extract_many import extract_features_many

        return extract_features_many(frontends, inputs, device=self.device, batch_size=self.config.batch_size)


def check_method(spec: MethodSpec) -> None:
    """Fail early, with the valid names, on a method whose parts are not registered."""
    if spec.kind == "pipeline":
        from ..classifiers import CLASSIFIERS
        from ..frontends import check_frontend_name

        check_frontend_name(spec.frontend)
        CLASSIFIERS.get(spec.classifier)
        if spec.width is None and _has_width(spec.frontend):
            raise ParameterError(
                f"method {spec.text!r}: front-end {spec.frontend!r} needs a width, "
                f"e.g. {spec.frontend}-small+{spec.classifier}"
            )
    elif spec.model != "random":
        from ..training import MODELS
        from ..training.transfer import TRANSFER_METHODS, check_pretrained_name

        if spec.pretrained is not None or spec.model == "finetune":  # finetune:X, protonet:X (training/transfer.py)
            if spec.model not in TRANSFER_METHODS:
                raise ParameterError(f"method {spec.text!r}: pretrained weights go with "
                                     f"{' or '.join(TRANSFER_METHODS)} (e.g. 'finetune:msd_musicnn')")
            check_pretrained_name(spec.pretrained, method=spec.text)
            return
        MODELS.get(spec.model)


def _has_width(frontend: str) -> bool:
    from ..frontends import frontend_has_width

    return frontend_has_width(frontend)


def predict_unit(ctx: Context, spec: MethodSpec, unit: Unit, subset: Subset) -> np.ndarray:
    """Predicted class indices ``int64 [len(subset.test)]`` of one unit."""
    ds, cfg = ctx.dataset, ctx.config
    y = ds.y
    n_classes = len(ds.classes)
    unit_parts = (ds.id, str(unit.fold), str(unit.n), int(unit.run))
    if spec.kind == "model" and spec.model == "random":
        rng = numpy_rng(cfg.seed, "model", *unit_parts)
        return rng.integers(0, n_classes, size=len(subset.test))
    if spec.kind == "pipeline":
        from ..classifiers import create_classifier

        X_train = ctx.features(spec, unit.run, subset.train)
        X_test = ctx.features(spec, unit.run, subset.test)
        clf = create_classifier(
            spec.classifier, random_state=derive_seed(cfg.seed, "classifier", *unit_parts), device=ctx.device
        )
        fit_kw = {}
        if unit.n == "all" and len(subset.valid):
            # The dataset's own validation split tunes; the final model is refit on train only.
            fit_kw = {"X_val": ctx.features(spec, unit.run, subset.valid), "y_val": y[subset.valid]}
        clf.fit(X_train, y[subset.train], **fit_kw)
        return np.asarray(clf.predict(X_test), dtype=np.int64)
    from ..training.transfer import fit_predict_transfer, is_transfer_method

    if is_transfer_method(spec):
        return fit_predict_transfer(ctx, spec, unit, subset)
    from ..training import MODELS, fit_predict
    from ..training.loop import QUICK_PARAMS

    entry = MODELS.get(spec.model)
    spectrogram = entry.meta.get("spectrogram", "fewdata")
    train_inputs = [ctx.log_mel(int(i), spectrogram) for i in subset.train]
    test_inputs = [ctx.log_mel(int(i), spectrogram) for i in subset.test]
    tcfg = training_config(cfg)
    y_pred, _ = fit_predict(
        spec.model, train_inputs, y[subset.train], test_inputs, n_classes=n_classes, config=tcfg,
        seed=derive_seed(cfg.seed, "model", *unit_parts), device=ctx.device,
        params=QUICK_PARAMS.get(spec.model) if cfg.narrow else None,
    )
    return np.asarray(y_pred, dtype=np.int64)


def training_config(cfg: ExperimentConfig):
    """The :class:`fewshot.training.TrainConfig` of an experiment (``--quick`` uses the quick preset)."""
    from ..training import TrainConfig

    common = {"bn_momentum": cfg.bn_momentum}
    if cfg.quick:
        return TrainConfig.quick_preset(epochs=cfg.epochs, max_epochs=cfg.epochs, **common)
    return TrainConfig(epochs=cfg.epochs, patience=cfg.patience, max_epochs=cfg.max_epochs, **common)
