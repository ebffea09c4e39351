"""The paper's event datasets through the real ``tonic`` loaders, and writers of their original file formats.

Needs the optional extra: ``pip install 'asyncsnn[tonic]'`` (``tonic==1.7.0``, GPL-3.0;
``tonic`` is imported only inside these functions). Nothing is downloaded unless you pass
``download=True``: the loaders first check that the files tonic 1.7.0 looks for are there
and otherwise raise :class:`~asyncsnn.data.errors.DatasetNotFoundError` naming them.

Loaders (each returns an :class:`EventFrames`: lazily indexed, engine-ready frames):

* :func:`load_nmnist`: ``tonic.datasets.NMNIST(first_saccade_only=True)`` +
  ``ToFrame(sensor_size=(34, 34, 2), time_window=10_000)``: frames ``[T, 2, 34, 34]``
  (the paper's N-MNIST pipeline, ``paper.md`` section 6.1).
* :func:`load_dvsgesture`: ``tonic.datasets.DVSGesture`` +
  ``Downsample(spatial_factor=0.25)`` + ``ToFrame(sensor_size=(32, 32, 2),
  time_window=20_000)``: frames ``[T, 2, 32, 32]`` (section 6.2).
* :func:`load_shd`: ``tonic.datasets.SHD`` + ``ToFrame(sensor_size=(700, 1, 1), ...)``:
  frames ``[T, 700]``.

Frames hold event counts (float32). With ``binning="tonic"`` (the default, the paper's
code path) tonic's ``ToFrame`` slices time from each sample's *first* event, and drops the
events after the last complete window (a sample shorter than one window still gives one
frame); with ``binning="exact"`` the frames use the same time grid but every event is
counted (:func:`asyncsnn.data.events.bin_events`). Samples have different ``T``;
:meth:`EventFrames.to_arrays` pads them with empty frames at the end to the longest
``T`` of the selection, as tonic's ``PadTensors`` collation does.

Writers produce the original on-disk layouts, the ones that tonic 1.7.0 reads: they export
emulated recordings (for instance Fashion-MNIST through
:func:`asyncsnn.data.saccades.emulate_saccades`) so that they go through exactly the
same loader code as the real datasets, and they let the tests fabricate datasets offline.

========================  =============================================================================
:func:`export_nmnist`     ``NMNIST/{Train,Test}/<label>/<id>.bin`` (5 bytes per event) + placeholder
                          ``train.zip`` / ``test.zip``; tonic needs at least 10,000 ``.bin`` files
:func:`export_shd`        ``SHD/shd_{train,test}.h5`` (``spikes/times`` in s, ``spikes/units``,
                          ``labels``, ``extra/keys``, ``extra/speaker``) + placeholder ``.h5.zip``
:func:`export_dvsgesture` ``DVSGesture/ibmGesture{Train,Test}/userNN_<lighting>/<label>.npy`` (int
                          ``[n, 4]``: x, y, p, t in ms) + placeholder ``.tar.gz``; tonic needs >= 100
========================  =============================================================================

The placeholders are empty files: tonic 1.7.0 only checks that the archive exists (and
counts the extracted files) before it decides not to download.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np

from asyncsnn.data.errors import DatasetNotFoundError, MissingDependencyError
from asyncsnn.data.events import bin_events, pad_frames
from asyncsnn.exceptions import InputError, ParameterError, invalid

__all__ = [
    "DVSGESTURE_CLASSES",
    "EventFrames",
    "export_dvsgesture",
    "export_nmnist",
    "export_shd",
    "load_dvsgesture",
    "load_nmnist",
    "load_shd",
    "write_nmnist_bin",
]

PathLike = Union[str, "os.PathLike[str]"]
Binning = Literal["tonic", "exact"]
INSTALL_HINT = "pip install 'asyncsnn[tonic]'  (tonic==1.7.0)"

#: DVS Gesture's 11 classes, in label order (as in tonic).
DVSGESTURE_CLASSES = (
    "Hand clapping",
    "Right hand wave",
    "Left hand wave",
    "Right arm cw",
    "Right arm ccw",
    "Left arm cw",
    "Left arm ccw",
    "Arm roll",
    "Air drums",
    "Air guitar",
    "Other gestures",
)
NMNIST_MIN_FILES = 10_000
DVSGESTURE_MIN_FILES = 100
NMNIST_MAX_T = 2**23  # 23-bit timestamps in µs


def _tonic() -> Any:
    """Import tonic, or raise a clear error naming the extra to install."""
    try:
        import tonic
        import tonic.transforms
    except ImportError as exc:
        raise invalid(
            MissingDependencyError, "tonic", None, f"the tonic loaders need the optional dependency: {INSTALL_HINT}"
        ) from exc
    return tonic


def _h5py() -> Any:
    try:
        import h5py  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:
        raise invalid(MissingDependencyError, "h5py", None, f"SHD files need h5py: {INSTALL_HINT}") from exc
    return h5py


# --------------------------------------------------------------------------------------------------------------------
# The dataset wrapper


class EventFrames:
    """A tonic event dataset seen as engine-ready frames (lazy: one sample is read per index).

    Attributes
    ----------
    dataset
        The underlying ``tonic`` dataset (``dataset[i]`` gives the raw events and label).
    input_shape : tuple of int
        Shape of one frame (``(2, 34, 34)``, ``(2, 32, 32)``, ``(700,)``).
    labels : numpy.ndarray
        int64 ``[len(self)]``, in the dataset's order.
    """

    def __init__(
        self,
        dataset: Any,
        to_frames: Callable[[np.ndarray], np.ndarray],
        input_shape: tuple[int, ...],
        labels: np.ndarray,
    ) -> None:
        self.dataset = dataset
        self._to_frames = to_frames
        self.input_shape = input_shape
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"EventFrames({type(self.dataset).__name__}, {len(self)} samples, frames [T, {', '.join(map(str, self.input_shape))}])"

    def events(self, index: int) -> np.ndarray:
        """The raw structured events of sample ``index`` (after tonic's own filtering, e.g. first saccade)."""
        events, _ = self.dataset[self._index(index)]
        return np.asarray(events)

    def _index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -len(self) <= index < len(self):
            raise invalid(ParameterError, "index", index, f"must be an int in [-{len(self)}, {len(self)})")
        return int(index) % len(self)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        """Frames float32 ``[T_i, *input_shape]`` and the label of sample ``index``."""
        i = self._index(index)
        events, _ = self.dataset[i]
        frames = self._to_frames(np.asarray(events)).astype(np.float32)
        return frames.reshape(len(frames), *self.input_shape), int(self.labels[i])

    def to_arrays(
        self, indices: Sequence[int] | np.ndarray | None = None, n_frames: int | None = None, truncate: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stack samples into engine inputs.

        Parameters
        ----------
        indices
            Samples to take (default: all; mind the memory).
        n_frames
            Common ``T``; default: the longest sample of the selection. Shorter samples get
            empty frames at the end.
        truncate
            Allow ``n_frames`` shorter than a sample (see :func:`~asyncsnn.data.events.pad_frames`).

        Returns
        -------
        frames : numpy.ndarray
            float32 ``[N, T, *input_shape]`` event counts.
        labels : numpy.ndarray
            int64 ``[N]``.
        """
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        frames = [self[int(i)][0] for i in idx]
        return pad_frames(frames, n_frames=n_frames, truncate=truncate), self.labels[idx]


def _frame_fn(
    sensor_size: tuple[int, int, int],
    binning: Binning,
    time_window_us: float | None,
    n_time_bins: int | None,
    pre: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """Events -> frames ``[T, P, H, W]`` (or ``[T, P, W]``) with tonic's ToFrame or the exact binning."""
    if binning not in ("tonic", "exact"):
        raise invalid(ParameterError, "binning", binning, 'must be "tonic" or "exact"')
    if time_window_us is not None and (
        isinstance(time_window_us, bool) or not isinstance(time_window_us, (int, float)) or not time_window_us > 0
    ):
        raise invalid(ParameterError, "time_window_us", time_window_us, "must be a number > 0")
    if n_time_bins is not None and (
        isinstance(n_time_bins, bool) or not isinstance(n_time_bins, int) or n_time_bins < 1
    ):
        raise invalid(ParameterError, "n_time_bins", n_time_bins, "must be an int >= 1")
    has_y = sensor_size[1] > 1
    empty_shape = (1, sensor_size[2], sensor_size[1], sensor_size[0]) if has_y else (1, sensor_size[2], sensor_size[0])
    to_frame: Any = None
    if binning == "tonic":
        tonic = _tonic()
        to_frame = tonic.transforms.ToFrame(
            sensor_size=sensor_size, time_window=time_window_us, n_time_bins=n_time_bins
        )

    def frames(events: np.ndarray) -> np.ndarray:
        if pre is not None:
            events = pre(events)
        if len(events) == 0:
            return np.zeros(empty_shape, dtype=np.float32)
        if to_frame is not None:
            return np.asarray(to_frame(events), dtype=np.float32)
        return bin_events(events, sensor_size, time_window_us=time_window_us, n_time_bins=n_time_bins, t_start="first")

    return frames


def _count_files(folder: Path, suffix: str) -> int:
    return sum(1 for _ in folder.glob(f"**/*{suffix}")) if folder.is_dir() else 0


def _check_files(name: str, root: PathLike, archive: Path, folder: Path, suffix: str, minimum: int) -> None:
    """Raise DatasetNotFoundError unless tonic 1.7.0 would find the dataset without downloading."""
    n = _count_files(folder, suffix)
    if archive.is_file() and n >= minimum:
        return
    problems = []
    if not archive.is_file():
        problems.append(f"the archive {archive} is missing (an empty placeholder file is enough for tonic 1.7.0)")
    if n < minimum:
        problems.append(f"{folder} holds {n} {suffix} files, tonic needs at least {minimum}")
    raise invalid(
        DatasetNotFoundError,
        "root",
        str(root),
        f"{name} not found: " + "; ".join(problems) + ". Pass download=True to let tonic download it"
        " (network needed), or write the files with the asyncsnn.data.tonic_datasets.export_* functions",
    )


# --------------------------------------------------------------------------------------------------------------------
# Loaders


def load_nmnist(
    root: PathLike,
    train: bool = True,
    *,
    first_saccade_only: bool = True,
    time_window_us: float = 10_000,
    binning: Binning = "tonic",
    download: bool = False,
) -> EventFrames:
    """N-MNIST (Orchard et al. 2015) through ``tonic.datasets.NMNIST``, as 10 ms frames ``[T, 2, 34, 34]``.

    Parameters
    ----------
    root
        tonic's ``save_to`` folder: the data lie in ``root/NMNIST/{Train,Test}/<digit>/*.bin``.
    train
        Training (60,000 samples) or test (10,000) split.
    first_saccade_only
        Keep only the events with ``t < 100 ms`` (the paper's setting): about 9 frames of
        10 ms with tonic's binning, 10 with the exact one.
    time_window_us
        Frame length in µs (the paper: 10,000).
    binning
        ``"tonic"`` (``tonic.transforms.ToFrame``, the paper's code path) or ``"exact"`` (see
        the module docstring).
    download
        Let tonic download the data if missing (otherwise a missing dataset raises).

    Returns
    -------
    EventFrames
        Frames ``[T_i, 2, 34, 34]`` per sample (channels: OFF, ON), labels 0..9.
    """
    tonic = _tonic()
    if not download:
        base = Path(root) / "NMNIST"
        archive = base / ("train.zip" if train else "test.zip")
        _check_files("N-MNIST", root, archive, base / ("Train" if train else "Test"), ".bin", NMNIST_MIN_FILES)
    ds = tonic.datasets.NMNIST(save_to=str(root), train=train, first_saccade_only=first_saccade_only)
    sensor = tuple(ds.sensor_size)
    fn = _frame_fn(sensor, binning, time_window_us, None)
    return EventFrames(ds, fn, (sensor[2], sensor[1], sensor[0]), np.asarray(ds.targets, dtype=np.int64))


def load_dvsgesture(
    root: PathLike,
    train: bool = True,
    *,
    time_window_us: float = 20_000,
    size: int = 32,
    binning: Binning = "tonic",
    download: bool = False,
) -> EventFrames:
    """DVS Gesture (Amir et al. 2017) through ``tonic.datasets.DVSGesture``, downsampled, as 20 ms frames.

    Parameters
    ----------
    root
        tonic's ``save_to`` folder: ``root/DVSGesture/ibmGesture{Train,Test}/userNN_<lighting>/<label>.npy``.
    train
        Training or test split.
    time_window_us
        Frame length in µs (the paper: 20,000).
    size
        Output side in pixels: ``Downsample(spatial_factor=size / 128)`` (the paper: 32, i.e. 0.25).
    binning
        ``"tonic"`` or ``"exact"`` (see the module docstring).
    download
        Let tonic download the data if missing.

    Returns
    -------
    EventFrames
        Frames ``[T_i, 2, size, size]`` per sample, labels 0..10 (:data:`DVSGESTURE_CLASSES`).
    """
    tonic = _tonic()
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 128:
        raise invalid(ParameterError, "size", size, "must be an int in [1, 128]")
    if not download:
        base = Path(root) / "DVSGesture"
        name = "ibmGestureTrain" if train else "ibmGestureTest"
        _check_files("DVS Gesture", root, base / f"{name}.tar.gz", base / name, ".npy", DVSGESTURE_MIN_FILES)
    ds = tonic.datasets.DVSGesture(save_to=str(root), train=train)
    native = tuple(ds.sensor_size)
    factor = size / native[0]
    downsample = tonic.transforms.Downsample(spatial_factor=factor)  # the paper: 32 / 128 = 0.25
    sensor = (size, size, native[2])
    fn = _frame_fn(sensor, binning, time_window_us, None, pre=downsample)
    return EventFrames(ds, fn, (sensor[2], size, size), np.asarray(ds.targets, dtype=np.int64))


def load_shd(
    root: PathLike,
    train: bool = True,
    *,
    time_window_us: float | None = None,
    n_time_bins: int | None = None,
    binning: Binning = "tonic",
    download: bool = False,
) -> EventFrames:
    """Spiking Heidelberg Digits (Cramer et al. 2020) through ``tonic.datasets.SHD``, as frames ``[T, 700]``.

    Parameters
    ----------
    root
        tonic's ``save_to`` folder: ``root/SHD/shd_{train,test}.h5``.
    train
        Training (8,156 samples) or test (2,264) split.
    time_window_us
        Frame length in µs (default 10,000 when ``n_time_bins`` is not given): ``T`` varies
        with the sample's duration.
    n_time_bins
        Instead: this many frames per sample, spanning its first to its last spike (so ``T``
        is fixed but a frame's duration varies).
    binning
        ``"tonic"`` or ``"exact"`` (see the module docstring; with ``n_time_bins``, tonic's
        slicing misses the last spike of each sample, the exact binning does not).
    download
        Let tonic download the data if missing.

    Returns
    -------
    EventFrames
        Frames ``[T_i, 700]`` per sample (spike counts per channel), labels 0..19.
    """
    tonic = _tonic()
    h5py = _h5py()
    if time_window_us is not None and n_time_bins is not None:
        raise invalid(ParameterError, "n_time_bins", n_time_bins, "give time_window_us or n_time_bins, not both")
    if time_window_us is None and n_time_bins is None:
        time_window_us = 10_000
    h5_name = "shd_train.h5" if train else "shd_test.h5"
    if not download:
        base = Path(root) / "SHD"
        _check_files("SHD", root, base / f"{h5_name}.zip", base, ".h5", 1)
        if not (base / h5_name).is_file():
            raise invalid(DatasetNotFoundError, "root", str(root), f"SHD not found: {base / h5_name} is missing")
    ds = tonic.datasets.SHD(save_to=str(root), train=train)
    with h5py.File(os.path.join(ds.location_on_system, ds.data_filename), "r") as f:
        labels = np.asarray(f["labels"][()], dtype=np.int64)
    sensor = tuple(ds.sensor_size)  # (700, 1, 1)
    fn = _frame_fn(sensor, binning, time_window_us, n_time_bins)
    return EventFrames(ds, fn, (sensor[0],), labels)


# --------------------------------------------------------------------------------------------------------------------
# Writers of the original formats


def _labels(labels: Sequence[int] | np.ndarray, n: int, maximum: int | None) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.shape != (n,) or lab.dtype.kind not in "iu":
        raise invalid(InputError, "labels", f"{lab.dtype} array of shape {lab.shape}", f"need {n} integer labels")
    if n and (lab.min() < 0 or (maximum is not None and lab.max() > maximum)):
        top = "" if maximum is None else f", <= {maximum}"
        raise invalid(InputError, "labels", f"range [{lab.min()}, {lab.max()}]", f"must be >= 0{top}")
    return lab.astype(np.int64)


def _fields(events: np.ndarray, names: str, where: str) -> None:
    have = set(np.asarray(events).dtype.names or ())
    if not set(names) <= have:
        raise invalid(InputError, "events", f"fields {sorted(have)}", f"need fields {', '.join(names)}", where)


def write_nmnist_bin(path: PathLike, events: np.ndarray) -> None:
    """Write one N-MNIST ``.bin`` file: 5 bytes per event, in the given order.

    Byte layout (Orchard's format, as read by ``tonic.io.read_mnist_file``): ``x``, ``y``,
    ``p << 7 | t[22:16]``, ``t[15:8]``, ``t[7:0]``; ``t`` in µs below ``2**23``.

    Parameters
    ----------
    path
        Output file.
    events
        Structured array with fields ``x``, ``y`` (0..239; 240 is reserved for timestamp
        overflow markers), ``p`` (0/1) and ``t`` (µs, integer, ``0 <= t < 2**23``).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from asyncsnn.data.events import make_events
    >>> path = Path(tempfile.mkdtemp()) / "00001.bin"
    >>> write_nmnist_bin(path, make_events([3], [4], [1], [0x012345]))
    >>> path.read_bytes().hex()
    '0304812345'
    """
    _fields(events, "xypt", str(path))
    x = np.asarray(events["x"]).astype(np.int64)
    y = np.asarray(events["y"]).astype(np.int64)
    p = np.asarray(events["p"]).astype(np.int64)
    t = np.asarray(events["t"])
    if t.size and (t.dtype.kind == "f" and not np.all(t == np.floor(t))):
        raise invalid(InputError, "events['t']", "non-integer", "N-MNIST timestamps are integer µs", str(path))
    t = t.astype(np.int64)
    for field, v, lo, hi in (("x", x, 0, 255), ("y", y, 0, 239), ("p", p, 0, 1), ("t", t, 0, NMNIST_MAX_T - 1)):
        if v.size and (v.min() < lo or v.max() > hi):
            raise invalid(
                InputError, f"events[{field!r}]", f"range [{v.min()}, {v.max()}]", f"must be in [{lo}, {hi}]", str(path)
            )
    raw = np.empty((len(t), 5), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    Path(path).write_bytes(raw.tobytes())


def _placeholder(path: Path) -> None:
    if not path.exists():
        path.write_bytes(b"")


def export_nmnist(
    events: Sequence[np.ndarray], labels: Sequence[int] | np.ndarray, root: PathLike, train: bool = True
) -> Path:
    """Write recordings as an N-MNIST tree that ``tonic.datasets.NMNIST(root, train)`` reads.

    Files: ``root/NMNIST/{Train,Test}/<label>/<i:05d>.bin`` (events sorted by time) and an
    empty placeholder ``root/NMNIST/{train,test}.zip``. tonic 1.7.0 reads the tree only if
    it holds at least 10,000 ``.bin`` files (otherwise it tries to download); tonic lists the
    samples by label folder, then by file name.

    Parameters
    ----------
    events
        One structured array per sample with fields ``x``, ``y``, ``p``, ``t`` (µs), e.g. from
        :func:`asyncsnn.data.saccades.emulate_saccades`.
    labels
        One label per sample, 0..9 (tonic reads the label from the folder name's last character).
    root
        tonic's ``save_to`` folder.
    train
        Write the training (``Train``) or test (``Test``) split.

    Returns
    -------
    pathlib.Path
        The split's folder.
    """
    lab = _labels(labels, len(events), 9)
    base = Path(root) / "NMNIST"
    folder = base / ("Train" if train else "Test")
    for c in np.unique(lab):
        (folder / str(int(c))).mkdir(parents=True, exist_ok=True)
    for i, (ev, c) in enumerate(zip(events, lab, strict=True)):
        ev = np.asarray(ev)
        _fields(ev, "xypt", f"sample {i}")
        write_nmnist_bin(folder / str(int(c)) / f"{i:05d}.bin", ev[np.argsort(ev["t"], kind="stable")])
    _placeholder(base / ("train.zip" if train else "test.zip"))
    return folder


def export_dvsgesture(
    events: Sequence[np.ndarray],
    labels: Sequence[int] | np.ndarray,
    root: PathLike,
    train: bool = True,
    lighting: str = "fluorescent",
) -> Path:
    """Write recordings in tonic's DVS Gesture layout (the preprocessed ``.npy`` version).

    Files: ``root/DVSGesture/ibmGesture{Train,Test}/user<NN>_<lighting>/<label>.npy``, each an
    int64 array ``[n, 4]`` with columns ``x, y, p, t`` where ``t`` is in **milliseconds**
    (floored; the loader multiplies it by 1000), plus an empty placeholder
    ``root/DVSGesture/ibmGesture{Train,Test}.tar.gz``. A folder holds one sample per label,
    so the ``k``-th sample of a label goes to ``user<k+1>``. tonic needs at least 100 files.

    Parameters
    ----------
    events
        One structured array per sample with fields ``x``, ``y`` (0..127 for the 128 x 128
        sensor), ``p``, ``t`` (µs).
    labels
        One label per sample, >= 0 (DVS Gesture: 0..10).
    root
        tonic's ``save_to`` folder.
    train
        Training or test split.
    lighting
        The lighting part of the folder names (DVS Gesture: ``fluorescent``, ``led``, ``natural``, ...).

    Returns
    -------
    pathlib.Path
        The split's folder.
    """
    lab = _labels(labels, len(events), None)
    if not lighting or "/" in lighting or os.sep in lighting:
        raise invalid(ParameterError, "lighting", lighting, "must be a non-empty folder-name part")
    base = Path(root) / "DVSGesture"
    name = "ibmGestureTrain" if train else "ibmGestureTest"
    seen: dict[int, int] = {}
    for i, (ev, c) in enumerate(zip(events, lab, strict=True)):
        ev = np.asarray(ev)
        _fields(ev, "xypt", f"sample {i}")
        k = seen.get(int(c), 0)
        seen[int(c)] = k + 1
        folder = base / name / f"user{k + 1:02d}_{lighting}"
        folder.mkdir(parents=True, exist_ok=True)
        ev = ev[np.argsort(ev["t"], kind="stable")]
        t = np.asarray(ev["t"], dtype=np.float64)
        if t.size and (not np.all(np.isfinite(t)) or t.min() < 0):
            raise invalid(
                InputError, "events['t']", "negative or non-finite", "timestamps must be finite µs >= 0", f"sample {i}"
            )
        table = np.stack([ev["x"], ev["y"], ev["p"], np.floor(t / 1000)], axis=1).astype(np.int64).reshape(-1, 4)
        if table.size and table[:, :3].min() < 0:
            raise invalid(InputError, "events", "negative x, y or p", "must be >= 0", f"sample {i}")
        np.save(folder / f"{int(c)}.npy", table)
    _placeholder(base / f"{name}.tar.gz")
    return base / name


def export_shd(
    events: Sequence[np.ndarray],
    labels: Sequence[int] | np.ndarray,
    root: PathLike,
    train: bool = True,
    keys: Sequence[str] | None = None,
    speakers: Sequence[int] | np.ndarray | None = None,
) -> Path:
    """Write spike trains as an SHD file that ``tonic.datasets.SHD(root, train)`` reads.

    File: ``root/SHD/shd_{train,test}.h5`` with ``spikes/times`` (variable-length float32,
    **seconds**), ``spikes/units`` (variable-length uint16 channels), ``labels`` (uint16),
    ``extra/keys`` (class names) and ``extra/speaker`` (uint16), plus an empty placeholder
    ``shd_{train,test}.h5.zip``.

    Parameters
    ----------
    events
        One structured array per sample with fields ``t`` (µs) and ``x`` (channel, 0..699).
    labels
        One label per sample (SHD: 0..19).
    root
        tonic's ``save_to`` folder.
    train
        Training or test split.
    keys
        Class names (default ``"class 0"``, ...).
    speakers
        One speaker id per sample (default 0).

    Returns
    -------
    pathlib.Path
        The ``.h5`` file.
    """
    h5py = _h5py()
    lab = _labels(labels, len(events), 2**16 - 1)
    n = len(events)
    spk = np.zeros(n, dtype=np.uint16) if speakers is None else np.asarray(speakers)
    if spk.shape != (n,):
        raise invalid(InputError, "speakers", f"shape {spk.shape}", f"need {n} speaker ids")
    names = [f"class {c}" for c in range(int(lab.max()) + 1 if n else 0)] if keys is None else list(keys)
    base = Path(root) / "SHD"
    base.mkdir(parents=True, exist_ok=True)
    h5_name = "shd_train.h5" if train else "shd_test.h5"
    path = base / h5_name
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", shape=(n,), dtype=h5py.vlen_dtype(np.dtype("float32")))
        units = f.create_dataset("spikes/units", shape=(n,), dtype=h5py.vlen_dtype(np.dtype("uint16")))
        for i, ev in enumerate(events):
            ev = np.asarray(ev)
            _fields(ev, "tx", f"sample {i}")
            ev = ev[np.argsort(ev["t"], kind="stable")]
            x = np.asarray(ev["x"], dtype=np.int64)
            if x.size and (x.min() < 0 or x.max() > 2**16 - 1):
                raise invalid(
                    InputError, "events['x']", f"range [{x.min()}, {x.max()}]", "must be in [0, 65535]", f"sample {i}"
                )
            times[i] = (np.asarray(ev["t"], dtype=np.float64) * 1e-6).astype(np.float32)
            units[i] = x.astype(np.uint16)
        f.create_dataset("labels", data=lab.astype(np.uint16))
        f.create_dataset(
            "extra/keys", data=np.array([k.encode() for k in names], dtype=object), dtype=h5py.string_dtype()
        )
        f.create_dataset("extra/speaker", data=spk.astype(np.uint16))
    _placeholder(base / f"{h5_name}.zip")
    return path
