"""MNIST from its IDX files (gzip, big-endian headers), no torchvision."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .root import (DatasetNotFoundError, PathLike, not_found_message,
                   resolve_data_root)

#: The IDX files tried, in order: the test set (which ../shared/data holds)
#: and the training set.
MNIST_FILES = (("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
               ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"))


def read_idx(path: Path) -> Tensor:
    """Read one IDX file (optionally gzip-compressed) as a uint8 tensor."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise ValueError(f"{path}: only unsigned-byte IDX files are "
                         f"supported (got type code {dtype_code:#x})")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = raw[4 + 4 * ndim:]
    expected = 1
    for s in shape:
        expected *= s
    if len(data) != expected:
        raise ValueError(f"{path}: header says {expected} values, file has "
                         f"{len(data)}")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(*shape)


def _idx_files(data_root: Optional[PathLike]) -> Tuple[Path, Path]:
    """The first pair of :data:`MNIST_FILES` present under
    ``<root>/MNIST/raw``, or the offline error that names them."""
    root = resolve_data_root(data_root)
    raw = root / "MNIST" / "raw"
    for images_name, labels_name in MNIST_FILES:
        if (raw / images_name).is_file() and (raw / labels_name).is_file():
            return raw / images_name, raw / labels_name
    raise DatasetNotFoundError(not_found_message(
        "MNIST", raw, list(MNIST_FILES[0]),
        "MNIST is never downloaded by this package."))


def load_mnist(data_root: Optional[PathLike] = None) -> Tuple[Tensor, Tensor]:
    """Every image of the MNIST file found (the test set's 10,000 where
    ``../shared/data`` has it) as ``[N, 784]`` floats in [0, 1], and the
    labels ``[N]``; same data root rules and offline error as the other
    datasets."""
    images_path, labels_path = _idx_files(data_root)
    images, labels = read_idx(images_path), read_idx(labels_path)
    return images.reshape(images.size(0), -1).float() / 255.0, \
        labels.long()


def load_digit_patterns(data_root: Optional[PathLike] = None,
                        size: int = 28) -> Tuple[Tensor, Tensor]:
    """The first image of each digit 0-9, binarised, as ``[10, size*size]``.

    Reads ``<root>/MNIST/raw/`` (the test set, else the training set).
    ``size < 28`` average-pools the images before binarising (pixel > 0
    at full size, mean > 0.25 after pooling). Returns the patterns (0/1
    floats) and their digit labels.
    """
    if not 1 <= size <= 28:
        raise ValueError(f"'size' must be in [1, 28] (got {size})")
    images_path, labels_path = _idx_files(data_root)
    images, labels = read_idx(images_path), read_idx(labels_path)
    first = torch.tensor([int((labels == d).nonzero()[0]) for d in range(10)])
    pics = images[first].float() / 255.0
    if size < 28:
        pics = F.adaptive_avg_pool2d(pics.unsqueeze(1), size).squeeze(1)
        patterns = (pics > 0.25).float()
    else:
        patterns = (pics > 0).float()
    return patterns.reshape(10, size * size), labels[first].long()
