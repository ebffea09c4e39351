"""Datasets and spike encoders.

The default dataset is embedded: the UCI 8x8 handwritten digits (1797 samples, CC BY
4.0, see ``DIGITS_LICENSE.txt``), with a fixed train/test split and three encoders.

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

__all__ = ["digits_split", "encode", "latency_encode", "load_digits", "rate_encode", "row_scan_encode"]
