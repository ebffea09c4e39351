"""Model files: a :class:`~asyncsnn.network.Network` as safetensors (no pickle).

A model file is a plain safetensors file. Its tensors are the float32 arrays of the
network (``projections.<n>.weight``, ``populations.<i>.threshold``,
``populations.<i>.beta``, and ``populations.<i>.bias`` and ``populations.<i>.alpha``
where they are not all 0); its
``__metadata__`` holds the architecture as JSON plus ``format`` (``"asyncsnn"``),
``format_version``, ``spec_version`` (the lowest version of ``docs/semantics.md`` that
runs the network, :attr:`Network.spec_version`) and the writing package's version. Nothing is unpickled or
executed when a file is read; reading takes the header (at most
:data:`MAX_HEADER_BYTES`), checks every tensor's byte range against the file's size
and its ``dtype x shape``, and then reads only the tensors the architecture uses, so
memory follows the network, not the file. Writes are atomic (a temporary file in the
same folder, ``fsync``, then a rename), so an interrupted save never leaves a partial
model behind, and they keep an overwritten file's permission bits.

Examples
--------
>>> import tempfile, os
>>> import numpy as np
>>> import asyncsnn
>>> net = asyncsnn.Network.sequential(input_shape=(3,), layers=[asyncsnn.Dense(np.eye(2, 3))], threshold=0.5)
>>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
>>> asyncsnn.save(net, path, metadata={"trained_with": "momentum"})
>>> back = asyncsnn.load(path)
>>> bool(np.array_equal(back.projections[0].layer.weight, net.projections[0].layer.weight))
True
>>> read_metadata(path)["trained_with"]
'momentum'
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import stat
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asyncsnn._dictform import network_from_dict, network_to_dict
from asyncsnn._provenance import provenance
from asyncsnn._spec import SPEC_VERSION
from asyncsnn.exceptions import ModelError, SpecVersionError, invalid
from asyncsnn.network import Network

__all__ = ["FORMAT_VERSION", "MAX_HEADER_BYTES", "load", "read_metadata", "save"]

FORMAT_VERSION = 1
MAX_HEADER_BYTES = 16 * 2**20
"""Largest JSON header a model file may have (16 MiB, as in the Rust reader): the
architecture is small (tensor names stand for the arrays), so this bounds the extra
metadata a caller can save."""
_DTYPES: dict[str, tuple[np.dtype[Any], int]] = {"F32": (np.dtype("<f4"), 4)}
_RESERVED = {"format", "format_version", "spec_version", "asyncsnn_version", "asyncsnn_commit", "network"}
_MAX_INT_DIGITS = 30  # longer JSON integers are kept as text (and refused where a number is needed)


def _package_version() -> str:
    return provenance()["asyncsnn_version"]


class _LongInt(str):
    """A JSON integer too long to be a count or an offset (kept as its digits)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<integer of {len(self.lstrip('-'))} digits>"


def _parse_int(text: str) -> int | str:
    return int(text) if len(text) <= _MAX_INT_DIGITS else _LongInt(text)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _umask() -> int:
    """The process's umask, read without changing it (Linux), else 0o022."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, chunks: Iterable[bytes | memoryview], *, tmp_prefix: str = ".asyncsnn-") -> None:
    """Write ``chunks`` to ``path`` through a temporary file, ``fsync`` and a rename.

    The temporary file has a short name (``<tmp_prefix><8 hex digits>.tmp``, so a
    destination name of up to 255 bytes still works) in the destination's folder and is
    removed whatever interrupts the write; the destination is replaced only by a
    complete file. An existing destination keeps its permission bits; a new file gets
    ``0o666`` minus the umask, as ``open()`` would give it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode) & 0o777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    # `tmp` names the temporary file from just before it is created, so that an
    # interrupt (Ctrl-C) at any point, even right after os.open, removes it.
    tmp: Path | None = None
    try:
        for _ in range(100):
            tmp = path.parent / f"{tmp_prefix}{secrets.token_hex(4)}.tmp"
            try:
                fd = os.open(tmp, flags, 0o600)
                break
            except FileExistsError:
                tmp = None  # someone else's file: never removed here
                continue
        else:  # pragma: no cover - 100 collisions of 32 random bits
            raise FileExistsError(f"cannot create a temporary file in {path.parent}")
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        if not hasattr(os, "fchmod"):  # pragma: no cover - Windows
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _encode_header(header: dict[str, Any], what: str) -> bytes:
    """The 8-byte size and the JSON header, padded to 8 bytes; refused above :data:`MAX_HEADER_BYTES`."""
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # align the data section to 8 bytes
    if len(raw) > MAX_HEADER_BYTES:
        meta = header.get("__metadata__", {})
        sizes = sorted(((len(str(k)) + len(str(v)), str(k)) for k, v in meta.items()), reverse=True)[:3]
        largest = ", ".join(f"{k!r} ({n} bytes)" for n, k in sizes)
        raise invalid(
            ModelError,
            "metadata",
            f"{len(raw)} bytes of header",
            f"a {what} header may hold at most {MAX_HEADER_BYTES} bytes (16 MiB): asyncsnn.load and the Rust "
            f"reader refuse a larger one, so nothing was written; the largest metadata entries: {largest}",
        )
    return struct.pack("<Q", len(raw)) + raw


