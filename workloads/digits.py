"""The default dataset: scikit-learn's bundled 8x8 digits as normalised 32x32 images.

Nothing is downloaded: the 1797 images ship with scikit-learn. Each image is
scaled to [0, 1], upsampled bilinearly to 32x32 (one channel, float32) and
normalised with the mean and standard deviation of the training pool's pixels.
A fixed, stratified 20 % (seed 0) is held out as the server's test set; the
rest is the training pool that :func:`partition` shares out among nodes.

Every Flower client process is fresh, so the build is kept cheap: the CSV is
read straight from scikit-learn's package data (importing
``sklearn.datasets`` alone takes about a second) and the processed arrays are
cached in-process.
"""

from __future__ import annotations

import gzip
import importlib.util
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812

IMAGE_SIZE = 32
NUM_CLASSES = 10
TEST_FRACTION = 0.2
TEST_SPLIT_SEED = 0
# Raw digits pixels are counts of set pixels in a 4x4 block: integers 0..16.
_RAW_MAX = 16.0
# A Dirichlet split is redrawn until every node holds at least this many
# samples (or the pool's even share, if smaller), like flwr-datasets' default.
_MIN_DIRICHLET_SHARE = 10
_MAX_DIRICHLET_DRAWS = 100

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class DigitsPartition:
    """One node's share of the training pool, split into local train and validation.

    ``x_*`` are float32 tensors ``(N, 1, 32, 32)``; ``y_*`` are int64 labels ``(N,)``.
    """

    partition_id: int
    num_partitions: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor

    def __post_init__(self) -> None:
        for split in ("train", "val"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 4 or tuple(x.shape[1:]) != (1, IMAGE_SIZE, IMAGE_SIZE):
                raise ValueError(
                    f"x_{split} must have shape (N, 1, {IMAGE_SIZE}, {IMAGE_SIZE}),"
                    f" got {tuple(x.shape)}"
                )
            if y.shape != (x.shape[0],):
                raise ValueError(
                    f"y_{split} must have shape ({x.shape[0]},) to match x_{split},"
                    f" got {tuple(y.shape)}"
                )
        if len(self.y_train) == 0:
            raise ValueError(
                f"partition {self.partition_id} of {self.num_partitions} has no"
                " training samples; use fewer partitions or more samples per node"
            )

    @property
    def num_train(self) -> int:
        """Number of local training samples."""
        return len(self.y_train)

    @property
    def num_val(self) -> int:
        """Number of local validation samples."""
        return len(self.y_val)


def _digits_csv() -> Path | None:
    # find_spec locates the package without importing it (and scipy with it).
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


def _load_raw() -> tuple[npt.NDArray[np.float64], IntArray]:
    """Return the 1797 raw digits as (N, 64) pixels 0..16 and (N,) labels."""
    path = _digits_csv()
    if path is None:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return np.asarray(bunch.data, np.float64), np.asarray(bunch.target, np.int64)
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)


def stratified_test_indices(
    labels: IntArray, fraction: float, seed: int
) -> npt.NDArray[np.bool_]:
    """Mark ``round(fraction * n_c)`` random samples of every class ``c`` as test."""
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        is_test[members[: round(fraction * len(members))]] = True
    return is_test


def _upsample(pixels: npt.NDArray[np.float64]) -> FloatArray:
    images = torch.from_numpy((pixels / _RAW_MAX).astype(np.float32))
    images = images.reshape(-1, 1, 8, 8)
    big = F.interpolate(
        images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False
    )
    return big.numpy()


@lru_cache(maxsize=1)
def _arrays() -> tuple[FloatArray, IntArray, FloatArray, IntArray]:
    """Build (pool x, pool y, test x, test y) once per process; arrays are read-only."""
    pixels, labels = _load_raw()
    images = _upsample(pixels)
    is_test = stratified_test_indices(labels, TEST_FRACTION, TEST_SPLIT_SEED)
    pool_x, pool_y = images[~is_test], labels[~is_test]
    mean, std = float(pool_x.mean()), float(pool_x.std())
    test_x, test_y = images[is_test], labels[is_test]
    pool_x = ((pool_x - mean) / std).astype(np.float32)
    test_x = ((test_x - mean) / std).astype(np.float32)
    for array in (pool_x, pool_y, test_x, test_y):
        array.flags.writeable = False
    return pool_x, pool_y, test_x, test_y


def pool_size() -> int:
    """Return the number of samples in the training pool that partitions share."""
    return len(_arrays()[1])


def test_set() -> tuple[torch.Tensor, torch.Tensor]:
    """Return the server-side test set: images ``(N, 1, 32, 32)``, labels ``(N,)``."""
    _, _, test_x, test_y = _arrays()
    return torch.from_numpy(test_x.copy()), torch.from_numpy(test_y.copy())


