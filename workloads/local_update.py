"""Local training with the strategy's optimiser (``train_with`` lives in training)."""

from __future__ import annotations

from workloads.training import train_with

__all__ = ["train_with"]
