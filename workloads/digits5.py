"""Digits-5-lite: five feature-shifted domains of scikit-learn's digits, one per client.

A small stand-in for the Digits-5 benchmark of FedBN and FedWon (MNIST, SVHN,
USPS, SynthDigits, MNIST-M: same ten labels, different appearance), built from
the 1797 bundled digits so nothing is downloaded. The images are dealt,
class by class, into five disjoint shards (seed 0), one per domain, so no two
domains share a digit image. Each shard is upsampled to 32x32 (bilinear,
values in [0, 1], white digit on black) and transformed by its domain's fixed
transform into a 3-channel image:

=====  ===============  ==============================================================
index  domain           transform
=====  ===============  ==============================================================
0      ``grey``         none (the grey digit copied to R, G and B)
1      ``inverted``     ``1 - x``: black digit on white
2      ``rotated``      rotated 40 degrees anticlockwise about the centre (bilinear)
3      ``blur-noise``   Gaussian blur (sigma 1.2 px) then Gaussian noise (std 0.25,
                        seed 3), clipped to [0, 1]
4      ``coloured``     per image a random background colour ``b`` (uniform RGB,
                        seed 4) and digit colour ``(b + 0.5) mod 1``
=====  ===============  ==============================================================

Every domain is then normalised the same way, ``(x - 0.5) / 0.5``, so the
shift between domains is left in the data. A stratified 20 % of each shard
(seed 0) is that domain's test set; the rest is its training pool. Node
``partition-id`` ``p`` holds domain ``p mod 5``; nodes sharing a domain split
its training pool evenly and all evaluate on the whole domain test set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from workloads.digits import IMAGE_SIZE, stratified_test_indices
from workloads.digits import _load_raw as load_raw_digits

DOMAINS: tuple[str, ...] = ("grey", "inverted", "rotated", "blur-noise", "coloured")
CHANNELS = 3
SPLIT_SEED = 0
TEST_FRACTION = 0.2
ROTATION_DEG = 40.0
BLUR_SIGMA_PX = 1.2
NOISE_STD = 0.25
_RAW_MAX = 16.0


@dataclass(frozen=True, eq=False)
class DomainData:
    """One node's data: its domain's name, local training set and the domain test set.

    ``x_*`` are float32 tensors ``(N, 3, 32, 32)``, ``y_*`` int64 labels ``(N,)``.
    """

    domain: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if tuple(x.shape[1:]) != (CHANNELS, IMAGE_SIZE, IMAGE_SIZE):
                raise ValueError(
                    f"{self.domain}: x_{split} must be (N, 3, 32, 32),"
                    f" got {tuple(x.shape)}"
                )
            if y.shape != (x.shape[0],) or len(y) == 0:
                raise ValueError(
                    f"{self.domain}: y_{split} must be ({x.shape[0]},) and non-empty,"
                    f" got {tuple(y.shape)}"
                )


def _shard_of_each_image(labels: np.ndarray) -> np.ndarray:
    """Deal each class's images round-robin (in a seeded order) into the domains."""
    rng = np.random.default_rng(SPLIT_SEED)
    shard = np.empty(len(labels), np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        shard[members] = np.arange(len(members)) % len(DOMAINS)
    return shard


def _rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", align_corners=False)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = math.ceil(3 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    x = F.conv2d(
        F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1)
    )
    return F.conv2d(
        F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1)
    )


def transform(domain: int, grey: torch.Tensor) -> torch.Tensor:
    """Domain ``domain``'s transform of grey images ``(N, 1, 32, 32)`` in [0, 1].

    Returns ``(N, 3, 32, 32)`` in [0, 1], before normalisation.
    """
    name = DOMAINS[domain]
    if name == "grey":
        out = grey
    elif name == "inverted":
        out = 1.0 - grey
    elif name == "rotated":
        out = _rotate(grey, ROTATION_DEG)
    elif name == "blur-noise":
        generator = torch.Generator().manual_seed(domain)
        noise = torch.randn(grey.shape, generator=generator) * NOISE_STD
        out = (_blur(grey, BLUR_SIGMA_PX) + noise).clamp(0.0, 1.0)
    else:  # coloured
        generator = torch.Generator().manual_seed(domain)
        background = torch.rand(len(grey), 3, 1, 1, generator=generator)
        foreground = (background + 0.5) % 1.0
        return background * (1.0 - grey) + foreground * grey
    return out.expand(-1, CHANNELS, -1, -1).contiguous()


@lru_cache(maxsize=len(DOMAINS))
def domain_data(domain: int) -> DomainData:
    """The whole training pool and test set of domain ``domain`` (0..4)."""
    if not 0 <= domain < len(DOMAINS):
        raise ValueError(f"domain must be in [0, {len(DOMAINS)}), got {domain!r}")
    pixels, labels = load_raw_digits()
    mine = _shard_of_each_image(labels) == domain
    grey = torch.from_numpy((pixels[mine] / _RAW_MAX).astype(np.float32))
    grey = F.interpolate(
        grey.reshape(-1, 1, 8, 8), size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear"
    )
    images = (transform(domain, grey) - 0.5) / 0.5
    y = torch.from_numpy(labels[mine])
    is_test = torch.from_numpy(
        stratified_test_indices(labels[mine], TEST_FRACTION, SPLIT_SEED)
    )
    return DomainData(
        DOMAINS[domain], images[~is_test], y[~is_test], images[is_test], y[is_test]
    )


def node_data(
    partition_id: int,
    num_partitions: int,
    samples_per_node: int | None = None,
    seed: int = 0,
) -> DomainData:
    """Node ``partition_id``'s data: domain ``partition_id mod 5``.

    The ``ceil``-many nodes on one domain share its training pool evenly (in an
    order drawn from ``seed``); ``samples_per_node`` keeps only the first that
    many of the node's share. Every node on a domain tests on its whole test set.
    """
    return node_share(
        domain_data, len(DOMAINS), partition_id, num_partitions, samples_per_node, seed
    )


def node_share(
    domains: Callable[[int], DomainData],
    num_domains: int,
    partition_id: int,
    num_partitions: int,
    samples_per_node: int | None = None,
    seed: int = 0,
) -> DomainData:
    """Node ``partition_id``'s share of domain ``partition_id mod num_domains``.

    ``domains(d)`` gives domain ``d``'s whole data. See :func:`node_data`.
    """
    if not 0 <= partition_id < num_partitions:
        raise ValueError(
            f"partition_id must be in [0, {num_partitions}), got {partition_id!r}"
        )
    if samples_per_node is not None and samples_per_node < 1:
        raise ValueError(f"samples_per_node must be >= 1, got {samples_per_node!r}")
    domain = partition_id % num_domains
    data = domains(domain)
    siblings = [p for p in range(num_partitions) if p % num_domains == domain]
    order = np.random.default_rng(seed).permutation(len(data.y_train))
    share = np.array_split(order, len(siblings))[siblings.index(partition_id)]
    share = share[:samples_per_node]
    index = torch.from_numpy(np.sort(share))
    return DomainData(
        data.domain,
        data.x_train[index],
        data.y_train[index],
        data.x_test,
        data.y_test,
    )