def _iid_shares(size: int, num_partitions: int, seed: int) -> list[IntArray]:
    order = np.random.default_rng(seed).permutation(size)
    return [np.asarray(s, np.int64) for s in np.array_split(order, num_partitions)]


def _dirichlet_shares(
    labels: IntArray, num_partitions: int, alpha: float, seed: int
) -> list[IntArray]:
    rng = np.random.default_rng(seed)
    min_share = min(_MIN_DIRICHLET_SHARE, len(labels) // num_partitions)
    for _ in range(_MAX_DIRICHLET_DRAWS):
        shares: list[list[int]] = [[] for _ in range(num_partitions)]
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            proportions = rng.dirichlet(np.full(num_partitions, alpha))
            cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(int)
            for node, chunk in enumerate(np.split(members, cuts)):
                shares[node].extend(chunk.tolist())
        if min(len(s) for s in shares) >= min_share:
            return [rng.permutation(np.asarray(s, np.int64)) for s in shares]
    raise ValueError(
        f"could not draw a Dirichlet(alpha={alpha}) split giving each of"
        f" {num_partitions} nodes at least {min_share} samples in"
        f" {_MAX_DIRICHLET_DRAWS} draws; raise dirichlet_alpha or lower num_partitions"
    )


@lru_cache(maxsize=8)
def _shares(
    num_partitions: int, seed: int, dirichlet_alpha: float | None
) -> tuple[IntArray, ...]:
    labels = _arrays()[1]
    if dirichlet_alpha is None:
        return tuple(_iid_shares(len(labels), num_partitions, seed))
    return tuple(_dirichlet_shares(labels, num_partitions, dirichlet_alpha, seed))


def _check_partition_args(
    partition_id: int,
    num_partitions: int,
    samples_per_node: int | None,
    dirichlet_alpha: float | None,
    validation_fraction: float,
) -> None:
    if num_partitions < 1:
        raise ValueError(f"num_partitions must be >= 1, got {num_partitions!r}")
    if not 0 <= partition_id < num_partitions:
        raise ValueError(
            f"partition_id must be in [0, {num_partitions}), got {partition_id!r}"
        )
    if samples_per_node is not None and samples_per_node < 1:
        raise ValueError(f"samples_per_node must be >= 1, got {samples_per_node!r}")
    if dirichlet_alpha is not None and not dirichlet_alpha > 0:
        raise ValueError(f"dirichlet_alpha must be > 0, got {dirichlet_alpha!r}")
    if not 0 <= validation_fraction < 1:
        raise ValueError(
            f"validation_fraction must be in [0, 1), got {validation_fraction!r}"
        )
    if num_partitions > pool_size():
        raise ValueError(
            f"num_partitions={num_partitions} exceeds the training pool of"
            f" {pool_size()} samples; use at most {pool_size()} partitions"
        )


def partition(
    partition_id: int,
    num_partitions: int,
    samples_per_node: int | None = None,
    seed: int = 0,
    *,
    dirichlet_alpha: float | None = None,
    validation_fraction: float = 0.2,
    strict: bool = False,
) -> DigitsPartition:
    """Return node ``partition_id``'s share of the training pool.

    The pool is split into ``num_partitions`` disjoint shares, evenly at random
    (IID) or, with ``dirichlet_alpha``, with each class spread over the nodes by
    Dirichlet(alpha) proportions (label skew; smaller alpha, stronger skew).
    Every node computes the same split from ``seed``, so node processes agree
    without talking. ``samples_per_node`` keeps only the first that many
    samples of the share; if the share holds fewer, the node gets the whole
    share (with a warning) or, with ``strict``, a ``ValueError``. The last
    ``validation_fraction`` of what is kept becomes the local validation split.
    """
    _check_partition_args(
        partition_id,
        num_partitions,
        samples_per_node,
        dirichlet_alpha,
        validation_fraction,
    )
    share = _shares(num_partitions, seed, dirichlet_alpha)[partition_id]
    if samples_per_node is not None:
        if samples_per_node > len(share):
            message = (
                f"partition {partition_id}: asked for {samples_per_node} samples per"
                f" node but its share holds {len(share)} (training pool of"
                f" {pool_size()} split {num_partitions} ways); lower samples_per_node"
                " or num_partitions"
            )
            if strict:
                raise ValueError(message)
            warnings.warn(message + "; using the whole share", stacklevel=2)
        share = share[:samples_per_node]
    num_val = int(len(share) * validation_fraction)
    train_idx, val_idx = share[: len(share) - num_val], share[len(share) - num_val :]
    pool_x, pool_y, _, _ = _arrays()
    return DigitsPartition(
        partition_id=partition_id,
        num_partitions=num_partitions,
        x_train=torch.from_numpy(pool_x[train_idx]),
        y_train=torch.from_numpy(pool_y[train_idx]),
        x_val=torch.from_numpy(pool_x[val_idx]),
        y_val=torch.from_numpy(pool_y[val_idx]),
    )
