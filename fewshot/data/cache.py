"""Content-addressed on-disk cache of numpy arrays (decoded audio, log-mels, features).

An entry is addressed by a key: ``"<namespace>/<sha256>"``, where the hash is taken over a
canonical JSON of every part that determines the content (file identity, sample rate,
spectrogram settings, ...) plus :data:`CACHE_FORMAT`. Entries live in
``<root>/<namespace>/<hash[:2]>/<hash>.fsc``, so ``fewshot cache info`` and ``prune`` can work
per namespace (``audio``, ``logmel``, ``features``...).

Guarantees
----------
- **Exact.** Arrays are stored in the ``.npy`` format, uncompressed; what comes back is
  bit-identical to what went in (dtype and shape included). Object arrays are refused.
- **Atomic.** An entry is written to a temporary file in its own folder, then moved into place
  with :func:`os.replace`. Readers see the old entry, the new one or none, never half of one.
  Two processes computing the same key both end with a valid entry (the last rename wins and
  both wrote the same content).
- **Checked.** Each entry carries a SHA-256 of its header and payload. An entry that fails the
  check (disk corruption, a torn write after a power loss, a hand edit) is deleted and reported
  as a miss, so :meth:`ArrayCache.get_or_compute` recomputes it; a bad entry is never read.

Files are not fsync'ed: a killed process (SIGKILL) loses nothing that the OS accepted, and a
power loss at worst leaves an entry that fails its checksum and is recomputed.

The root is, in order: the ``root`` argument (``--cache-dir``), the ``FEWSHOT_CACHE_DIR``
environment variable, ``~/.cache/fewshot``. Functions that take ``cache=None`` do not cache.

Examples
--------
>>> import numpy as np, tempfile
>>> cache = ArrayCache(tempfile.mkdtemp())
>>> key = cache.key("features", clip="a.wav", sr=12000)
>>> cache.get_or_compute(key, lambda: np.arange(3.0))
array([0., 1., 2.])
>>> cache.get(key)["array"]
array([0., 1., 2.])
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import struct
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DataError, ParameterError

__all__ = ["ArrayCache", "CACHE_FORMAT", "cache_key", "default_cache_dir"]

#: Version of the key derivation and of the file layout. Bump it to invalidate every entry.
CACHE_FORMAT = 1

_MAGIC = b"FSCACHE1"
_SUFFIX = ".fsc"
_TMP_PREFIX = ".tmp-"
_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_KEY = re.compile(r"^([a-z0-9][a-z0-9_-]*)/([0-9a-f]{64})$")
_SINGLE = "array"  # name under which a bare ndarray is stored
_STALE_TMP_SECONDS = 3600.0


def default_cache_dir() -> Path:
    """``$FEWSHOT_CACHE_DIR`` if set and non-empty, else ``~/.cache/fewshot``."""
    env = os.environ.get("FEWSHOT_CACHE_DIR", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fewshot"


def _canonical(value: Any) -> Any:
    """JSON-ready form of a key part; raises ParameterError for what has no stable form."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        # repr round-trips exactly; JSON would turn nan/inf into non-standard tokens anyway
        return {"float": repr(float(value))}
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "key") and callable(value.key):  # e.g. SpectrogramConfig
        return {"type": type(value).__name__, "key": value.key()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__, **_canonical(dataclasses.asdict(value))}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, np.ndarray):
        return {
            "ndarray": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest(),
            "dtype": value.dtype.str,
            "shape": list(value.shape),
        }
    raise ParameterError(f"cache key part of type {type(value).__name__} has no stable form; got {value!r}")


def cache_key(namespace: str, **parts: Any) -> str:
    """Key ``"<namespace>/<sha256 hex>"`` of the canonical JSON of ``parts``.

    Parameters
    ----------
    namespace : str
        Folder of the entry: lower-case letters, digits, ``-`` and ``_`` (``audio``, ``logmel``).
    **parts
        Everything that determines the content: str, int, float, bool, None, Path, lists,
        dicts, numpy scalars and arrays (hashed), dataclasses, objects with a ``key()`` method.
        Floats are keyed by their exact repr, so ``1`` and ``1.0`` differ.

    Returns
    -------
    str
    """
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise ParameterError(f"cache namespace must be lower-case letters, digits, '-' or '_'; got {namespace!r}")
    doc = {"format": CACHE_FORMAT, "namespace": namespace, "parts": _canonical(parts)}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return f"{namespace}/{hashlib.sha256(text.encode()).hexdigest()}"


