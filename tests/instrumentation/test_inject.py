"""Measuring apps flowerbed did not write: client wrapper, grid proxy, strategy timers.

The unit tests use real Flower Message/Context/ClientApp/ServerApp objects and a fake
Grid; the end-to-end test runs a SuperLink and two SuperNodes on localhost and an
injected copy of tests/apps/plain_app.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedProx
from flwr.supercore.task_identity import TaskIdentity

from instrumentation import inject_server
from instrumentation.client_mod import STAMPS_KEY, ClientStamps, timing_mod
from instrumentation.events import read_events
from instrumentation.inject_client import InjectError, wrap_client_app
from instrumentation.inject_server import (
    install_strategy_timers,
    set_current_sink,
    wrap_server_app,
)
from instrumentation.measured_grid import MeasuredGrid
from instrumentation.schema import field_problems
from instrumentation.wake import (
    REPLY_PULL_KEY,
    WAKE_KEY,
    WAKE_MESSAGE_TYPE,
    wake_message,
)
from testbed.campaign.app_bundle import prepare_bundle
from testbed.commands.flower import flower_env, launch_env
from testbed.transport.processes import ManagedProcess, stop_all

REPO = Path(__file__).resolve().parents[2]
PLAIN_APP = REPO / "tests" / "apps" / "plain_app"
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def task_identity() -> Iterator[None]:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield


class _Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def append(self, event: str, **fields: Any) -> None:
        # what the code under test writes must meet the event schema
        assert field_problems(event, fields, strict=True) == []
        self.events.append((event, fields))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for e, f in self.events if e == kind]


@pytest.fixture
def sink() -> Iterator[_Sink]:
    events = _Sink()
    set_current_sink(events)
    yield events
    set_current_sink(None)


def _instruction(kind: str, node_id: int = 7, server_round: int | None = 3) -> Message:
    content = RecordDict({"arrays": ArrayRecord([np.ones(100, dtype=np.float32)])})
    if server_round is not None:
        content["config"] = ConfigRecord({"server-round": server_round})
    return Message(content=content, dst_node_id=node_id, message_type=kind)


def _context(node_config: dict[str, Any] | None = None) -> Context:
    return Context(
        run_id=1,
        node_id=7,
        node_config=node_config or {"flowerbed-node": "pi01"},
        state=RecordDict(),
        run_config={},
    )


def _write_module(root: Path, name: str, source: str) -> None:
    (root / f"{name}.py").write_text(textwrap.dedent(source))


# ---------------------------------------------------------------- client wrapper

CLIENT_MODULE = """
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    import numpy as np

    calls = []

    def user_mod(msg, context, call_next):
        calls.append("user_mod")
        return call_next(msg, context)

    app = ClientApp(mods=[user_mod])

    @app.lifespan()
    def lifespan(context):
        calls.append("enter")
        context.state["entered"] = MetricRecord({"n": 1})
        yield
        calls.append("exit")

    @app.train()
    def train(msg, context):
        calls.append("train")
        content = RecordDict({
            "arrays": ArrayRecord([np.full(4, 2.0, dtype=np.float32)]),
            "metrics": MetricRecord({"num-examples": 5}),
        })
        return Message(content=content, reply_to=msg)

    @app.query()
    def query(msg, context):
        calls.append("query")
        return Message(content=RecordDict(), reply_to=msg)

    not_an_app = 42
