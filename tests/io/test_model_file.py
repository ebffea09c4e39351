"""Model files: exact round trip, atomic writes, and clear errors on bad files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

import asyncsnn
from asyncsnn.exceptions import ModelError, SpecVersionError
from asyncsnn.model_file import read_metadata
from asyncsnn.testing import assert_results_equal, random_count_input, random_grid_network


@pytest.mark.parametrize("kind", ["dense", "conv", "skip"])
def test_save_load_round_trip_is_exact(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(1)
    net = random_grid_network(rng, kind)
    path = tmp_path / "m.safetensors"
    asyncsnn.save(net, path)
    back = asyncsnn.load(path)
    assert back.population_shapes == net.population_shapes
    for a, b in zip(net.populations, back.populations):
        np.testing.assert_array_equal(a.threshold, b.threshold)
        np.testing.assert_array_equal(a.beta, b.beta)
        assert a.refractory_dropout == b.refractory_dropout
    x = random_count_input(rng, net, batch=3, timesteps=4)
    assert_results_equal(asyncsnn.infer(net, x), asyncsnn.infer(back, x))
    assert list(tmp_path.iterdir()) == [path], "a temporary file was left behind"
    meta = read_metadata(path)
    assert meta["format"] == "asyncsnn"
    assert meta["spec_version"] == "1" == str(net.spec_version), "a version-1 network is written as version 1"


def test_file_is_readable_by_the_safetensors_library(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    net = random_grid_network(np.random.default_rng(2), "conv")
    path = tmp_path / "m.safetensors"
    asyncsnn.save(net, path)
    tensors = st.load_file(str(path))
    np.testing.assert_array_equal(tensors["projections.0.weight"], net.projections[0].layer.weight)


def _model_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "good.safetensors"
    asyncsnn.save(random_grid_network(np.random.default_rng(3), "dense"), path)
    return path.read_bytes()


def _rewrite_metadata(data: bytes, **changes: str) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"].update(changes)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


def test_bad_files_raise_model_errors(tmp_path: Path) -> None:
    good = _model_bytes(tmp_path)
    cases = {
        "truncated": good[: len(good) - 7],
        "empty": b"",
        "short": b"\x01\x02",
        "hostile header size": struct.pack("<Q", 2**62) + good[8:],
        "garbage header": struct.pack("<Q", 8) + b"\xff" * 8 + good[16:],
        "foreign": _rewrite_metadata(good, format="something-else"),
        "bad network json": _rewrite_metadata(good, network="{not json"),
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        with pytest.raises(ModelError):
            asyncsnn.load(path)


def test_newer_spec_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.safetensors"
    path.write_bytes(_rewrite_metadata(_model_bytes(tmp_path), spec_version=str(asyncsnn.SPEC_VERSION + 1)))
    with pytest.raises(SpecVersionError, match="newer"):
        asyncsnn.load(path)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        asyncsnn.load(tmp_path / "nope.safetensors")


def test_failed_save_keeps_the_previous_file(tmp_path: Path) -> None:
    net = random_grid_network(np.random.default_rng(4), "dense")
    path = tmp_path / "m.safetensors"
    asyncsnn.save(net, path)
    before = path.read_bytes()
    with pytest.raises(ModelError):
        asyncsnn.save(net, path, metadata={"format": "reserved"})
    with pytest.raises(ModelError):
        asyncsnn.save("not a network", path)  # type: ignore[arg-type]
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def _recurrent_network(kind: str) -> asyncsnn.Network:
    """A small network with a recurrent projection (R1.2): self, backward, or a recurrent Conv2d."""
    rng = np.random.default_rng(7)
    if kind == "conv":
        conv = asyncsnn.Conv2d(rng.integers(-64, 160, (2, 1, 3, 3)) / 128.0, padding=1)
        return asyncsnn.Network.sequential(
            (1, 4, 4),
            [conv, asyncsnn.Dense(rng.integers(-64, 192, (3, 32)) / 128.0)],
            threshold=1.0,
            beta=0.875,
            recurrent=[(1, 1, asyncsnn.Conv2d(rng.integers(-96, 96, (2, 2, 3, 3)) / 128.0, padding=1))],
        )
    recurrent = {
        "self": [(1, 1, asyncsnn.Dense(rng.integers(-128, 128, (5, 5)) / 128.0))],
        "backward": [
            (2, 1, asyncsnn.Dense(rng.integers(-64, 128, (5, 3)) / 128.0)),
            (2, 2, asyncsnn.Dense(-np.ones((3, 3)) + np.eye(3))),
        ],
    }[kind]
    return asyncsnn.Network.sequential(
        (4,),
        [
            asyncsnn.Dense(rng.integers(-64, 256, (5, 4)) / 128.0),
            asyncsnn.Dense(rng.integers(-64, 256, (3, 5)) / 128.0),
        ],
        threshold=1.0,
        beta=0.875,
        bias=[0.0, 0.125],
        recurrent=recurrent,
    )


@pytest.mark.parametrize("kind", ["self", "backward", "conv"])
def test_recurrent_network_round_trips_as_spec_version_2(tmp_path: Path, kind: str) -> None:
    from asyncsnn import reference
    from asyncsnn._dictform import network_from_dict, network_to_dict

    net = _recurrent_network(kind)
    assert net.recurrent
    assert net.spec_version == 2
    path = tmp_path / "rec.safetensors"
    asyncsnn.save(net, path)
    assert read_metadata(path)["spec_version"] == "2", "a recurrent network needs version 2 (R1.6)"
    back = asyncsnn.load(path)
    assert network_to_dict(back) == network_to_dict(net)
    assert network_to_dict(network_from_dict(network_to_dict(net))) == network_to_dict(net)
    assert [(p.source, p.target, p.recurrent) for p in back.projections] == [
        (p.source, p.target, p.recurrent) for p in net.projections
    ]
    assert back.settling == net.settling
    x = random_count_input(np.random.default_rng(8), net, batch=2, timesteps=4)
    for scheduler in ("layered", "fifo"):  # carried and delivered in the timestep (R4.9)
        res = reference.infer(back, x, scheduler=scheduler)
        assert res.spikes_total.sum() > 0
        assert_results_equal(reference.infer(net, x, scheduler=scheduler), res)
