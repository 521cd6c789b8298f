"""The emulated cluster's errors, and the root check every action makes first."""

from __future__ import annotations

import os


class EmulationError(RuntimeError):
    """Base of this module's errors; the message says what, where and what to do."""


class PlanError(EmulationError, ValueError):
    """The inventory cannot be built as an emulated cluster; the message says why."""


class RootRequiredError(EmulationError, PermissionError):
    """An action needs root; the message says what and how to run it."""


class ClusterUpError(EmulationError):
    """``cluster up`` failed; the message names step, node, network and the cleanup."""

    def __init__(
        self, message: str, node: str | None = None, network: str | None = None
    ) -> None:
        super().__init__(message)
        self.node = node
        self.network = network


def require_root(action: str) -> None:
    """Raise ``RootRequiredError`` unless root, saying what ``action`` needs it for."""
    if os.geteuid() == 0:
        return
    raise RootRequiredError(
        f"{action} needs root: it creates and removes network namespaces, bridges, "
        "veth pairs, tc qdiscs and iptables rules. Run it as root, e.g. "
        "`sudo .venv/bin/flowerbed cluster up INVENTORY`."
    )
