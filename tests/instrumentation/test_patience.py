"""Patient rounds: wait a bounded time for missing nodes, then go on without them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from flwr.serverapp import Grid

from instrumentation import patience
from instrumentation.schema import field_problems


class FakeGrid(Grid):  # type: ignore[misc]
    """A Grid whose connected nodes follow a script, one entry per call."""

    def __init__(self, script: list[list[int]]) -> None:
        self.script = script
        self.calls = 0

    def get_node_ids(self) -> Iterable[int]:
        nodes = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return nodes


# The abstract parts of Grid a sampling loop never touches.
for _name in ("create_message", "pull_messages", "push_messages", "send_and_receive",
              "set_run", "run"):  # fmt: skip
    setattr(FakeGrid, _name, None)
FakeGrid.__abstractmethods__ = frozenset()


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def append(self, event: str, **fields: Any) -> None:
        # what the code under test writes must meet the event schema
        assert field_problems(event, fields, strict=True) == []
        self.events.append((event, fields))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_returns_as_soon_as_enough_nodes_are_there() -> None:
    clock = Clock()
    grid = FakeGrid([[1], [1, 2], [1, 2, 3]])
    nodes = patience.wait_for_nodes(grid, 3, 10.0, clock.sleep, clock)
    assert nodes == [1, 2, 3] and clock.now == pytest.approx(2.0)


def test_wait_gives_up_at_its_deadline() -> None:
    clock = Clock()
    nodes = patience.wait_for_nodes(FakeGrid([[1, 2]]), 3, 4.5, clock.sleep, clock)
    assert nodes == [1, 2] and clock.now == pytest.approx(4.5)


class Strategy:
    def __init__(self) -> None:
        self.min_available_nodes = 3
        self.min_train_nodes = 3
        self.seen: list[tuple[int, int]] = []

    def configure_train(
        self, server_round: int, arrays: Any, config: Any, grid: Grid
    ) -> list[int]:
        self.seen.append((self.min_available_nodes, self.min_train_nodes))
        return list(grid.get_node_ids())


class Child(Strategy):
    def configure_train(
        self, server_round: int, arrays: Any, config: Any, grid: Grid
    ) -> list[int]:
        return super().configure_train(server_round, arrays, config, grid)


patience.make_patient(Strategy)
patience.make_patient(Child)


@pytest.fixture
def sink() -> Any:
    sink = Sink()
    patience.set_policy(0.01, sink)
    yield sink
    patience.set_policy(None, None)


def test_a_round_goes_on_with_the_nodes_there_and_says_so(sink: Sink) -> None:
    strategy = Strategy()

    nodes = strategy.configure_train(4, None, None, FakeGrid([[5, 6]]))

    assert nodes == [5, 6]
    assert strategy.seen == [(2, 2)]  # lowered for the call ...
    assert (strategy.min_available_nodes, strategy.min_train_nodes) == (3, 3)  # ...only
    ((event, fields),) = sink.events
    assert event == "degraded" and fields["round"] == 4
    assert (fields["wanted"], fields["present"], fields["node_ids"]) == (3, 2, [5, 6])


def test_all_nodes_there_changes_nothing(sink: Sink) -> None:
    strategy = Strategy()
    strategy.configure_train(1, None, None, FakeGrid([[1, 2, 3]]))
    assert strategy.seen == [(3, 3)] and sink.events == []


def test_an_override_calling_super_waits_once(sink: Sink) -> None:
    child = Child()
    child.configure_train(2, None, None, FakeGrid([[1]]))
    assert len(sink.events) == 1 and child.seen == [(1, 1)]


def test_without_a_policy_the_strategy_is_untouched() -> None:
    strategy = Strategy()
    strategy.configure_train(1, None, None, FakeGrid([[1]]))
    assert strategy.seen == [(3, 3)]
