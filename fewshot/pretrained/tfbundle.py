"""Read TensorFlow tensor-bundle checkpoints with numpy alone (no TensorFlow).

A TF checkpoint with prefix ``P`` is two files: ``P.index``, a LevelDB-style
sorted string table (SSTable) mapping each variable name to a ``BundleEntryProto``
(dtype, shape, shard, offset, size, crc32c), and ``P.data-00000-of-00001``, the raw
little-endian C-order tensors at those offsets [#]_. This module walks both with a
schema-free protobuf reader. It refuses what it cannot read faithfully: compressed
blocks, several shards, big-endian bundles, partitioned (sliced) variables and
dtypes outside :data:`DTYPES`.

The four checkpoints of the ``musicnn`` package [#]_ (``MTT_musicnn``,
``MSD_musicnn``, ``MTT_vgg``, ``MSD_vgg``) are found through
:func:`importlib.resources.files`; musicnn's own code (and TensorFlow) is never
imported. Its checkpoint prefix is the empty string inside each model folder, so
the files are the hidden ``.index`` and ``.data-00000-of-00001``.

References
----------
.. [#] TensorFlow, ``tensorflow/core/util/tensor_bundle/tensor_bundle.proto`` and
   LevelDB's ``table_format.md``.
.. [#] J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks for
   music audio tagging", ISMIR 2019 Late-Breaking/Demo. https://github.com/jordipons/musicnn

Examples
--------
>>> from fewshot.pretrained.tfbundle import list_variables, load_variables
>>> info = list_variables("MTT_musicnn")            # doctest: +SKIP
>>> info["conv2d/kernel"]                            # doctest: +SKIP
VariableInfo(name='conv2d/kernel', dtype='float32', shape=(7, 38, 1, 204))
>>> weights = load_variables("MTT_vgg")              # doctest: +SKIP
"""

from __future__ import annotations

import importlib.resources
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..exceptions import DataError, FewShotError, ParameterError

__all__ = [
    "CHECKPOINTS",
    "DTYPES",
    "MUSICNN_INSTALL",
    "TensorBundle",
    "VariableInfo",
    "checkpoint_prefix",
    "list_variables",
    "load_variables",
    "musicnn_root",
]

#: The checkpoints shipped in the musicnn 0.1.0 wheel (folder names).
CHECKPOINTS = ("MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg")

#: The exact command that installs the checkpoints (its pins fail on Python 3.11 without --no-deps).
MUSICNN_INSTALL = "pip install --no-deps musicnn==0.1.0"

#: TensorFlow ``DataType`` enum value → numpy dtype (little-endian), for the dtypes this reader supports.
DTYPES = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    19: np.dtype("<f2"),  # DT_HALF
}

DTYPES_BY_NAME = {dt.name: dt for dt in DTYPES.values()}

_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48
_TRAILER = 5  # compression byte + masked crc32c after every SSTable block