def _encode(
    tensors: dict[str, np.ndarray], metadata: dict[str, str], what: str = "model file"
) -> list[bytes | memoryview]:
    """The safetensors layout (8-byte header size, JSON header, data) as chunks to write.

    ``tensors`` are written in name order, each in its own dtype (little-endian):
    float32 (``F32``), float64 (``F64``), int64 (``I64``), int32 (``I32``) or bool.
    """
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    blobs: list[bytes | memoryview] = []
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        code = _CODES.get(arr.dtype.newbyteorder("<").str)
        if code is None:
            raise invalid(ModelError, "tensor", name, f"dtype {arr.dtype} cannot be written")
        arr = np.ascontiguousarray(arr, dtype=_WIDE[code][0])
        blob = arr.data.cast("B") if arr.size else b""
        header[name] = {"dtype": code, "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
        blobs.append(blob)
    return [_encode_header(header, what), *blobs]


_WIDE: dict[str, tuple[np.dtype[Any], int]] = {
    "F32": (np.dtype("<f4"), 4),
    "F64": (np.dtype("<f8"), 8),
    "I64": (np.dtype("<i8"), 8),
    "I32": (np.dtype("<i4"), 4),
    "BOOL": (np.dtype("bool"), 1),
}
_CODES = {dt.str: code for code, (dt, _) in _WIDE.items()}


def save(
    network: Network,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, str] | None = None,
    record_commit: bool = True,
) -> None:
    """Save ``network`` to a safetensors model file, atomically.

    The file is written to a temporary file in the destination's folder, flushed to
    disk and renamed over ``path``, so ``path`` always holds either the previous file
    or the complete new one. Overwriting keeps the old file's permission bits; a new
    file gets ``0o666`` minus the umask.

    Parameters
    ----------
    network
        The network to save.
    path
        Destination file (conventionally ``*.safetensors``); parent folders are created.
    metadata
        Extra string metadata (for example how the model was trained). The keys
        ``format``, ``format_version``, ``spec_version``, ``asyncsnn_version``,
        ``asyncsnn_commit`` and ``network`` are reserved: the file always records the
        package version and ``SPEC_VERSION``, and the commit of the code when it is
        known (a git checkout, see :func:`asyncsnn._provenance.git_commit`). The whole JSON header (the architecture and the
        metadata) may hold at most :data:`MAX_HEADER_BYTES` (16 MiB).
    record_commit
        Record ``asyncsnn_commit`` when the commit is known (default). Pass False for
        files whose bytes must not depend on the checkout that wrote them (fixtures,
        files compared byte for byte).

    Raises
    ------
    ModelError
        If ``network`` is not a Network, a metadata entry is not a string, or the
        metadata makes the header larger than :data:`MAX_HEADER_BYTES` (nothing is
        written then).
    """
    if not isinstance(network, Network):
        raise invalid(ModelError, "network", type(network).__name__, "must be an asyncsnn.Network")
    extra = dict(metadata or {})
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, str) or key in _RESERVED:
            raise invalid(ModelError, "metadata", key, "keys and values must be strings, not a reserved key")
    arch = network_to_dict(network)
    tensors: dict[str, np.ndarray] = {}
    for i, (pop, entry) in enumerate(zip(network.populations, arch["populations"]), start=1):
        tensors[f"populations.{i}.threshold"] = pop.threshold
        tensors[f"populations.{i}.beta"] = pop.beta
        entry["threshold"] = f"populations.{i}.threshold"
        entry["beta"] = f"populations.{i}.beta"
        if "bias" in entry:  # SPEC_VERSION 2, only when not all 0
            tensors[f"populations.{i}.bias"] = pop.bias  # type: ignore[assignment]
            entry["bias"] = f"populations.{i}.bias"
        if "alpha" in entry:  # SPEC_VERSION 2 (R4.12), only when not all 0
            tensors[f"populations.{i}.alpha"] = pop.alpha  # type: ignore[assignment]
            entry["alpha"] = f"populations.{i}.alpha"
    for n, (proj, entry) in enumerate(zip(network.projections, arch["projections"])):
        if "weight" in entry:
            tensors[f"projections.{n}.weight"] = proj.layer.weight  # type: ignore[union-attr]
            entry["weight"] = f"projections.{n}.weight"
    meta = {
        **extra,
        "format": "asyncsnn",
        "format_version": str(FORMAT_VERSION),
        "spec_version": str(network.spec_version),
        "asyncsnn_version": _package_version(),
        "network": json.dumps(arch, separators=(",", ":")),
    }
    commit = provenance().get("commit") if record_commit else None
    if commit:
        meta["asyncsnn_commit"] = commit
    _atomic_write(Path(path), _encode(tensors, meta))


