"""Tests of strategies/heterofl.py: masks, extraction, coverage averaging, strategy."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from torch import nn

from strategies.heterofl import (
    MASK_KEY,
    RATIO_KEY,
    ClientResult,
    CoverageTracker,
    HeteroFL,
    aggregate_by_coverage,
    attach_scaler,
    build_submodel,
    capacity_reply,
    declared_capacity,
    extract_submodel,
    kept_channels,
    mask_from_json,
    mask_to_json,
    plan_from_model,
    read_assignment,
    round_masks,
)
from workloads.squeezenet import SqueezeNetConfig, build_model


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)
    )


def _state(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


@pytest.fixture(autouse=True)
def _task_identity() -> Iterator[None]:
    # Message() outside a Flower process needs a task identity.
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield


@pytest.mark.parametrize(
    ("size", "ratio", "kept"),
    [(10, 0.3, 3), (10, 0.25, 3), (64, 0.5, 32), (3, 0.1, 1), (8, 1.0, 8)],
)
def test_kept_channels_is_ceil_at_least_one(size: int, ratio: float, kept: int) -> None:
    assert kept_channels(size, ratio) == kept


def test_ratio_outside_unit_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity ratio"):
        kept_channels(4, 0.0)


def test_plan_threads_channels_through_squeezenet_fire_concat() -> None:
    plan = plan_from_model(build_model(SqueezeNetConfig(width=0.25, batch_norm=True)))
    # The second Fire's squeeze reads both expands of the first, concatenated.
    axes = plan.axes["features.3.squeeze.0.weight"]
    assert axes[1] == ("features.2.expand1x1.0", "features.2.expand3x3.0")
    assert plan.axes["features.2.squeeze.1.running_var"] == (("features.2.squeeze.0",),)
    # Classes and image channels are never reduced.
    assert plan.axes["classifier.1.weight"][0] == ()
    assert plan.axes["features.0.0.weight"][1] == ()


def test_submodel_of_squeezenet_runs_and_full_mask_equals_full_model() -> None:
    model = build_model(SqueezeNetConfig(width=0.25, batch_norm=True), seed=1).eval()
    plan = plan_from_model(model)
    state = _state(model)
    masks = round_masks(plan, {1: 0.5, 2: 1.0}, "random", server_round=2, seed=3)
    x = torch.randn(2, 1, 32, 32)
    small = build_submodel(
        model,
        {
            k: torch.from_numpy(v)
            for k, v in extract_submodel(plan, state, masks[1]).items()
        },
    ).eval()
    full = build_submodel(
        model,
        {
            k: torch.from_numpy(v)
            for k, v in extract_submodel(plan, state, masks[2]).items()
        },
    ).eval()
    assert small(x).shape == (2, 10)
    assert sum(p.numel() for p in small.parameters()) < 0.4 * sum(
        p.numel() for p in model.parameters()
    )
    torch.testing.assert_close(full(x), model(x))


def test_static_mask_takes_the_first_channels_and_submodel_matches_slices() -> None:
    model = _mlp()
    plan = plan_from_model(model)
    state = _state(model)
    mask = round_masks(plan, {7: 0.5}, "static", server_round=5)[7]
    sub = extract_submodel(plan, state, mask)
    np.testing.assert_array_equal(sub["0.weight"], state["0.weight"][:2, :])
    np.testing.assert_array_equal(sub["2.weight"], state["2.weight"][:2, :2])
    np.testing.assert_array_equal(sub["4.weight"], state["4.weight"][:, :2])
    np.testing.assert_array_equal(sub["4.bias"], state["4.bias"])


def test_coverage_weighted_average_and_uncovered_parameters_keep_their_value() -> None:
    model = _mlp()
    plan = plan_from_model(model)
    state = _state(model)
    g0, g2 = "0", "2"
    mask_a = {g0: np.array([0, 1]), g2: np.array([0, 1])}
    mask_b = {g0: np.array([1, 2]), g2: np.array([1, 2])}
    sub_a = {
        k: np.full_like(v, 10.0)
        for k, v in extract_submodel(plan, state, mask_a).items()
    }
    sub_b = {
        k: np.full_like(v, 20.0)
        for k, v in extract_submodel(plan, state, mask_b).items()
    }
    merged = aggregate_by_coverage(
        plan,
        state,
        [ClientResult(sub_a, mask_a, 1.0), ClientResult(sub_b, mask_b, 3.0)],
    )
    first = merged.state["0.weight"]
    np.testing.assert_allclose(first[0], 10.0)
    np.testing.assert_allclose(first[1], (10 * 1 + 20 * 3) / 4)
    np.testing.assert_allclose(first[2], 20.0)
    np.testing.assert_array_equal(first[3], state["0.weight"][3])  # nobody covered
    hidden = merged.state["2.weight"]
    assert hidden[0, 2] == state["2.weight"][0, 2]  # row of A, column of B only
    assert hidden[1, 1] == pytest.approx(17.5)
    np.testing.assert_allclose(
        np.asarray(merged.state["4.bias"], float), 17.5
    )  # everyone covers it
    assert merged.coverage["2.weight"][1, 1] == 2 and merged.coverage["0.bias"][3] == 0
    assert merged.min_coverage == 0


def _coverage_run(mode: str, ratios: dict[int, float], rounds: int) -> CoverageTracker:
    model = _mlp()
    plan = plan_from_model(model)
    state = _state(model)
    tracker = CoverageTracker()
    for server_round in range(1, rounds + 1):
        masks = round_masks(plan, ratios, mode, server_round=server_round, seed=1)  # type: ignore[arg-type]
        results = [
            ClientResult(extract_submodel(plan, state, masks[c]), masks[c], 1.0)
            for c in ratios
        ]
        tracker.update(aggregate_by_coverage(plan, state, results).coverage)
    return tracker


def test_static_without_full_client_never_covers_part_of_the_model() -> None:
    tracker = _coverage_run("static", {1: 0.5, 2: 0.5, 3: 0.25}, rounds=20)
    assert tracker.gamma_star == 0
    assert tracker.never_covered_fraction > 0.3


@pytest.mark.parametrize("mode", ["rolling", "random"])
def test_rolling_and_random_cover_every_parameter_over_rounds(mode: str) -> None:
    tracker = _coverage_run(mode, {1: 0.5, 2: 0.5, 3: 0.25}, rounds=20)
    assert tracker.never_covered_fraction == 0.0
    assert tracker.gamma_star == 0  # no client holds both ends of every weight


def test_lockstep_rolling_windows_leave_far_apart_weights_untrained() -> None:
    # Why rolling_drift exists: FedRolex-style windows moving in lockstep never
    # cover a weight joining channels further apart than the window.
    model = _mlp()
    plan = plan_from_model(model)
    state = _state(model)
    tracker = CoverageTracker()
    for server_round in range(1, 21):
        masks = round_masks(
            plan, {1: 0.5}, "rolling", server_round=server_round, rolling_drift=False
        )
        result = ClientResult(extract_submodel(plan, state, masks[1]), masks[1], 1.0)
        tracker.update(aggregate_by_coverage(plan, state, [result]).coverage)
    never = ~tracker.ever_covered["2.weight"]
    far_apart = [(o, i) for o in range(4) for i in range(4) if (o - i) % 4 == 2]
    assert sorted(zip(*np.nonzero(never), strict=True)) == far_apart


def test_a_full_capacity_client_gives_gamma_star_one() -> None:
    tracker = _coverage_run("static", {1: 1.0, 2: 0.5}, rounds=3)
    assert tracker.gamma_star == 1 and tracker.never_covered_fraction == 0.0


def test_rolling_window_advances_each_round_and_wraps() -> None:
    plan = plan_from_model(_mlp())
    first = round_masks(plan, {1: 0.5}, "rolling", server_round=1)[1]["0"]
    fourth = round_masks(plan, {1: 0.5}, "rolling", server_round=4)[1]["0"]
    assert first.tolist() == [0, 1] and fourth.tolist() == [0, 3]


def test_mask_json_round_trip() -> None:
    mask = {"a.b": np.array([0, 3, 5]), "c": np.array([1])}
    back = mask_from_json(mask_to_json(mask))
    assert {k: v.tolist() for k, v in back.items()} == {"a.b": [0, 3, 5], "c": [1]}


def test_scaler_divides_reduced_inputs_only_in_training() -> None:
    layers = [nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)]
    with torch.no_grad():
        for layer in layers:
            layer.weight.fill_(1.0)
    model = nn.Sequential(*layers)
    attach_scaler(model, 0.5)
    x = torch.ones(1, 1)
    model.train()
    assert model(x).item() == pytest.approx(2.0)
    model.eval()
    assert model(x).item() == pytest.approx(1.0)


class _FakeGrid:
    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = node_ids

    def get_node_ids(self) -> Iterable[int]:
        return list(self.node_ids)


def _reply(message: Message, scale: float, examples: int) -> Message:
    message.metadata.__dict__["_message_id"] = str(uuid.uuid4())
    arrays = message.content.array_records["arrays"]
    trained = ArrayRecord(
        {k: torch.from_numpy(v.numpy() * 0 + scale) for k, v in arrays.items()}
    )
    content = RecordDict(
        {"arrays": trained, "metrics": MetricRecord({"num-examples": examples})}
    )
    reply = Message(content, reply_to=message)
    reply.metadata.__dict__["_src_node_id"] = message.metadata.dst_node_id
    return reply


def test_strategy_sends_submodels_and_reports_gamma_per_round() -> None:
    model = _mlp()
    plan = plan_from_model(model)
    strategy = HeteroFL(
        plan,
        mode="static",
        ratios=(0.5, 0.25),
        min_available_nodes=2,
        min_train_nodes=2,
        on_coverage=lambda rnd, values: logged.append((rnd, values)),
    )
    logged: list[tuple[int, dict[str, float]]] = []
    grid = _FakeGrid([11, 12])
    arrays = ArrayRecord(model.state_dict())

    config = ConfigRecord({"lr": 0.1})
    messages = list(strategy.configure_train(1, arrays, config, grid))  # type: ignore[arg-type]

    assert [m.metadata.dst_node_id for m in messages] == [11, 12]
    shapes = [m.content.array_records["arrays"]["0.weight"].shape for m in messages]
    assert shapes == [(2, 3), (1, 3)]
    assignment = read_assignment(messages[1].content.config_records["config"])
    assert assignment.ratio == 0.25 and assignment.mask["2"].tolist() == [0]
    assert messages[0].content.config_records["config"]["lr"] == 0.1
    assert RATIO_KEY in messages[0].content.config_records["config"]
    assert MASK_KEY in messages[0].content.config_records["config"]

    replies = [_reply(messages[0], 1.0, 10), _reply(messages[1], 4.0, 30)]
    new_arrays, metrics = strategy.aggregate_train(1, replies)

    assert new_arrays is not None and metrics is not None
    merged = new_arrays["0.weight"].numpy()
    np.testing.assert_allclose(merged[0], (1.0 * 10 + 4.0 * 30) / 40)
    np.testing.assert_allclose(merged[1], 1.0)
    np.testing.assert_array_equal(
        merged[2:], model.state_dict()["0.weight"].numpy()[2:]
    )
    assert metrics["gamma-round"] == 0.0 and metrics["gamma-star"] == 0.0
    assert logged == [(1, {k: metrics[k] for k in logged[0][1]})]
    assert 0 < float(metrics["never-covered-fraction"]) < 1  # type: ignore[arg-type]


class _QueryGrid(_FakeGrid):
    """Nodes answer capacity queries from their node config; ``silent`` never do."""

    def __init__(
        self, node_configs: dict[int, dict[str, object]], silent: set[int]
    ) -> None:
        super().__init__(sorted([*node_configs, *silent]))
        self.node_configs = node_configs
        self.queries: list[Message] = []

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for message in messages:
            self.queries.append(message)
            node = message.metadata.dst_node_id
            if node not in self.node_configs:
                continue
            message.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            reply = Message(capacity_reply(self.node_configs[node]), reply_to=message)
            reply.metadata.__dict__["_src_node_id"] = node
            replies.append(reply)
        return replies


def test_nodes_declare_their_capacity_and_the_rest_get_the_campaign_ratios() -> None:
    model = _mlp()
    strategy = HeteroFL(
        plan_from_model(model),
        mode="static",
        ratios=(0.5,),
        capacity_from_nodes=True,
        min_available_nodes=3,
        min_train_nodes=3,
    )
    grid = _QueryGrid(
        {11: {"capacity-ratio": 0.25, "flowerbed-node": "pi3"}, 12: {}}, silent={13}
    )
    arrays = ArrayRecord(model.state_dict())

    for server_round in (1, 2):
        messages = list(
            strategy.configure_train(server_round, arrays, ConfigRecord(), grid)  # type: ignore[arg-type]
        )
        ratios = {
            m.metadata.dst_node_id: read_assignment(
                m.content.config_records["config"]
            ).ratio
            for m in messages
        }
        assert ratios == {11: 0.25, 12: 0.5, 13: 0.5}

    # Asked once per node, not every round, with Flower's query message type.
    assert sorted(q.metadata.dst_node_id for q in grid.queries) == [11, 12, 13]
    assert {q.metadata.message_type for q in grid.queries} == {"query.capacity"}
    assert strategy.declared == {11: 0.25, 12: None, 13: None}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.5, 0.5), (1, 1.0), ("0.25", 0.25), (0, None), (1.5, None), ("x", None)],
)
def test_declared_capacity_takes_only_ratios_in_the_unit_interval(
    value: object, expected: float | None
) -> None:
    assert declared_capacity(value) == expected
