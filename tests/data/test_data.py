"""Datasets and encoders of ``asyncsnn.data`` (everything that does not need tonic)."""

from __future__ import annotations

import doctest
import gzip
import importlib
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncsnn
from asyncsnn.data import (
    EVENT_DTYPE,
    bin_events,
    digits_split,
    emulate_saccades,
    encode,
    events_to_sparse,
    fashion_mnist_frames,
    latency_encode,
    load_digits,
    load_fashion_mnist,
    make_randman,
    pad_frames,
    randman_spike_times,
    rate_encode,
    row_scan_encode,
    saccade_frames,
)
from asyncsnn.data import fashion_mnist as fm
from asyncsnn.data.errors import DatasetFormatError, DatasetNotFoundError, MissingDependencyError
from asyncsnn.data.events import make_events
from asyncsnn.data.saccades import resize_images, saccade_offsets
from asyncsnn.exceptions import AsyncSNNError, InputError, ParameterError
from asyncsnn.testing import assert_results_equal

MODULES = [
    "asyncsnn.data",
    "asyncsnn.data.digits",
    "asyncsnn.data.encoding",
    "asyncsnn.data.errors",
    "asyncsnn.data.events",
    "asyncsnn.data.fashion_mnist",
    "asyncsnn.data.randman",
    "asyncsnn.data.saccades",
    "asyncsnn.data.tonic_datasets",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


# --------------------------------------------------------------------------------------------------------------------
# The embedded digits and the encoders


def test_digits_shapes_and_split() -> None:
    images, labels = load_digits()
    assert images.shape == (1797, 8, 8)
    assert images.dtype == np.uint8
    assert labels.dtype == np.int64
    assert int(images.max()) == 16
    assert sorted(set(labels.tolist())) == list(range(10))
    tr_x, tr_y, te_x, te_y = digits_split()
    assert len(tr_x) + len(te_x) == 1797
    assert len(te_x) == 359
    again = digits_split()
    assert all(np.array_equal(a, b) for a, b in zip((tr_x, tr_y, te_x, te_y), again, strict=True))
    assert np.bincount(te_y).min() >= 17  # stratified: every class is held out
    with pytest.raises(ParameterError):
        digits_split(test_fraction=1.0)


@pytest.mark.parametrize("kind", ["rate", "latency", "row_scan"])
def test_digit_encodings_shapes_ranges_and_determinism(kind: Any) -> None:
    images = load_digits()[0][:20]
    a = encode(images, kind, timesteps=7, seed=3)
    b = encode(images, kind, timesteps=7, seed=3)
    assert a.dtype == np.float32
    assert np.array_equal(a, b)
    if kind == "row_scan":
        assert a.shape == (20, 8, 8)
        assert set(np.unique(a).tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}
        assert np.array_equal(a, np.rint(images / 16 * 4))
    else:
        assert a.shape == (20, 7, 1, 8, 8)
        assert set(np.unique(a).tolist()) <= {0.0, 1.0}
    if kind == "latency":
        # one spike per lit pixel, none for dark pixels; brighter is earlier
        assert np.array_equal(a.sum(axis=1)[:, 0], (images > 0).astype(np.float32))
        first = np.argmax(a[:, :, 0], axis=1)
        assert np.all(first[images == 16] == 0)
    if kind == "rate":
        assert not np.array_equal(a, encode(images, kind, timesteps=7, seed=4))
        assert np.all(a.sum(axis=1)[:, 0][images == 0] == 0)


def test_rate_code_tracks_intensity() -> None:
    x = np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32)
    frames = rate_encode(np.repeat(x, 500, axis=0), timesteps=20, seed=1)
    rates = frames.mean(axis=(0, 1))
    assert np.allclose(rates, x[0], atol=0.02)
    assert np.array_equal(rate_encode(x, timesteps=3, max_rate=0.0), np.zeros((1, 3, 4), np.float32))


