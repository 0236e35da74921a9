"""Fixed-size patches from variable-length log-mel spectrograms.

A log-mel is ``float32 [n_frames, n_mels]`` (time, frequency). Models see patches of
``patch_frames`` frames (128 = 2.97 s at 44.1 kHz with hop 1024, reference B3).

- Clips shorter than a patch are **repeat-padded**: tiled along time and cropped
  (:func:`repeat_pad`), once per subset (:func:`pad_clips`).
- Training draws **one random patch per clip per epoch**, start uniform in
  ``[0, L - patch_frames]`` (:func:`random_patches`, B4).
- Prediction slides a window with hop ``hop`` frames (default 43 = 1 s) through the
  whole clip; a last window aligned with the clip's end is added when the hop
  leaves a tail uncovered (:func:`window_starts`). The clip decision averages the
  windows' softmax (or log-softmax for protonets, C-B6).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..exceptions import ParameterError

__all__ = ["repeat_pad", "pad_clips", "window_starts", "sliding_patches", "clip_windows", "random_patches"]


def _check_logmel(x: np.ndarray, where: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ParameterError(f"{where} must be a log-mel [n_frames >= 1, n_mels]; got shape {x.shape}")
    return x


def repeat_pad(logmel: np.ndarray, patch_frames: int) -> np.ndarray:
    """Tile a clip shorter than ``patch_frames`` along time and crop it; longer clips are returned as is.

    Parameters
    ----------
    logmel : np.ndarray [shape=(n_frames, n_mels)]
    patch_frames : int

    Returns
    -------
    np.ndarray [shape=(max(n_frames, patch_frames), n_mels)], float32

    Examples
    --------
    >>> repeat_pad(np.arange(3, dtype=np.float32)[:, None], 7)[:, 0].tolist()
    [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0]
    """
    x = _check_logmel(logmel, "logmel")
    if x.shape[0] >= patch_frames:
        return x
    reps = -(-patch_frames // x.shape[0])
    return np.tile(x, (reps, 1))[:patch_frames]


def pad_clips(inputs: Sequence[np.ndarray], patch_frames: int) -> list[np.ndarray]:
    """:func:`repeat_pad` every clip; all must share ``n_mels``."""
    if len(inputs) == 0:
        raise ParameterError("inputs must hold at least one log-mel; got 0")
    out = [repeat_pad(x, patch_frames) for x in inputs]
    mels = {x.shape[1] for x in out}
    if len(mels) != 1:
        raise ParameterError(f"all log-mels must have the same n_mels; got {sorted(mels)}")
    return out


def window_starts(n_frames: int, patch_frames: int, hop: int) -> np.ndarray:
    """Start frames of the sliding windows over a (padded) clip of ``n_frames``.

    Examples
    --------
    >>> window_starts(173, 128, 43).tolist()
    [0, 43, 45]
    >>> window_starts(128, 128, 43).tolist()
    [0]
    """
    if hop < 1:
        raise ParameterError(f"hop must be a positive number of frames; got {hop}")
    last = n_frames - patch_frames
    starts = np.arange(0, last + 1, hop)
    if starts[-1] != last:
        starts = np.append(starts, last)
    return starts


def sliding_patches(logmel: np.ndarray, *, patch_frames: int = 128, hop: int = 43) -> np.ndarray:
    """Every window of a clip: ``[n_windows, patch_frames, n_mels]`` (short clips repeat-padded)."""
    x = repeat_pad(logmel, patch_frames)
    starts = window_starts(x.shape[0], patch_frames, hop)
    return np.stack([x[s:s + patch_frames] for s in starts])


def clip_windows(inputs: Sequence[np.ndarray], *, patch_frames: int = 128,
                 hop: int = 43) -> tuple[np.ndarray, np.ndarray]:
    """Windows of many clips, concatenated.

    Returns
    -------
    patches : np.ndarray [shape=(n_windows_total, patch_frames, n_mels)]
    clip_index : np.ndarray [shape=(n_windows_total,)], int
        Which clip each window comes from.
    """
    padded = pad_clips(inputs, patch_frames)
    parts = [sliding_patches(x, patch_frames=patch_frames, hop=hop) for x in padded]
    index = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])
    return np.concatenate(parts), index


def random_patches(padded: Sequence[np.ndarray], clips: np.ndarray, patch_frames: int,
                   rng: np.random.Generator) -> np.ndarray:
    """One patch per entry of ``clips`` (indices into ``padded``), start uniform in ``[0, L - P]``.

    Returns
    -------
    np.ndarray [shape=(len(clips), patch_frames, n_mels)]
    """
    out = []
    for i in clips:
        x = padded[int(i)]
        s = int(rng.integers(0, x.shape[0] - patch_frames + 1))
        out.append(x[s:s + patch_frames])
    return np.stack(out)
