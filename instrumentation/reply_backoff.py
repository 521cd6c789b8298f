"""The reply back-off lever: a short object back-off for the ServerApp's reply pulls.

Flower 1.42's ``HttpGrid.pull_messages`` fetches each reply's objects with
``pull_objects``, which sleeps 1 s, then 2, 4... up to 10 s whenever an object
is not there yet (a node makes its reply visible before it has uploaded the
objects). On a slow uplink the ServerApp then holds a finished reply for up to
the next sleep. With the lever on, :func:`reply_backoff` rebinds the name
``pull_objects`` in ``flwr.superlink.grid.http_grid`` (where the grid looks it
up; its defaults are bound at definition, so patching the constants does
nothing) to the same function with a 0.05 s back-off capped at 0.5 s
(docs/transfer-gaps.md, "Levers"), and restores it afterwards.

This is a Flower internal, so it is applied only on the tested release series;
on any other version it falls back to Flower's own back-off with a warning, and
the outcome is written to the ``app_start`` event (docs/events.md).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

# Run-config key the injected ServerApp reads (declared by testbed/campaign/app_bundle).
REPLY_BACKOFF_KEY = "flowerbed-reply-backoff"
INITIAL_BACKOFF_S = 0.05
BACKOFF_CAP_S = 0.5
# How the manifest lists the lever.
LEVER_LABEL = f"reply-backoff-{INITIAL_BACKOFF_S:g}-{BACKOFF_CAP_S:g}s"
# Release series whose http_grid/pull_objects were read ("1.42": 1.42.0, 1.42.1...).
TESTED_FLWR_SERIES: tuple[str, ...] = ("1.42",)
GRID_MODULE = "flwr.superlink.grid.http_grid"
PULL_MODULE = "flwr.supercore.inflatable.inflatable_utils"
_PULL_NAME = "pull_objects"
_BACKOFF_PARAMETERS = ("initial_backoff", "backoff_cap")
_RELEASE = re.compile(r"(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class BackoffOutcome:
    """Whether the short back-off is in force, and a sentence saying why (not)."""

    applied: bool
    reason: str

    def event_fields(self) -> dict[str, str]:
        """The ``app_start`` fields that record the outcome."""
        return {
            "reply_backoff": LEVER_LABEL if self.applied else "fallback",
            "reply_backoff_reason": self.reason,
        }


def backoff_supported(
    version: str, supported: Sequence[str] = TESTED_FLWR_SERIES
) -> tuple[bool, str]:
    """Whether Flower ``version`` may get the short back-off, and why (not)."""
    match = _RELEASE.fullmatch(version.strip())
    if match is None:
        return False, (
            f"flwr {version!r} is not a final release (X.Y.Z): the reply back-off "
            "patches a Flower internal and runs only on tested releases; "
            "keeping Flower's own back-off"
        )
    series = f"{match[1]}.{match[2]}"
    if series not in supported:
        return False, (
            f"flwr {version} is not in the tested series {', '.join(supported)}: "
            "the reply back-off patches a Flower internal; keeping Flower's own "
            "back-off"
        )
    return True, f"flwr {version} is in the tested series {series}"


def installed_flwr_version() -> str:
    """The version of the ``flwr`` distribution this Python would import."""
    return importlib.metadata.version("flwr")


def backoff_requested(run_config: Mapping[str, Any]) -> bool:
    """Whether the campaign turned the lever on (``flowerbed-reply-backoff``)."""
    value = run_config.get(REPLY_BACKOFF_KEY, False)
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _short_pull(grid: ModuleType, pulls: ModuleType) -> Callable[..., Any] | str:
    """The patched ``pull_objects``, or why this Flower has no place for it."""
    pull = getattr(pulls, _PULL_NAME, None)
    if not callable(pull) or not hasattr(grid, _PULL_NAME):
        return f"{GRID_MODULE} or {PULL_MODULE} has no {_PULL_NAME}"
    parameters = inspect.signature(pull).parameters
    missing = [name for name in _BACKOFF_PARAMETERS if name not in parameters]
    if missing:
        return f"{PULL_MODULE}.{_PULL_NAME} takes no {', '.join(missing)}"
    return functools.partial(
        pull, initial_backoff=INITIAL_BACKOFF_S, backoff_cap=BACKOFF_CAP_S
    )


@contextmanager
def reply_backoff(
    requested: bool, version: str | None = None
) -> Iterator[BackoffOutcome | None]:
    """Within the block, the HTTP grid pulls reply objects with the short back-off.

    Yields None (and changes nothing) when the lever is off; otherwise the
    outcome: applied on a tested Flower, a logged fallback on any other.
    """
    if not requested:
        yield None
        return
    version = installed_flwr_version() if version is None else version
    supported, reason = backoff_supported(version)
    if not supported:
        logger.warning("lever %s: %s", LEVER_LABEL, reason)
        yield BackoffOutcome(applied=False, reason=reason)
        return
    grid = importlib.import_module(GRID_MODULE)
    patched = _short_pull(grid, importlib.import_module(PULL_MODULE))
    if isinstance(patched, str):
        reason = f"flwr {version}: {patched}; keeping Flower's own back-off"
        logger.warning("lever %s: %s", LEVER_LABEL, reason)
        yield BackoffOutcome(applied=False, reason=reason)
        return
    original = getattr(grid, _PULL_NAME)
    setattr(grid, _PULL_NAME, patched)
    try:
        yield BackoffOutcome(applied=True, reason=reason)
    finally:
        setattr(grid, _PULL_NAME, original)
