import pytest
import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.app.message.message import make_message
from flwr.app.metadata import Metadata
from flwr.common import MessageType

from strategies.client_side import LocalTraining, ModelShape, OptimizerSettings
from strategies.mas import (
    AFFINITY_KEY,
    CLIENT_SIDE,
    COMPUTE_METRIC,
    MAS,
    TASKS,
    MultiTaskNet,
    affinities,
    best_partition,
    mas_train,
    partition_score,
    partitions,
    shared_keys,
    split_state,
    task_targets,
)
from strategies.registry import build_strategy, check_parameters
from strategies.settings_iii import MASConfig
from workloads.digits import partition


def _data(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    share = partition(0, 4, seed=0, validation_fraction=0.0)
    return share.x_train[:n], share.y_train[:n]


def _reply(state: dict[str, torch.Tensor], metrics: dict, node: int) -> Message:
    content = RecordDict(
        {"arrays": ArrayRecord(state), "metrics": MetricRecord(metrics)}
    )
    metadata = Metadata(
        run_id=1,
        message_id="",
        src_node_id=node,
        dst_node_id=0,
        reply_to_message_id="m",
        group_id="1",
        created_at=0.0,
        ttl=60.0,
        message_type=MessageType.TRAIN,
    )
    return make_message(metadata=metadata, content=content)


def test_task_targets_follow_the_digit_labels() -> None:
    x = torch.rand(6, 1, 32, 32)
    y = torch.tensor([0, 1, 5, 6, 7, 9])
    cls, parity, ge5, round_, recon = task_targets(x, y)
    assert cls.tolist() == y.tolist()
    assert parity.tolist() == [0, 1, 1, 0, 1, 1]
    assert ge5.tolist() == [0, 0, 1, 1, 1, 1]
    assert round_.tolist() == [1, 0, 0, 1, 0, 1]
    assert recon.shape == (6, 64)


def test_partitions_are_every_set_partition_and_the_best_follows_affinity() -> None:
    assert len(list(partitions(5, 2))) == 15  # Stirling numbers S(5, k)
    assert len(list(partitions(5, 3))) == 25
    assert len(list(partitions(5, 5))) == 1
    # Two blocks that help each other inside and hurt across.
    z = -torch.ones(5, 5)
    for block in ((0, 2, 4), (1, 3)):
        for i in block:
            for j in block:
                z[i, j] = 0.5
    assert best_partition(z, 2) == ((0, 2, 4), (1, 3))
    assert partition_score(z, ((0, 2, 4), (1, 3))) > partition_score(
        z, ((0, 1), (2, 3, 4))
    )


def test_split_copies_the_merged_encoder_to_every_group() -> None:
    torch.manual_seed(0)
    state = MultiTaskNet(1, 8).state_dict()
    assert shared_keys(state) == [
        k for k in state if not k.startswith("encoders.") or k.startswith("encoders.0.")
    ]
    out = split_state(state, ((0, 3), (1, 2, 4)))
    assert out["assignment"].tolist() == [0, 1, 1, 0, 1]
    for key, value in state.items():
        if key.startswith("encoders.0."):
            torch.testing.assert_close(out[key.replace(".0.", ".1.", 1)], value)
    travelling = shared_keys(out)
    assert any(k.startswith("encoders.1.") for k in travelling)
    assert not any(k.startswith("encoders.2.") for k in travelling)


def test_affinities_measure_a_look_ahead_and_leave_the_model_alone() -> None:
    torch.manual_seed(0)
    model = MultiTaskNet(1, 16)
    x, y = _data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    z = affinities(model, x, task_targets(x, y), lr=0.1, batches=2, batch_size=32)
    assert z.shape == (len(TASKS), len(TASKS))
    # a step on a task's own loss lowers that loss (small step, same batch)
    assert all(float(z[i, i]) > 0 for i in range(len(TASKS)))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])
    # with every task on its own encoder, a step on i changes no other task
    model.load_state_dict(
        split_state(model.state_dict(), tuple((t,) for t in range(5)))
    )
    z = affinities(model, x, task_targets(x, y), lr=0.1, batches=1, batch_size=32)
    off = z - torch.diag(torch.diag(z))
    assert float(off.abs().max()) == pytest.approx(0.0, abs=1e-6)