def _encode(arrays: Mapping[str, np.ndarray], header: dict[str, Any]) -> bytes:
    """Entry bytes: magic | sha256(rest) | header length | header JSON | .npy blobs."""
    blobs = io.BytesIO()
    index = []
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.dtype.hasobject:
            raise ParameterError(f"cache entry array {name!r} has dtype object; only plain dtypes are cached")
        start = blobs.tell()
        np.lib.format.write_array(blobs, array, allow_pickle=False)
        index.append([str(name), start, blobs.tell() - start])
    head = json.dumps({**header, "arrays": index}, sort_keys=True).encode()
    rest = struct.pack("<Q", len(head)) + head + blobs.getvalue()
    return _MAGIC + hashlib.sha256(rest).digest() + rest


def _decode(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Inverse of :func:`_encode`; raises ValueError on any inconsistency."""
    if len(data) < 48 or data[:8] != _MAGIC:
        raise ValueError("bad magic or truncated")
    view = memoryview(data)
    if hashlib.sha256(view[40:]).digest() != data[8:40]:
        raise ValueError("checksum mismatch")
    (n_head,) = struct.unpack("<Q", data[40:48])
    header = json.loads(bytes(view[48 : 48 + n_head]))
    base = 48 + n_head
    arrays = {}
    for name, start, length in header.pop("arrays"):
        blob = io.BytesIO(view[base + start : base + start + length])
        arrays[name] = np.lib.format.read_array(blob, allow_pickle=False)
    return arrays, header


class ArrayCache:
    """Disk cache of named numpy arrays, addressed by content keys.

    Parameters
    ----------
    root : str or Path, optional
        Folder of the cache. Default: ``$FEWSHOT_CACHE_DIR``, else ``~/.cache/fewshot``.
        Created on the first write.

    Attributes
    ----------
    root : Path
    hits, misses : int
        Counters of this instance (``get`` calls that found / did not find a valid entry).
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"ArrayCache({str(self.root)!r})"

    key = staticmethod(cache_key)

    def path(self, key: str) -> Path:
        """File of the entry ``key`` (which may not exist)."""
        match = _KEY.match(key) if isinstance(key, str) else None
        if not match:
            raise ParameterError(f"cache key must look like '<namespace>/<64 hex digits>'; got {key!r}")
        namespace, digest = match.groups()
        return self.root / namespace / digest[:2] / f"{digest}{_SUFFIX}"

    # -- reading -------------------------------------------------------------------------------

    def get(self, key: str, *, with_meta: bool = False):
        """Arrays stored under ``key``, or None when absent or corrupted (then deleted).

        Parameters
        ----------
        key : str
            From :meth:`key`.
        with_meta : bool, default=False
            Return ``(arrays, meta)`` instead of ``arrays`` (``None`` on a miss either way).

        Returns
        -------
        dict of str to np.ndarray, or None
            A bare array given to :meth:`put` comes back under the name ``"array"``.
        """
        found = self._read(key)
        if found is None:
            return None
        arrays, header = found
        return (arrays, header.get("meta") or {}) if with_meta else arrays

    def _read(self, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        path = self.path(key)
        try:
            with open(path, "rb") as fh:
                stat = os.fstat(fh.fileno())
                data = fh.read()
        except FileNotFoundError:
            self.misses += 1
            return None
        except OSError as exc:
            raise DataError(f"cannot read cache entry {path}: {exc.strerror or exc}") from exc
        try:
            arrays, header = _decode(data)
            if header.get("key") != key:
                raise ValueError("entry was written for another key")
        except Exception:  # noqa: BLE001 - any failure to decode means a bad entry
            self._discard(path, stat)
            self.misses += 1
            return None
        with contextlib.suppress(OSError):  # mark as used, for prune(older_than_days=...)
            os.utime(path)
        self.hits += 1
        return arrays, header

    @staticmethod
    def _discard(path: Path, stat: os.stat_result) -> None:
        """Delete a bad entry unless a writer has replaced it since we opened it."""
        with contextlib.suppress(OSError):
            now = os.stat(path)
            if (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns):
                os.unlink(path)

    # -- writing -------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        arrays: Mapping[str, np.ndarray] | np.ndarray,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> Path:
        """Store ``arrays`` under ``key`` atomically; returns the entry's path.

        Parameters
        ----------
        key : str
        arrays : dict of str to np.ndarray, or np.ndarray
            A bare array is stored under the name ``"array"``.
        meta : dict, optional
            JSON-serialisable notes kept with the entry (source file, settings).
        """
        path = self.path(key)
        single = isinstance(arrays, np.ndarray)
        if single:
            arrays = {_SINGLE: arrays}
        elif not isinstance(arrays, Mapping):
            raise ParameterError(f"cache value must be an ndarray or a dict of ndarrays; got {type(arrays).__name__}")
        header = {"key": key, "single": single, "created": time.time(), "meta": dict(meta or {})}
        try:
            data = _encode(arrays, header)
        except TypeError as exc:
            raise ParameterError(f"cache entry meta for {key} is not JSON-serialisable: {exc}") from exc
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-", suffix=".part", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise DataError(
                f"cannot write cache entry under {self.root}: {exc.strerror or exc} "
                "(free some space, `fewshot cache prune`, or choose another --cache-dir)"
            ) from exc
        return path

    def get_or_compute(
        self,
        key: str,
        fn: Callable[[], np.ndarray | Mapping[str, np.ndarray]],
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> np.ndarray | dict[str, np.ndarray]:
        """The entry under ``key``, computing and storing ``fn()`` on a miss.

        Returns what ``fn`` returns: an ndarray if it returned an ndarray (also on a hit),
        else a dict of arrays. On a miss the freshly computed value is returned as is.
        """
        found = self._read(key)
        if found is not None:
            arrays, header = found
            return arrays[_SINGLE] if header.get("single") else arrays
        value = fn()
        self.put(key, value, meta=meta)
        return value

    # -- housekeeping --------------------------------------------------------------------------

    def _entries(self, namespace: str | None = None):
        if namespace is not None and not _NAMESPACE.match(namespace):
            raise ParameterError(f"cache namespace must be lower-case letters, digits, '-' or '_'; got {namespace!r}")
        if not self.root.is_dir():
            return
        spaces = [self.root / namespace] if namespace else sorted(p for p in self.root.iterdir() if p.is_dir())
        for space in spaces:
            if not space.is_dir() or not _NAMESPACE.match(space.name):
                continue
            for shard in sorted(space.iterdir()):
                if not shard.is_dir():
                    continue
                for entry in shard.iterdir():
                    yield space.name, entry

    def info(self) -> dict[str, Any]:
        """Entries and bytes per namespace.

        Returns
        -------
        dict
            ``{"root": str, "entries": int, "bytes": int,
            "namespaces": {namespace: {"entries": int, "bytes": int}}}``. Temporary files
            of writes in progress (or of killed writers) are not counted.
        """
        spaces: dict[str, dict[str, int]] = {}
        for namespace, entry in self._entries():
            if not entry.name.endswith(_SUFFIX):
                continue
            with contextlib.suppress(FileNotFoundError):
                size = entry.stat().st_size
                slot = spaces.setdefault(namespace, {"entries": 0, "bytes": 0})
                slot["entries"] += 1
                slot["bytes"] += size
        return {
            "root": str(self.root),
            "entries": sum(s["entries"] for s in spaces.values()),
            "bytes": sum(s["bytes"] for s in spaces.values()),
            "namespaces": dict(sorted(spaces.items())),
        }

    def prune(self, *, older_than_days: float | None = None, namespace: str | None = None) -> tuple[int, int]:
        """Delete entries, all of them or those unused for ``older_than_days``.

        Parameters
        ----------
        older_than_days : float, optional
            Keep entries read or written more recently than this. None removes every entry.
        namespace : str, optional
            Only this namespace (``audio``, ``logmel``...). None means all.

        Returns
        -------
        n_removed, n_bytes : int
            Temporary files left by killed writers (older than an hour) are removed too and
            counted.
        """
        if older_than_days is not None and not older_than_days >= 0:
            raise ParameterError(f"older_than_days must be >= 0; got {older_than_days}")
        now = time.time()
        cutoff = None if older_than_days is None else now - older_than_days * 86400.0
        removed = n_bytes = 0
        for _, entry in list(self._entries(namespace)):
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue
            if entry.name.startswith(_TMP_PREFIX):
                if now - stat.st_mtime < _STALE_TMP_SECONDS:
                    continue  # a write in progress
            elif not entry.name.endswith(_SUFFIX) or (cutoff is not None and stat.st_mtime >= cutoff):
                continue
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed += 1
                n_bytes += stat.st_size
        for shard_or_space in sorted(self.root.glob("*/*"), reverse=True) if self.root.is_dir() else []:
            with contextlib.suppress(OSError):
                shard_or_space.rmdir()  # only succeeds when empty
        return removed, n_bytes
