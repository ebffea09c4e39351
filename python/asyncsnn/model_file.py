"""Model files: a :class:`~asyncsnn.network.Network` as safetensors (no pickle).

A model file is a plain safetensors file. Its tensors are the float32 arrays of the
network (``projections.<n>.weight``, ``populations.<i>.threshold``,
``populations.<i>.beta``); its ``__metadata__`` holds the architecture as JSON plus
``format`` (``"asyncsnn"``), ``format_version``, ``spec_version`` (of
``docs/semantics.md``) and the writing package's version. Nothing is unpickled or
executed when a file is read, the header is size-checked against the file before
anything is allocated, and writes are atomic (a temporary file in the same folder,
then a rename), so an interrupted save never leaves a partial model behind.

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
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from asyncsnn._dictform import network_from_dict, network_to_dict
from asyncsnn._spec import SPEC_VERSION
from asyncsnn.exceptions import ModelError, SpecVersionError, invalid
from asyncsnn.network import Network

__all__ = ["FORMAT_VERSION", "load", "read_metadata", "save"]

FORMAT_VERSION = 1
_MAX_HEADER = 16 * 2**20  # 16 MiB of JSON header is far more than any network needs
_DTYPES = {"F32": (np.float32, 4)}
_RESERVED = {"format", "format_version", "spec_version", "asyncsnn_version", "network"}


def _package_version() -> str:
    try:
        from asyncsnn._engine import __version__

        return __version__
    except ImportError:  # pragma: no cover - the source tree without the extension
        return "unknown"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _encode(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """Serialise to the safetensors layout (8-byte header size, JSON header, data)."""
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype="<f4")
        blob = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # align the data section to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


def save(network: Network, path: str | os.PathLike[str], *, metadata: Mapping[str, str] | None = None) -> None:
    """Save ``network`` to a safetensors model file, atomically.

    Parameters
    ----------
    network
        The network to save.
    path
        Destination file (conventionally ``*.safetensors``); parent folders are created.
    metadata
        Extra string metadata (for example how the model was trained). The keys
        ``format``, ``format_version``, ``spec_version``, ``asyncsnn_version`` and
        ``network`` are reserved.

    Raises
    ------
    ModelError
        If ``network`` is not a Network or a metadata entry is not a string.
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
    for n, (proj, entry) in enumerate(zip(network.projections, arch["projections"])):
        if "weight" in entry:
            tensors[f"projections.{n}.weight"] = proj.layer.weight  # type: ignore[union-attr]
            entry["weight"] = f"projections.{n}.weight"
    meta = {
        **extra,
        "format": "asyncsnn",
        "format_version": str(FORMAT_VERSION),
        "spec_version": str(SPEC_VERSION),
        "asyncsnn_version": _package_version(),
        "network": json.dumps(arch, separators=(",", ":")),
    }
    _atomic_write(Path(path), _encode(tensors, meta))


def _read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], bytes]:
    """Header (validated against the file size) and the data section."""
    p = Path(path)
    where = str(p)
    size = p.stat().st_size  # FileNotFoundError for a missing file
    if size < 8:
        raise invalid(ModelError, "file", f"{size} bytes", "too short to be a safetensors file", where)
    with p.open("rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > _MAX_HEADER or 8 + n > size:
            raise invalid(ModelError, "header size", n, f"does not fit the file ({size} bytes)", where)
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # RecursionError: [[[[...
            raise invalid(ModelError, "header", "unreadable JSON", str(exc), where) from exc
        data = fh.read()
    if not isinstance(header, dict):
        raise invalid(ModelError, "header", type(header).__name__, "must be a JSON object", where)
    return header, data


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` of a model file, without reading its tensors."""
    header, _ = _read(path)
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict):
        raise invalid(ModelError, "__metadata__", type(meta).__name__, "must be a JSON object", str(path))
    return {str(k): str(v) for k, v in meta.items()}


def load(path: str | os.PathLike[str]) -> Network:
    """Load a network saved by :func:`save`.

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
        invalid network.
    """
    where = str(path)
    header, data = _read(path)
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") != "asyncsnn":
        raise invalid(
            ModelError,
            "format",
            None if not isinstance(meta, dict) else meta.get("format"),
            "not an asyncsnn model file",
            where,
        )
    for key, current in (("spec_version", SPEC_VERSION), ("format_version", FORMAT_VERSION)):
        try:
            version = int(meta.get(key, ""))
        except ValueError:
            raise invalid(ModelError, key, meta.get(key), "must be an integer", where) from None
        if version > current:
            raise SpecVersionError(
                f"{where}: {key} {version} is newer than this asyncsnn supports ({current}); upgrade asyncsnn",
                field=key,
                value=version,
                location=where,
            )
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, width = _DTYPES[info["dtype"]]
            shape = tuple(int(s) for s in info["shape"])
            start, end = (int(v) for v in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise invalid(ModelError, "tensor", name, "unsupported dtype or malformed entry", where) from None
        count = math.prod(shape)  # Python ints: a hostile shape cannot wrap around to a small count
        if min(shape, default=1) < 0 or not 0 <= start <= end <= len(data) or end - start != count * width:
            raise invalid(
                ModelError, "tensor", name, "data offsets do not match the file (truncated or corrupted)", where
            )
        tensors[name] = np.frombuffer(data[start:end], dtype="<f4").astype(dtype).reshape(shape)
    try:
        arch = json.loads(meta["network"])
        for entry in arch["populations"]:
            entry["threshold"] = tensors[entry["threshold"]].reshape(-1).tolist()
            entry["beta"] = tensors[entry["beta"]].reshape(-1).tolist()
        for entry in arch["projections"]:
            if "weight" in entry:
                entry["weight"] = tensors[entry["weight"]].reshape(-1).tolist()
    except (KeyError, TypeError, ValueError, RecursionError, json.JSONDecodeError) as exc:
        raise invalid(ModelError, "network", "architecture", f"missing or malformed entry ({exc})", where) from exc
    try:
        return network_from_dict(arch)
    except ModelError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # a malformed entry
        raise invalid(ModelError, "network", "architecture", f"missing or malformed entry ({exc!r})", where) from exc
