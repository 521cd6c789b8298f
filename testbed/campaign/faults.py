"""A campaign's faults: kill or freeze a SuperNode, cut or degrade a link, kill the
SuperLink, reboot a node; the ``faults:`` list validated into :class:`Fault`.

:mod:`testbed.campaign.fault_injector` fires them during a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FAULT_KINDS = (
    "kill-supernode",
    "freeze-supernode",
    "cut-link",
    "loss",
    "kill-superlink",
    "reboot-node",
)
NODE_FAULTS = frozenset(FAULT_KINDS) - {"kill-superlink"}


@dataclass(frozen=True)
class Fault:
    """One fault of a campaign."""

    kind: str
    round: int = 1
    after_s: float = 0.0
    node: str | None = None
    duration_s: float | None = None
    loss_pct: float = 30.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault {self.kind!r}; known: {', '.join(FAULT_KINDS)}"
            )
        if self.kind in NODE_FAULTS and not self.node:
            raise ValueError(f"fault {self.kind} needs 'node' (a client host name)")
        if self.round < 1 or self.after_s < 0:
            raise ValueError("fault 'round' must be >= 1 and 'after_s' >= 0")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("fault 'duration_s' must be > 0 seconds")
        if not 0 < self.loss_pct < 100:
            raise ValueError("fault 'loss_pct' must be in (0, 100)")

    def describe(self) -> str:
        """``kill-supernode on client2 in round 2`` and so on."""
        where = f" on {self.node}" if self.node else ""
        return f"{self.kind}{where} in round {self.round} (+{self.after_s:g} s)"


def _number(
    item: dict[object, object], key: str, default: float, whole: bool = False
) -> float:
    # int() and float() would turn 'round: 1.9' into 1 and 'round: true' into 1.
    value = item.get(key, default)
    kind = "a whole number" if whole else "a number"
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (whole and not isinstance(value, int))
        or not math.isfinite(value)
    ):
        raise ValueError(f"'{key}' must be {kind}, got {value!r}")
    return float(value) if not whole else value


def parse_faults(raw: object) -> tuple[Fault, ...]:
    """Validate a campaign's ``faults:`` list; ValueError says what is wrong."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("must be a list of faults, e.g. [{kind: kill-supernode, ...}]")
    faults = []
    allowed = {"kind", "round", "after_s", "node", "duration_s", "loss_pct"}
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
            raise ValueError(f"item {index}: must be a mapping with a 'kind'")
        unknown = sorted(set(map(str, item)) - allowed)
        if unknown:
            raise ValueError(f"item {index}: unknown key(s) {', '.join(unknown)}")
        try:
            duration = item.get("duration_s")
            faults.append(
                Fault(
                    kind=item["kind"],
                    round=int(_number(item, "round", 1, whole=True)),
                    after_s=_number(item, "after_s", 0.0),
                    node=None if item.get("node") is None else str(item["node"]),
                    duration_s=(
                        None if duration is None else _number(item, "duration_s", 0)
                    ),
                    loss_pct=_number(item, "loss_pct", 30.0),
                )
            )
        except (TypeError, ValueError) as err:
            raise ValueError(f"item {index}: {err}") from None
    return tuple(faults)
