"""Tests of fewshot.data.cache: exact round trips, checksums, atomicity, housekeeping."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fewshot.data.cache import ArrayCache, cache_key, default_cache_dir
from fewshot.exceptions import DataError, ParameterError


@pytest.fixture
def cache(tmp_path):
    return ArrayCache(tmp_path / "cache")


def _arrays():
    return {
        "f32": np.linspace(-1, 1, 7, dtype=np.float32).reshape(7, 1),
        "f64": np.array([np.pi, np.nan, np.inf, -0.0, 5e-324]),
        "i16": np.arange(-3, 3, dtype=np.int16),
        "bool": np.array([True, False]),
        "scalar": np.array(3.5, dtype=np.float16),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
    }


def test_roundtrip_is_bit_exact(cache):
    key = cache.key("features", clip="a.wav", sr=12000)
    cache.put(key, _arrays(), meta={"path": "a.wav"})
    got, meta = cache.get(key, with_meta=True)
    assert meta == {"path": "a.wav"}
    for name, want in _arrays().items():
        assert got[name].dtype == want.dtype and got[name].shape == want.shape
        assert got[name].tobytes() == want.tobytes()  # bit-exact, -0.0 and NaN included
        np.testing.assert_array_equal(got[name], want)


def test_get_or_compute_calls_fn_once_and_keeps_the_type(cache):
    calls = []

    def fn():
        calls.append(1)
        return np.arange(5, dtype=np.float32)

    key = cache.key("logmel", clip="b.wav")
    first = cache.get_or_compute(key, fn)
    second = cache.get_or_compute(key, fn)
    assert len(calls) == 1
    assert isinstance(second, np.ndarray)
    np.testing.assert_array_equal(first, second)
    assert (cache.hits, cache.misses) == (1, 1)

    key2 = cache.key("logmel", clip="c.wav")
    out = cache.get_or_compute(key2, lambda: {"x": np.ones(2), "y": np.zeros(1)})
    again = cache.get_or_compute(key2, lambda: pytest.fail("recomputed"))
    assert set(again) == {"x", "y"} and set(out) == {"x", "y"}


def test_missing_key_is_none(cache):
    assert cache.get(cache.key("audio", clip="nothing")) is None


def test_keys_are_canonical_and_typed():
    a = cache_key("audio", path="x.wav", sr=12000, opts={"b": 1, "a": [1, 2]})
    b = cache_key("audio", opts={"a": [1, 2], "b": 1}, sr=12000, path="x.wav")
    assert a == b and a.startswith("audio/") and len(a) == len("audio/") + 64
    assert cache_key("audio", sr=1) != cache_key("audio", sr=1.0)
    assert cache_key("audio", sr=1) != cache_key("logmel", sr=1)
    assert cache_key("audio", w=np.arange(3)) != cache_key("audio", w=np.arange(3.0))
    assert ArrayCache.key("audio", sr=1) == cache_key("audio", sr=1)


@pytest.mark.parametrize("namespace", ["", "Audio", "a/b", "../x", 3])
def test_bad_namespace_is_refused(namespace):
    with pytest.raises(ParameterError, match="cache namespace must be"):
        cache_key(namespace, sr=1)


def test_bad_key_and_value_are_refused(cache):
    with pytest.raises(ParameterError, match="cache key must look like"):
        cache.get("audio/not-a-hash")
    with pytest.raises(ParameterError, match="no stable form"):
        cache_key("audio", f=object())
    key = cache.key("audio", clip="x")
    with pytest.raises(ParameterError, match="dtype object"):
        cache.put(key, {"o": np.array([None, 1], dtype=object)})
    with pytest.raises(ParameterError, match="ndarray or a dict"):
        cache.put(key, [1, 2, 3])


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage"])
def test_corrupted_entry_is_recomputed_never_read(cache, damage):
    key = cache.key("features", clip="d.wav")
    cache.put(key, np.arange(1000, dtype=np.float64))
    path = cache.path(key)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-17] ^= 0x01  # one bit in the payload
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = bytearray()
    else:
        data = bytearray(os.urandom(len(data)))
    path.write_bytes(bytes(data))

    assert cache.get(key) is None
    assert not path.exists()  # the bad entry is gone
    out = cache.get_or_compute(key, lambda: np.full(3, 7.0))
    np.testing.assert_array_equal(out, np.full(3, 7.0))
    np.testing.assert_array_equal(cache.get(key)["array"], np.full(3, 7.0))


def test_entry_copied_under_another_key_is_rejected(cache):
    k1, k2 = cache.key("audio", clip="1"), cache.key("audio", clip="2")
    cache.put(k1, np.ones(3))
    cache.path(k2).parent.mkdir(parents=True, exist_ok=True)
    cache.path(k2).write_bytes(cache.path(k1).read_bytes())
    assert cache.get(k2) is None


def test_info_and_prune(cache):
    for i in range(3):
        cache.put(cache.key("audio", clip=str(i)), np.zeros(100, dtype=np.float32))
    for i in range(2):
        cache.put(cache.key("logmel", clip=str(i)), np.zeros(10, dtype=np.float32))
    info = cache.info()
    assert info["entries"] == 5 and info["root"] == str(cache.root)
    assert info["namespaces"]["audio"]["entries"] == 3
    assert info["namespaces"]["logmel"]["entries"] == 2
    assert info["bytes"] == sum(s["bytes"] for s in info["namespaces"].values()) > 400

    # age one audio entry by 10 days: only it goes with older_than_days=5
    old = cache.path(cache.key("audio", clip="0"))
    past = time.time() - 10 * 86400
    os.utime(old, (past, past))
    removed, n_bytes = cache.prune(older_than_days=5)
    assert removed == 1 and n_bytes > 0 and not old.exists()

    assert cache.prune(namespace="logmel")[0] == 2
    assert set(cache.info()["namespaces"]) == {"audio"}
    assert cache.prune()[0] == 2
    assert cache.info()["entries"] == 0

    with pytest.raises(ParameterError, match="older_than_days"):
        cache.prune(older_than_days=-1)


def test_reading_an_entry_refreshes_its_age(cache):
    key = cache.key("audio", clip="x")
    cache.put(key, np.ones(2))
    past = time.time() - 10 * 86400
    os.utime(cache.path(key), (past, past))
    assert cache.get(key) is not None
    assert cache.prune(older_than_days=5) == (0, 0)


def test_prune_removes_stale_temp_files_only(cache):
    key = cache.key("audio", clip="x")
    cache.put(key, np.ones(2))
    folder = cache.path(key).parent
    stale, fresh = folder / ".tmp-1-a.part", folder / ".tmp-2-b.part"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    past = time.time() - 2 * 3600
    os.utime(stale, (past, past))
    assert cache.info()["entries"] == 1  # temp files are not entries
    assert cache.prune(older_than_days=1) == (1, 4)
    assert not stale.exists() and fresh.exists() and cache.path(key).exists()


def test_root_from_env_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path / "envcache"))
    cache = ArrayCache()
    assert cache.root == tmp_path / "envcache"
    cache.put(cache.key("audio", clip="e"), np.ones(1))
    assert (tmp_path / "envcache" / "audio").is_dir()
    assert ArrayCache(tmp_path / "explicit").root == tmp_path / "explicit"

    monkeypatch.delenv("FEWSHOT_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "fewshot"


def test_unwritable_root_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = ArrayCache(blocker)
    with pytest.raises(DataError, match="cannot write cache entry under"):
        cache.put(cache.key("audio", clip="x"), np.ones(1))


def _hammer(root: str, n: int) -> bool:
    cache = ArrayCache(root)
    key = cache.key("features", clip="shared")
    want = np.arange(50_000, dtype=np.float64)
    for _ in range(n):
        cache.put(key, want)
        got = cache.get_or_compute(key, lambda: want)
        if not np.array_equal(got, want):
            return False
    return True


def test_concurrent_writers_leave_a_valid_entry(tmp_path):
    root = str(tmp_path / "shared")
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        results = list(pool.map(_hammer, [root, root, root], [30, 30, 30]))
    assert all(results)
    cache = ArrayCache(root)
    np.testing.assert_array_equal(
        cache.get(cache.key("features", clip="shared"))["array"], np.arange(50_000, dtype=np.float64)
    )
    leftovers = [p for p in Path(root).rglob("*") if p.is_file() and p.name.startswith(".tmp-")]
    assert leftovers == []