def test_encoders_reject_bad_arguments() -> None:
    with pytest.raises(InputError):
        rate_encode(np.array([[1.5]]), timesteps=2)
    with pytest.raises(InputError):
        latency_encode(np.array([[np.nan]]), timesteps=2)
    with pytest.raises(ParameterError):
        rate_encode(np.array([[0.5]]), timesteps=0)
    with pytest.raises(ParameterError):
        rate_encode(np.array([[0.5]]), timesteps=2, max_rate=2.0)
    with pytest.raises(InputError):
        row_scan_encode(np.zeros((2, 3)))
    with pytest.raises(ParameterError):
        encode(load_digits()[0][:1], "bogus")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------------------
# Event binning


def random_events(rng: np.random.Generator, n: int, w: int = 34, h: int = 34, t_max: int = 300_000) -> np.ndarray:
    return make_events(
        rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n), np.sort(rng.integers(0, t_max, n))
    )


def test_bin_events_counts_every_event_exactly() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        ev = random_events(rng, int(rng.integers(0, 300)))
        frames = bin_events(ev, time_window_us=10_000)
        assert frames.dtype == np.float32
        assert frames.shape[1:] == (2, 34, 34)
        assert frames.sum() == len(ev)
        # brute force: each event adds 1 at [t // w, p, y, x]
        ref = np.zeros_like(frames)
        for e in ev:
            ref[e["t"] // 10_000, e["p"], e["y"], e["x"]] += 1
        assert np.array_equal(frames, ref)
        # the fixed-count mode also keeps the last event
        by_bins = bin_events(ev, n_time_bins=7, time_window_us=None, t_start="first")
        assert by_bins.shape[0] == 7
        assert by_bins.sum() == len(ev)


def test_bin_events_options() -> None:
    ev = make_events([0, 1, 2], [0, 0, 0], [0, 1, 1], [5_000, 25_000, 47_000])
    assert bin_events(ev, (3, 1, 2), time_window_us=10_000).shape == (5, 2, 1, 3)
    first = bin_events(ev, (3, 1, 2), time_window_us=10_000, t_start="first")
    assert first.shape[0] == 5
    assert first[0].sum() == 1
    assert first[2, 1, 0, 1] == 1
    cut = bin_events(ev, (3, 1, 2), time_window_us=10_000, n_frames=3)
    assert cut.shape[0] == 3
    assert cut.sum() == 2
    late = bin_events(ev, (3, 1, 2), time_window_us=10_000, t_start=20_000)
    assert late.sum() == 2  # the event before t_start is not counted
    empty = bin_events(ev[:0], (3, 1, 2))
    assert empty.shape == (1, 2, 1, 3)
    assert empty.sum() == 0
    # 1-D sensors (SHD-like): no y field
    shd = np.zeros(3, dtype=[("t", np.int64), ("x", np.int64), ("p", np.int64)])
    shd["x"] = [0, 699, 699]
    shd["t"] = [0, 10, 20_000]
    assert bin_events(shd, (700, 1, 1), time_window_us=10_000)[:, 0].sum(axis=0)[699] == 2
    with pytest.raises(InputError):
        bin_events(make_events([34], [0], [0], [0]))
    with pytest.raises(InputError):
        bin_events(make_events([0], [0], [2], [0]))
    with pytest.raises(ParameterError):
        bin_events(ev, time_window_us=10_000, n_time_bins=3)
    with pytest.raises(ParameterError):
        bin_events(ev, time_window_us=0)
    with pytest.raises(ParameterError):
        bin_events(ev, sensor_size=(34, 34))


def test_sparse_format_matches_dense_frames() -> None:
    rng = np.random.default_rng(1)
    ev = random_events(rng, 500)
    dense = bin_events(ev, time_window_us=20_000)
    sparse = events_to_sparse(ev, time_window_us=20_000)
    assert sparse.shape[1] == 3
    assert sparse[:, 2].sum() == len(ev)
    rebuilt = np.zeros(dense.size, dtype=np.float32)
    t_dim = dense.shape[0]
    np.add.at(
        rebuilt, sparse[:, 0].astype(np.int64) * (dense.size // t_dim) + sparse[:, 1].astype(np.int64), sparse[:, 2]
    )
    assert np.array_equal(rebuilt.reshape(dense.shape), dense)
    # sorted by frame, then index, and no duplicates
    keys = sparse[:, 0] * 1e6 + sparse[:, 1]
    assert np.all(np.diff(keys) > 0)


def test_engine_takes_binned_events_dense_or_sparse(engine: Callable[..., Any]) -> None:
    rng = np.random.default_rng(2)
    events = [random_events(rng, 150, w=8, h=8, t_max=50_000) for _ in range(3)]
    sensor = (8, 8, 2)
    dense = np.stack([bin_events(e, sensor, time_window_us=10_000, n_frames=5) for e in events])
    sparse = [events_to_sparse(e, sensor, time_window_us=10_000, n_frames=5) for e in events]
    net = asyncsnn.Network.sequential(
        input_shape=(2, 8, 8), layers=[asyncsnn.Dense(rng.normal(0.2, 0.3, (5, 128)))], threshold=1.0, beta=0.9
    )
    a = engine(net, dense)
    b = engine(net, sparse, timesteps=5)
    assert_results_equal(a, b)
    assert a.output_counts.sum() > 0


def test_pad_frames() -> None:
    out = pad_frames([np.ones((2, 3), np.float32), np.ones((4, 3), np.float32)])
    assert out.shape == (2, 4, 3)
    assert out[0, 2:].sum() == 0
    assert out.sum() == 18
    assert pad_frames([np.ones((2, 3))], n_frames=5).shape == (1, 5, 3)
    with pytest.raises(ParameterError):
        pad_frames([np.ones((4, 3))], n_frames=2)
    assert pad_frames([np.ones((4, 3))], n_frames=2, truncate=True).shape == (1, 2, 3)
    with pytest.raises(InputError):
        pad_frames([np.ones((1, 3)), np.ones((1, 4))])
    with pytest.raises(InputError):
        pad_frames([])


# --------------------------------------------------------------------------------------------------------------------
# Fashion-MNIST from idx files


def fake_split(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def write_raw_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    """An independent idx writer: magic 0x00 0x00 0x08 ndim, big-endian u32 dims, then the bytes."""
    body = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape) + arr.tobytes()
    path.write_bytes(gzip.compress(body) if gz else body)


@pytest.fixture
def no_system_fashion(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hide the Debian package and $ASYNCSNN_DATA, so that the search only sees what the test writes."""
    monkeypatch.delenv("ASYNCSNN_DATA", raising=False)
    monkeypatch.setattr(fm, "_debian_dir", lambda: tmp_path / "no-debian-package")


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_loader_reads_idx_files(tmp_path: Path, gz: bool, no_system_fashion: None) -> None:
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", 12), ("t10k", 5)):
        images, labels = fake_split(rng, n)
        write_raw_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
        write_raw_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)
        x, y = load_fashion_mnist(tmp_path, train=prefix == "train")
        assert x.dtype == np.uint8
        assert x.shape == (n, 28, 28)
        assert np.array_equal(x, images)
        assert y.dtype == np.int64
        assert np.array_equal(y, labels)
    # a root with a fashion-mnist subfolder, and $ASYNCSNN_DATA/fashion-mnist
    sub = tmp_path / "data" / "fashion-mnist"
    sub.mkdir(parents=True)
    images, labels = fake_split(rng, 3)
    fm.write_idx(sub / "t10k-images-idx3-ubyte", images)
    fm.write_idx(sub / "t10k-labels-idx1-ubyte.gz", labels)
    assert np.array_equal(load_fashion_mnist(tmp_path / "data", train=False)[0], images)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASYNCSNN_DATA", str(tmp_path / "data"))
        assert np.array_equal(load_fashion_mnist(train=False)[1], labels)


def test_idx_round_trip_all_types(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for dtype in (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64):
        arr = (rng.normal(0, 50, (3, 4, 5))).astype(dtype)
        for name in ("a.idx", "a.idx.gz"):
            fm.write_idx(tmp_path / name, arr)
            back = fm.read_idx(tmp_path / name)
            assert back.dtype == np.dtype(dtype)
            assert np.array_equal(back, arr)
    # big-endian on disk: int16 256 is 0x01 0x00
    fm.write_idx(tmp_path / "b.idx", np.array([256], dtype=np.int16))
    assert (tmp_path / "b.idx").read_bytes() == bytes([0, 0, 0x0B, 1, 0, 0, 0, 1, 1, 0])


def corrupt_cases(tmp_path: Path) -> list[tuple[str, bytes]]:
    images, _ = fake_split(np.random.default_rng(2), 4)
    good = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in images.shape) + images.tobytes()
    return [
        ("truncated body", good[:-10]),
        ("trailing bytes", good + b"\x00"),
        ("bad magic", b"\x12\x34" + good[2:]),
        ("bad type code", good[:2] + b"\x07" + good[3:]),
        ("truncated header", good[:9]),
        ("empty file", b""),
    ]


def test_corrupt_idx_files_raise_typed_errors_naming_the_file(tmp_path: Path, no_system_fashion: None) -> None:
    labels = np.zeros(4, dtype=np.uint8)
    write_raw_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, gz=False)
    target = tmp_path / "t10k-images-idx3-ubyte"
    for what, content in corrupt_cases(tmp_path):
        target.write_bytes(content)
        with pytest.raises(DatasetFormatError) as info:
            load_fashion_mnist(tmp_path, train=False)
        assert str(target) in str(info.value), what
        assert info.value.value == str(target)
        assert isinstance(info.value, InputError)
    # a truncated gzip stream
    target.unlink()
    gz_target = tmp_path / "t10k-images-idx3-ubyte.gz"
    gz_target.write_bytes(gzip.compress(corrupt_cases(tmp_path)[1][1])[:-20])
    with pytest.raises(DatasetFormatError, match=r"t10k-images-idx3-ubyte\.gz"):
        load_fashion_mnist(tmp_path, train=False)
    # images and labels that disagree
    images, _ = fake_split(np.random.default_rng(3), 5)
    write_raw_idx(gz_target, images, gz=True)
    with pytest.raises(DatasetFormatError, match="5 images"):
        load_fashion_mnist(tmp_path, train=False)
    # labels outside 0..9, or images of the wrong size
    write_raw_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(5, 10, np.uint8), gz=False)
    with pytest.raises(DatasetFormatError, match="label 10"):
        load_fashion_mnist(tmp_path, train=False)
    write_raw_idx(gz_target, np.zeros((5, 8, 8), np.uint8), gz=True)
    with pytest.raises(DatasetFormatError, match=r"\[n, 28, 28\]"):
        load_fashion_mnist(tmp_path, train=False)


def test_missing_fashion_mnist_names_the_debian_package(tmp_path: Path, no_system_fashion: None) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist(tmp_path / "empty")
    msg = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert str(tmp_path / "empty") in msg
    assert "train-images-idx3-ubyte" in msg
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, AsyncSNNError)
    with pytest.raises(DatasetNotFoundError, match="no-debian-package"):
        load_fashion_mnist()
    # only the labels: still not found
    write_raw_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, np.uint8), gz=False)
    with pytest.raises(DatasetNotFoundError):
        load_fashion_mnist(tmp_path)


def test_debian_dir_lookup_is_a_folder() -> None:
    found = fm._debian_dir()
    assert found is None or isinstance(found, Path)


def _system_fashion() -> tuple[Path, Path] | None:
    try:
        return fm.find_fashion_mnist(None, train=True)
    except DatasetNotFoundError:
        return None


@pytest.mark.skipif(
    _system_fashion() is None,
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist, or set $ASYNCSNN_DATA)",
)
def test_real_fashion_mnist_files() -> None:
    x, y = load_fashion_mnist(train=True)
    xt, yt = load_fashion_mnist(train=False)
    assert x.shape == (60_000, 28, 28)
    assert xt.shape == (10_000, 28, 28)
    assert np.array_equal(np.bincount(y), np.full(10, 6000))
    assert np.array_equal(np.bincount(yt), np.full(10, 1000))
    assert x.dtype == np.uint8
    assert 0 < x.mean() < 255
    frames = fashion_mnist_frames(xt[:4], timesteps=5)
    assert frames.shape == (4, 5, 1, 32, 32)


def test_fashion_frames_pad_and_encode() -> None:
    images, _ = fake_split(np.random.default_rng(4), 6)
    images[:, 0, 0] = 255
    frames = fashion_mnist_frames(images, timesteps=9, seed=5)
    assert frames.shape == (6, 9, 1, 32, 32)
    assert frames.dtype == np.float32
    assert np.array_equal(frames, fashion_mnist_frames(images, timesteps=9, seed=5))
    assert frames[:, :, :, :2].sum() == 0
    assert frames[:, :, :, -2:].sum() == 0
    assert frames[..., :2].sum() == 0
    assert np.all(frames[:, :, 0, 2, 2] == 1)  # intensity 255 spikes every frame
    lat = fashion_mnist_frames(images, timesteps=9, encoding="latency", pad_to=None)
    assert lat.shape == (6, 9, 1, 28, 28)
    assert np.array_equal(lat.sum(axis=1)[:, 0], (images > 0).astype(np.float32))
    with pytest.raises(ParameterError):
        fashion_mnist_frames(images, pad_to=20)
    with pytest.raises(InputError):
        fashion_mnist_frames(images.astype(np.float32))


# --------------------------------------------------------------------------------------------------------------------
# Event-camera emulation


def edge_image() -> np.ndarray:
    img = np.zeros((1, 28, 28), dtype=np.uint8)
    img[0, :, :14] = 255  # bright left half: a vertical edge at image column 14
    return img


def test_moving_edge_gives_on_events_ahead_and_off_events_behind() -> None:
    ev = emulate_saccades(edge_image(), threshold_sigma=0.0)[0]
    first = ev[ev["t"] < 105_000]  # the image moves by (+3.5, +7) px
    middle_rows = (first["y"] > 12) & (first["y"] < 24)  # away from the image's top and bottom borders
    # the image sits at sensor x = -0.5 + offset: the edge sweeps x 13.5 -> 17, the left border -0.5 -> 3
    at_edge = first[middle_rows & (first["x"] >= 12) & (first["x"] <= 18)]
    at_border = first[middle_rows & (first["x"] <= 4)]
    assert len(at_edge) > 50
    assert np.all(at_edge["p"] == 1)
    assert len(at_border) > 50
    assert np.all(at_border["p"] == 0)
    assert not np.any(middle_rows & (first["x"] > 5) & (first["x"] < 12))  # inside the bright half: no change
    assert not np.any(middle_rows & (first["x"] > 18))  # dark right half: no change
    # the third saccade moves back by -7 px in x: the edge now darkens its pixels
    third = ev[(ev["t"] > 210_000) & (ev["y"] > 12) & (ev["y"] < 24) & (ev["x"] >= 12) & (ev["x"] <= 18)]
    assert len(third) > 50
    assert np.all(third["p"] == 0)


def test_events_only_where_intensity_changes() -> None:
    img = np.zeros((1, 28, 28), dtype=np.uint8)
    img[0, 4:24, 4:24] = 200  # a 20 x 20 square; the motion spans 7 px in x and y
    ev = emulate_saccades(img, threshold_sigma=0.0)[0]
    assert len(ev) > 0
    assert ev["t"].min() > 0
    assert ev["t"].max() <= 315_000
    touched = np.zeros((34, 34), dtype=bool)
    touched[ev["y"], ev["x"]] = True
    # sensor coordinates of the square: -0.5 + [4, 24) + [0, 7]; always covered: 11.5 .. 22.5
    assert not touched[13:22, 13:22].any()
    assert not touched[:3].any()
    assert not touched[:, :3].any()
    assert not touched[31:].any()
    assert not touched[:, 31:].any()
    assert touched[3:31, 3:31].sum() > 200
    # a blank image or a still image gives no event
    assert len(emulate_saccades(np.zeros((1, 28, 28), np.uint8))[0]) == 0
    assert len(emulate_saccades(img, amplitude=0.0)[0]) == 0


def test_emulation_is_deterministic_and_chunk_independent() -> None:
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    a = emulate_saccades(images, seed=7)
    b = emulate_saccades(images, seed=7, chunk_size=2)
    c = emulate_saccades(images, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(len(x) == len(y) and np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    for ev in a:
        assert ev.dtype == EVENT_DTYPE
        assert np.all(np.diff(ev["t"]) >= 0)
        assert ev["x"].min() >= 0
        assert ev["x"].max() < 34
        assert ev["y"].min() >= 0
        assert ev["y"].max() < 34
        assert set(np.unique(ev["p"]).tolist()) == {0, 1}
    noisy = emulate_saccades(images[:2], seed=7, noise_rate_hz=5.0)
    assert np.array_equal(noisy[0], emulate_saccades(images[:2], seed=7, noise_rate_hz=5.0)[0])
    expected_noise = 5.0 * 34 * 34 * 0.315
    assert abs((len(noisy[0]) - len(a[0])) - expected_noise) < 5 * math.sqrt(expected_noise)


def test_emulator_matches_a_slow_reference_pixel_model() -> None:
    """An independent per-pixel DVS model on a fine uniform time grid gives the same event counts."""
    rng = np.random.default_rng(6)
    img = np.zeros((28, 28))
    img[6:22, 6:22] = rng.random((16, 16))
    thr, eps = 0.3, 0.1
    ev = emulate_saccades(img[None], threshold=thr, threshold_sigma=0.0, log_eps=eps, intensity_scale=1.0)[0]

    padded = np.zeros((28 + 80, 28 + 80))
    padded[40:68, 40:68] = img
    rows, cols = np.mgrid[0:34, 0:34]

    def intensity(t: float) -> np.ndarray:
        dx, dy = saccade_offsets(np.array(t))
        u = cols - (-0.5 + dx) + 40  # the swept area (28 + 7 px) is centred on the 34 px sensor
        v = rows - (-0.5 + dy) + 40
        u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
        fu, fv = u - u0, v - v0
        return (
            (1 - fu) * (1 - fv) * padded[v0, u0]
            + fu * (1 - fv) * padded[v0, u0 + 1]
            + (1 - fu) * fv * padded[v0 + 1, u0]
            + fu * fv * padded[v0 + 1, u0 + 1]
        )

    ref_level = np.log(intensity(0.0) + eps)
    on = np.zeros((34, 34))
    off = np.zeros((34, 34))
    for t in np.linspace(0, 315_000, 6301)[1:]:  # every 50 µs
        change = np.log(intensity(t) + eps) - ref_level
        n = np.trunc(change / thr + np.copysign(1e-4, change))  # the documented tolerance
        ref_level += n * thr
        on += np.maximum(n, 0)
        off += np.maximum(-n, 0)
    got_on = np.zeros((34, 34))
    got_off = np.zeros((34, 34))
    np.add.at(got_on, (ev["y"][ev["p"] == 1], ev["x"][ev["p"] == 1]), 1)
    np.add.at(got_off, (ev["y"][ev["p"] == 0], ev["x"][ev["p"] == 0]), 1)
    assert on.sum() > 1000
    assert np.abs(got_on - on).sum() <= 2
    assert np.abs(got_off - off).sum() <= 2
    # the path is closed: every pixel ends at its starting level
    assert np.array_equal(got_on, got_off)


def test_saccade_frames_bin_all_kept_events() -> None:
    rng = np.random.default_rng(8)
    images = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    events = emulate_saccades(images)
    first = saccade_frames(events)
    assert first.shape == (3, 10, 2, 34, 34)
    assert first.dtype == np.float32
    full = saccade_frames(events, first_saccade_only=False)
    assert full.shape == (3, 32, 2, 34, 34)
    for i, ev in enumerate(events):
        assert first[i].sum() == (ev["t"] < 100_000).sum()
        assert full[i].sum() == len(ev)
        assert full[i, :, 1].sum() == ev["p"].sum()  # channel 1 = ON
    assert saccade_frames(events, time_window_us=1_000).shape == (3, 100, 2, 34, 34)


def test_emulator_inputs() -> None:
    digits = load_digits()[0][:3]
    ev = emulate_saccades(digits, intensity_scale=16)  # 8x8 digits, upsampled to 28x28
    assert all(len(e) > 100 for e in ev)
    assert resize_images(np.ones((1, 8, 8), np.float32), 28).min() == pytest.approx(1.0)
    with pytest.raises(InputError):
        emulate_saccades(np.full((1, 28, 28), 2.0))  # floats must be in [0, 1]
    with pytest.raises(InputError):
        emulate_saccades(np.zeros((28, 28)))
    with pytest.raises(ParameterError):
        emulate_saccades(digits, n_saccades=4)
    with pytest.raises(ParameterError):
        emulate_saccades(digits, threshold=0.0)
    with pytest.raises(ParameterError):
        emulate_saccades(digits, seed=-1)


# --------------------------------------------------------------------------------------------------------------------
# Randman


def test_randman_shapes_and_determinism() -> None:
    frames, labels = make_randman(n_classes=4, n_units=30, n_samples=25, timesteps=40, seed=3)
    assert frames.shape == (100, 40, 30)
    assert frames.dtype == np.float32
    assert labels.dtype == np.int64
    assert np.array_equal(frames.sum(axis=1), np.ones((100, 30)))  # one spike per unit
    assert np.array_equal(np.bincount(labels), np.full(4, 25))
    again = make_randman(n_classes=4, n_units=30, n_samples=25, timesteps=40, seed=3)
    assert np.array_equal(frames, again[0])
    assert np.array_equal(labels, again[1])
    other = make_randman(n_classes=4, n_units=30, n_samples=25, timesteps=40, seed=4)
    assert not np.array_equal(frames, other[0])
    times, lab = randman_spike_times(n_classes=4, n_units=30, n_samples=25, seed=3)
    assert times.min() >= 0
    assert times.max() <= 1
    assert np.array_equal(lab, labels)
    step = np.argmax(frames, axis=1)
    assert np.array_equal(step, np.minimum(np.floor(times * 40), 39))
    # each unit spans [0, 1] within each class (min-max scaling)
    for c in range(4):
        t = times[lab == c]
        assert np.allclose(t.min(axis=0), 0)
        assert np.allclose(t.max(axis=0), 1)
    grouped = randman_spike_times(n_classes=4, n_units=30, n_samples=25, seed=3, shuffle=False)[1]
    assert np.array_equal(grouped, np.repeat(np.arange(4), 25))


def test_randman_classes_are_separable_by_spike_times() -> None:
    times, labels = randman_spike_times(n_classes=10, n_units=40, n_samples=100, seed=0)
    train, test = slice(0, 700), slice(700, None)
    centroids = np.stack([times[train][labels[train] == c].mean(axis=0) for c in range(10)])
    pred = np.argmin(((times[test][:, None] - centroids[None]) ** 2).sum(axis=-1), axis=1)
    accuracy = float((pred == labels[test]).mean())
    assert accuracy > 0.3  # chance is 0.1
    # spike counts carry no information: every sample has exactly one spike per unit
    frames, _ = make_randman(n_classes=10, n_units=40, n_samples=10, seed=0)
    assert np.all(frames.sum(axis=(1, 2)) == 40)


def test_randman_rejects_bad_parameters() -> None:
    with pytest.raises(ParameterError):
        make_randman(n_classes=0)
    with pytest.raises(ParameterError):
        make_randman(alpha=-1.0)
    with pytest.raises(ParameterError):
        make_randman(timesteps=0)
    with pytest.raises(ParameterError):
        randman_spike_times(prec=2.0)


# --------------------------------------------------------------------------------------------------------------------
# tonic is optional


def test_missing_tonic_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from asyncsnn.data import tonic_datasets

    monkeypatch.setitem(sys.modules, "tonic", None)  # makes `import tonic` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'asyncsnn\[tonic\]'") as info:
        tonic_datasets.load_nmnist(tmp_path)
    assert isinstance(info.value, ImportError)
    # the writers of N-MNIST and DVS Gesture files need no tonic
    ev = make_events([1], [2], [1], [3])
    tonic_datasets.write_nmnist_bin(tmp_path / "a.bin", ev)
    assert (tmp_path / "a.bin").read_bytes() == bytes([1, 2, 0x80, 0, 3])