@dataclass(frozen=True)
class VariableInfo:
    """Name, numpy dtype name and shape of one checkpoint variable."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class _Entry:
    info: VariableInfo
    offset: int
    size: int
    crc32c: int | None


# --------------------------------------------------------------------------- protobuf / SSTable primitives


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (value, next position)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes):
    """Yield (field number, wire type, value) of a serialized protobuf message, without a schema."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _block(data: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """Entries (key, value) of the SSTable block at ``offset`` (``size`` bytes, trailer excluded)."""
    if data[offset + size] != 0:
        raise ValueError(f"compressed SSTable block (type {data[offset + size]}) is not supported")
    block = data[offset : offset + size]
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    entries, key, pos = [], b"", 0
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def _handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def _parse_entry(name: str, value: bytes) -> _Entry:
    dtype_enum, shape, offset, size, crc, shard = 0, (), 0, 0, None, 0
    for number, _, field in _fields(value):
        if number == 1:
            dtype_enum = field
        elif number == 2:
            dims = []
            for dnum, _, dim in _fields(field):
                if dnum == 2:
                    dims.append(next((v for n, _, v in _fields(dim) if n == 1), 0))
                elif dnum == 3 and dim:
                    raise ValueError(f"variable {name!r} has unknown rank")
            shape = tuple(dims)
        elif number == 3:
            shard = field
        elif number == 4:
            offset = field
        elif number == 5:
            size = field
        elif number == 6:
            crc = struct.unpack("<I", field)[0]
        elif number == 7:
            raise ValueError(f"variable {name!r} is partitioned (slices); not supported")
    if dtype_enum not in DTYPES:
        raise ValueError(f"variable {name!r} has TF dtype enum {dtype_enum}; supported: {sorted(DTYPES)}")
    if shard != 0:
        raise ValueError(f"variable {name!r} lives in shard {shard}; only single-shard bundles are supported")
    dtype = DTYPES[dtype_enum]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if expected != size:
        raise ValueError(f"variable {name!r}: shape {shape} needs {expected} bytes, entry says {size}")
    return _Entry(VariableInfo(name, dtype.name, shape), offset, size, crc)


# --------------------------------------------------------------------------- CRC32C (optional verification)

_CRC_TABLE: list[int] = []


def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), pure Python; slow (about 1 s per MB), used only when asked."""
    if not _CRC_TABLE:
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            _CRC_TABLE.append(c)
    crc, table = 0xFFFFFFFF, _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc32c(data: bytes) -> int:
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --------------------------------------------------------------------------- the bundle


class TensorBundle:
    """A single-shard TF tensor bundle opened from its prefix.

    Parameters
    ----------
    prefix : str or Path
        Checkpoint prefix: the bundle's files are ``<prefix>.index`` and
        ``<prefix>.data-00000-of-00001``. For musicnn's folders the prefix is
        ``<folder>/`` (empty file stem).

    Attributes
    ----------
    variables : dict of str to VariableInfo
        Every entry of the bundle (model variables, optimiser slots), in key order.

    Raises
    ------
    DataError
        If a file is missing or the bundle is not one this reader can read.
    """

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = str(prefix)
        self.index_path = Path(self.prefix + ".index")
        self.data_path = Path(self.prefix + ".data-00000-of-00001")
        for path in (self.index_path, self.data_path):
            if not path.is_file():
                raise DataError(f"TF checkpoint file {str(path)!r} does not exist")
        try:
            self._entries = self._read_index(self.index_path.read_bytes())
        except (ValueError, IndexError, struct.error) as err:
            raise DataError(f"cannot read TF checkpoint index {str(self.index_path)!r}: {err}") from None
        self.variables = {name: e.info for name, e in self._entries.items()}

    @staticmethod
    def _read_index(data: bytes) -> dict[str, _Entry]:
        if len(data) < _FOOTER or struct.unpack_from("<Q", data, len(data) - 8)[0] != _MAGIC:
            raise ValueError("not an SSTable (bad magic number)")
        footer = data[-_FOOTER:]
        _, _, pos = _handle(footer)  # metaindex handle (unused)
        index_offset, index_size, _ = _handle(footer, pos)
        entries: dict[str, _Entry] = {}
        for _, handle in _block(data, index_offset, index_size):
            offset, size, _ = _handle(handle)
            for key, value in _block(data, offset, size):
                if key == b"":
                    _check_header(value)
                    continue
                name = key.decode("utf-8")
                entries[name] = _parse_entry(name, value)
        return entries

    def names(self, *, include_optimizer: bool = True) -> list[str]:
        """Variable names in key order; ``include_optimizer=False`` drops Adam slots and beta powers."""
        return [n for n in self.variables if include_optimizer or not _is_optimizer(n)]

    def read(self, name: str, *, verify: bool = False) -> np.ndarray:
        """Return variable ``name`` as a new numpy array of its dtype and shape.

        Parameters
        ----------
        name : str
            Variable name, e.g. ``"conv2d/kernel"``.
        verify : bool, default=False
            Check the stored CRC-32C (pure Python, about 1 s per MB).
        """
        if name not in self._entries:
            raise ParameterError(f"variable {name!r} is not in checkpoint {self.prefix!r}")
        entry = self._entries[name]
        with open(self.data_path, "rb") as f:
            f.seek(entry.offset)
            raw = f.read(entry.size)
        if len(raw) != entry.size:
            raise DataError(f"TF checkpoint data {str(self.data_path)!r} is truncated at {name!r}")
        if verify and entry.crc32c is not None and _masked_crc32c(raw) != entry.crc32c:
            raise DataError(f"CRC-32C mismatch for variable {name!r} in {str(self.data_path)!r}")
        info = entry.info
        return np.frombuffer(raw, dtype=DTYPES_BY_NAME[info.dtype]).reshape(info.shape).copy()

    def read_all(self, *, include_optimizer: bool = False) -> dict[str, np.ndarray]:
        """Every variable (by default without the optimiser state) as ``{name: array}``."""
        data = self.data_path.read_bytes()
        out = {}
        for name in self.names(include_optimizer=include_optimizer):
            e = self._entries[name]
            if e.offset + e.size > len(data):
                raise DataError(f"TF checkpoint data {str(self.data_path)!r} is truncated at {name!r}")
            arr = np.frombuffer(data, DTYPES_BY_NAME[e.info.dtype], count=int(np.prod(e.info.shape)),
                                offset=e.offset)
            out[name] = arr.reshape(e.info.shape).copy()
        return out



