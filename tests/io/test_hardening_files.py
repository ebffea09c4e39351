"""Model files and checkpoints: bounded reads, typed header errors, safe writes (issue 15, items 5-7, 12).

* ``load`` / ``read_metadata`` read the header, check every size against the file,
  then read only the tensors the architecture uses: a valid model followed by a 3 GiB
  or 20 GiB (sparse) tail loads with a few MB of memory.
* Every malformed header value (huge integers, ``Infinity``/``NaN``, wrong JSON types)
  is a ``ModelError`` naming the field and the value, in ``load``, ``read_metadata``
  and ``asyncsnn info``.
* ``save`` refuses what ``load`` would refuse (a header above 16 MiB), works for file
  names up to 255 bytes, and keeps the permission bits of the file it replaces.
* Training checkpoints are safetensors and JSON (no pickle); ``load_checkpoint`` gives a
  ``ModelError`` for anything else, and a resumed run refuses a changed configuration
  (naming every difference) unless told to accept it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncsnn
from asyncsnn.exceptions import ModelError
from asyncsnn.model_file import MAX_HEADER_BYTES, read_metadata

GiB = 2**30


def _net() -> asyncsnn.Network:
    rng = np.random.default_rng(0)
    return asyncsnn.Network.sequential(
        (1, 6, 6),
        [
            asyncsnn.Conv2d(rng.normal(0, 0.5, (2, 1, 3, 3)), padding=1),
            asyncsnn.SumPool2d(2),
            asyncsnn.Dense(rng.normal(0, 0.5, (3, 18))),
        ],
        threshold=[0.5, 1.0, 0.75],
        beta=0.875,
    )


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _join(header: dict[str, Any] | str, data: bytes) -> bytes:
    raw = (header if isinstance(header, str) else json.dumps(header)).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.fixture
def good(tmp_path: Path) -> bytes:
    path = tmp_path / "good.safetensors"
    asyncsnn.save(_net(), path, metadata={"note": "hello"})
    return path.read_bytes()


def _same_network(a: asyncsnn.Network, b: asyncsnn.Network) -> None:
    assert a.population_shapes == b.population_shapes
    for p, q in zip(a.projections, b.projections):
        assert (p.source, p.target, type(p.layer)) == (q.source, q.target, type(q.layer))
        if hasattr(p.layer, "weight"):
            np.testing.assert_array_equal(p.layer.weight, q.layer.weight)  # type: ignore[union-attr]


# ============================================================ item 5: bounded reads
PEAK_SCRIPT = """
import json, resource, sys
# A cap on the address space: a regression that reads the whole file fails with a
# MemoryError here instead of taking the machine's memory.
resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))
import asyncsnn
from asyncsnn.model_file import read_metadata
small, *big = sys.argv[1:]
asyncsnn.load(small)  # imports and first-call allocations happen here, not in the measurement
read_metadata(small)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {}
for path in big:
    net = asyncsnn.load(path)
    meta = read_metadata(path)
    out[path] = [net.population_shapes == asyncsnn.load(small).population_shapes, meta["note"]]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"extra_kib": peak - before, "out": out}))
