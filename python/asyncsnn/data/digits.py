"""The embedded UCI 8x8 handwritten digits and their fixed train/test split."""

from __future__ import annotations

import gzip
from importlib import resources
from typing import Literal

import numpy as np

from asyncsnn.data.encoding import latency_encode, rate_encode, row_scan_encode
from asyncsnn.exceptions import ParameterError, invalid

__all__ = ["digits_split", "encode", "load_digits"]

N_SAMPLES = 1797
SPLIT_SEED = 20240809


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits.

    Returns
    -------
    images : numpy.ndarray
        uint8 ``[1797, 8, 8]``, pixel values 0..16.
    labels : numpy.ndarray
        int64 ``[1797]``, classes 0..9.

    Examples
    --------
    >>> images, labels = load_digits()
    >>> images.shape, int(images.max()), sorted(set(labels.tolist())) == list(range(10))
    ((1797, 8, 8), 16, True)
    """
    raw = resources.files("asyncsnn.data").joinpath("digits.csv.gz").read_bytes()
    table = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",", dtype=np.int64)
    if table.shape != (N_SAMPLES, 65):
        raise RuntimeError(f"embedded digits file is corrupted: table of shape {table.shape}")
    return table[:, :64].reshape(-1, 8, 8).astype(np.uint8), table[:, 64].astype(np.int64)


def digits_split(test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The fixed, stratified train/test split (the same on every machine).

    Parameters
    ----------
    test_fraction
        Fraction of each class held out for testing (default 0.2: 1438 train / 359 test).

    Returns
    -------
    train_images, train_labels, test_images, test_labels
        Images uint8 ``[n, 8, 8]`` and labels int64 ``[n]``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise invalid(ParameterError, "test_fraction", test_fraction, "must be in (0, 1)")
    images, labels = load_digits()
    rng = np.random.default_rng(SPLIT_SEED)
    test_idx: list[int] = []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        test_idx.extend(idx[: round(len(idx) * test_fraction)].tolist())
    test_mask = np.zeros(len(labels), dtype=bool)
    test_mask[test_idx] = True
    train = np.flatnonzero(~test_mask)
    test = np.flatnonzero(test_mask)
    return images[train], labels[train], images[test], labels[test]


def encode(
    images: np.ndarray,
    encoding: Literal["rate", "latency", "row_scan"] = "rate",
    timesteps: int = 20,
    seed: int = 0,
) -> np.ndarray:
    """Encode digit images as spike frames.

    Parameters
    ----------
    images
        uint8 ``[n, 8, 8]`` pixel values 0..16.
    encoding
        ``"rate"`` (Bernoulli, ``[n, T, 1, 8, 8]``), ``"latency"`` (one spike per pixel,
        brighter first, ``[n, T, 1, 8, 8]``) or ``"row_scan"`` (one row per timestep,
        ``[n, 8, 8]`` counts: a purely temporal task; ``timesteps`` is ignored).
    timesteps
        Number of frames ``T`` for rate and latency codes.
    seed
        Seed of the rate code's generator.

    Returns
    -------
    numpy.ndarray
        float32 frames ``[n, T, *input_shape]``.
    """
    x = images.astype(np.float32) / 16.0
    if encoding == "rate":
        return rate_encode(x[:, None], timesteps=timesteps, seed=seed)
    if encoding == "latency":
        return latency_encode(x[:, None], timesteps=timesteps)
    if encoding == "row_scan":
        return row_scan_encode(x)
    raise invalid(ParameterError, "encoding", encoding, 'must be "rate", "latency" or "row_scan"')