def _is_optimizer(name: str) -> bool:
    return name.endswith(("/Adam", "/Adam_1")) or name in ("beta1_power", "beta2_power")


def _check_header(value: bytes) -> None:
    """Validate the BundleHeaderProto: one shard, little-endian."""
    for number, _, field in _fields(value):
        if number == 1 and field != 1:
            raise ValueError(f"bundle has {field} shards; only single-shard bundles are supported")
        if number == 2 and field != 0:
            raise ValueError("bundle is big-endian; only little-endian bundles are supported")


# --------------------------------------------------------------------------- musicnn package


def musicnn_root() -> Path:
    """Folder of the installed ``musicnn`` package.

    Raises
    ------
    FewShotError
        If musicnn is not installed; the message gives the install command.
    """
    try:
        root = importlib.resources.files("musicnn")
    except ModuleNotFoundError:
        raise FewShotError(
            f"the pretrained musicnn weights need the 'musicnn' package, which is not installed; "
            f"install it with: {MUSICNN_INSTALL}"
        ) from None
    return Path(str(root))


def checkpoint_prefix(checkpoint: str) -> Path:
    """Prefix of one musicnn checkpoint (``<musicnn>/<checkpoint>/``), checked to exist.

    Parameters
    ----------
    checkpoint : {"MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg"}
    """
    if checkpoint not in CHECKPOINTS:
        raise ParameterError(f"unknown musicnn checkpoint {checkpoint!r}; available: {', '.join(CHECKPOINTS)}")
    folder = musicnn_root() / checkpoint
    if not (folder / ".index").is_file():
        raise FewShotError(
            f"musicnn checkpoint {checkpoint!r} is missing from {str(folder)!r}; reinstall with: {MUSICNN_INSTALL}"
        )
    return folder


def _bundle(checkpoint: str) -> TensorBundle:
    return TensorBundle(str(checkpoint_prefix(checkpoint)) + "/")


def list_variables(checkpoint: str, *, include_optimizer: bool = True) -> dict[str, VariableInfo]:
    """Name → :class:`VariableInfo` of every variable of a musicnn checkpoint.

    Parameters
    ----------
    checkpoint : {"MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg"}
    include_optimizer : bool, default=True
        Include the Adam slots (``<var>/Adam``, ``<var>/Adam_1``) and ``beta1_power``/``beta2_power``.
    """
    bundle = _bundle(checkpoint)
    return {n: bundle.variables[n] for n in bundle.names(include_optimizer=include_optimizer)}


def load_variables(checkpoint: str, *, include_optimizer: bool = False) -> dict[str, np.ndarray]:
    """Name → array of a musicnn checkpoint's variables (float32, TF layouts).

    Parameters
    ----------
    checkpoint : {"MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg"}
    include_optimizer : bool, default=False
        Also return the Adam optimiser state.
    """
    return _bundle(checkpoint).read_all(include_optimizer=include_optimizer)
