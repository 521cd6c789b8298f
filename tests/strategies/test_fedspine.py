import pytest
import torch
from flwr.app import RecordDict

from strategies.client_side import LocalTraining, OptimizerSettings
from strategies.fedspine import (
    RANK_KEY,
    RATIO_KEY,
    SECONDS,
    DeviceBandit,
    SpineServer,
    SpineUpdate,
    fedspine_train,
    raw_rewards,
    spine_train,
)
from strategies.fedspine_model import (
    HIDDEN,
    TinyTransformer,
    channel_masks,
    coverage,
    lora_numel,
    prune,
    set_rank,
    trainable_keys,
    work_per_example,
)
from strategies.fedspine_settings import LORA_SLOTS, FedSpineConfig
from strategies.method_options_iii import fedspine_config
from strategies.registry import (
    build_strategy,
    check_dataset,
    check_parameters,
)
from workloads import textcls


def _model(seed: int = 0) -> TinyTransformer:
    torch.manual_seed(seed)
    return TinyTransformer()


def test_generated_sentences_are_seeded_and_labelled_by_the_majority_topic() -> None:
    x, y = textcls.sentences(50, seed=3, style=1)
    again, _ = textcls.sentences(50, seed=3, style=1)
    assert torch.equal(x, again) and x.dtype == torch.int64
    assert x.shape == (50, textcls.SEQ_LEN) and int(x.min()) >= 1
    assert int(x.max()) < textcls.VOCAB_SIZE
    for sentence, label in zip(x, y, strict=True):
        counts = [
            int(torch.isin(sentence, textcls.topic_tokens(c)).sum())
            for c in range(textcls.NUM_CLASSES)
        ]
        assert counts.index(max(counts)) == int(label)
        assert sorted(counts)[-1] > sorted(counts)[-2]  # a strict majority
    split = textcls.node_data(2, 4, 30, seed=0)
    assert len(split.x_train) == 30 and len(split.x_test) >= 1
    with pytest.raises(ValueError, match="partition-id"):
        textcls.node_data(4, 4, 30, seed=0)


def test_lora_slots_start_at_zero_and_rank_masks_the_rest() -> None:
    model = _model()
    x = textcls.sentences(8, seed=0)[0]
    before = model(x)
    for layer in [model.blocks[0].fc1, model.blocks[1].qkv]:
        assert layer.lora_a.shape[0] == LORA_SLOTS
        assert torch.count_nonzero(layer.lora_b) == 0
    with torch.no_grad():
        model.blocks[0].fc1.lora_b[:, 5] = 1.0  # a slot beyond rank 4
    set_rank(model, 4)
    assert torch.allclose(model(x), before)
    set_rank(model, 8)
    assert not torch.allclose(model(x), before)
    with pytest.raises(ValueError, match="rank"):
        set_rank(model, LORA_SLOTS + 1)


def test_pruning_keeps_the_most_important_channels() -> None:
    model = _model()
    with torch.no_grad():
        model.blocks[0].fc1.base.weight[7] *= 100  # channel 7 matters most
        model.blocks[0].fc1.base.weight[9] *= 0  # channel 9 matters not at all
    masks = channel_masks(model, 0.75)
    assert int(masks[0].sum()) == HIDDEN // 4
    assert bool(masks[0][7]) and not bool(masks[0][9])
    prune(model, 0.5)
    assert int(model.blocks[1].channel_mask.sum()) == HIDDEN // 2
    # a pruned channel's activation is zero: its fc2 column no longer matters
    x = textcls.sentences(4, seed=1)[0]
    out = model(x)
    kept = model.blocks[0].channel_mask.bool()
    dropped = int(torch.nonzero(~kept)[0])
    with torch.no_grad():
        model.blocks[0].fc2.base.weight[:, dropped] = 50.0
    assert torch.allclose(model(x), out)


def test_training_moves_only_active_slots_kept_channels_and_head() -> None:
    model = _model()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    split = textcls.node_data(0, 4, 48, seed=0)
    result = spine_train(model, split.x_train, split.y_train, 0.5, 2, lr=0.01)
    assert result.train.steps == 3 and result.seconds > 0
    masks = [b.channel_mask.bool().clone() for b in model.blocks]
    cov = coverage(model, 2, masks)
    after = model.state_dict()
    for key, value in after.items():
        moved = (value - base[key]).abs() > 0
        if key not in trainable_keys(model):
            assert not moved.any(), f"{key} is frozen but moved"
        else:
            assert not (moved & (cov[key] == 0)).any(), f"{key} moved outside coverage"
            assert moved.any(), f"{key} did not train"


def test_aggregation_averages_each_element_over_the_devices_that_covered_it() -> None:
    config = FedSpineConfig(
        policy="fixed", ratios=(0.0,), ranks=(2, 8), fixed_ratio=0.0, fixed_rank=2
    )
    model = _model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    server = SpineServer(config, start)
    key = "blocks.0.fc1.lora_b"
    low = {k: v.clone() for k, v in start.items()}
    high = {k: v.clone() for k, v in start.items()}
    low[key][:, :2] += 1.0  # rank 2 covers slots 0-1
    high[key] += 3.0  # rank 8 covers all
    merged = server.aggregate(
        [
            SpineUpdate(1, low, (0.0, 2), 10, 0.1, 1.0),
            SpineUpdate(2, high, (0.0, 8), 10, 0.1, 1.0),
        ]
    )
    delta = merged[key] - start[key]
    assert torch.allclose(delta[:, :2], torch.full_like(delta[:, :2], 2.0))
    assert torch.allclose(delta[:, 2:], torch.full_like(delta[:, 2:], 3.0))
    # frozen base weights never change
    assert torch.equal(
        merged["blocks.0.fc1.base.weight"], start["blocks.0.fc1.base.weight"]
    )


