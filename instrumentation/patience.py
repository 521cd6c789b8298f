"""Rounds that go on without a missing node instead of waiting forever for it.

Flower's strategies sample nodes with ``sample_nodes``, which loops until
``min_available_nodes`` are connected: after a node dies, the next round waits
until someone stops the run. flowerbed wraps ``configure_train`` and
``configure_evaluate`` of every strategy: a round first waits up to
``flowerbed-node-wait-s`` for the nodes it wants; if some are still missing, the
strategy's minimums are lowered to the nodes that are there for this one call
(and restored after), and a ``degraded`` event records who was expected and who
was there. A node that comes back is sampled again from the next round on.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

from flwr.serverapp import Grid

from instrumentation.schema import EventKind, EventSink

NODE_WAIT_KEY = "flowerbed-node-wait-s"
PATIENT_METHODS = ("configure_train", "configure_evaluate")
MINIMUMS = ("min_available_nodes", "min_train_nodes", "min_evaluate_nodes")
POLL_S = 1.0

_policy: tuple[float, EventSink] | None = None
_state = threading.local()


def set_policy(node_wait_s: float | None, sink: EventSink | None) -> None:
    """Enable (a wait in seconds and where to record) or disable (None) patience."""
    global _policy
    _policy = None if node_wait_s is None or sink is None else (node_wait_s, sink)


def wait_for_nodes(
    grid: Grid,
    wanted: int,
    wait_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[int]:
    """Node ids once ``wanted`` are connected, or whatever is there after ``wait_s``."""
    deadline = clock() + wait_s
    while True:
        nodes = list(grid.get_node_ids())
        if len(nodes) >= wanted or clock() >= deadline:
            return nodes
        sleep(min(POLL_S, max(0.0, deadline - clock())))


def _find_grid(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Grid | None:
    grid = kwargs.get("grid")
    if isinstance(grid, Grid):
        return grid
    return next((a for a in args if isinstance(a, Grid)), None)


def patient(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` (configure_train/evaluate) that never waits past the policy."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_state, "inside", False):  # a super() call: the outer one waited
            return method(self, *args, **kwargs)
        _state.inside = True
        try:
            return _patiently(name, method, self, args, kwargs)
        finally:
            _state.inside = False

    wrapper.__flowerbed_patient__ = True  # type: ignore[attr-defined]
    return wrapper


def _patiently(
    name: str,
    method: Callable[..., Any],
    self: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    policy, grid = _policy, _find_grid(args, kwargs)
    present = {m: getattr(self, m) for m in MINIMUMS if hasattr(self, m)}
    if policy is None or grid is None or "min_available_nodes" not in present:
        return method(self, *args, **kwargs)
    wait_s, sink = policy
    wanted = max(int(v) for v in present.values())
    nodes = wait_for_nodes(grid, wanted, wait_s)
    if len(nodes) >= wanted or not nodes:
        return method(self, *args, **kwargs)
    server_round = args[0] if args else kwargs.get("server_round", 0)
    sink.append(
        EventKind.DEGRADED,
        round=int(server_round),
        step=name,
        wanted=wanted,
        present=len(nodes),
        node_ids=sorted(int(n) for n in nodes),
        waited_s=wait_s,
    )
    for attr, value in present.items():
        setattr(self, attr, min(int(value), len(nodes)))
    try:
        return method(self, *args, **kwargs)
    finally:
        for attr, value in present.items():
            setattr(self, attr, value)


def make_patient(cls: type) -> None:
    """Wrap the configure methods ``cls`` itself defines (once)."""
    for name in PATIENT_METHODS:
        method = cls.__dict__.get(name)
        if not callable(method) or getattr(method, "__isabstractmethod__", False):
            continue
        if getattr(method, "__flowerbed_patient__", False):
            continue
        setattr(cls, name, patient(name, method))
