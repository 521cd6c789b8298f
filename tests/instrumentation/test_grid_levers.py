"""The measuring Grid's low-latency levers: fast reply pulls and wake messages,
against a fake Grid on a fake clock (no real waiting)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from instrumentation import measured_grid
from instrumentation.client_mod import STAMPS_KEY, timing_mod
from instrumentation.measured_grid import FLOWER_PULL_S, GridLevers, MeasuredGrid
from instrumentation.schema import field_problems
from instrumentation.wake import REPLY_PULL_KEY, WAKE_KEY, WAKE_MESSAGE_TYPE, is_wake

NEVER = float("inf")


@pytest.fixture(autouse=True)
def task_identity() -> Iterator[None]:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield


class _Clock:
    """Stands in for the ``time`` module inside measured_grid: sleeping advances it."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def time_ns(self) -> int:
        return int(self.now * 1e9)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(measured_grid, "time", fake)
    return fake


class _Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def append(self, event: str, **fields: Any) -> None:
        assert field_problems(event, fields, strict=True) == []
        self.events.append((event, fields))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for e, f in self.events if e == kind]


class _SlowGrid(Grid):
    """A Grid whose node ``n`` answers ``delays[n]`` s after the push (fake clock);
    node 99 answers with an error; a wake is answered as soon as it is pushed."""

    def __init__(self, clock: _Clock, delays: dict[int, float]) -> None:
        self.clock, self.delays = clock, delays
        self.pushed: list[Message] = []
        self.ready: dict[str, tuple[float, Message]] = {}
        self.pulls: list[tuple[float, list[str]]] = []
        self.stock_calls = 0

    def set_run(self, run: Any) -> None:
        raise NotImplementedError

    @property
    def run(self) -> Any:
        raise NotImplementedError

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return list(self.delays)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = msg.object_id
            self.pushed.append(msg)
            node = int(msg.metadata.dst_node_id)
            delay = 0.0 if is_wake(msg) else self.delays[node]
            self.ready[msg.metadata.message_id] = (
                self.clock.now + delay,
                _reply(msg),
            )
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        wanted = list(message_ids)
        self.pulls.append((self.clock.now, wanted))
        out = []
        for message_id in wanted:
            at, reply = self.ready.get(message_id, (NEVER, None))
            if reply is not None and at <= self.clock.now:
                out.append(reply)
                del self.ready[message_id]
        return out

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        self.stock_calls += 1
        ids = list(self.push_messages(messages))
        self.clock.sleep(max(self.delays.values()))
        return list(self.pull_messages(ids))


def _context(node: str) -> Context:
    return Context(
        run_id=1,
        node_id=1,
        node_config={"flowerbed-node": node},
        state=RecordDict(),
        run_config={},
    )


def _reply(msg: Message) -> Message:
    if is_wake(msg):
        return Message(RecordDict(), reply_to=msg)
    if msg.metadata.dst_node_id == 99:
        return Message(Error(code=3, reason="node gone"), reply_to=msg)

    def handler(m: Message, c: Context) -> Message:
        arrays = ArrayRecord([np.ones(4, dtype=np.float32)])
        return Message(RecordDict({"arrays": arrays}), reply_to=m)

    return timing_mod(msg, _context(f"pi{msg.metadata.dst_node_id}"), handler)


def _train(node: int, server_round: int = 2) -> Message:
    content = RecordDict(
        {
            "arrays": ArrayRecord([np.zeros(8, dtype=np.float32)]),
            "config": ConfigRecord({"server-round": server_round}),
        }
    )
    return Message(content=content, dst_node_id=node, message_type="train")


def test_fast_pull_returns_soon_after_the_last_reply(clock: _Clock) -> None:
    fake = _SlowGrid(clock, {7: 0.5, 8: 1.0})
    sink = _Sink()
    grid = MeasuredGrid(fake, sink, GridLevers(reply_pull_s=0.3))
    start = clock.now

    replies = list(grid.send_and_receive([_train(7), _train(8)], timeout=60.0))

    assert len(replies) == 2
    assert clock.now - start == pytest.approx(1.2)  # pulls at 0, 0.3, 0.6, 0.9, 1.2
    assert clock.sleeps == [pytest.approx(0.3)] * 4
    assert fake.stock_calls == 0
    assert all(STAMPS_KEY not in r.content for r in replies)
    pickups = sink.of("pickup")
    assert [p["via"] for p in pickups] == ["pull", "pull"]
    # each reply is stamped at the pull that brought it, not at the batch's end
    by_node = {p["node_id"]: p["pickup_ns"] for p in pickups}
    assert (by_node[7] / 1e9 - start, by_node[8] / 1e9 - start) == (
        pytest.approx(0.6),
        pytest.approx(1.2),
    )
    assert {d["via"] for d in sink.of("dispatch")} == {"push"}
    assert len(sink.of("phase")) == 2


