"""Evaluating one unit: from an n-shot subset to test-fold predictions.

Three kinds of method (see :mod:`fewshot.methods`):

- feature pipelines ``FRONTEND+CLASSIFIER``: per-clip features from a (random or
  fixed) front-end, cached on disk per (front-end identity, audio settings, clip);
  a classifier tuned on the training subset only (or on the dataset's own
  validation split when the whole pool is used);
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
from ..data.sampler import Subset
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
    """What every unit of one experiment shares: data, cache, device and in-memory memos."""

    dataset: Dataset
    config: ExperimentConfig
    cache: ArrayCache | None
    device: str
    _features: OrderedDict = field(default_factory=OrderedDict)
    _logmels: dict = field(default_factory=dict)
    _frontends: dict = field(default_factory=dict)

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
        from ..frontends import create_frontend, is_random_frontend

        fseed = derive_seed(self.config.seed, "frontend", run) if is_random_frontend(spec.frontend) else 0
        key = (spec.frontend, spec.width, fseed)
        if key not in self._frontends:
            width = spec.width if spec.width in ("small", "large") else "small"
            self._frontends.clear()
            self._frontends[key] = create_frontend(
                spec.frontend, width=width, filters=spec.filters, seed=fseed
            )
        return self._frontends[key]

    def features(self, spec: MethodSpec, run: int, indices: np.ndarray) -> np.ndarray:
        """Feature matrix ``float32 [len(indices), n_features]`` of a pipeline's front-end."""
        frontend = self.frontend(spec, run)
        memo_key = frontend.identity + f"|seconds={self.config.seconds}"
        memo = self._features.get(memo_key)
        if memo is None:
            memo = {}
            self._features[memo_key] = memo
            while len(self._features) > 2:  # keep the two most recent front-ends in memory
                self._features.popitem(last=False)
        missing = [int(i) for i in indices if int(i) not in memo]
        if missing:
            keys = {}
            if self.cache is not None:
                for i in missing:
                    keys[i] = self.cache.key(
                        namespace="features", frontend=memo_key, clip=_clip_id(self.dataset, i),
                        version=FEATURE_VERSION,
                    )
                    hit = self.cache.get(keys[i])
                    if hit is not None:
                        memo[i] = hit["x"]
                missing = [i for i in missing if i not in memo]
            if missing:
                computed = self._extract(frontend, missing)
                for i, row in zip(missing, computed, strict=True):
                    memo[i] = row
                    if self.cache is not None:
                        self.cache.put(keys[i], {"x": row})
        return np.stack([memo[int(i)] for i in indices]).astype(np.float32, copy=False)

    def _extract(self, frontend, indices: list[int]) -> np.ndarray:
        from ..frontends.extract import extract_features

        if frontend.input == "waveform":
            inputs = [self.waveform(i, frontend.sr) for i in indices]
        elif frontend.input == "logmel":
            inputs = [self.log_mel(i, frontend.spectrogram) for i in indices]
        else:  # fixed per-clip vectors (mfcc) computed from the waveform
            inputs = [self.waveform(i, frontend.sr) for i in indices]
        return extract_features(frontend, inputs, device=self.device, batch_size=self.config.batch_size)


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
