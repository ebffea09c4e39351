"""Datasets and spike encoders.

The default dataset is embedded: the UCI 8x8 handwritten digits (1797 samples, CC BY
4.0, see ``DIGITS_LICENSE.txt``), with a fixed train/test split and three encoders.

Other datasets (nothing is ever downloaded):

* :mod:`asyncsnn.data.fashion_mnist`: Fashion-MNIST from its original idx files (Debian
  package ``dataset-fashion-mnist``), rate/latency frames padded to 32x32.
* :mod:`asyncsnn.data.saccades`: N-MNIST-like event-camera emulation of any images
  (three saccades, DVS pixel model), binned into ``[T, 2, 34, 34]`` frames.
* :mod:`asyncsnn.data.randman`: the Randman spike-timing task (generated, seeded).
* :mod:`asyncsnn.data.tonic_datasets`: N-MNIST, SHD and DVS Gesture through the real
  ``tonic`` loaders (optional extra ``asyncsnn[tonic]``), and writers of their original
  file formats.
* :mod:`asyncsnn.data.events`: exact binning of event streams into dense or sparse engine inputs.

Examples
--------
>>> from asyncsnn.data import digits_split, encode
>>> train_x, train_y, test_x, test_y = digits_split()
>>> train_x.shape, test_x.shape
((1438, 8, 8), (359, 8, 8))
>>> encode(train_x[:2], "rate", timesteps=5, seed=0).shape
(2, 5, 1, 8, 8)
"""

from asyncsnn.data.digits import digits_split, encode, load_digits
from asyncsnn.data.encoding import latency_encode, rate_encode, row_scan_encode
from asyncsnn.data.errors import DatasetFormatError, DatasetNotFoundError, MissingDependencyError
from asyncsnn.data.events import EVENT_DTYPE, bin_events, events_to_sparse, pad_frames
from asyncsnn.data.fashion_mnist import fashion_mnist_frames, load_fashion_mnist
from asyncsnn.data.randman import make_randman, randman_spike_times
from asyncsnn.data.saccades import emulate_saccades, saccade_frames
from asyncsnn.data.tonic_datasets import (
    EventFrames,
    export_dvsgesture,
    export_nmnist,
    export_shd,
    load_dvsgesture,
    load_nmnist,
    load_shd,
)

__all__ = [
    "EVENT_DTYPE",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "EventFrames",
    "MissingDependencyError",
    "bin_events",
    "digits_split",
    "emulate_saccades",
    "encode",
    "events_to_sparse",
    "export_dvsgesture",
    "export_nmnist",
    "export_shd",
    "fashion_mnist_frames",
    "latency_encode",
    "load_digits",
    "load_dvsgesture",
    "load_fashion_mnist",
    "load_nmnist",
    "load_shd",
    "make_randman",
    "pad_frames",
    "randman_spike_times",
    "rate_encode",
    "row_scan_encode",
    "saccade_frames",
]
