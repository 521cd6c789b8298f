"""Strategy settings a campaign sets, typed and checked without Flower or torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# How HeteroFL picks a sub-model's channels (strategies/heterofl.py).
ExtractionMode = Literal["static", "random", "rolling"]
EXTRACTION_MODES: tuple[ExtractionMode, ...] = ("static", "random", "rolling")


@dataclass(frozen=True)
class FedBuffConfig:
    """FedBuff's parameters (defaults: FLSim's FedBuff, staleness exponent 0.5).

    Parameters
    ----------
    concurrency
        Clients kept training at once (C).
    buffer_size
        Updates per server step (K).
    staleness_exponent
        ``a`` in ``1 / (1 + tau) ** a``; 0 turns staleness weighting off.
    max_staleness
        Updates with ``tau`` above this are dropped; ``None`` keeps all.
    server_learning_rate
        ``eta_g``.
    server_momentum
        ``beta``; 0 is plain server SGD.
    weight_by_examples
        Also weight by each client's example count (see the module docstring).
    """

    concurrency: int = 10
    buffer_size: int = 10
    staleness_exponent: float = 0.5
    max_staleness: int | None = None
    server_learning_rate: float = 0.7
    server_momentum: float = 0.9
    weight_by_examples: bool = False

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency!r}")
        if self.buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {self.buffer_size!r}")
        if self.staleness_exponent < 0:
            raise ValueError(
                f"staleness_exponent must be >= 0, got {self.staleness_exponent!r}"
            )
        if self.max_staleness is not None and self.max_staleness < 0:
            raise ValueError(
                f"max_staleness must be >= 0 or None, got {self.max_staleness!r}"
            )
        if not self.server_learning_rate > 0:
            raise ValueError(
                f"server_learning_rate must be > 0, got {self.server_learning_rate!r}"
            )
        if not 0 <= self.server_momentum < 1:
            raise ValueError(
                f"server_momentum must be in [0, 1), got {self.server_momentum!r}"
            )


# Who pseudo-labels a FedLabel client's unlabelled samples (strategies/fedlabel.py):
# the more confident of its local and the global model, the global model only
# (FixMatch with the global model as teacher), or nobody (labels only).
Teacher = Literal["fedlabel", "global", "none"]
TEACHERS: tuple[Teacher, ...] = ("fedlabel", "global", "none")


@dataclass(frozen=True)
class FedLabelConfig:
    """A FedLabel client's parameters (Cho et al., ICCV 2023; values are ours).

    Parameters
    ----------
    teacher
        ``fedlabel``, ``global`` or ``none`` (see :data:`TEACHERS`).
    label_fraction
        Share of the node's training samples whose labels it may use (at least one).
    threshold
        Confidence a pseudo-label needs (max softmax probability).
    unlabelled_weight
        Weight of the pseudo-label loss beside the supervised loss.
    consistency_weight
        Weight of the global-local consistency term (KL where both models agree).
    """

    teacher: Teacher = "fedlabel"
    label_fraction: float = 0.1
    threshold: float = 0.9
    unlabelled_weight: float = 1.0
    consistency_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.teacher not in TEACHERS:
            raise ValueError(
                f"teacher must be one of {', '.join(TEACHERS)}, got {self.teacher!r}"
            )
        if not 0 < self.label_fraction <= 1:
            raise ValueError(
                f"label_fraction must be in (0, 1], got {self.label_fraction!r}"
            )
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold!r}")
        if self.unlabelled_weight < 0 or self.consistency_weight < 0:
            raise ValueError(
                "unlabelled_weight and consistency_weight must be >= 0, got"
                f" {self.unlabelled_weight!r} and {self.consistency_weight!r}"
            )


# How a ProWD server merges updates of different bitwidths (strategies/prowd.py).
BitwidthAggregation = Literal["prowd", "grouped", "naive"]
BITWIDTH_AGGREGATIONS: tuple[BitwidthAggregation, ...] = ("prowd", "grouped", "naive")
# 32 means full precision (no quantisation); below, uniform symmetric levels.
FULL_PRECISION = 32
MIN_BITWIDTH = 2
MAX_QUANTISED_BITWIDTH = 16


@dataclass(frozen=True)
class ProWDConfig:
    """A ProWD server's parameters (Yoon et al., ICML 2022; values are ours).

    Parameters
    ----------
    bitwidths
        Bitwidths handed to the nodes in node-id order, cyclically (32 = full
        precision, otherwise 2..16 bits).
    aggregation
        ``prowd`` (dequantise, then aggregate what is compatible), ``grouped``
        (one model per bitwidth) or ``naive`` (average everything).
    compatibility
        A low-bit group's dequantised update of a tensor is averaged in only if
        its cosine similarity with the full-precision group's update is at least this.
    dequantizer_steps
        Adam steps per round for each stage of the dequantiser.
    dequantizer_lr
        The dequantiser's Adam learning rate.
    seed
        Seeds the dequantiser's initial weights.
    """

    bitwidths: tuple[int, ...] = (32, 4, 2)
    aggregation: BitwidthAggregation = "prowd"
    compatibility: float = 0.0
    dequantizer_steps: int = 100
    dequantizer_lr: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.bitwidths or any(
            b != FULL_PRECISION and not MIN_BITWIDTH <= b <= MAX_QUANTISED_BITWIDTH
            for b in self.bitwidths
        ):
            raise ValueError(
                f"bitwidths must be one or more of 2..{MAX_QUANTISED_BITWIDTH} or"
                f" {FULL_PRECISION} (full precision), got {self.bitwidths!r}"
            )
        if self.aggregation not in BITWIDTH_AGGREGATIONS:
            raise ValueError(
                f"aggregation must be one of {', '.join(BITWIDTH_AGGREGATIONS)},"
                f" got {self.aggregation!r}"
            )
        if not -1 <= self.compatibility <= 1:
            raise ValueError(
                f"compatibility must be a cosine in [-1, 1], got {self.compatibility!r}"
            )
        if self.dequantizer_steps < 0 or not self.dequantizer_lr > 0:
            raise ValueError(
                "dequantizer_steps must be >= 0 and dequantizer_lr > 0, got"
                f" {self.dequantizer_steps!r} and {self.dequantizer_lr!r}"
            )
