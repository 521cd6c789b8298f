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
