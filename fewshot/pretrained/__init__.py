"""Pretrained music models, read offline from the installed ``musicnn`` package.

The four music-tagging models of musicnn 0.1.0 [#]_ ported to PyTorch. Their
TensorFlow-1 checkpoints are read with numpy (:mod:`.tfbundle`; TensorFlow is never
needed) from the ``musicnn`` package, which must be installed with
``pip install --no-deps musicnn==0.1.0``.

==============  ============  ===============================  =====  =========
name            architecture  training data                    tags   embedding
==============  ============  ===============================  =====  =========
``mtt_musicnn``  musicnn      MagnaTagATune (MTT) [#]_          50     200
``msd_musicnn``  musicnn      Million Song Dataset (MSD) [#]_   50     200
``mtt_vgg``      vgg          MagnaTagATune                     50     256
``msd_vgg``      vgg          Million Song Dataset              50     256
==============  ============  ===============================  =====  =========

All take 16 kHz audio, 96-band log-mels and 3 s (187-frame) patches; see
:mod:`.inputs` for the exact pipeline and ``docs/pretrained.md`` for credits,
licences and the differences from the original.

References
----------
.. [#] J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks for
   music audio tagging", ISMIR 2019 Late-Breaking/Demo. https://github.com/jordipons/musicnn
.. [#] E. Law, K. West, M. Mandel, M. Bay and J. S. Downie, "Evaluation of algorithms
   using games: the case of music tagging", ISMIR 2009.
.. [#] T. Bertin-Mahieux, D. P. W. Ellis, B. Whitman and P. Lamere, "The Million Song
   Dataset", ISMIR 2011.

Examples
--------
>>> from fewshot.pretrained import create_pretrained, list_pretrained
>>> list_pretrained()
['msd_musicnn', 'msd_vgg', 'mtt_musicnn', 'mtt_vgg']
>>> model = create_pretrained("mtt_musicnn")               # doctest: +SKIP
>>> model.tags[:3], model.embedding_dim                    # doctest: +SKIP
(('guitar', 'classical', 'slow'), 200)
"""

from __future__ import annotations

from .._registry import Registry
from .musicnn import MSD_TAGS, MTT_TAGS, PretrainedTagger, load_pretrained

__all__ = ["PRETRAINED", "PretrainedTagger", "create_pretrained", "list_pretrained"]

#: Registered pretrained models.
PRETRAINED = Registry("pretrained model")

_MODELS = {
    "mtt_musicnn": ("MTT_musicnn", "musicnn", "MagnaTagATune", MTT_TAGS, 200),
    "msd_musicnn": ("MSD_musicnn", "musicnn", "Million Song Dataset", MSD_TAGS, 200),
    "mtt_vgg": ("MTT_vgg", "vgg", "MagnaTagATune", MTT_TAGS, 256),
    "msd_vgg": ("MSD_vgg", "vgg", "Million Song Dataset", MSD_TAGS, 256),
}


def _register(name: str, checkpoint: str, architecture: str, data: str, tags: tuple, dim: int) -> None:
    def factory(*, padding: str = "reflect") -> PretrainedTagger:
        return load_pretrained(name, checkpoint, padding=padding)

    factory.__name__ = f"create_{name}"
    PRETRAINED.register(
        name,
        description=f"musicnn 0.1.0 {architecture} tagger trained on {data} ({len(tags)} tags, {dim}-d embedding)",
        checkpoint=checkpoint,
        architecture=architecture,
        training_data=data,
        tags=tags,
        embedding_dim=dim,
        sr=16000,
        n_frames=187,
        n_mels=96,
        source="musicnn 0.1.0 (Pons & Serra, ISMIR 2019 LBD), ISC licence",
    )(factory)


for _name, _spec in _MODELS.items():
    _register(_name, *_spec)


def create_pretrained(name: str, *, padding: str = "reflect") -> PretrainedTagger:
    """Load pretrained model ``name`` with its weights, in eval mode.

    Parameters
    ----------
    name : {"mtt_musicnn", "msd_musicnn", "mtt_vgg", "msd_vgg"}
    padding : {"reflect", "constant"}, default="reflect"
        STFT edge padding of the input pipeline: "reflect" as in training (librosa
        ≤ 0.8), "constant" (zeros) as musicnn run with librosa ≥ 0.9 today.

    Returns
    -------
    PretrainedTagger
        ``model(patches)`` gives ``(logits, embedding)``; ``model.tags`` names the logits.

    Raises
    ------
    ParameterError
        Unknown name or padding.
    FewShotError
        musicnn is not installed (the message gives the install command).
    """
    return PRETRAINED.create(name, padding=padding)


def list_pretrained() -> list[str]:
    """Names of the registered pretrained models, sorted."""
    return PRETRAINED.names()