"""


def _peak(paths: list[Path]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, *map(str, paths)], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_a_huge_sparse_tail_is_never_read(tmp_path: Path, good: bytes) -> None:
    """A valid model followed by 3 GiB and 20 GiB of (sparse) bytes: memory stays that of the model.

    Before the fix ``load`` read the whole file (6 GB of memory for 3 GiB, a bare
    MemoryError for 20 GiB) and ``read_metadata`` did the same.
    """
    small = tmp_path / "small.safetensors"
    small.write_bytes(good)
    bigs = []
    for size in (3 * GiB, 20 * GiB):
        big = tmp_path / f"tail_{size // GiB}.safetensors"
        big.write_bytes(good)
        os.truncate(big, size)  # sparse: no disk space is used
        bigs.append(big)
    result = _peak([small, *bigs])
    assert result["out"] == {str(b): [True, "hello"] for b in bigs}
    assert result["extra_kib"] < 300 * 1024, result  # was about 6 GB for the 3 GiB file


def test_an_unused_huge_tensor_is_never_read(tmp_path: Path, good: bytes) -> None:
    """The header may list a 3 GiB tensor that fits the file; the architecture does not use it."""
    header, data = _split(good)
    header["extra.unused"] = {"dtype": "F32", "shape": [3 * GiB // 4], "data_offsets": [len(data), len(data) + 3 * GiB]}
    path = tmp_path / "unused.safetensors"
    path.write_bytes(_join(header, data))
    os.truncate(path, path.stat().st_size + 3 * GiB)
    result = _peak([_small(tmp_path, good), path])
    assert result["out"] == {str(path): [True, "hello"]}
    assert result["extra_kib"] < 300 * 1024, result


def _small(tmp_path: Path, good: bytes) -> Path:
    small = tmp_path / "small.safetensors"
    small.write_bytes(good)
    return small


def test_a_tensor_larger_than_the_architecture_needs_is_refused_before_it_is_read(tmp_path: Path, good: bytes) -> None:
    """dtype x shape must match the file and the architecture: a 3 GiB threshold of a 72-neuron population.

    Run in a process capped at 1.5 GiB of address space, so that reading the tensor (or
    the file) would fail there with a MemoryError.
    """
    header, data = _split(good)
    name = "populations.1.threshold"
    header[name] = {"dtype": "F32", "shape": [3 * GiB // 4], "data_offsets": [len(data), len(data) + 3 * GiB]}
    path = tmp_path / "big_threshold.safetensors"
    path.write_bytes(_join(header, data))
    os.truncate(path, path.stat().st_size + 3 * GiB)
    script = f"""
import json, resource
resource.setrlimit(resource.RLIMIT_AS, (int(1.5 * 2**30), int(1.5 * 2**30)))
import asyncsnn
try:
    asyncsnn.load({str(path)!r})
except asyncsnn.ModelError as exc:
    print(json.dumps([exc.field, exc.value, str(exc)]))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    field, value, message = json.loads(proc.stdout)
    assert (field, value) == ("tensor", name)
    assert "needs 72 values" in message