def test_timeout_returns_the_partial_replies_and_records_the_missing(
    clock: _Clock,
) -> None:
    fake = _SlowGrid(clock, {7: 0.4, 8: NEVER})
    sink = _Sink()
    grid = MeasuredGrid(fake, sink, GridLevers(reply_pull_s=0.3))
    start = clock.now

    replies = list(grid.send_and_receive([_train(7), _train(8)], timeout=1.0))

    assert len(replies) == 1
    assert clock.now - start == pytest.approx(1.0)  # the last pause is cut short
    (failure,) = sink.of("failure")
    assert failure["reason"] == "no reply within the round timeout of 1 s"
    assert (failure["round"], failure["message_type"]) == (2, "train")
    assert failure["message_id"] == fake.pushed[1].metadata.message_id


def test_error_replies_reach_the_app_and_are_failures(clock: _Clock) -> None:
    fake = _SlowGrid(clock, {7: 0.0, 99: 0.2})
    sink = _Sink()
    grid = MeasuredGrid(fake, sink, GridLevers(reply_pull_s=0.1))

    replies = list(grid.send_and_receive([_train(7), _train(99, 5)], timeout=10))

    assert sorted(r.has_error() for r in replies) == [False, True]
    (failure,) = sink.of("failure")
    assert (failure["node_id"], failure["round"], failure["code"]) == (99, 5, 3)
    errors = [p for p in sink.of("pickup") if p["error"]]
    assert [(p["node_id"], p["round"]) for p in errors] == [(99, 5)]


def test_no_timeout_pulls_until_every_reply(clock: _Clock) -> None:
    fake = _SlowGrid(clock, {7: 7.0})
    grid = MeasuredGrid(fake, _Sink(), GridLevers(reply_pull_s=0.5))
    replies = list(grid.send_and_receive([_train(7)], timeout=None))
    assert len(replies) == 1 and len(fake.pulls) == 15


def test_wake_messages_follow_each_instruction_and_are_swallowed(
    clock: _Clock,
) -> None:
    fake = _SlowGrid(clock, {7: 0.2, 8: 0.2})
    sink = _Sink()
    grid = MeasuredGrid(fake, sink, GridLevers(wake=True))

    replies = list(grid.send_and_receive([_train(7), _train(8)], timeout=30))

    types = [(m.metadata.message_type, m.metadata.dst_node_id) for m in fake.pushed]
    assert types == [
        ("train", 7),
        ("train", 8),
        (WAKE_MESSAGE_TYPE, 7),
        (WAKE_MESSAGE_TYPE, 8),
    ]
    assert [r.metadata.message_type for r in replies] == ["train", "train"]
    assert clock.sleeps == [FLOWER_PULL_S]  # Flower's interval without reply-pull
    wake_ids = {m.metadata.message_id for m in fake.pushed[2:]}
    assert not wake_ids & {d["message_id"] for d in sink.of("dispatch")}
    assert not wake_ids & {p["message_id"] for p in sink.of("pickup")}
    wakes = sink.of("wake")
    assert sorted((w["stage"], w["node_id"]) for w in wakes) == [
        ("dispatch", 7),
        ("dispatch", 8),
        ("pickup", 7),
        ("pickup", 8),
    ]
    assert all(w["round"] == 2 for w in wakes)


def test_wake_replies_never_reach_an_app_that_pulls_itself(clock: _Clock) -> None:
    fake = _SlowGrid(clock, {7: 1.0})
    sink = _Sink()
    grid = MeasuredGrid(fake, sink, GridLevers(wake=True))
    ids = list(grid.push_messages([_train(7)]))

    first = list(grid.pull_messages(ids))  # only the wake's reply is ready
    clock.sleep(1.0)
    second = list(grid.pull_messages(ids))

    assert first == [] and len(second) == 1
    assert second[0].metadata.message_type == "train"
    assert [w["stage"] for w in sink.of("wake")] == ["dispatch", "pickup"]
    assert len(fake.pulls[0][1]) == 2  # the wake was asked for with the app's id


def test_stock_levers_keep_flowers_own_send_and_receive(clock: _Clock) -> None:
    fake = _SlowGrid(clock, {7: 0.1})
    sink = _Sink()
    replies = list(MeasuredGrid(fake, sink).send_and_receive([_train(7)], timeout=5))
    assert fake.stock_calls == 1 and len(replies) == 1
    assert [m.metadata.message_type for m in fake.pushed] == ["train"]
    assert sink.of("wake") == []


@pytest.mark.parametrize(
    ("run_config", "expected"),
    [
        ({}, GridLevers()),
        ({REPLY_PULL_KEY: 0.0, WAKE_KEY: False}, GridLevers()),
        ({REPLY_PULL_KEY: 0.3}, GridLevers(reply_pull_s=0.3)),
        ({WAKE_KEY: True}, GridLevers(wake=True)),
        ({REPLY_PULL_KEY: "junk", WAKE_KEY: True}, GridLevers(wake=True)),
    ],
)
def test_levers_from_run_config(
    run_config: dict[str, Any], expected: GridLevers
) -> None:
    assert GridLevers.from_run_config(run_config) == expected


def test_levers_say_which_loop_runs() -> None:
    assert not GridLevers().own_loop
    assert GridLevers(wake=True).own_loop
    assert GridLevers(wake=True).pull_interval_s == FLOWER_PULL_S
    assert GridLevers(reply_pull_s=0.2).pull_interval_s == 0.2
    with pytest.raises(ValueError, match="must be > 0"):
        GridLevers(reply_pull_s=0.0)
