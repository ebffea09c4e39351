"""Fashion-MNIST (Xiao et al. 2017, MIT licence) from its original idx files, and its spike encodings.

The files are not bundled: they come from the Debian package ``dataset-fashion-mnist``
(``apt-get install dataset-fashion-mnist`` puts the four ``*-ubyte.gz`` files in
``/usr/share/datasets/fashion-mnist``), or from any folder holding the original files
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte`` (each optionally ``.gz``). :func:`load_fashion_mnist` looks in
``root`` if given, else in ``$ASYNCSNN_DATA/fashion-mnist``, else in the Debian package's
folder; nothing is ever downloaded.

Three uses mirror the paper's pipelines: rate-coded frames padded to 32x32 (the CIFAR-10
stand-in, :func:`fashion_mnist_frames`), N-MNIST-like event recordings
(:func:`asyncsnn.data.saccades.emulate_saccades`), and the raw idx files for
``tonic.datasets.SMNIST`` (:func:`write_idx` writes uncompressed copies).

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> root = tempfile.mkdtemp()
>>> imgs = np.arange(2 * 28 * 28, dtype=np.uint64).reshape(2, 28, 28) % 256
>>> write_idx(os.path.join(root, "t10k-images-idx3-ubyte.gz"), imgs.astype(np.uint8))
>>> write_idx(os.path.join(root, "t10k-labels-idx1-ubyte"), np.array([3, 9], dtype=np.uint8))
>>> images, labels = load_fashion_mnist(root, train=False)
>>> images.shape, images.dtype, labels.tolist()
((2, 28, 28), dtype('uint8'), [3, 9])
>>> fashion_mnist_frames(images, timesteps=20).shape
(2, 20, 1, 32, 32)
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import zlib
from pathlib import Path
from typing import Literal, Union

import numpy as np

from asyncsnn.data.encoding import latency_encode, rate_encode
from asyncsnn.data.errors import DatasetFormatError, DatasetNotFoundError
from asyncsnn.exceptions import InputError, ParameterError, invalid

__all__ = [
    "CLASSES",
    "DEBIAN_DIR",
    "DEBIAN_PACKAGE",
    "fashion_mnist_frames",
    "find_fashion_mnist",
    "load_fashion_mnist",
    "read_idx",
    "write_idx",
]

PathLike = Union[str, "os.PathLike[str]"]

#: The ten classes, in label order.
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DEBIAN_PACKAGE = "dataset-fashion-mnist"
#: Where Debian's ``dataset-fashion-mnist`` (bookworm) installs the files.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "ASYNCSNN_DATA"
SPLITS = {True: ("train", 60_000), False: ("t10k", 10_000)}

# idx type codes -> big-endian NumPy dtypes
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _format_error(path: Path, reason: str) -> DatasetFormatError:
    """The error for a bad file: the message starts with the full path; ``value`` is the path."""
    return DatasetFormatError(f"{path}: {reason}", field="file", value=str(path))


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            return gzip.decompress(raw)
        return raw
    except (EOFError, OSError, zlib.error) as exc:  # truncated or corrupt gzip stream, unreadable file
        raise _format_error(path, f"cannot be read: {exc}") from exc


def read_idx(path: PathLike) -> np.ndarray:
    """Read one idx file (the MNIST format), optionally gzip-compressed (``.gz``).

    Parameters
    ----------
    path
        The file. Its header is checked: magic ``0x0000``, a known type code, and a size
        that matches the dimensions exactly.

    Returns
    -------
    numpy.ndarray
        The array in native byte order, with the dimensions of the header.

    Raises
    ------
    DatasetFormatError
        The file is truncated, has trailing bytes, or is not an idx file (``err.value`` is
        the path).
    """
    p = Path(path)
    data = _read_bytes(p)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise _format_error(p, f"not an idx file (magic bytes {data[:4].hex() or 'missing'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise _format_error(p, f"truncated idx header ({len(data)} bytes, {ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise _format_error(p, f"{what}: {len(data)} bytes, the header {dims} needs {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an idx file (gzip-compressed if ``path`` ends in ``.gz``).

    Supported dtypes: uint8, int8, int16, int32, float32, float64.
    """
    arr = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_TYPES.items()}
    native = arr.dtype.newbyteorder("=")
    if native not in codes or not 1 <= arr.ndim <= 255:
        raise invalid(InputError, "array", f"{arr.dtype} array of {arr.ndim} dimensions", "not storable as idx")
    header = bytes([0, 0, codes[native], arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    body = header + arr.astype(np.dtype(_IDX_TYPES[codes[native]])).tobytes()
    p = Path(path)
    p.write_bytes(gzip.compress(body, mtime=0) if p.suffix == ".gz" else body)


def _debian_dir() -> Path | None:
    """The package's folder, from ``dpkg -L`` when dpkg knows the package, else the known path."""
    if shutil.which("dpkg"):
        try:
            listing = subprocess.run(
                ["dpkg", "-L", DEBIAN_PACKAGE], capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            listing = ""
        for line in listing.splitlines():
            if line.endswith("train-images-idx3-ubyte.gz"):
                return Path(line).parent
    return DEBIAN_DIR


def _files_in(folder: Path, train: bool) -> tuple[Path, Path] | None:
    prefix = SPLITS[train][0]
    found = []
    for kind in ("images-idx3", "labels-idx1"):
        stem = folder / f"{prefix}-{kind}-ubyte"
        hit = next((c for c in (stem, stem.with_name(stem.name + ".gz")) if c.is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found[0], found[1]


def find_fashion_mnist(root: PathLike | None = None, train: bool = True) -> tuple[Path, Path]:
    """Locate the image and label files of one split.

    Parameters
    ----------
    root
        A folder holding the files, or a folder with a ``fashion-mnist`` subfolder holding
        them. If ``None``: ``$ASYNCSNN_DATA/fashion-mnist``, then the Debian package's folder.
    train
        The 60,000-sample training split (``train-*``) or the 10,000-sample test split (``t10k-*``).

    Returns
    -------
    images_path, labels_path

    Raises
    ------
    DatasetNotFoundError
        Naming the folders searched and the ``apt-get install`` command.
    """
    if root is not None:
        candidates = [Path(root), Path(root) / "fashion-mnist"]
    else:
        candidates = []
        if os.environ.get(ENV_VAR):
            candidates.append(Path(os.environ[ENV_VAR]) / "fashion-mnist")
        deb = _debian_dir()
        if deb is not None:
            candidates.append(deb)
    for folder in candidates:
        files = _files_in(folder, train)
        if files is not None:
            return files
    prefix = SPLITS[train][0]
    raise invalid(
        DatasetNotFoundError,
        "root",
        None if root is None else str(root),
        f"no Fashion-MNIST {prefix}-images-idx3-ubyte[.gz] / {prefix}-labels-idx1-ubyte[.gz] in "
        + ", ".join(str(c) for c in candidates)
        + f"; install them with `apt-get install {DEBIAN_PACKAGE}` (Debian/Ubuntu), or put the original idx files"
        f" in ${ENV_VAR}/fashion-mnist or pass root=",
    )


def load_fashion_mnist(root: PathLike | None = None, train: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of Fashion-MNIST from its original idx files (see :func:`find_fashion_mnist`).

    Parameters
    ----------
    root
        Folder of the files; ``None`` searches ``$ASYNCSNN_DATA/fashion-mnist`` and the Debian package.
    train
        Training split (60,000 samples) or test split (10,000 samples).

    Returns
    -------
    images : numpy.ndarray
        uint8 ``[n, 28, 28]``, 0 = background, 255 = full intensity.
    labels : numpy.ndarray
        int64 ``[n]``, classes 0..9 (names in :data:`CLASSES`).

    Raises
    ------
    DatasetNotFoundError
        The files are not there.
    DatasetFormatError
        A file is truncated or corrupt, or images and labels disagree (names the file).
    """
    images_path, labels_path = find_fashion_mnist(root, train)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise _format_error(
            images_path,
            f"expected uint8 [n, 28, 28] images, got {images.dtype} {images.shape}",
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise _format_error(
            labels_path,
            f"expected uint8 [n] labels, got {labels.dtype} {labels.shape}",
        )
    if len(labels) != len(images):
        raise _format_error(labels_path, f"{len(labels)} labels for {len(images)} images")
    if labels.size and labels.max() > 9:
        raise _format_error(labels_path, f"label {int(labels.max())} is not in 0..9")
    return images, labels.astype(np.int64)


def fashion_mnist_frames(
    images: np.ndarray,
    timesteps: int = 20,
    *,
    encoding: Literal["rate", "latency"] = "rate",
    seed: int = 0,
    pad_to: int | None = 32,
) -> np.ndarray:
    """Encode images as spike frames for a one-channel CNN (the paper's grayscale CIFAR-10 pipeline).

    Parameters
    ----------
    images
        uint8 ``[n, 28, 28]`` (0..255).
    timesteps
        Number of frames ``T`` (the paper: 20 for CIFAR-10).
    encoding
        ``"rate"``: Bernoulli spikes with probability ``pixel / 255`` per frame (as
        ``snntorch.spikegen.rate``); ``"latency"``: one spike per non-zero pixel, brighter first.
    seed
        Seed of the rate code.
    pad_to
        Zero-pad the images symmetrically to ``pad_to`` x ``pad_to`` (32: CIFAR-10's size);
        ``None`` keeps 28 x 28.

    Returns
    -------
    numpy.ndarray
        float32 0/1 frames ``[n, T, 1, H, W]``. Memory: ``n * T * H * W * 4`` bytes (5 GB for
        all 60,000 training images at T = 20, 32 x 32), so encode in batches.
    """
    arr = np.asarray(images)
    if arr.ndim != 3 or arr.dtype != np.uint8:
        raise invalid(InputError, "images", f"{arr.dtype} array of shape {arr.shape}", "need uint8 [n, H, W]")
    if pad_to is not None:
        if isinstance(pad_to, bool) or not isinstance(pad_to, int) or pad_to < max(arr.shape[1:]):
            raise invalid(ParameterError, "pad_to", pad_to, f"must be an int >= {max(arr.shape[1:])} or None")
        top = (pad_to - arr.shape[1]) // 2
        left = (pad_to - arr.shape[2]) // 2
        padded = np.zeros((arr.shape[0], pad_to, pad_to), dtype=np.uint8)
        padded[:, top : top + arr.shape[1], left : left + arr.shape[2]] = arr
        arr = padded
    x = arr[:, None].astype(np.float32) / np.float32(255)
    if encoding == "rate":
        return rate_encode(x, timesteps=timesteps, seed=seed)
    if encoding == "latency":
        return latency_encode(x, timesteps=timesteps)
    raise invalid(ParameterError, "encoding", encoding, 'must be "rate" or "latency"')