def test_bandit_tries_every_arm_then_exploits_and_rewards_use_the_pace() -> None:
    arms = ((0.0, 8), (0.75, 2))
    bandit = DeviceBandit(arms, exploration=0.0, discount=1.0, seed=3)
    first = bandit.choose()
    bandit.update(first, 0.9 if first == arms[1] else 0.2)
    second = bandit.choose()
    assert {first, second} == set(arms)
    bandit.update(second, 0.9 if second == arms[1] else 0.2)
    assert bandit.choose() == arms[1]
    # pace = the slowest OTHER device (quantile 1): the 1 s and 2 s devices
    # are paid per 8 s (the straggler sets the round), the 8 s straggler per
    # its own 8 s; quantile 0: the fastest other device
    updates = [
        SpineUpdate(n, {}, arms[0], 1, gain, seconds)
        for n, (gain, seconds) in enumerate([(0.4, 1.0), (0.4, 2.0), (0.4, 8.0)])
    ]
    assert raw_rewards(updates, 1.0) == pytest.approx([0.05, 0.05, 0.05])
    assert raw_rewards(updates, 0.0) == pytest.approx([0.2, 0.2, 0.05])


@pytest.mark.parametrize("normalise", ["max", "decay", "gain"])
def test_ucb_server_learns_to_give_a_slow_device_a_cheaper_arm(normalise: str) -> None:
    # full model: gain 0.3, pruned 75 %: gain 0.2 (noisy); node 3 is 10x slower
    config = FedSpineConfig(ratios=(0.0, 0.75), ranks=(8,), normalise=normalise)  # type: ignore[arg-type]
    server = SpineServer(config, _model().state_dict())
    speeds = {1: 1.0, 2: 1.0, 3: 0.1}
    noise = torch.Generator().manual_seed(0)
    for _ in range(40):
        chosen = server.choose(speeds)
        updates = []
        for node, (ratio, rank) in chosen.items():
            gain = (0.3 if ratio == 0.0 else 0.2) + 0.05 * float(
                torch.randn(1, generator=noise)
            )
            seconds = work_per_example(ratio, rank) / (speeds[node] * 1e6)
            updates.append(
                SpineUpdate(node, server.global_state, (ratio, rank), 1, gain, seconds)
            )
        server.aggregate(updates)
    last = server.history[-20:]
    pruned = {n: sum(h[n][0] == 0.75 for h in last) for n in speeds}
    # the straggler prunes (it sets the round time), the fast ones do not
    # (pruning would not shorten the round)
    assert pruned[3] >= 14, pruned
    assert pruned[1] <= 6 and pruned[2] <= 6, pruned


def test_work_and_upload_shrink_with_pruning_and_rank() -> None:
    assert (
        work_per_example(0.75, 2) < work_per_example(0.0, 2) < work_per_example(0.0, 8)
    )
    assert lora_numel(2) < lora_numel(8)


def test_client_hook_reports_the_arm_and_seconds_and_refuses_images() -> None:
    model = _model()
    split = textcls.node_data(1, 4, 32, seed=0)
    config = {RATIO_KEY: 0.25, RANK_KEY: 4}
    task = LocalTraining(
        split.x_train,
        split.y_train,
        1,
        8,
        0,
        OptimizerSettings(lr=0.01),
        {},
        config,
        RecordDict(),
    )
    _, metrics = fedspine_train(model, task)
    assert metrics[RATIO_KEY] == 0.25 and metrics[RANK_KEY] == 4
    assert metrics[SECONDS] > 0
    # the model goes back with every slot and channel active
    assert int(model.blocks[0].channel_mask.sum()) == HIDDEN
    images = LocalTraining(
        torch.randn(32, 1, 8, 8),
        split.y_train,
        1,
        8,
        0,
        OptimizerSettings(lr=0.01),
        {},
        config,
        RecordDict(),
    )
    with pytest.raises(ValueError, match="dataset to text"):
        fedspine_train(model, images)
    with pytest.raises(ValueError, match=RATIO_KEY):
        fedspine_train(
            model,
            LocalTraining(
                split.x_train,
                split.y_train,
                1,
                8,
                0,
                OptimizerSettings(lr=0.01),
                {},
                {},
                RecordDict(),
            ),
        )


def test_registry_checks_and_builds_fedspine() -> None:
    assert fedspine_config({"ratios": "0,0.5", "ranks": [2, 8]}).arms == (
        (0.0, 2),
        (0.0, 8),
        (0.5, 2),
        (0.5, 8),
    )
    check_parameters(
        "fedspine", {"policy": "fixed", "fixed_ratio": 0.25, "fixed_rank": 2}
    )
    with pytest.raises(ValueError, match="ranks must be"):
        check_parameters("fedspine", {"ranks": [2, 16]})
    with pytest.raises(ValueError, match="fixed_ratio"):
        check_parameters("fedspine", {"policy": "fixed", "fixed_ratio": 0.3})
    with pytest.raises(ValueError, match="policy must be"):
        check_parameters("fedspine", {"policy": "greedy"})
    strategy = build_strategy("fedspine", {"ranks": "2,4", "min_train_nodes": 2})
    assert type(strategy).__name__ == "FedSpine"
    check_dataset("fedspine", "text")
    with pytest.raises(ValueError, match="dataset"):
        check_dataset("fedspine", "digits")
    with pytest.raises(ValueError, match="dataset"):
        check_dataset("fedavg", "text")
