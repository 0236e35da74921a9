"""Models trained on n clips per class without validation data [1]_.

``MODELS`` holds ``vgg``, ``timbre``, ``sbcnn`` and ``protonet``; every entry reads
log-mel patches (meta ``input="logmel"``, ``spectrogram="fewdata"``: 44.1 kHz,
window = hop = 1024, 128 mel bands). :func:`create_model` builds one with weights
drawn from a ``torch.Generator``; :func:`fit_predict` trains and predicts in one call;
:func:`fit_predict_many` trains the runs of one (model, n, fold) together on CUDA.

References
----------
.. [1] J. Pons, J. Serra and X. Serra, "Training neural audio classifiers with few
   data", ICASSP 2019.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._registry import Registry
from ..exceptions import ParameterError
from .models import SBCNN, VGG, Timbre, count_parameters, init_weights
from .protonet import PrototypicalNetwork

__all__ = ["MODELS", "create_model", "list_models", "TrainConfig", "train_model", "predict_clips",
           "fit_predict", "fit_predict_many", "PrototypicalNetwork", "count_parameters", "QUICK_PARAMS"]

MODELS = Registry("model")
_META = {"input": "logmel", "spectrogram": "fewdata"}


@MODELS.register("vgg", description="VGG: 5 x (conv 3x3, 32 filters, ELU, BN, pool 2x2), dropout, dense",
                 **_META)
def _vgg(*, n_classes: int, n_frames: int, n_mels: int, filters: int = 32, dropout: float = 0.5,
         bn_momentum: float | None = 0.01) -> nn.Module:
    return VGG(n_classes, n_frames=n_frames, n_mels=n_mels, filters=filters, dropout=dropout,
               bn_momentum=bn_momentum)


@MODELS.register("timbre", description="TIMBRE: one 7x108 conv per class, max over the map -> logits",
                 **_META)
def _timbre(*, n_classes: int, n_frames: int, n_mels: int, filter_shape: tuple[int, int] = (7, 108),
            bn_momentum: float | None = 0.01) -> nn.Module:
    return Timbre(n_classes, n_frames=n_frames, n_mels=n_mels, filter_shape=filter_shape,
                  bn_momentum=bn_momentum)


@MODELS.register("sbcnn", description="SB-CNN (Salamon & Bello 2017): 3 conv 5x5, dense 64, dropout",
                 **_META)
def _sbcnn(*, n_classes: int, n_frames: int, n_mels: int, filters: tuple[int, int, int] = (24, 48, 48),
           dense: int = 64, input_bn: bool = True, dropout: float = 0.5,
           bn_momentum: float | None = 0.01) -> nn.Module:
    return SBCNN(n_classes, n_frames=n_frames, n_mels=n_mels, filters=filters, dense=dense,
                 input_bn=input_bn, dropout=dropout, bn_momentum=bn_momentum)


@MODELS.register("protonet", description="prototypical network: VGG backbone (128 filters), 10-d embedding",
                 **_META)
def _protonet(*, n_classes: int, n_frames: int, n_mels: int, filters: int = 128, embedding_dim: int = 10,
              distance: str = "euclidean", dropout: float = 0.5,
              bn_momentum: float | None = 0.01) -> nn.Module:
    backbone = VGG(embedding_dim, n_frames=n_frames, n_mels=n_mels, filters=filters, input_bn="time",
                   dropout=dropout, bn_momentum=bn_momentum)
    return PrototypicalNetwork(backbone, n_classes=n_classes, embedding_dim=embedding_dim, distance=distance)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return MODELS.names()


def create_model(name: str, *, n_classes: int, n_mels: int = 128, n_frames: int = 128,
                 generator: torch.Generator | None = None, device: str | torch.device = "cpu",
                 **kwargs: Any) -> nn.Module:
    """Build model ``name`` with Glorot-uniform weights drawn from ``generator``.

    Parameters
    ----------
    name : str
        One of :func:`list_models`.
    n_classes : int
    n_mels : int, default=128
    n_frames : int, default=128
        Patch length in frames.
    generator : torch.Generator, optional
        Source of the initial weights (default: a CPU generator seeded 0). The module
        is built on the ``meta`` device, so no global RNG is consumed.
    device : str or torch.device, default="cpu"
    **kwargs
        Architecture options of the model (``filters``, ``distance``, ...).

    Returns
    -------
    torch.nn.Module
        In train mode; ``model.patch_frames == n_frames``.

    Raises
    ------
    ParameterError
        Unknown name or option, or an input too small for the architecture.
    """
    entry = MODELS.get(name)
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ParameterError(f"n_classes must be an int >= 2; got {n_classes!r}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    try:
        with torch.device("meta"):
            model = entry.factory(n_classes=n_classes, n_frames=n_frames, n_mels=n_mels, **kwargs)
    except TypeError as exc:
        raise ParameterError(f"bad option for model {name!r}: {exc}") from None
    model = model.to_empty(device="cpu")
    init_weights(model, generator)
    model.patch_frames = int(n_frames)
    return model.to(device)


from .batched import fit_predict_many  # noqa: E402
from .loop import QUICK_PARAMS, TrainConfig, fit_predict, predict_clips, train_model  # noqa: E402
