"""The real tonic loaders (N-MNIST, SHD, DVS Gesture) on files written in the original formats, offline.

Needs the optional extra ``asyncsnn[tonic]`` (tonic==1.7.0); skipped without it. The
datasets are fabricated under a temporary folder (datasets.md section 4(c)): tonic 1.7.0
skips its download when the archive exists (an empty placeholder) and enough extracted
files are present. The network is blocked, so that any download attempt fails loudly.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tonic = pytest.importorskip("tonic")

from asyncsnn.data import tonic_datasets as td  # noqa: E402
from asyncsnn.data.errors import DatasetNotFoundError  # noqa: E402
from asyncsnn.data.events import bin_events, make_events  # noqa: E402
from asyncsnn.data.saccades import emulate_saccades  # noqa: E402
from asyncsnn.exceptions import InputError, ParameterError  # noqa: E402

N_NMNIST = 10_000  # tonic 1.7.0 wants at least 10,000 .bin files
N_GESTURE = 110  # and at least 100 .npy files
N_EMULATED = 4


def _no_network(*_: Any, **__: Any) -> Any:
    raise RuntimeError("network access attempted in an offline test")


def _block(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(socket.socket, "connect", _no_network)
    mp.setattr(socket.socket, "connect_ex", _no_network)
    mp.setattr(socket, "create_connection", _no_network)
    mp.setattr(socket, "getaddrinfo", _no_network)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    _block(monkeypatch)


def random_events(rng: np.random.Generator, n: int, side: int, t_max: int, step: int = 1) -> np.ndarray:
    t = np.sort(rng.integers(0, t_max // step, n)) * step
    return make_events(rng.integers(0, side, n), rng.integers(0, side, n), rng.integers(0, 2, n), t)


@pytest.fixture(scope="session")
def nmnist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray], np.ndarray]:
    """10,000 N-MNIST training recordings: 4 emulated ones, then tiny random ones (20 to 40 events over 300 ms)."""
    root = tmp_path_factory.mktemp("nmnist")
    rng = np.random.default_rng(0)
    events = emulate_saccades(rng.integers(0, 256, (N_EMULATED, 28, 28), dtype=np.uint8))
    events += [random_events(rng, int(rng.integers(20, 41)), 34, 300_000) for _ in range(N_NMNIST - N_EMULATED)]
    labels = rng.integers(0, 10, N_NMNIST)
    with pytest.MonkeyPatch.context() as mp:
        _block(mp)
        td.export_nmnist(events, labels, root, train=True)
    return root, events, labels


def source_index(path: str) -> int:
    return int(Path(path).stem)


def tonic_window_count(t: np.ndarray, window: float) -> int:
    """How many frames tonic's ToFrame(time_window) makes: complete windows from the first event, at least one."""
    return max(int(np.floor((t[-1] - t[0] - window) / window) + 1), 1)


# --------------------------------------------------------------------------------------------------------------------
# N-MNIST


def test_nmnist_bin_format_round_trips_through_tonic_reader(tmp_path: Path) -> None:
    from tonic.io import read_mnist_file

    images = np.random.default_rng(1).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    for i, ev in enumerate(emulate_saccades(images)):
        path = tmp_path / f"{i}.bin"
        td.write_nmnist_bin(path, ev)
        assert path.stat().st_size == 5 * len(ev)
        back = read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)
        for field in "xypt":
            assert np.array_equal(back[field], ev[field]), field
    # the byte layout, written out by hand: x, y, p<<7 | t[22:16], t[15:8], t[7:0]
    td.write_nmnist_bin(tmp_path / "one.bin", make_events([33, 7], [0, 239], [1, 0], [0x7FFFFF, 0x010203]))
    assert (tmp_path / "one.bin").read_bytes() == bytes([33, 0, 0xFF, 0xFF, 0xFF, 7, 239, 0x01, 0x02, 0x03])


