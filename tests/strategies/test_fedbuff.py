"""Tests of strategies/fedbuff.py: the arithmetic, and the Grid loop on a fake Grid."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy.result import Result
from flwr.simulation import run_simulation
from flwr.supercore.task_identity import TaskIdentity

from strategies.fedbuff import (
    VERSION_KEY,
    FedBuff,
    FedBuffConfig,
    MessagePulls,
    ServerState,
    UpdateRecord,
    initial_state,
    receive_update,
    server_step,
    staleness_weight,
    summarize,
)
from strategies.heterofl import MASK_KEY, HeteroFL, build_submodel, plan_from_model


@pytest.fixture(autouse=True)
def _task_identity() -> Iterator[None]:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield


def _params(value: float = 0.0) -> dict[str, np.ndarray]:
    return {
        "w": np.full((2, 3), value, np.float32),
        "b": np.full(3, value, np.float32),
        "steps": np.array(7, np.int64),
    }


@pytest.mark.parametrize(
    ("staleness", "exponent", "weight"),
    [(0, 0.5, 1.0), (3, 0.5, 0.5), (8, 0.5, 1 / 3), (1, 1.0, 0.5), (4, 0.0, 1.0)],
)
def test_staleness_weight_is_the_polynomial(
    staleness: int, exponent: float, weight: float
) -> None:
    assert staleness_weight(staleness, exponent) == pytest.approx(weight)


def test_buffer_steps_exactly_at_k_and_clears() -> None:
    config = FedBuffConfig(buffer_size=3, server_momentum=0.0, server_learning_rate=1.0)
    state = initial_state(_params())
    delta = {k: np.ones_like(v, dtype=np.float64) for k, v in _params().items()}
    steps = []
    for node in range(4):
        state, record = receive_update(
            state, config, node_id=node, trained_on_version=0, delta=delta
        )
        steps.append((record.server_step, state.version, state.buffer_count))
    assert steps == [(False, 0, 1), (False, 0, 2), (True, 1, 0), (False, 1, 1)]


def test_update_beyond_max_staleness_is_dropped_and_changes_nothing() -> None:
    config = FedBuffConfig(buffer_size=2, max_staleness=1)
    state = ServerState(version=3, params=_params())
    delta = {"w": np.ones((2, 3)), "b": np.ones(3)}

    after, dropped = receive_update(
        state, config, node_id=5, trained_on_version=1, delta=delta
    )
    after_ok, kept = receive_update(
        state, config, node_id=6, trained_on_version=2, delta=delta
    )

    assert dropped.outcome == "dropped" and dropped.staleness == 2
    assert after is state and dropped.version_after == 3
    assert kept.outcome == "applied" and after_ok.buffer_count == 1


def test_server_step_is_momentum_sgd_on_the_weighted_buffer_mean() -> None:
    lr, beta, exponent = 0.7, 0.9, 0.5
    config = FedBuffConfig(
        buffer_size=2,
        staleness_exponent=exponent,
        server_learning_rate=lr,
        server_momentum=beta,
    )
    rng = np.random.default_rng(0)
    x0 = _params(0.5)
    d = [{"w": rng.normal(size=(2, 3)), "b": rng.normal(size=3)} for _ in range(4)]
    state = ServerState(version=2, params=x0)
    # Step 1: deltas trained on versions 2 (tau 0) and 0 (tau 2).
    state, _ = receive_update(
        state, config, node_id=1, trained_on_version=2, delta=d[0]
    )
    state, _ = receive_update(
        state, config, node_id=2, trained_on_version=0, delta=d[1]
    )
    # Step 2: on versions 3 (tau 0) and 1 (tau 2).
    state, _ = receive_update(
        state, config, node_id=3, trained_on_version=3, delta=d[2]
    )
    state, _ = receive_update(
        state, config, node_id=4, trained_on_version=1, delta=d[3]
    )

    s2 = 1 / np.sqrt(3)
    for key in ("w", "b"):
        m1 = (d[0][key] + s2 * d[1][key]) / 2
        x1 = x0[key] + lr * m1
        m2 = beta * m1 + (d[2][key] + s2 * d[3][key]) / 2
        x2 = x1 + lr * m2
        np.testing.assert_allclose(np.asarray(state.params[key], float), x2, rtol=1e-5)
        np.testing.assert_allclose(state.momentum[key], m2, rtol=1e-10)
    assert state.version == 4
    assert state.params["steps"] == 7  # integer state is not stepped


def test_example_weighting_divides_by_the_example_total() -> None:
    config = FedBuffConfig(
        buffer_size=2,
        staleness_exponent=1.0,
        server_learning_rate=1.0,
        server_momentum=0.0,
        weight_by_examples=True,
    )
    state = ServerState(version=1, params={"w": np.zeros(1)})
    state, _ = receive_update(
        state,
        config,
        node_id=1,
        trained_on_version=1,
        delta={"w": np.ones(1)},
        num_examples=10,
    )
    state, _ = receive_update(
        state,
        config,
        node_id=2,
        trained_on_version=0,
        delta={"w": np.full(1, 4.0)},
        num_examples=30,
    )
    # (1 * 10 * 1 + 0.5 * 30 * 4) / (10 + 30)
    assert state.params["w"][0] == pytest.approx(70 / 40)


def test_server_step_leaves_inputs_untouched() -> None:
    params = {"w": np.zeros(2)}
    new, momentum = server_step(params, {}, {"w": np.ones(2)}, 0.5, 0.9)
    assert params["w"].tolist() == [0, 0] and new["w"].tolist() == [0.5, 0.5]
    assert momentum["w"].tolist() == [1, 1]


# --- the Grid loop, on a fake Grid with per-node latencies ---------------------


@dataclass
class _FakeGrid:
    """Replies arrive ``latency_s[node]`` after the push (fake clock); node 0 errors."""

    clock: list[int]
    latency_s: dict[int, float]
    failing: frozenset[int] = frozenset()
    pending: dict[str, tuple[int, Message]] = field(default_factory=dict)
    pushed: list[Message] = field(default_factory=list)
    max_in_flight: int = 0
    pulls: int = 0

    def get_node_ids(self) -> Iterable[int]:
        return list(self.latency_s)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            message_id = str(uuid.uuid4())
            message.metadata.__dict__["_message_id"] = message_id
            node = message.metadata.dst_node_id
            if self.latency_s[node] != float("inf"):
                due = self.clock[0] + int(self.latency_s[node] * 1e9)
                self.pending[message_id] = (due, self._train(message))
            self.pushed.append(message)
            ids.append(message_id)
        in_flight = len(self.pushed) - self._done
        self.max_in_flight = max(self.max_in_flight, in_flight)
        return ids

    _done: int = 0

    def _train(self, message: Message) -> Message:
        node = message.metadata.dst_node_id
        if node in self.failing:
            return Message(Error(code=0, reason="boom"), reply_to=message)
        arrays = message.content.array_records["arrays"]
        trained = ArrayRecord(
            {k: Array(v.numpy() + 1.0) for k, v in arrays.items() if k != "steps"}
            | {"steps": Array(arrays["steps"].numpy())}
        )
        content = RecordDict(
            {"arrays": trained, "metrics": MetricRecord({"num-examples": 10})}
        )
        return Message(content, reply_to=message)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        self.pulls += 1
        ready = [
            i
            for i in message_ids
            if i in self.pending and self.pending[i][0] <= self.clock[0]
        ]
        self._done += len(ready)
        return [self.pending.pop(i)[1] for i in ready]


def _run(
    grid: _FakeGrid, config: FedBuffConfig, versions: int, timeout: float = 100.0
) -> tuple[FedBuff, list[UpdateRecord], dict[int, float]]:
    records: list[UpdateRecord] = []

    def sleep(seconds: float) -> None:
        grid.clock[0] += int(seconds * 1e9)

    evaluated: dict[int, float] = {}

    def evaluate(version: int, arrays: ArrayRecord) -> MetricRecord:
        evaluated[version] = float(arrays["b"].numpy()[0])
        return MetricRecord({"b": evaluated[version]})

    strategy = FedBuff(
        config,
        on_update=records.append,
        poll_interval_s=0.1,
        clock_ns=lambda: grid.clock[0],
        sleep=sleep,
    )
    arrays = ArrayRecord({k: Array(v) for k, v in _params().items()})
    strategy.start(
        grid,  # type: ignore[arg-type]
        arrays,
        num_rounds=versions,
        timeout=timeout,
        train_config=ConfigRecord({"lr": 0.1}),
        evaluate_fn=evaluate,
    )
    return strategy, records, evaluated


def test_grid_loop_keeps_c_busy_and_records_staleness() -> None:
    grid = _FakeGrid(clock=[0], latency_s={1: 1.0, 2: 1.0, 3: 1.0, 4: 5.0})
    config = FedBuffConfig(
        concurrency=3,
        buffer_size=2,
        staleness_exponent=0.0,
        server_learning_rate=1.0,
        server_momentum=0.0,
    )

    strategy, records, evaluated = _run(grid, config, versions=4)

    assert grid.max_in_flight == 3
    applied = [r for r in records if r.outcome == "applied"]
    assert sum(r.server_step for r in applied) == 4
    assert all(
        r.staleness == r.version_after - r.trained_on_version - r.server_step
        for r in applied
    )
    # Each client adds 1 to the model it downloaded, so every delta is +1 against
    # its own version (not the current one): with K 2, lr 1 and no staleness
    # discount, version v is the initial model plus v.
    assert evaluated == {0: 0.0, 1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0}
    # Every node got work, including the slow one.
    assert {r.node_id for r in records} == {1, 2, 3, 4}
    configs = [m.content.config_records["config"] for m in grid.pushed]
    assert all(c["lr"] == 0.1 and VERSION_KEY in c for c in configs)
    versions = [c[VERSION_KEY] for c in configs]
    assert versions == sorted(versions)
    # Records carry the arrival instant on the fake clock and the reply match.
    assert all(r.arrival_ns is not None and r.sent_ns is not None for r in applied)
    assert all(r.arrival_ns >= r.sent_ns + 1e9 for r in applied)  # type: ignore[operator]
    assert {r.message_id for r in applied} <= {
        m.metadata.message_id for m in grid.pushed
    }
    assert strategy.records == records


def test_grid_loop_drops_stale_and_times_out_silent_nodes() -> None:
    inf = float("inf")
    grid = _FakeGrid(
        clock=[0], latency_s={1: 1.0, 2: 1.0, 3: 6.0, 5: inf}, failing=frozenset({2})
    )
    config = FedBuffConfig(
        concurrency=4, buffer_size=1, max_staleness=2, server_momentum=0.0
    )

    _, records, _ = _run(grid, config, versions=15, timeout=10.0)

    counts = summarize(records)
    assert counts["failed"] >= 1 and counts["timed-out"] >= 1
    assert all(r.node_id == 5 for r in records if r.outcome == "timed-out")
    dropped = [r for r in records if r.outcome == "dropped"]
    assert dropped and all(r.staleness is not None and r.staleness > 2 for r in dropped)
    assert all(r.node_id == 3 for r in dropped)
    applied = [r for r in records if r.outcome == "applied"]
    assert all(r.staleness is not None and r.staleness <= 2 for r in applied)


def test_grid_loop_stops_at_max_wall_time_when_nobody_answers() -> None:
    grid = _FakeGrid(clock=[0], latency_s={1: float("inf")})
    records: list[UpdateRecord] = []
    strategy = FedBuff(
        FedBuffConfig(concurrency=1, buffer_size=1),
        on_update=records.append,
        poll_interval_s=1.0,
        max_wall_s=10.0,
        clock_ns=lambda: grid.clock[0],
        sleep=lambda s: grid.clock.__setitem__(0, grid.clock[0] + int(s * 1e9)),
    )
    arrays = ArrayRecord({k: Array(v) for k, v in _params().items()})

    result = strategy.start(grid, arrays, num_rounds=2, timeout=100.0)  # type: ignore[arg-type]

    assert grid.clock[0] <= 12 * 10**9
    assert [r.outcome for r in records] == ["abandoned"]
    np.testing.assert_array_equal(result.arrays["w"].numpy(), _params()["w"])


# --- Flower's real simulation runtime ----------------------------------------


def _tiny_model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    )


_SIM_OUT: dict[str, object] = {}
_sim_client = ClientApp()


@_sim_client.train()
def _sim_train(msg: Message, context: Context) -> Message:
    config = msg.content.config_records["config"]
    arrays = msg.content.array_records["arrays"]
    if MASK_KEY in config:  # a HeteroFL sub-model
        model = build_submodel(_tiny_model(), arrays)
    else:
        model = _tiny_model()
        model.load_state_dict(arrays.to_torch_state_dict())
    if context.node_config["partition-id"] == 0 and VERSION_KEY in config:
        time.sleep(0.5)  # the FedBuff straggler
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    content = RecordDict(
        {
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord({"num-examples": 16, "loss": loss.item()}),
        }
    )
    return Message(content, reply_to=msg)


_sim_server = ServerApp()


@_sim_server.main()
def _sim_main(grid: Grid, context: Context) -> None:
    model = _tiny_model()
    heterofl = HeteroFL(
        plan_from_model(model),
        mode="static",
        ratios=(0.5, 0.25, 0.25),
        fraction_evaluate=0.0,
        min_available_nodes=3,
        min_train_nodes=3,
    )
    _SIM_OUT["heterofl"] = heterofl.start(
        grid, ArrayRecord(model.state_dict()), num_rounds=2, timeout=60
    )
    records: list[UpdateRecord] = []
    fedbuff = FedBuff(
        FedBuffConfig(concurrency=3, buffer_size=2),
        on_update=records.append,
        poll_interval_s=0.2,
        max_wall_s=60,
    )
    _SIM_OUT["fedbuff"] = fedbuff.start(
        grid, ArrayRecord(model.state_dict()), num_rounds=10, timeout=30
    )
    _SIM_OUT["records"] = records


def test_heterofl_and_fedbuff_run_in_flowers_simulation_runtime() -> None:
    # One runtime start for both strategies: Ray's start-up dominates the cost.
    _SIM_OUT.clear()

    run_simulation(
        _sim_server,
        _sim_client,
        num_supernodes=3,
        backend_config={"client_resources": {"num_cpus": 1}},
    )

    heterofl = _SIM_OUT["heterofl"]
    assert isinstance(heterofl, Result)
    assert sorted(heterofl.train_metrics_clientapp) == [1, 2]
    # Static with no full-capacity client: half the hidden units are never trained.
    metrics = heterofl.train_metrics_clientapp[2]
    assert metrics["gamma-star"] == 0.0
    assert float(metrics["never-covered-fraction"]) > 0.3  # type: ignore[arg-type]
    assert heterofl.arrays["0.weight"].shape == (8, 4)
    records = _SIM_OUT["records"]
    assert isinstance(records, list)
    applied = [r for r in records if r.outcome == "applied"]
    assert sum(r.server_step for r in applied) == 10
    # The straggler (0.5 s per update against about 0.2 s for the others) comes
    # back after the others moved the model on: 10 versions take 20 fast updates.
    assert max(r.staleness or 0 for r in applied) >= 1, [
        (r.node_id % 1000, r.trained_on_version, r.staleness, r.sent_ns, r.arrival_ns)
        for r in records
    ]


class _BlockingGrid:
    """pull_messages of the id in ``slow`` blocks until ``release`` is set."""

    def __init__(self, slow: str) -> None:
        self.slow = slow
        self.release = threading.Event()
        self.calls: list[list[str]] = []

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        ids = list(message_ids)
        self.calls.append(ids)
        if self.slow in ids:
            self.release.wait(10)
        return [_reply_to(i) for i in ids]


def _reply_to(message_id: str) -> Message:
    sent = Message(RecordDict(), dst_node_id=1, message_type="train")
    sent.metadata.__dict__["_message_id"] = message_id
    return Message(RecordDict(), reply_to=sent)


def test_a_slow_upload_holds_up_no_other_reply() -> None:
    grid = _BlockingGrid(slow="slow")
    pulls = MessagePulls(grid)  # type: ignore[arg-type]

    first = pulls.poll(["slow", "fast"], wait_s=0.5)

    # Flower's one call for both would have waited for the slow upload.
    assert [r.metadata.reply_to_message_id for r in first] == ["fast"]
    assert sorted(map(tuple, grid.calls)) == [("fast",), ("slow",)]
    # The blocked pull is not started twice while it runs.
    (second,) = pulls.poll(["slow", "fast2"], wait_s=0.5)
    assert second.metadata.reply_to_message_id == "fast2"
    assert [c for c in grid.calls if c == ["slow"]] == [["slow"]]
    grid.release.set()
    late = pulls.poll(["slow"], wait_s=5.0)
    assert [r.metadata.reply_to_message_id for r in late] == ["slow"]