def test_client_hook_trains_and_sends_affinities_only_when_asked() -> None:
    torch.manual_seed(0)
    model = CLIENT_SIDE.build_model(ModelShape(1, 10, 0.25))
    x, y = _data(64)

    def task(measure: int) -> LocalTraining:
        return LocalTraining(
            x,
            y,
            1,
            16,
            0,
            OptimizerSettings(lr=0.05),
            {"affinity_batches": 1},
            {AFFINITY_KEY: measure},
            RecordDict(),
        )

    result, extra = mas_train(model, task(0))
    assert result.num_examples == 64 and AFFINITY_KEY not in extra
    assert extra[COMPUTE_METRIC] > 0
    _, extra = mas_train(model, task(1))
    assert len(extra[AFFINITY_KEY]) == 25
    with pytest.raises(ValueError, match="strategy mas"):
        mas_train(
            model,
            LocalTraining(
                x, y, 1, 16, 0, OptimizerSettings(lr=0.05), {}, {}, RecordDict()
            ),
        )


def test_client_side_sends_only_the_encoders_in_use() -> None:
    model = CLIENT_SIDE.build_model(ModelShape(1, 10, 0.25))
    sent = CLIENT_SIDE.shared_state(model)
    assert {k.split(".")[1] for k in sent if k.startswith("encoders.")} == {"0"}
    fresh = CLIENT_SIDE.build_model(ModelShape(1, 10, 0.25))
    CLIENT_SIDE.load_global(fresh, ArrayRecord(sent))
    torch.testing.assert_close(
        fresh.state_dict()["heads.0.weight"], model.state_dict()["heads.0.weight"]
    )
    partial = {k: v for k, v in sent.items() if k != "encoders.0.0.weight"}
    with pytest.raises(ValueError, match="miss keys"):
        CLIENT_SIDE.load_global(fresh, ArrayRecord(partial))


def test_server_averages_then_splits_on_the_measured_affinities() -> None:
    torch.manual_seed(0)
    model = MultiTaskNet(1, 8)
    strategy = MAS(MASConfig(merge_rounds=1, groups=2))
    strategy.state = {k: v.clone() for k, v in model.state_dict().items()}
    z = -torch.ones(5, 5)
    for block in ((0, 1), (2, 3, 4)):
        for i in block:
            for j in block:
                z[i, j] = 0.3
    replies = []
    for node, offset in ((1, 1.0), (2, 3.0)):
        state = {
            k: v + offset if v.is_floating_point() else v
            for k, v in strategy.state.items()
            if k in shared_keys(strategy.state)
        }
        metrics = {"num-examples": 10 * node, AFFINITY_KEY: z.flatten().tolist()}
        replies.append(_reply(state, metrics, node))
    merged, _ = strategy.aggregate_train(1, replies)
    assert merged is not None
    out = merged.to_torch_state_dict()
    assert strategy.groups == ((0, 1), (2, 3, 4))
    assert out["assignment"].tolist() == [0, 0, 1, 1, 1]
    # the merged average, (10 * 1 + 20 * 3) / 30 = 7 / 3, is every group's start
    start = model.state_dict()["encoders.0.0.weight"] + 7 / 3
    torch.testing.assert_close(out["encoders.0.0.weight"], start)
    torch.testing.assert_close(out["encoders.1.0.weight"], start)


def test_registry_checks_and_builds_mas() -> None:
    check_parameters("mas", {"merge_rounds": 2, "groups": 3, "mode": "independent"})
    with pytest.raises(ValueError, match="groups must be in 1..5"):
        check_parameters("mas", {"groups": 7})
    with pytest.raises(ValueError, match="mode must be"):
        check_parameters("mas", {"mode": "both"})
    strategy = build_strategy("mas", {"merge_rounds": 2})
    assert isinstance(strategy, MAS) and strategy.config.merge_rounds == 2