@pytest.mark.parametrize(
    ("x", "y", "p", "t"),
    [(0, 240, 0, 0), (256, 0, 0, 0), (0, 0, 2, 0), (0, 0, 0, 2**23), (0, 0, 0, -1)],
)
def test_nmnist_writer_rejects_unrepresentable_events(tmp_path: Path, x: int, y: int, p: int, t: int) -> None:
    with pytest.raises(InputError):
        td.write_nmnist_bin(tmp_path / "bad.bin", make_events([x], [y], [p], [t]))


def test_nmnist_loader_first_saccade(nmnist: tuple[Path, list[np.ndarray], np.ndarray]) -> None:
    root, events, labels = nmnist
    ds = td.load_nmnist(root, train=True)
    exact = td.load_nmnist(root, train=True, binning="exact")
    assert len(ds) == N_NMNIST
    assert ds.input_shape == (2, 34, 34)
    assert np.array_equal(np.sort(ds.labels), np.sort(labels))
    assert "NMNIST" in repr(ds)
    for i in np.random.default_rng(2).choice(N_NMNIST, 150, replace=False):
        src = source_index(ds.dataset.data[i])
        assert ds.labels[i] == labels[src]
        kept = events[src][events[src]["t"] < 100_000]
        raw = ds.events(int(i))
        assert np.array_equal(raw["t"], kept["t"])
        assert np.array_equal(raw["x"], kept["x"])
        frames, label = ds[int(i)]
        full, label2 = exact[int(i)]
        assert label == label2 == labels[src]
        assert frames.dtype == np.float32
        assert frames.shape[1:] == (2, 34, 34)
        # exact binning: the same 10 ms grid from the first event, every event counted
        assert full.sum() == len(kept)
        assert len(full) == int((kept["t"][-1] - kept["t"][0]) // 10_000) + 1
        assert np.array_equal(full[:, 1].sum(axis=(1, 2)).sum(), kept["p"].sum())
        # tonic's ToFrame: the same frames, without the incomplete last window
        n = tonic_window_count(kept["t"], 10_000)
        assert len(frames) == n
        assert np.array_equal(frames, full[:n])
        assert frames.sum() == (kept["t"] < kept["t"][0] + n * 10_000).sum()


def test_nmnist_loader_all_saccades_and_batching(nmnist: tuple[Path, list[np.ndarray], np.ndarray]) -> None:
    root, events, _labels = nmnist
    ds = td.load_nmnist(root, first_saccade_only=False, binning="exact", time_window_us=20_000)
    idx = np.arange(16)
    x, y = ds.to_arrays(idx)
    lengths = [len(ds[int(i)][0]) for i in idx]
    assert x.shape == (16, max(lengths), 2, 34, 34)
    assert x.dtype == np.float32
    assert np.array_equal(y, ds.labels[idx])
    for k, i in enumerate(idx):
        src = source_index(ds.dataset.data[i])
        assert x[k].sum() == len(events[src])
        assert x[k, lengths[k] :].sum() == 0  # padded with empty frames at the end
    assert ds.to_arrays([0, 1], n_frames=40)[0].shape == (2, 40, 2, 34, 34)
    assert ds[-1][1] == ds.labels[-1]
    with pytest.raises(ParameterError):
        ds[N_NMNIST]
    with pytest.raises(ParameterError):
        td.load_nmnist(root, binning="bogus")  # type: ignore[arg-type]


def test_nmnist_missing_or_too_small_raises_without_downloading(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"test\.zip"):
        td.load_nmnist(tmp_path, train=False)
    rng = np.random.default_rng(3)
    td.export_nmnist([random_events(rng, 5, 34, 1000) for _ in range(20)], rng.integers(0, 10, 20), tmp_path)
    assert (tmp_path / "NMNIST" / "train.zip").is_file()
    with pytest.raises(DatasetNotFoundError, match="at least 10000"):
        td.load_nmnist(tmp_path)
    with pytest.raises(InputError):
        td.export_nmnist([random_events(rng, 5, 34, 1000)], [10], tmp_path)


def test_emulated_recordings_go_through_the_real_nmnist_loader(
    nmnist: tuple[Path, list[np.ndarray], np.ndarray],
) -> None:
    root, events, labels = nmnist
    ds = td.load_nmnist(root, first_saccade_only=True, binning="exact")
    where = {source_index(p): i for i, p in enumerate(ds.dataset.data)}
    for src in range(N_EMULATED):
        i = where[src]
        kept = events[src][events[src]["t"] < 100_000]
        frames, label = ds[i]
        assert label == labels[src]
        assert frames.sum() == len(kept) > 500
        assert len(frames) in (9, 10)
        for field in "xypt":
            assert np.array_equal(ds.events(i)[field], kept[field])


# --------------------------------------------------------------------------------------------------------------------
# SHD


@pytest.fixture
def shd(tmp_path: Path) -> tuple[Path, list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(5)
    events = []
    for _ in range(40):
        n = int(rng.integers(30, 200))
        ev = np.zeros(n, dtype=[("t", np.int64), ("x", np.int64), ("p", np.int64)])
        ev["t"] = np.sort(rng.integers(0, 900_000, n))
        ev["x"] = rng.integers(0, 700, n)
        events.append(ev)
    labels = rng.integers(0, 20, 40)
    td.export_shd(events, labels, tmp_path, train=True, speakers=rng.integers(0, 12, 40))
    return tmp_path, events, labels


def test_shd_file_layout(shd: tuple[Path, list[np.ndarray], np.ndarray]) -> None:
    import h5py

    root, events, labels = shd
    assert (root / "SHD" / "shd_train.h5.zip").is_file()
    with h5py.File(root / "SHD" / "shd_train.h5", "r") as f:
        assert set(f.keys()) == {"spikes", "labels", "extra"}
        assert f["spikes/times"].dtype.metadata["vlen"] == np.float32
        assert f["spikes/units"].dtype.metadata["vlen"] == np.uint16
        assert f["labels"].dtype == np.uint16
        assert np.array_equal(f["labels"][()], labels)
        assert np.allclose(f["spikes/times"][3], events[3]["t"] * 1e-6)  # seconds
        assert np.array_equal(f["spikes/units"][3], events[3]["x"])
        assert len(f["extra/keys"][()]) == labels.max() + 1
        assert len(f["extra/speaker"][()]) == 40


def test_shd_loader(shd: tuple[Path, list[np.ndarray], np.ndarray]) -> None:
    root, events, labels = shd
    ds = td.load_shd(root, train=True)
    exact = td.load_shd(root, train=True, binning="exact")
    assert len(ds) == 40
    assert ds.input_shape == (700,)
    assert np.array_equal(ds.labels, labels)
    for i in range(40):
        ev = events[i]
        frames, label = ds[i]
        full, _ = exact[i]
        assert label == labels[i]
        assert frames.shape[1:] == (700,)
        assert full.shape[1:] == (700,)
        assert full.sum() == len(ev)
        assert np.array_equal(full.sum(axis=0), np.bincount(ev["x"], minlength=700))
        n = tonic_window_count(ev["t"].astype(np.float64), 10_000)
        assert len(frames) == n
        assert np.array_equal(frames, full[:n])
    bins = td.load_shd(root, n_time_bins=50, binning="exact")
    tonic_bins = td.load_shd(root, n_time_bins=50)
    for i in range(5):
        assert bins[i][0].shape == (50, 700)
        assert bins[i][0].sum() == len(events[i])
        assert tonic_bins[i][0].shape == (50, 700)
        assert tonic_bins[i][0].sum() <= len(events[i])
    x, y = bins.to_arrays()
    assert x.shape == (40, 50, 700)
    assert np.array_equal(y, labels)
    with pytest.raises(ParameterError):
        td.load_shd(root, time_window_us=1000, n_time_bins=5)


def test_shd_missing_raises(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"shd_test\.h5"):
        td.load_shd(tmp_path, train=False)


# --------------------------------------------------------------------------------------------------------------------
# DVS Gesture


@pytest.fixture
def gesture(tmp_path: Path) -> Iterator[tuple[Path, list[np.ndarray], np.ndarray]]:
    rng = np.random.default_rng(6)
    labels = np.tile(np.arange(11), N_GESTURE // 11)
    events = [random_events(rng, int(rng.integers(50, 150)), 128, 1_500_000, step=1000) for _ in labels]
    td.export_dvsgesture(events, labels, tmp_path, train=True)
    return tmp_path, events, labels


def test_dvsgesture_file_layout(gesture: tuple[Path, list[np.ndarray], np.ndarray]) -> None:
    root, events, _labels = gesture
    base = root / "DVSGesture"
    assert (base / "ibmGestureTrain.tar.gz").is_file()
    files = sorted((base / "ibmGestureTrain").glob("*/*.npy"))
    assert len(files) == N_GESTURE
    table = np.load(base / "ibmGestureTrain" / "user03_fluorescent" / "4.npy")
    src = 2 * 11 + 4  # the third sample of label 4
    assert table.shape == (len(events[src]), 4)
    assert np.issubdtype(table.dtype, np.integer)
    assert np.array_equal(table[:, 3], events[src]["t"] // 1000)  # milliseconds
    assert np.array_equal(table[:, 0], events[src]["x"])
    assert np.array_equal(table[:, 2], events[src]["p"])


def test_dvsgesture_loader_downsamples_to_32(gesture: tuple[Path, list[np.ndarray], np.ndarray]) -> None:
    root, events, labels = gesture
    ds = td.load_dvsgesture(root, train=True)
    exact = td.load_dvsgesture(root, train=True, binning="exact")
    assert len(ds) == N_GESTURE
    assert ds.input_shape == (2, 32, 32)
    for i in range(len(ds)):
        path = Path(ds.dataset.data[i])
        user = int(path.parent.name.split("_")[0][4:])
        label = int(path.stem)
        src = (user - 1) * 11 + label  # the exporter puts the k-th sample of a label in user k+1
        ev = events[src]
        frames, got = ds[i]
        full, _ = exact[i]
        assert got == label == labels[src]
        assert full.sum() == len(ev)
        assert full.shape[1:] == (2, 32, 32)
        small = make_events(ev["x"] // 4, ev["y"] // 4, ev["p"], ev["t"])  # 128 -> 32
        assert np.array_equal(full, bin_events(small, (32, 32, 2), time_window_us=20_000, t_start="first"))
        n = tonic_window_count(ev["t"], 20_000)
        assert len(frames) == n
        assert np.array_equal(frames, full[:n])
    assert td.load_dvsgesture(root, size=64, binning="exact")[0][0].shape[1:] == (2, 64, 64)
    with pytest.raises(ParameterError):
        td.load_dvsgesture(root, size=0)


def test_dvsgesture_missing_raises(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="ibmGestureTest"):
        td.load_dvsgesture(tmp_path, train=False)
    with pytest.raises(ParameterError):
        td.export_dvsgesture([make_events([0], [0], [0], [0])], [0], tmp_path, lighting="a/b")


def test_reproduce_loads_shd_through_tonic(shd: tuple[Path, list[np.ndarray], np.ndarray]) -> None:
    from asyncsnn.reproduce import load_dataset

    root, events, labels = shd
    td.export_shd(events[:10], labels[:10], root, train=False, speakers=np.zeros(10, dtype=np.int64))
    ds = load_dataset("shd", root=str(root), max_train=12, max_test=6)
    assert ds.train_x.shape[0] == 12
    assert ds.test_x.shape[0] == 6
    assert ds.input_shape == (700,)
    assert ds.train_x.shape[1] == ds.test_x.shape[1]
    assert ds.train_x.sum() > 0