@dataclass(frozen=True)
class _Entry:
    """A tensor of the header, checked against the file."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    start: int  # absolute offsets in the file
    end: int

    @property
    def count(self) -> int:
        return math.prod(self.shape)


class _SafetensorsFile:
    """An open safetensors file: its header (read and checked) and bounded tensor reads.

    Only the 8-byte size and the header are read on opening; each tensor is read on
    request, from its own byte range, once that range has been checked against the
    file's size and against ``dtype x shape``. Nothing else in the file is ever read.
    """

    def __init__(self, path: str | os.PathLike[str], dtypes: Mapping[str, tuple[np.dtype[Any], int]] | None) -> None:
        self.where = str(path)
        self.fh = open(path, "rb")  # noqa: SIM115 - closed by __exit__; FileNotFoundError for a missing file
        try:
            self.size = os.fstat(self.fh.fileno()).st_size
            self.header = self._read_header()
            self.entries = {} if dtypes is None else self._entries(dtypes)
        except BaseException:
            self.fh.close()
            raise

    def __enter__(self) -> _SafetensorsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()

    def _read_header(self) -> dict[str, Any]:
        where, size = self.where, self.size
        if size < 8:
            raise invalid(ModelError, "file", f"{size} bytes", "too short to be a safetensors file", where)
        (n,) = struct.unpack("<Q", self.fh.read(8))
        if n > size - 8:
            raise invalid(ModelError, "header size", n, f"does not fit the file ({size} bytes)", where)
        if n > MAX_HEADER_BYTES:
            raise invalid(
                ModelError,
                "header size",
                n,
                f"more than the {MAX_HEADER_BYTES} bytes (16 MiB) a header may hold",
                where,
            )
        raw = self.fh.read(n)
        if len(raw) != n:
            raise invalid(ModelError, "header size", n, f"the file ended after {len(raw)} bytes of header", where)
        try:
            header = json.loads(raw, parse_int=_parse_int)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: [[[[...
            raise invalid(ModelError, "header", "unreadable JSON", str(exc), where) from exc
        if not isinstance(header, dict):
            raise invalid(ModelError, "header", type(header).__name__, "must be a JSON object", where)
        self.data_start = 8 + n
        return header

    def _entries(self, dtypes: Mapping[str, tuple[np.dtype[Any], int]]) -> dict[str, _Entry]:
        where, data_size = self.where, self.size - self.data_start
        entries = {}
        for name, info in self.header.items():
            if name == "__metadata__":
                continue
            dtype = info.get("dtype") if isinstance(info, dict) else None
            if not isinstance(dtype, str) or dtype not in dtypes:
                reason = f"unsupported dtype or malformed entry ({dtype!r}; supported: {', '.join(dtypes)})"
                raise invalid(ModelError, "tensor", name, reason, where)
            shape, offsets = info.get("shape"), info.get("data_offsets")
            if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
                raise invalid(
                    ModelError, "tensor", name, f"shape {shape!r} must be a list of non-negative integers", where
                )
            if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(v) for v in offsets)):
                raise invalid(ModelError, "tensor", name, f"data_offsets {offsets!r} must be [start, end]", where)
            np_dtype, width = dtypes[dtype]
            start, end = offsets
            count = math.prod(shape)  # Python ints: a hostile shape cannot wrap around to a small count
            if not 0 <= start <= end <= data_size or end - start != count * width:
                reason = (
                    f"data offsets do not match the file (truncated or corrupted): bytes [{start}, {end}) of a "
                    f"{data_size}-byte data section for {dtype} x {shape} = {count * width} bytes"
                )
                raise invalid(ModelError, "tensor", name, reason, where)
            base = self.data_start
            entries[name] = _Entry(name, np_dtype, tuple(shape), base + start, base + end)
        return entries

    def metadata(self) -> dict[str, Any]:
        meta = self.header.get("__metadata__", {})
        if not isinstance(meta, dict):
            raise invalid(ModelError, "__metadata__", type(meta).__name__, "must be a JSON object", self.where)
        return meta

    def read(self, entry: _Entry) -> np.ndarray:
        """The tensor's values (a new array), read from its byte range only."""
        out = np.empty(entry.shape, dtype=entry.dtype)
        if out.nbytes:
            self.fh.seek(entry.start)
            got = self.fh.readinto(memoryview(out).cast("B"))  # type: ignore[arg-type]
            if got != out.nbytes:
                reason = "the file changed while it was read (truncated)"
                raise invalid(ModelError, "tensor", entry.name, reason, self.where)
        return out


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` of a model file, reading only its header.

    Parameters
    ----------
    path
        The model file.

    Returns
    -------
    dict of str to str
        Every metadata entry (``format``, ``spec_version``, ``network``, ... and the
        extra entries given to :func:`save`).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ModelError
        If the file is not a safetensors file (too short, header size beyond the
        file or above :data:`MAX_HEADER_BYTES`, unreadable header).
    """
    with _SafetensorsFile(path, None) as f:
        meta = f.metadata()
    return {str(k): str(v) for k, v in meta.items()}


def _version(meta: dict[str, Any], key: str, where: str) -> int:
    raw = meta.get(key)
    if isinstance(raw, str) and re.fullmatch(r"\s*[+-]?[0-9]{1,9}\s*", raw):
        return int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) < 10**9:
        return raw
    raise invalid(ModelError, key, raw, "must be an integer (a decimal string)", where)


def load(path: str | os.PathLike[str]) -> Network:
    """Load a network saved by :func:`save`.

    Only the header and the tensors the architecture uses are read: each tensor's byte
    range is checked against the file's size and against the size the architecture
    needs before it is read, so memory use follows the network, not the file.

    Parameters
    ----------
    path
        The model file.

    Returns
    -------
    Network

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    SpecVersionError
        If the file was written for a newer semantics or format version.
    ModelError
        If the file is truncated, corrupted, not an asyncsnn model, or describes an
        invalid network (a malformed architecture entry: field ``network``, the
        message naming the entry and its value).
    """
    where = str(path)
    with _SafetensorsFile(path, _DTYPES) as f:
        meta = f.header.get("__metadata__")
        if not isinstance(meta, dict) or meta.get("format") != "asyncsnn":
            found = None if not isinstance(meta, dict) else meta.get("format")
            raise invalid(ModelError, "format", found, "not an asyncsnn model file", where)
        for key, current in (("spec_version", SPEC_VERSION), ("format_version", FORMAT_VERSION)):
            version = _version(meta, key, where)
            if version > current:
                raise SpecVersionError(
                    f"{where}: {key} {version} is newer than this asyncsnn supports ({current}); upgrade asyncsnn",
                    field=key,
                    value=version,
                    location=where,
                )
        text = meta.get("network")
        if not isinstance(text, str):
            reason = f"missing or malformed entry (the architecture must be a JSON string, not {type(text).__name__})"
            raise invalid(ModelError, "network", "architecture", reason, where)
        try:
            arch = json.loads(text, parse_int=_parse_int)
        except (ValueError, RecursionError) as exc:
            raise invalid(ModelError, "network", "architecture", f"missing or malformed entry ({exc})", where) from exc
        used: set[str] = set()

        def tensor(name: Any, count: int, entry_path: str) -> np.ndarray:
            if not isinstance(name, str) or name not in f.entries:
                reason = f"missing or malformed entry ({entry_path} = {name!r} names no tensor of the file)"
                raise invalid(ModelError, "network", "architecture", reason, where)
            if name in used:
                reason = f"missing or malformed entry ({entry_path} = {name!r} is used twice)"
                raise invalid(ModelError, "network", "architecture", reason, where)
            entry = f.entries[name]
            if entry.count != count:
                reason = (
                    f"{entry_path} needs {count} values, the tensor holds {entry.count} (shape {list(entry.shape)})"
                )
                raise invalid(ModelError, "tensor", name, reason, where)
            used.add(name)
            return f.read(entry).reshape(-1)

        try:
            return network_from_dict(arch, tensors=tensor)
        except ModelError as exc:
            if exc.location is not None and exc.location.startswith(where):
                raise
            # The network's own errors (threshold, weight, ...) with the file's path in front.
            location = where if exc.location is None else f"{where}: {exc.location}"
            raise type(exc)(f"{where}: {exc}", field=exc.field, value=exc.value, location=location) from exc
