"""Checks every network's configuration shares (input channels, classes)."""

from __future__ import annotations


def check_io(in_channels: int, num_classes: int) -> None:
    """Raise ValueError unless there is at least one input channel and two classes."""
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes!r}")