def test_read_metadata_reads_the_header_only(tmp_path: Path, good: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every read goes to the first 8 + header bytes (no read of the data section)."""
    path = tmp_path / "m.safetensors"
    path.write_bytes(good)
    (n,) = struct.unpack("<Q", good[:8])
    reads: list[tuple[int, int]] = []
    real_open = open

    class Spy(io.BufferedReader):
        def read(self, size: int | None = -1) -> bytes:
            start = self.tell()
            out = super().read(size)
            reads.append((start, start + len(out)))
            return out

    def spy_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if str(file) == str(path) and mode == "rb":
            return Spy(io.FileIO(file, "rb"))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy_open)
    assert read_metadata(path)["note"] == "hello"
    assert reads
    assert max(end for _, end in reads) <= 8 + n


# ==================================================== item 6: typed header errors
HUGE = "9" * 5000


def _edit_header(good: bytes, raw_header: Callable[[str], str]) -> bytes:
    (n,) = struct.unpack("<Q", good[:8])
    text = good[8 : 8 + n].decode().rstrip()
    return _join(raw_header(text), good[8 + n :])


def _edit_arch(good: bytes, edit: Callable[[dict[str, Any]], str]) -> bytes:
    header, data = _split(good)
    header["__metadata__"]["network"] = edit(json.loads(header["__metadata__"]["network"]))
    return _join(header, data)


def _arch_text(arch: dict[str, Any], old: str, new: str) -> str:
    text = json.dumps(arch)
    assert old in text
    return text.replace(old, new, 1)


def _header_cases(good: bytes) -> dict[str, tuple[bytes, str, str]]:
    """name -> (file bytes, expected field, text the message must show)."""
    header, _data = _split(good)
    w = "projections.0.weight"
    shape = json.dumps(header[w]["shape"])
    offsets = json.dumps(header[w]["data_offsets"])

    def in_tensor(key: str, old: str, new: str) -> Callable[[str], str]:
        def edit(text: str) -> str:
            needle = f'"{w}": {{"dtype": "F32", "shape": {shape}, "data_offsets": {offsets}}}'
            needle = needle.replace(": ", ":").replace(", ", ",")
            assert needle in text, text
            return text.replace(needle, needle.replace(f'"{key}":{old}', f'"{key}":{new}'))

        return edit

    def meta(key: str, value: str) -> Callable[[str], str]:
        def edit(text: str) -> str:
            h = json.loads(text)
            h["__metadata__"][key] = "@@"
            return json.dumps(h).replace('"@@"', value)

        return edit

    compact_shape = shape.replace(" ", "")
    compact_offsets = offsets.replace(" ", "")
    cases: dict[str, tuple[bytes, str, str]] = {
        "5000-digit tensor shape": (
            _edit_header(good, in_tensor("shape", compact_shape, f"[{HUGE}, 1]")),
            "tensor",
            "integer of 5000 digits",
        ),
        "5000-digit data offset": (
            _edit_header(good, in_tensor("data_offsets", compact_offsets, f"[0, {HUGE}]")),
            "tensor",
            "integer of 5000 digits",
        ),
        "Infinity in a tensor shape": (
            _edit_header(good, in_tensor("shape", compact_shape, "[Infinity, 3]")),
            "tensor",
            "inf",
        ),
        "NaN in a tensor shape": (_edit_header(good, in_tensor("shape", compact_shape, "[NaN, 3]")), "tensor", "nan"),
        "spec_version null": (_edit_header(good, meta("spec_version", "null")), "spec_version", "None"),
        "spec_version list": (_edit_header(good, meta("spec_version", "[1]")), "spec_version", "[1]"),
        "spec_version object": (_edit_header(good, meta("spec_version", '{"a": 1}')), "spec_version", "{'a': 1}"),
        "spec_version float": (_edit_header(good, meta("spec_version", "1.5")), "spec_version", "1.5"),
        "spec_version Infinity": (_edit_header(good, meta("spec_version", "Infinity")), "spec_version", "inf"),
        "spec_version 5000 digits": (
            _edit_header(good, meta("spec_version", HUGE)),
            "spec_version",
            "integer of 5000 digits",
        ),
        "spec_version 5000-digit string": (
            _edit_header(good, meta("spec_version", f'"{HUGE}"')),
            "spec_version",
            "must be an integer",
        ),
        "format_version list": (_edit_header(good, meta("format_version", "[]")), "format_version", "[]"),
        "network null": (_edit_header(good, meta("network", "null")), "network", "architecture"),
        "network a number": (_edit_header(good, meta("network", HUGE)), "network", "architecture"),
    }
    arch_edits: dict[str, tuple[str, str, str]] = {
        "5000-digit input shape": ('"input_shape": [1, 6, 6]', f'"input_shape": [1, {HUGE}, 6]', "5000 digits"),
        "Infinity in the input shape": ('"input_shape": [1, 6, 6]', '"input_shape": [1, Infinity, 6]', "inf"),
        "NaN in a population shape": ('"shape": [2, 6, 6]', '"shape": [2, NaN, 6]', "nan"),
        "float in a population shape": ('"shape": [2, 6, 6]', '"shape": [2, 6.0, 6]', "6.0"),
        "Infinity in a weight shape": ('"weight_shape": [3, 18]', '"weight_shape": [3, Infinity]', "inf"),
        "5000-digit weight shape": ('"weight_shape": [3, 18]', f'"weight_shape": [3, {HUGE}]', "5000 digits"),
        "Infinity in a padding": ('"padding": [1, 1]', '"padding": [1, Infinity]', "inf"),
        "5000-digit kernel": ('"kernel_size": [2, 2]', f'"kernel_size": [2, {HUGE}]', "5000 digits"),
        "NaN source": ('"source": 0', '"source": NaN', "nan"),
        "5000-digit target": ('"target": 1', f'"target": {HUGE}', "5000 digits"),
        "huge refractory_dropout": ('"refractory_dropout": 0.0', f'"refractory_dropout": {"9" * 400}', "refractory"),
        "list as a population": ('{"shape": [2, 6, 6]', '[], {"shape": [2, 6, 6]', "populations[0]"),
        "name a number": ('"name": null', '"name": 5', "name"),
        "kind a list": ('"kind": "dense"', '"kind": ["dense"]', "dense"),
        "threshold names nothing": ('"threshold": "populations.1.threshold"', '"threshold": 7', "threshold"),
    }
    for name, (old, new, shows) in arch_edits.items():
        cases[name] = (
            _edit_arch(good, lambda a, old=old, new=new: _arch_text(a, old, new)),  # type: ignore[misc]
            "network",
            shows,
        )
    cases["Infinity in a padding"] = (cases["Infinity in a padding"][0], "network", "inf")
    cases["kind a list"] = (cases["kind a list"][0], "kind", "dense")
    return cases


def test_malformed_header_values_are_model_errors_naming_field_and_value(tmp_path: Path, good: bytes) -> None:
    for name, (data, field, shows) in _header_cases(good).items():
        path = tmp_path / "bad.safetensors"
        path.write_bytes(data)
        with pytest.raises(ModelError) as info:
            asyncsnn.load(path)
        assert info.value.field == field, (name, info.value)
        assert shows in str(info.value), (name, info.value)
        assert len(str(info.value)) < 1000, (name, "the message repeats a huge value")
        read_metadata(path)  # the header is JSON: the metadata is readable (or a ModelError, never a bare error)


def test_asyncsnn_info_prints_one_line_for_malformed_headers(tmp_path: Path, good: bytes) -> None:
    from asyncsnn.cli import main

    for name, (data, _, _) in _header_cases(good).items():
        path = tmp_path / "bad.safetensors"
        path.write_bytes(data)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["info", str(path)])
        assert code == 2, name
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1, (name, err.getvalue())
        assert lines[0].startswith("asyncsnn: error: "), (name, err.getvalue())


_JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.just("@@HUGE@@"),  # a 5000-digit integer once written out
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from(["populations.1.threshold", "projections.0.weight", "F32", "dense", "asyncsnn", "1"]),
)
_JSON = st.recursive(
    _JSON_LEAVES, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3), max_leaves=6
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    value[path[0]] = _replace(value[path[0]], path[1:], new)
    return value


_GOOD: list[bytes] = []


def _good_bytes(tmp: Path) -> bytes:
    if not _GOOD:
        path = tmp / "fuzz_good.safetensors"
        asyncsnn.save(_net(), path, metadata={"note": "hello"})
        _GOOD.append(path.read_bytes())
    return _GOOD[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), in_arch=st.booleans(), value=_JSON)
def test_fuzzed_headers_load_or_raise_model_error(
    tmp_path: Path, data: st.DataObject, in_arch: bool, value: Any
) -> None:
    """Replace one value anywhere in the header (or in the architecture JSON) by arbitrary JSON."""
    header, payload = _split(_good_bytes(tmp_path))
    if in_arch:
        arch = json.loads(header["__metadata__"]["network"])
        path = data.draw(st.sampled_from(list(_paths(arch))))
        header["__metadata__"]["network"] = json.dumps(_replace(arch, path, value))
    else:
        path = data.draw(st.sampled_from(list(_paths(header))))
        header = _replace(header, path, value)
    file = tmp_path / "fuzz.safetensors"
    file.write_bytes(_join(json.dumps(header).replace('"@@HUGE@@"', HUGE).replace('\\"@@HUGE@@\\"', HUGE), payload))
    with contextlib.suppress(ModelError):
        asyncsnn.load(file)
    with contextlib.suppress(ModelError):
        read_metadata(file)


def test_save_refuses_a_header_that_load_would_refuse(tmp_path: Path) -> None:
    """20 MB of metadata: save said nothing and load then claimed the header did not fit the file."""
    net = _net()
    path = tmp_path / "m.safetensors"
    asyncsnn.save(net, path)
    before = path.read_bytes()
    with pytest.raises(ModelError, match="16 MiB") as info:
        asyncsnn.save(net, path, metadata={"big": "x" * (20 * 2**20)})
    assert info.value.field == "metadata"
    assert "'big'" in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    # Up to the limit, what save writes loads.
    base = len(_split(before)[0]["__metadata__"]["network"]) + 400
    for extra in (MAX_HEADER_BYTES - base - 20_000, MAX_HEADER_BYTES - base):
        try:
            asyncsnn.save(net, path, metadata={"big": "x" * extra})
        except ModelError:
            continue
        assert read_metadata(path)["big"] == "x" * extra
        _same_network(asyncsnn.load(path), net)


def test_a_header_above_the_limit_is_named_as_such(tmp_path: Path, good: bytes) -> None:
    """A file whose header fits the file but exceeds 16 MiB: the message says so (not 'does not fit')."""
    header, data = _split(good)
    header["__metadata__"]["big"] = "x" * (MAX_HEADER_BYTES + 8)
    path = tmp_path / "big_header.safetensors"
    path.write_bytes(_join(header, data))
    for read in (asyncsnn.load, read_metadata):
        with pytest.raises(ModelError, match="16 MiB") as info:
            read(path)
        assert info.value.field == "header size"
        assert "does not fit" not in str(info.value)


@pytest.mark.parametrize("length", [242, 250, 255])
def test_long_file_names_save_and_load(tmp_path: Path, length: int) -> None:
    name = "m" * (length - len(".safetensors")) + ".safetensors"
    assert len(name.encode()) == length
    path = tmp_path / name
    net = _net()
    asyncsnn.save(net, path)
    asyncsnn.save(net, path)  # and again, over the existing file
    _same_network(asyncsnn.load(path), net)
    assert [p.name for p in tmp_path.iterdir()] == [name]


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_new_files_follow_the_umask_and_overwrites_keep_the_mode(tmp_path: Path) -> None:
    net = _net()
    for mask, expected in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        path = tmp_path / f"new_{mask:o}.safetensors"
        with _umask(mask):
            asyncsnn.save(net, path)
        assert _mode(path) == expected, (oct(mask), oct(_mode(path)))
    path = tmp_path / "kept.safetensors"
    with _umask(0o077):
        for mode in (0o644, 0o640, 0o444, 0o600):
            path.write_bytes(b"")
            path.chmod(mode)
            asyncsnn.save(net, path)  # 0o444: the folder is writable, so the rename replaces it
            assert _mode(path) == mode, (oct(mode), oct(_mode(path)))
            _same_network(asyncsnn.load(path), net)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = _net()
    path = tmp_path / "m.safetensors"
    asyncsnn.save(net, path)
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        asyncsnn.save(_net(), path, metadata={"changed": "yes"})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_the_safetensors_library_reads_what_save_writes_after_the_rewrite(tmp_path: Path) -> None:
    st_numpy = pytest.importorskip("safetensors.numpy")
    net = _net()
    path = tmp_path / "m.safetensors"
    asyncsnn.save(net, path)
    tensors = st_numpy.load_file(str(path))
    np.testing.assert_array_equal(tensors["projections.2.weight"], net.projections[2].layer.weight)  # type: ignore[union-attr]


# ================================================ item 7: checkpoints without pickle
def _toy(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    protos = rng.random((3, 12)) < 0.35
    y = rng.integers(0, 3, n)
    x = (rng.random((n, 5, 12)) < np.where(protos[y], 0.8, 0.05)[:, None, :]).astype(np.float32)
    return x, y


TRAIN_KW: dict[str, Any] = {
    "scheduler": "random",
    "forward_group_size": 2,
    "lr": 1e-2,
    "batch_size": 16,
    "refractory_dropout": 0.2,
    "seed": 7,
    "progress": False,
}


@pytest.fixture
def no_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any unpickling (or torch.load) fails the test."""
    import pickle

    torch = pytest.importorskip("torch")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle or torch.load used for a checkpoint")

    class RefusingUnpickler(pickle.Unpickler):
        def load(self) -> Any:
            raise AssertionError("pickle used for a checkpoint")

    for name in ("load", "loads"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(pickle, "Unpickler", RefusingUnpickler)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch, "save", refuse)


def test_checkpoints_are_safetensors_and_resume_needs_no_pickle(tmp_path: Path, no_pickle: None) -> None:
    from asyncsnn.torch import AsyncSNN, load_checkpoint, train

    x, y = _toy()
    full, hist_full = train(AsyncSNN.from_sizes([12, 10, 3], seed=3), (x, y), epochs=2, **TRAIN_KW)
    ckpt = tmp_path / "ckpt"
    train(AsyncSNN.from_sizes([12, 10, 3], seed=3), (x, y), epochs=1, checkpoint_dir=ckpt, **TRAIN_KW)
    resumed, hist = train(
        AsyncSNN.from_sizes([12, 10, 3], seed=3), (x, y), epochs=2, checkpoint_dir=ckpt, resume=True, **TRAIN_KW
    )
    for a, b in zip(full.projections, resumed.projections):
        np.testing.assert_array_equal(a.layer.weight, b.layer.weight)  # type: ignore[union-attr]
    assert hist.loss == hist_full.loss
    assert sorted(p.name for p in ckpt.iterdir()) == ["epoch_0001.safetensors", "epoch_0002.safetensors"]
    data = load_checkpoint(ckpt / "epoch_0002.safetensors")
    assert data["epoch"] == 2
    assert data["history"]["loss"] == hist.loss
    assert set(data["optimizer"]["state"]) == {0, 1}
    assert data["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    # A plain safetensors file: the safetensors library reads its tensors and metadata.
    st_numpy = pytest.importorskip("safetensors.numpy")
    tensors = st_numpy.load_file(str(ckpt / "epoch_0002.safetensors"))
    np.testing.assert_array_equal(tensors["weights.1"], resumed.projections[1].layer.weight)  # type: ignore[union-attr]
    assert "optimizer.state.0.exp_avg" in tensors
    assert read_metadata(ckpt / "epoch_0002.safetensors")["format"] == "asyncsnn.train.checkpoint/2"


def test_load_checkpoint_of_other_files_is_a_model_error(tmp_path: Path, no_pickle: None, good: bytes) -> None:
    import pickle
    import zipfile

    from asyncsnn.torch import load_checkpoint

    files = {
        "garbage.safetensors": b"\x00\x01garbage" * 10,
        "empty.safetensors": b"",
        "model.safetensors": good,  # a model file is not a checkpoint
        "pickle.pt": pickle.dumps({"format": "asyncsnn.train.checkpoint/1", "epoch": 1}, protocol=2),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with zipfile.ZipFile(tmp_path / "torch_save.pt", "w") as zf:  # the layout torch.save writes
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    files["torch_save.pt"] = b""
    for name in files:
        with pytest.raises(ModelError) as info:
            load_checkpoint(tmp_path / name)
        assert info.value.field == "checkpoint", name
        assert str(tmp_path / name)[:40] in str(info.value), name
    for name in ("pickle.pt", "torch_save.pt"):
        with pytest.raises(ModelError, match="pickle"):
            load_checkpoint(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_resume_refuses_a_folder_of_old_pickle_checkpoints(tmp_path: Path, no_pickle: None) -> None:
    from asyncsnn.torch import AsyncSNN, train

    (tmp_path / "epoch_0001.pt").write_bytes(b"PK\x03\x04 an old torch.save checkpoint")
    x, y = _toy(16)
    with pytest.raises(ModelError, match=r"epoch_0001\.pt") as info:
        train(AsyncSNN.from_sizes([12, 4, 3]), (x, y), epochs=1, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert info.value.field == "checkpoint"


def test_a_damaged_checkpoint_is_skipped_for_the_previous_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from asyncsnn.torch import AsyncSNN, train

    x, y = _toy()
    ckpt = tmp_path / "ckpt"
    train(AsyncSNN.from_sizes([12, 10, 3], seed=3), (x, y), epochs=2, checkpoint_dir=ckpt, **TRAIN_KW)
    last = ckpt / "epoch_0002.safetensors"
    last.write_bytes(last.read_bytes()[:-10])  # truncated
    capsys.readouterr()
    train(AsyncSNN.from_sizes([12, 10, 3], seed=3), (x, y), epochs=2, checkpoint_dir=ckpt, resume=True, **TRAIN_KW)
    assert f"resuming from {ckpt / 'epoch_0001.safetensors'} at epoch 1 of 2" in capsys.readouterr().err


# ====================================== item 12: resume refuses a changed configuration
@pytest.fixture
def one_epoch(tmp_path: Path) -> Path:
    pytest.importorskip("torch")
    from asyncsnn.torch import AsyncSNN, train

    ckpt = tmp_path / "ckpt"
    train(AsyncSNN.from_sizes([12, 10, 3], seed=3), _toy(), epochs=1, checkpoint_dir=ckpt, **TRAIN_KW)
    return ckpt


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"lr": 2e-2}, ["lr: 0.01 -> 0.02"]),
        ({"scheduler": "momentum"}, ['scheduler: "random" -> "momentum"']),
        ({"lr": 2e-2, "scheduler": "fifo", "batch_size": 8}, ["lr: 0.01 -> 0.02", "scheduler:", "batch_size: 16 -> 8"]),
        ({"forward_group_size": 3}, ["forward_group_size: 2 -> 3"]),
        ({"seed": 8}, ["seed: 7 -> 8"]),
        ({"loss": "count"}, ['loss: "rate" -> "count"']),
        ({"weight_decay": 0.1}, ["weight_decay: 0.0 -> 0.1"]),
        ({"refractory_dropout": 0.0}, ["refractory_dropout:"]),
        ({"surrogate": "fast_sigmoid"}, ["surrogate:"]),
        ({"max_steps": 1000}, ["max_steps: null -> 1000"]),
        ({"data_seed": 1}, ["train_data:"]),
        ({"threshold": 0.5}, ["network:"]),
    ],
)
def test_resume_with_changed_options_names_every_difference(
    one_epoch: Path, change: dict[str, Any], named: list[str]
) -> None:
    from asyncsnn.exceptions import ParameterError
    from asyncsnn.torch import AsyncSNN, train

    kw = {**TRAIN_KW, **change}
    data = _toy(seed=kw.pop("data_seed", 0))
    module = AsyncSNN.from_sizes([12, 10, 3], seed=3, threshold=kw.pop("threshold", 1.0))
    before = sorted(p.name for p in one_epoch.iterdir())
    with pytest.raises(ParameterError) as info:
        train(module, data, epochs=2, checkpoint_dir=one_epoch, resume=True, **kw)
    assert info.value.field == "resume"
    for text in named:
        assert text in str(info.value), (text, str(info.value))
    assert "allow_config_change" in str(info.value)
    assert sorted(p.name for p in one_epoch.iterdir()) == before  # nothing was trained or written


def test_resume_with_more_epochs_is_not_a_change(one_epoch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from asyncsnn.torch import AsyncSNN, train

    capsys.readouterr()
    _, hist = train(
        AsyncSNN.from_sizes([12, 10, 3], seed=3), _toy(), epochs=3, checkpoint_dir=one_epoch, resume=True, **TRAIN_KW
    )
    assert hist.epochs == 3
    assert f"asyncsnn: resuming from {one_epoch / 'epoch_0001.safetensors'} at epoch 1 of 3" in capsys.readouterr().err


def test_allow_config_change_resumes_with_the_new_options(one_epoch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from asyncsnn.torch import AsyncSNN, load_checkpoint, train

    capsys.readouterr()
    kw = {**TRAIN_KW, "lr": 5e-3, "batch_size": 8}
    train(
        AsyncSNN.from_sizes([12, 10, 3], seed=3),
        _toy(),
        epochs=2,
        checkpoint_dir=one_epoch,
        resume=True,
        allow_config_change=True,
        **kw,
    )
    err = capsys.readouterr().err
    assert "resuming from" in err
    assert "lr: 0.01 -> 0.005" in err
    assert "batch_size: 16 -> 8" in err
    data = load_checkpoint(one_epoch / "epoch_0002.safetensors")
    assert data["optimizer"]["param_groups"][0]["lr"] == 5e-3  # the new lr, not the checkpoint's
    assert json.loads(data["config"])["lr"] == 5e-3
    # The network's shape cannot be overridden.
    with pytest.raises(ModelError, match="do not fit"):
        train(
            AsyncSNN.from_sizes([12, 11, 3]),
            _toy(),
            epochs=3,
            checkpoint_dir=one_epoch,
            resume=True,
            allow_config_change=True,
            **TRAIN_KW,
        )


def test_cli_train_resume_refuses_changed_options_unless_allowed(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from asyncsnn.cli import main

    ckpt, out = tmp_path / "ckpt", tmp_path / "m.safetensors"
    args = ["train", "--max-train", "32", "--max-test", "8", "--hidden", "8", "--batch-size", "16", "--no-progress"]
    args += ["--checkpoint-dir", str(ckpt), "--out", str(out), "--scheduler", "fifo"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main([*args, "--epochs", "1"]) == 0
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([*args, "--epochs", "2", "--resume", "--lr", "0.01"])
    assert code == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1, err.getvalue()
    assert "lr: 0.003 -> 0.01" in lines[0]
    assert "--allow-config-change" in lines[0]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([*args, "--epochs", "2", "--resume", "--lr", "0.01", "--allow-config-change"])
    assert code == 0, err.getvalue()
    assert f"resuming from {ckpt / 'epoch_0001.safetensors'} at epoch 1 of 2" in err.getvalue()