"""


@pytest.fixture
def client_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"userclient_{tmp_path.name.replace('-', '_')}"
    _write_module(tmp_path, name, CLIENT_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_wrapped_client_app_stamps_train_and_keeps_handlers_mods_lifespan(
    client_module: str,
) -> None:
    app = wrap_client_app(f"{client_module}:app")
    module = sys.modules[client_module]
    msg = _instruction("train", server_round=4)
    context = _context()

    reply = app(message=msg, context=context)

    assert module.calls == ["enter", "user_mod", "train", "exit"]
    assert "entered" in context.state  # the lifespan ran with our context
    np.testing.assert_allclose(
        reply.content.array_records["arrays"].to_numpy_ndarrays()[0], np.full(4, 2.0)
    )
    assert dict(reply.content.metric_records["metrics"]) == {"num-examples": 5}
    stamps = ClientStamps.from_config_record(reply.content.config_records[STAMPS_KEY])
    assert (stamps.phase, stamps.round, stamps.node) == ("training", 4, "pi01")
    assert stamps.end_ns >= stamps.start_ns
    assert module.app is app  # the app object itself was measured, not replaced


def test_wrapped_client_app_leaves_query_replies_unstamped(client_module: str) -> None:
    app = wrap_client_app(f"{client_module}:app")
    reply = app(message=_instruction("query"), context=_context())
    assert STAMPS_KEY not in reply.content
    assert sys.modules[client_module].calls[-2:] == ["query", "exit"]


def test_wrapped_client_app_answers_a_wake_without_the_app(
    client_module: str,
) -> None:
    app = wrap_client_app(f"{client_module}:app")
    wake = wake_message(7, "3")

    reply = app(message=wake, context=_context())

    assert sys.modules[client_module].calls == []  # no lifespan, mod or handler
    assert reply.metadata.reply_to_message_id == wake.metadata.message_id
    assert reply.metadata.message_type == WAKE_MESSAGE_TYPE
    assert STAMPS_KEY not in reply.content and not reply.has_error()


def test_wrapping_twice_stamps_once(client_module: str) -> None:
    first = wrap_client_app(f"{client_module}:app")
    second = wrap_client_app(f"{client_module}:app")
    assert first is second and type(first).__mro__[1].__name__ == "ClientApp"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("{m}:not_an_app", "is a int, not a flwr.clientapp.ClientApp"),
        ("{m}:missing", "has no attribute missing"),
        ("{m}.app", "is not of the form"),
    ],
)
def test_bad_client_targets_are_explained(
    client_module: str, target: str, message: str
) -> None:
    with pytest.raises(InjectError, match=message):
        wrap_client_app(target.format(m=client_module))


# ---------------------------------------------------------------- grid proxy


class _FakeGrid(Grid):
    """Assigns message ids like Flower's grid and answers with canned replies."""

    def __init__(self, reply_for: Any) -> None:
        self.reply_for = reply_for
        self.pending: list[Message] = []
        self.pushed: list[Message] = []
        self.extra = "delegated"

    def set_run(self, run: Any) -> None:
        self._run = run

    @property
    def run(self) -> Any:
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):  # type: ignore[no-untyped-def]
        return Message(content, dst_node_id, message_type, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return [7, 8]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = msg.object_id
            self.pushed.append(msg)
            self.pending.append(msg)
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        wanted = set(message_ids)
        out = [
            self.reply_for(m) for m in self.pending if m.metadata.message_id in wanted
        ]
        self.pending = [m for m in self.pending if m.metadata.message_id not in wanted]
        return out

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        ids = self.push_messages(messages)
        return self.pull_messages(ids)


def _stamped_reply(msg: Message) -> Message:
    """What a measured ClientApp on node ``dst_node_id`` would answer."""

    def handler(m: Message, c: Context) -> Message:
        content = RecordDict(
            {
                "arrays": ArrayRecord(
                    [np.full(4, float(m.metadata.dst_node_id), dtype=np.float32)]
                ),
                "metrics": MetricRecord(
                    {"num-examples": 10, "loss": float(m.metadata.dst_node_id)}
                ),
            }
        )
        return Message(content=content, reply_to=m)

    node = f"pi{msg.metadata.dst_node_id}"
    return timing_mod(msg, _context({"flowerbed-node": node}), handler)


def _fake_grid() -> _FakeGrid:
    def reply_for(msg: Message) -> Message:
        if msg.metadata.dst_node_id == 99:
            return Message(Error(code=3, reason="node gone"), reply_to=msg)
        return _stamped_reply(msg)

    return _FakeGrid(reply_for)


def test_send_and_receive_records_dispatch_pickup_and_stamps_and_strips(
    sink: _Sink,
) -> None:
    fake = _fake_grid()
    grid = MeasuredGrid(fake, sink)
    messages = (_instruction("train", node, server_round=2) for node in (7, 8))

    before = time.time_ns()
    replies = list(grid.send_and_receive(messages, timeout=5.0))
    after = time.time_ns()

    assert all(STAMPS_KEY not in r.content for r in replies)  # the app sees none
    assert all("arrays" in r.content and "metrics" in r.content for r in replies)
    ids = {m.metadata.message_id: m.metadata.dst_node_id for m in fake.pushed}
    dispatch = sink.of("dispatch")
    assert {(d["message_id"], d["node_id"]) for d in dispatch} == set(ids.items())
    assert all(d["round"] == 2 and d["message_type"] == "train" for d in dispatch)
    assert all(before <= d["dispatch_ns"] <= after for d in dispatch)
    assert all(d["bytes"] >= 400 for d in dispatch)
    pickup = sink.of("pickup")
    assert {(p["message_id"], p["node_id"]) for p in pickup} == set(ids.items())
    assert all(p["round"] == 2 and not p["error"] for p in pickup)
    phases = sink.of("phase")
    assert sorted((p["node"], p["phase"], p["round"]) for p in phases) == [
        ("pi7", "training", 2),
        ("pi8", "training", 2),
    ]
    assert {p["message_id"] for p in phases} == set(ids)


def test_push_then_pull_records_per_call_and_counts_rounds_without_config(
    sink: _Sink,
) -> None:
    grid = MeasuredGrid(_fake_grid(), sink)
    for _ in range(2):  # two batches of messages that declare no round
        ids = grid.push_messages([_instruction("evaluate", 7, server_round=None)])
        replies = list(grid.pull_messages(ids))
        assert STAMPS_KEY not in replies[0].content
    assert [d["round"] for d in sink.of("dispatch")] == [1, 2]
    assert all(d["pushed_ns"] >= d["dispatch_ns"] for d in sink.of("dispatch"))
    assert [p["round"] for p in sink.of("pickup")] == [1, 2]
    assert [p["phase"] for p in sink.of("phase")] == ["evaluation", "evaluation"]
    assert [p["round"] for p in sink.of("phase")] == [1, 2]


def test_error_replies_are_failures_and_pickups(sink: _Sink) -> None:
    grid = MeasuredGrid(_fake_grid(), sink)
    replies = list(grid.send_and_receive([_instruction("train", 99, 5)], timeout=1))
    assert replies[0].has_error()
    (failure,) = sink.of("failure")
    assert (failure["round"], failure["node_id"], failure["reason"]) == (
        5,
        99,
        "node gone",
    )
    assert sink.of("pickup")[0]["error"] is True
    assert sink.of("phase") == []


def test_grid_proxy_delegates_the_rest_and_is_a_grid(sink: _Sink) -> None:
    fake = _fake_grid()
    grid = MeasuredGrid(fake, sink)
    assert isinstance(grid, Grid)
    assert list(grid.get_node_ids()) == [7, 8]
    assert grid.extra == "delegated"
    msg = grid.create_message(RecordDict(), "query", 8, "1")
    assert msg.metadata.dst_node_id == 8
    assert sink.events == []


# ---------------------------------------------------------------- strategy timers


def _train_replies(server_round: int) -> list[Message]:
    replies = []
    for node in (7, 8):
        msg = _instruction("train", node, server_round)
        msg.metadata.__dict__["_message_id"] = msg.object_id
        reply = _stamped_reply(msg)
        del reply.content[STAMPS_KEY]
        replies.append(reply)
    return replies


def test_fedavg_aggregate_train_is_timed_once_per_call(sink: _Sink) -> None:
    install_strategy_timers()
    arrays, metrics = FedAvg().aggregate_train(3, _train_replies(3))
    assert arrays is not None
    np.testing.assert_allclose(next(iter(arrays.values())).numpy(), np.full(4, 7.5))
    (aggregation,) = [p for p in sink.of("phase") if p["phase"] == "aggregation"]
    assert aggregation["round"] == 3 and aggregation["node"] == "server"
    assert aggregation["message_type"] == ""
    assert aggregation["end_ns"] >= aggregation["start_ns"]
    (train_metrics,) = sink.of("metrics")
    assert train_metrics["scope"] == "train" and train_metrics["round"] == 3
    assert train_metrics["values"]["loss"] == pytest.approx(7.5)
    assert metrics is not None and metrics["loss"] == pytest.approx(7.5)


def test_user_subclass_calling_super_is_one_aggregation_timing_the_outer_call(
    sink: _Sink,
) -> None:
    install_strategy_timers()

    class Slow(FedProx):  # FedProx -> FedAvg: two timed methods below ours
        def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> Any:
            time.sleep(0.2)
            return super().aggregate_train(server_round, replies)

    Slow().aggregate_train(server_round=2, replies=_train_replies(2))

    aggregations = [p for p in sink.of("phase") if p["phase"] == "aggregation"]
    assert len(aggregations) == 1
    assert aggregations[0]["round"] == 2
    assert aggregations[0]["end_ns"] - aggregations[0]["start_ns"] >= 0.2e9


def test_aggregate_evaluate_is_timed_apart_from_the_aggregation_phase(
    sink: _Sink,
) -> None:
    install_strategy_timers()
    replies = []
    for node in (7, 8):
        msg = _instruction("evaluate", node, 1)
        msg.metadata.__dict__["_message_id"] = msg.object_id
        content = RecordDict(
            {"metrics": MetricRecord({"num-examples": 2, "loss": node})}
        )
        replies.append(Message(content=content, reply_to=msg))
    metrics = FedAvg().aggregate_evaluate(1, replies)
    assert metrics is not None and metrics["loss"] == pytest.approx(7.5)
    assert sink.of("phase") == []
    assert len(sink.of("evaluate_aggregation")) == 1
    assert sink.of("metrics")[0]["values"]["loss"] == pytest.approx(7.5)


def test_timers_pass_through_without_a_sink() -> None:
    install_strategy_timers()
    set_current_sink(None)
    arrays, _ = FedAvg().aggregate_train(1, _train_replies(1))
    assert arrays is not None


# ---------------------------------------------------------------- server wrapper

SERVER_MODULE = """
    from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
    from flwr.serverapp import ServerApp
    from flwr.serverapp.strategy import FedAvg
    import numpy as np

    seen = []
    app = ServerApp()

    class MyAvg(FedAvg):
        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            seen.extend(sorted(r.content.keys()) for r in replies)
            return super().aggregate_train(server_round, replies)

    @app.main()
    def main(grid, context):
        seen.append(type(grid).__name__)
        if context.run_config.get("fail"):
            raise RuntimeError("user code broke")
        strategy = MyAvg(fraction_evaluate=0.0, min_available_nodes=2)
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord([np.zeros(4, dtype=np.float32)]),
            num_rounds=2,
            timeout=5,
        )
"""


@pytest.fixture
def server_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"userserver_{tmp_path.name.replace('-', '_')}"
    _write_module(tmp_path, name, SERVER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _server_context(log: Path, **extra: Any) -> Context:
    return Context(
        run_id=42,
        node_id=1,
        node_config={},
        state=RecordDict(),
        run_config={
            "flowerbed-event-log": str(log),
            "flowerbed-run-id": "wifi-r1",
            **extra,
        },
    )


def test_wrapped_server_app_logs_a_whole_run_through_the_proxy(
    server_module: str, tmp_path: Path
) -> None:
    app = wrap_server_app(f"{server_module}:app")
    log = tmp_path / "events.jsonl"
    fake = _fake_grid()

    app(grid=fake, context=_server_context(log))

    module = sys.modules[server_module]
    assert module.seen[0] == "MeasuredGrid"
    assert all(
        STAMPS_KEY not in keys for keys in module.seen[1:] if isinstance(keys, list)
    )
    events = read_events(log)
    assert {e["run_id"] for e in events} == {"wifi-r1"}
    kinds = [e["event"] for e in events]
    assert kinds[0] == "app_start" and kinds[-1] == "app_end"
    assert events[-1]["status"] == "ok"
    aggregations = [e for e in events if e.get("phase") == "aggregation"]
    assert sorted(e["round"] for e in aggregations) == [1, 2]
    training = [e for e in events if e.get("phase") == "training"]
    assert sorted((e["round"], e["node"]) for e in training) == [
        (1, "pi7"),
        (1, "pi8"),
        (2, "pi7"),
        (2, "pi8"),
    ]
    assert kinds.count("dispatch") == 4 and kinds.count("pickup") == 4
    assert inject_server.current_sink() is None


def test_wrapped_server_app_ends_failed_when_the_app_raises(
    server_module: str, tmp_path: Path
) -> None:
    app = wrap_server_app(f"{server_module}:app")
    log = tmp_path / "events.jsonl"
    with pytest.raises(RuntimeError, match="user code broke"):
        app(grid=_fake_grid(), context=_server_context(log, fail=True))
    end = read_events(log)[-1]
    assert end["event"] == "app_end" and end["status"] == "failed"
    assert end["error_type"] == "RuntimeError" and "user code broke" in end["error"]


def test_empty_event_log_key_writes_into_the_working_directory(
    server_module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = wrap_server_app(f"{server_module}:app")
    context = _server_context(Path("unused"))
    context.run_config["flowerbed-event-log"] = ""
    context.run_config["flowerbed-run-id"] = ""
    app(grid=_fake_grid(), context=context)
    events = read_events(tmp_path / "flowerbed-events.jsonl")
    assert events[-1]["event"] == "app_end" and events[0]["run_id"] == "flower-42"


def test_server_target_must_be_a_server_app(client_module: str) -> None:
    with pytest.raises(InjectError, match="not a flwr.serverapp.ServerApp"):
        wrap_server_app(f"{client_module}:app")


def test_measured_server_app_is_still_a_server_app(server_module: str) -> None:
    app = wrap_server_app(f"{server_module}:app")
    assert isinstance(app, ServerApp)


# ---------------------------------------------------------------- end to end


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _flower_env(home: Path, launch: dict[str, str] | None = None) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return flower_env(home, launch=launch)


# Stock, and the low-latency launch with every lever (docs/launch.md).
LAUNCHES = {
    "stock": ({}, ""),
    "low-latency": (
        launch_env(0.05),
        f"{REPLY_PULL_KEY} = 0.3\n{WAKE_KEY} = true\n",
    ),
}


def _wait_port(port: int, proc: ManagedProcess, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        proc.check_alive()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{proc.name} did not listen on {port}:\n{proc.log_tail()}")


@pytest.mark.e2e
@pytest.mark.parametrize("launch", sorted(LAUNCHES))
def test_plain_app_is_measured_end_to_end_without_editing_it(
    tmp_path: Path, launch: str
) -> None:
    node_env, launch_config = LAUNCHES[launch]
    bundle = prepare_bundle(PLAIN_APP, tmp_path / "plain-app")
    log = tmp_path / "events.jsonl"
    port = _free_port()
    address = f"127.0.0.1:{port}"
    procs: list[ManagedProcess] = []
    cli_home = tmp_path / "flwr-cli"
    cli_env = {**os.environ, **_flower_env(cli_home)}
    try:
        superlink = ManagedProcess(
            "superlink",
            [
                str(BIN / "flower-superlink"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--insecure",
                "--disable-runtime-dependency-installation",
            ],
            tmp_path / "superlink.log",
            env=_flower_env(tmp_path / "flwr-superlink"),
            cwd=tmp_path,
        )
        procs.append(superlink)
        _wait_port(port, superlink)
        for index in range(2):
            procs.append(
                ManagedProcess(
                    f"supernode{index}",
                    [
                        str(BIN / "flower-supernode"),
                        "--superlink",
                        address,
                        "--insecure",
                        "--port",
                        str(_free_port()),
                        "--node-config",
                        f"partition-id={index} num-partitions=2 "
                        f'flowerbed-node="pi{index}"',
                    ],
                    tmp_path / f"supernode{index}.log",
                    env=_flower_env(tmp_path / f"flwr-node{index}", node_env),
                    cwd=tmp_path,
                )
            )
        (cli_home / "config.toml").write_text(
            f'[superlink.e2e]\naddress = "{address}"\ninsecure = true\n'
        )
        run_config = tmp_path / "run_config.toml"
        run_config.write_text(
            f'flowerbed-event-log = "{log}"\nflowerbed-run-id = "e2e-r1"\n'
            "num-server-rounds = 2\n" + launch_config
        )
        result = subprocess.run(
            [
                str(BIN / "flwr"),
                "run",
                str(bundle.path),
                "e2e",
                "--run-config",
                str(run_config),
                "--format",
                "json",
            ],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr

        deadline = time.monotonic() + 180
        events: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            for proc in procs:
                proc.check_alive()
            events = read_events(log) if log.exists() else []
            if any(e["event"] == "app_end" for e in events):
                break
            time.sleep(1.0)
        else:
            pytest.fail(
                f"no app_end within 180 s; {len(events)} events; superlink log:\n"
                + superlink.log_tail(40)
            )
    finally:
        stop_all(procs)

    assert events[-1]["event"] == "app_end" and events[-1]["status"] == "ok", events[-1]
    assert {e["run_id"] for e in events} == {"e2e-r1"}
    phases = [e for e in events if e["event"] == "phase"]
    for server_round in (1, 2):
        for node in ("pi0", "pi1"):
            for phase, kind in (("training", "train"), ("evaluation", "evaluate")):
                matching = [
                    p
                    for p in phases
                    if (p["round"], p["node"], p["phase"], p["message_type"])
                    == (server_round, node, phase, kind)
                ]
                assert len(matching) == 1, (server_round, node, phase)
        aggregations = [
            p
            for p in phases
            if p["phase"] == "aggregation" and p["round"] == server_round
        ]
        assert len(aggregations) == 1
    dispatch = [e for e in events if e["event"] == "dispatch"]
    pickup = [e for e in events if e["event"] == "pickup"]
    assert len(dispatch) == 8  # 2 rounds x 2 nodes x (train, evaluate)
    assert {d["message_id"] for d in dispatch} == {p["message_id"] for p in pickup}
    assert len(pickup) == 8 and not any(p["error"] for p in pickup)
    by_id = {d["message_id"]: d for d in dispatch}
    for p in pickup:
        assert p["pickup_ns"] > by_id[p["message_id"]]["dispatch_ns"]
        assert p["node_id"] == by_id[p["message_id"]]["node_id"]
    stamped = {p["message_id"] for p in phases if p["phase"] != "aggregation"}
    assert stamped == set(by_id)
    wakes = [e for e in events if e["event"] == "wake"]
    if launch == "stock":
        assert wakes == []
        assert {p["via"] for p in pickup} == {"send_and_receive"}
    else:  # a wake behind each instruction; the app saw none of their replies
        assert sum(w["stage"] == "dispatch" for w in wakes) == 8
        assert sum(w["stage"] == "pickup" for w in wakes) >= 6
        assert not {w["message_id"] for w in wakes} & set(by_id)
        assert {p["via"] for p in pickup} == {"pull"}
