"""Tests of fewshot.data.audio and fewshot.data.spectrogram on generated audio."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from fewshot.data import audio as audio_mod
from fewshot.data.audio import check_waveform, fix_length, load_audio, read_clip, to_mono
from fewshot.data.cache import ArrayCache
from fewshot.data.datasets._base import Clip, Dataset
from fewshot.data.spectrogram import (
    SPECTROGRAMS,
    LogMel,
    SpectrogramConfig,
    clip_log_mel,
    clip_mfcc,
    get_spectrogram,
    log_mel,
    mfcc_vector,
)
from fewshot.exceptions import DataError, ParameterError


@pytest.fixture
def rng():
    return np.random.default_rng(440)


def _sine(freq, sr, seconds, amp=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(path, y, sr, subtype="FLOAT"):
    sf.write(path, y, sr, subtype=subtype)
    return str(path)


def _dataset(clips, **kw):
    return Dataset(name="t", id="t-test", clips=clips, classes=sorted({c.label for c in clips}), test_folds=["1"], **kw)


# -- decoding -------------------------------------------------------------------------------


def test_stereo_is_mixed_to_mono(tmp_path, rng):
    left, right = rng.uniform(-0.5, 0.5, (2, 4000)).astype(np.float32)
    path = _write(tmp_path / "st.wav", np.stack([left, right], axis=1), 8000)
    y, sr = load_audio(path)
    assert sr == 8000 and y.dtype == np.float32 and y.shape == (4000,)
    np.testing.assert_array_equal(y, ((left + right) * np.float32(0.5)))
    np.testing.assert_allclose(y, np.stack([left, right], 1).mean(axis=1), atol=1e-7)
    both, _ = load_audio(path, mono=False)
    assert both.shape == (4000, 2)
    three = rng.standard_normal((10, 3)).astype(np.float32)
    np.testing.assert_allclose(to_mono(three), three.mean(axis=1), rtol=1e-6)


def test_resampling_keeps_frequency_and_duration(tmp_path):
    path = _write(tmp_path / "sine.wav", _sine(440.0, 44100, 2.0), 44100, subtype="PCM_16")
    y, sr = load_audio(path, sr=12000)
    assert sr == 12000 and y.dtype == np.float32
    assert abs(len(y) - 24000) <= 1
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak_hz = np.argmax(spectrum) * sr / len(y)
    assert abs(peak_hz - 440.0) < 1.0
    assert 0.45 < np.max(np.abs(y[1000:-1000])) < 0.55  # amplitude kept


def test_missing_and_garbage_files_are_named(tmp_path):
    with pytest.raises(DataError, match=r"audio file not found: .*nope\.wav"):
        load_audio(tmp_path / "nope.wav")
    bad = tmp_path / "garbage.wav"
    bad.write_bytes(os.urandom(2000))
    with pytest.raises(DataError, match=r"cannot decode audio file .*garbage\.wav"):
        load_audio(bad)
    with pytest.raises(ParameterError, match="sr must be a positive int"):
        load_audio(bad, sr=0)


def test_mp3_is_read_or_explained(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("libsndfile without MP3")
    path = tmp_path / "tone.mp3"
    sf.write(path, _sine(440.0, 16000, 1.0), 16000, format="MP3")
    y, sr = load_audio(path, sr=16000)
    assert sr == 16000 and abs(len(y) - 16000) < 2000 and np.max(np.abs(y)) > 0.3


# -- length and validity ----------------------------------------------------------------------


def test_fix_length_modes():
    y = np.array([1, 2, 3], dtype=np.float32)
    np.testing.assert_array_equal(fix_length(y, 8), [1, 2, 3, 1, 2, 3, 1, 2])
    np.testing.assert_array_equal(fix_length(y, 5, mode="zero"), [1, 2, 3, 0, 0])
    np.testing.assert_array_equal(fix_length(y, 5, mode="crop"), [1, 2, 3])
    for mode in ("repeat", "zero", "crop"):
        np.testing.assert_array_equal(fix_length(y, 2, mode=mode), [1, 2])
    frames = np.arange(6).reshape(3, 2)
    np.testing.assert_array_equal(fix_length(frames, 5, axis=0), [[0, 1], [2, 3], [4, 5], [0, 1], [2, 3]])
    batch = np.arange(4).reshape(2, 2)
    np.testing.assert_array_equal(fix_length(batch, 3), [[0, 1, 0], [2, 3, 2]])
    assert fix_length(y, 8).dtype == np.float32


def test_fix_length_errors():
    with pytest.raises(ParameterError, match="length mode must be one of repeat, zero, crop; got 'tile'"):
        fix_length(np.ones(3), 5, mode="tile")
    with pytest.raises(ParameterError, match="target length must be a positive int; got 0"):
        fix_length(np.ones(3), 0)
    with pytest.raises(DataError, match="cannot repeat-pad an empty waveform"):
        fix_length(np.zeros(0), 5)


@pytest.mark.parametrize(
    ("waveform", "message"),
    [
        (np.zeros(0, dtype=np.float32), r"clip\.wav: zero-length audio \(0 samples\)"),
        (np.array([0.1, np.nan, 0.2], dtype=np.float32), r"clip\.wav: audio has 1 non-finite samples"),
        (np.array([0.1, np.inf, -np.inf], dtype=np.float32), r"clip\.wav: audio has 2 non-finite samples"),
        (np.zeros(100, dtype=np.float32), r"clip\.wav: silent audio \(every sample is 0\)"),
    ],
)
def test_check_waveform_rejects_bad_audio(waveform, message):
    with pytest.raises(DataError, match=message):
        check_waveform(waveform, source="clip.wav")


def test_check_waveform_passes_good_audio():
    y = np.array([0.0, 1e-6, -0.5], dtype=np.float32)
    assert check_waveform(y, source="x") is y


# -- read_clip and the audio cache -------------------------------------------------------------


def test_read_clip_from_file_caches_by_identity(tmp_path, monkeypatch):
    path = _write(tmp_path / "a.wav", _sine(300.0, 22050, 0.5), 22050)
    ds = _dataset([Clip(path, "a", "1")])
    cache = ArrayCache(tmp_path / "cache")
    first = read_clip(ds, ds.clips[0], sr=12000, cache=cache)
    assert first.dtype == np.float32 and first.ndim == 1 and abs(len(first) - 6000) <= 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(audio_mod, "load_audio", no_decoding)
    again = read_clip(ds, ds.clips[0], sr=12000, cache=cache)
    np.testing.assert_array_equal(first, again)
    with pytest.raises(AssertionError, match="decoded again"):  # another sr is another entry
        read_clip(ds, ds.clips[0], sr=16000, cache=cache)
    monkeypatch.undo()

    # a rewritten file (new size and mtime) is decoded again
    _write(path, _sine(300.0, 22050, 1.0), 22050)
    os.utime(path, ns=(1, 1))
    assert abs(len(read_clip(ds, ds.clips[0], sr=12000, cache=cache)) - 12000) <= 1
    assert cache.info()["namespaces"]["audio"]["entries"] == 2  # 12 kHz, old and new file


def test_read_clip_uses_the_dataset_reader(tmp_path):
    calls = []

    def reader(clip):
        calls.append(clip.path)
        y = np.stack([_sine(200.0, 8000, 1.0), _sine(200.0, 8000, 1.0)], axis=1)
        return y, 8000

    ds = _dataset([Clip("synth:0", "a", "1")], reader=reader, identity=lambda c: f"synth-v1:{c.path}")
    cache = ArrayCache(tmp_path / "cache")
    y = read_clip(ds, ds.clips[0], sr=16000, cache=cache)
    assert y.shape == (16000,) and y.dtype == np.float32
    y2 = read_clip(ds, ds.clips[0], sr=16000, cache=cache)
    np.testing.assert_array_equal(y, y2)
    assert calls == ["synth:0"]
    np.testing.assert_array_equal(read_clip(ds, ds.clips[0], sr=16000), y)  # no cache


def test_read_clip_bad_files_name_the_file(tmp_path):
    silent = _write(tmp_path / "quiet.wav", np.zeros(800, dtype=np.float32), 8000)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 8000)
    clips = [Clip(silent, "a", "1"), Clip(str(empty), "a", "1"), Clip(str(tmp_path / "gone.wav"), "a", "1")]
    ds = _dataset(clips)
    cache = ArrayCache(tmp_path / "cache")
    with pytest.raises(DataError, match=r"quiet\.wav: silent audio"):
        read_clip(ds, clips[0], sr=8000, cache=cache)
    with pytest.raises(DataError, match=r"empty\.wav: zero-length audio"):
        read_clip(ds, clips[1], sr=8000)
    with pytest.raises(DataError, match=r"audio file not found: .*gone\.wav"):
        read_clip(ds, clips[2], sr=8000, cache=cache)
    assert cache.info()["entries"] == 0  # bad clips are never cached


# -- spectrograms: a float64 numpy reference of librosa's mel power spectrogram ---------------


def _hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_hz / f_sp + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m):
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def _ref_mel_power(y, cfg):
    """Slaney mel power spectrogram [n_frames, n_mels], float64, written from the definitions."""
    fmax = cfg.sr / 2 if cfg.fmax is None else cfg.fmax
    freqs = np.linspace(0, cfg.sr / 2, cfg.n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(cfg.fmin), _hz_to_mel(fmax), cfg.n_mels + 2))
    lower = (freqs[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    upper = (edges[2:, None] - freqs[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    weights = np.maximum(0, np.minimum(lower, upper)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    pad = cfg.n_fft // 2
    x = np.pad(y.astype(np.float64), pad, mode=cfg.pad_mode)
    n_frames = 1 + (len(x) - cfg.n_fft) // cfg.hop_length
    idx = np.arange(cfg.n_fft)[None, :] + cfg.hop_length * np.arange(n_frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.n_fft) / cfg.n_fft)  # periodic Hann
    power = np.abs(np.fft.rfft(x[idx] * window, axis=1)) ** 2
    return power @ weights.T


def _ref_log(mel, cfg):
    if cfg.float16:
        mel = mel.astype(np.float32).astype(np.float16).astype(np.float64)
    if cfg.log == "db":
        db = 10 * np.log10(np.maximum(mel, cfg.amin))
        return np.maximum(db, db.max() - cfg.top_db)
    if cfg.log == "logeps":
        return np.log10(mel + cfg.eps)
    return np.log10(cfg.gain * mel + 1)


@pytest.mark.parametrize("name", sorted(SPECTROGRAMS))
def test_log_mel_shape_and_reference_agreement(name, rng):
    cfg = SPECTROGRAMS[name]
    n = int(1.3 * cfg.sr)
    y = (_sine(523.25, cfg.sr, 1.3, amp=0.3) + 0.05 * rng.standard_normal(n)).astype(np.float32)
    out = log_mel(y, name)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert tuple(out.shape) == (cfg.frames(n), cfg.n_mels) == (1 + n // cfg.hop_length, cfg.n_mels)

    ref_power = _ref_mel_power(y, cfg)
    raw = log_mel(y, cfg.replace(log="none", float16=False)).numpy()
    assert np.max(np.abs(raw - ref_power)) <= 1e-5 * ref_power.max()
    ref = _ref_log(ref_power, cfg)
    tolerance = 2e-3 if cfg.float16 else 1e-3  # float16 rounding can flip one step
    assert np.max(np.abs(out.numpy() - ref)) < tolerance


def test_log_mel_batch_equals_clips_and_module(rng):
    cfg = SPECTROGRAMS["elmarc"]
    batch = (0.1 * rng.standard_normal((3, 6000))).astype(np.float32)
    batch[1] *= 0.001  # per-clip top_db must not depend on the other clips
    together = log_mel(batch, cfg)
    assert together.shape == (3, cfg.frames(6000), 96)
    for i in range(3):
        torch.testing.assert_close(together[i], log_mel(batch[i], cfg), atol=1e-5, rtol=1e-6)
    module = LogMel("elmarc")
    torch.testing.assert_close(module(torch.from_numpy(batch)), together, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(module(torch.from_numpy(batch[0])), together[0], atol=1e-5, rtol=1e-6)
    assert "n_mels=96" in repr(module)


def test_spectrogram_config_rules():
    cfg = SPECTROGRAMS["fewdata"]
    assert cfg.frames(44100 * 4) == 173  # few-data study: a 4 s US8K clip gives 173 frames
    assert SPECTROGRAMS["elmarc"].frames(348000) == 1360
    assert cfg.replace(center=False).frames(4096) == 4
    assert cfg.key() == SpectrogramConfig(**{**cfg.__dict__}).key()
    assert len({c.key() for c in SPECTROGRAMS.values()}) == 3
    assert get_spectrogram(cfg) is cfg
    with pytest.raises(ParameterError, match="unknown spectrogram 'mfcc'; available: elmarc, fewdata, musicnn"):
        get_spectrogram("mfcc")
    with pytest.raises(ParameterError, match="spectrogram hop_length must be a positive int; got 0"):
        cfg.replace(hop_length=0)
    with pytest.raises(ParameterError, match="spectrogram log must be one of"):
        cfg.replace(log="ln")
    with pytest.raises(ParameterError, match=r"fmax <= sr/2 = 22050"):
        cfg.replace(fmax=30000.0)
    with pytest.raises(ParameterError, match="pad_mode must be one of"):
        cfg.replace(pad_mode="edge")
    with pytest.raises(ParameterError, match=r"waveform must be \[n_samples\] or \[batch, n_samples\]"):
        log_mel(np.zeros((1, 2, 3)), cfg)


def test_reflect_padding_needs_enough_samples():
    with pytest.raises(DataError, match="too short for reflect padding with n_fft=1024"):
        log_mel(np.ones(100, dtype=np.float32), "fewdata")
    assert log_mel(np.ones(100, dtype=np.float32), SPECTROGRAMS["fewdata"].replace(pad_mode="constant")).shape == (
        1,
        128,
    )


def test_mfcc_vector(rng):
    sr = 12000
    y = (_sine(440.0, sr, 2.0) + 0.05 * rng.standard_normal(2 * sr)).astype(np.float32)
    vec = mfcc_vector(y, sr)
    assert vec.shape == (120,) and vec.dtype == np.float32 and np.all(np.isfinite(vec))

    # same recipe from the float64 reference: dB mel → orthonormal DCT-II → stats
    from scipy.fft import dct

    from fewshot.data.spectrogram import mfcc_config

    cfg = mfcc_config(sr)
    mfcc = dct(_ref_log(_ref_mel_power(y, cfg), cfg), type=2, norm="ortho", axis=1)[:, :20]
    d1, d2 = np.diff(mfcc, axis=0), np.diff(mfcc, n=2, axis=0)
    want = np.concatenate([f(m, axis=0) for m in (mfcc, d1, d2) for f in (np.mean, np.std)])
    np.testing.assert_allclose(vec, want, atol=2e-3 * np.abs(want).max())

    short = mfcc_vector(y[:300], sr)  # zero-padded to 2048 samples, still finite
    assert short.shape == (120,) and np.all(np.isfinite(short))


def test_clip_features_are_cached(tmp_path, monkeypatch):
    path = _write(tmp_path / "c.wav", _sine(660.0, 16000, 1.0), 16000)
    ds = _dataset([Clip(path, "a", "1")])
    cache = ArrayCache(tmp_path / "cache")
    spec = clip_log_mel(ds, ds.clips[0], "elmarc", cache=cache, seconds=2.0)
    assert spec.shape == (SPECTROGRAMS["elmarc"].frames(24000), 96) and spec.dtype == np.float32
    patch = clip_log_mel(ds, ds.clips[0], "fewdata", cache=cache, frames=128, pad="repeat")
    assert patch.shape == (128, 128)
    np.testing.assert_array_equal(patch[44:88], patch[:44])  # 1 s = 44 frames, tiled
    vec = clip_mfcc(ds, ds.clips[0], cache=cache)
    assert vec.shape == (120,)
    counts = {k: v["entries"] for k, v in cache.info()["namespaces"].items()}
    assert counts == {"audio": 2, "logmel": 2, "features": 1}  # mfcc shares the 12 kHz audio

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(audio_mod, "load_audio", no_decoding)
    np.testing.assert_array_equal(clip_log_mel(ds, ds.clips[0], "elmarc", cache=cache, seconds=2.0), spec)
    np.testing.assert_array_equal(clip_mfcc(ds, ds.clips[0], cache=cache), vec)
    # a new setting at a cached sample rate reads the cached audio, not the file
    other = clip_log_mel(ds, ds.clips[0], SPECTROGRAMS["elmarc"].replace(n_mels=64), cache=cache)
    assert other.shape[1] == 64
    # without a cache the same numbers come back
    monkeypatch.undo()
    np.testing.assert_array_equal(clip_log_mel(ds, ds.clips[0], "elmarc", cache=None, seconds=2.0), spec)
