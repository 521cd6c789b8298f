import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.app.message.message import make_message
from flwr.app.metadata import Metadata
from flwr.common import MessageType

from strategies.client_side import ModelShape
from strategies.proar import (
    CLIENT_SIDE,
    PROARPFed,
    draw_channels,
    effective_channel,
    ota_aggregate,
    personal_keys,
)
from strategies.registry import build_strategy, check_parameters, client_side
from strategies.settings_iii import OTAConfig

SHAPE = ModelShape(1, 10, 0.1, architecture="cnn")


def _reply(state: dict[str, torch.Tensor], n: int, node: int) -> Message:
    content = RecordDict(
        {
            "arrays": ArrayRecord(state),
            "metrics": MetricRecord({"num-examples": n}),
        }
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


def test_aligned_ris_phases_add_every_path_in_phase() -> None:
    rng = np.random.default_rng(0)
    direct, cascade = draw_channels(200, OTAConfig(ris_elements=16), rng)
    aligned = effective_channel(direct, cascade)
    np.testing.assert_allclose(np.abs(aligned), np.abs(direct) + np.abs(cascade).sum(1))
    random = effective_channel(direct, cascade, aligned=False)
    assert np.all(np.abs(aligned) >= np.abs(random) - 1e-12)
    assert np.mean(np.abs(aligned) ** 2) > 2 * np.mean(np.abs(random) ** 2)
    # no RIS: the direct path alone
    direct0, cascade0 = draw_channels(5, OTAConfig(ris_elements=0), rng)
    np.testing.assert_array_equal(effective_channel(direct0, cascade0), direct0)


def test_noiseless_perfect_csi_gives_the_weighted_mean() -> None:
    updates = [np.full(50, 1.0), np.full(50, 4.0)]
    config = OTAConfig(snr_db=300.0, ris_elements=8, truncation=0.0)
    result = ota_aggregate(updates, [1.0, 2.0], config, np.random.default_rng(1))
    assert result.transmitted == 2 and result.estimate is not None
    np.testing.assert_allclose(result.estimate, 3.0, rtol=1e-6)


def test_noise_shrinks_with_snr_and_with_ris_elements() -> None:
    rng = np.random.default_rng(2)
    updates = [rng.normal(0, 0.01, 1000) for _ in range(10)]
    truth = np.mean(updates, axis=0)

    def error(snr: float, n: int) -> float:
        errs = []
        for seed in range(20):
            cfg = OTAConfig(snr_db=snr, ris_elements=n, truncation=0.0)
            r = ota_aggregate(updates, [1.0] * 10, cfg, np.random.default_rng(seed))
            assert r.estimate is not None
            errs.append(float(np.sqrt(np.mean((r.estimate - truth) ** 2))))
        return float(np.median(errs))

    assert error(-10, 0) > error(10, 0) > error(30, 0)
    assert error(0, 0) > error(0, 4) > error(0, 64)


def test_truncation_silences_weak_clients_and_everyone_is_silence() -> None:
    updates = [np.ones(4), np.ones(4)]
    result = ota_aggregate(
        updates,
        [1, 1],
        OTAConfig(ris_elements=0, truncation=1e9),
        np.random.default_rng(0),
    )
    assert result.estimate is None and result.transmitted == 0 and result.truncated == 2
    with pytest.raises(ValueError, match="one weight per update"):
        ota_aggregate(updates, [1.0], OTAConfig(), np.random.default_rng(0))


def test_personal_head_is_the_classifier_and_stays_on_the_node() -> None:
    model = CLIENT_SIDE.build_model(SHAPE)
    keys = personal_keys(model)
    assert keys == {"classifier.weight", "classifier.bias"}
    state = RecordDict()
    CLIENT_SIDE.keep_local(model, state)
    assert not set(CLIENT_SIDE.shared_state(model)) & keys
    fresh = CLIENT_SIDE.build_model(SHAPE)
    assert CLIENT_SIDE.restore_local(fresh, state)
    torch.testing.assert_close(
        fresh.state_dict()["classifier.weight"], model.state_dict()["classifier.weight"]
    )


def test_server_aggregates_the_global_part_over_the_air_and_keeps_heads() -> None:
    torch.manual_seed(0)
    model = CLIENT_SIDE.build_model(SHAPE)
    local = personal_keys(model)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    config = OTAConfig(snr_db=300.0, ris_elements=8, truncation=0.0)
    strategy = PROARPFed(config, local)
    strategy._global = ArrayRecord(initial)
    replies = []
    for node, offset in ((1, 1.0), (2, 3.0)):
        state = {k: v + offset for k, v in initial.items() if k not in local}
        replies.append(_reply(state, 10 * node, node))
    merged, metrics = strategy.aggregate_train(1, replies)
    assert merged is not None and metrics is not None
    out = merged.to_torch_state_dict()
    for key in local:
        torch.testing.assert_close(out[key], initial[key])
    key = next(k for k in initial if k not in local)
    torch.testing.assert_close(out[key], initial[key] + 7 / 3, rtol=1e-4, atol=1e-4)
    # at a low SNR the same replies arrive noisy, reproducibly per seed and round
    noisy = PROARPFed(OTAConfig(snr_db=-20.0, ris_elements=0, truncation=0.0), local)
    noisy._global = ArrayRecord(initial)
    a = noisy.aggregate_train(1, replies)[0]
    b = noisy.aggregate_train(1, replies)[0]
    assert a is not None and b is not None
    error = (a.to_torch_state_dict()[key] - (initial[key] + 7 / 3)).abs().max()
    assert float(error) > 1e-2
    torch.testing.assert_close(
        a.to_torch_state_dict()[key], b.to_torch_state_dict()[key]
    )


def test_registry_builds_proar_pfed_and_its_ota_fedavg_baseline() -> None:
    check_parameters("proar-pfed", {"snr_db": 5, "ris_elements": 32})
    with pytest.raises(ValueError, match="ris_elements must be >= 0"):
        check_parameters("proar-pfed", {"ris_elements": -1})
    model = client_side("proar-pfed").build_model(SHAPE)
    strategy = build_strategy("proar-pfed", {"snr_db": 5}, model=model)
    assert isinstance(strategy, PROARPFed)
    assert strategy.local_keys == personal_keys(model)
    assert strategy.config.snr_db == 5.0
    with pytest.raises(ValueError, match="pass the model"):
        build_strategy("proar-pfed", {})
    baseline = build_strategy("ota-fedavg", {"ris_elements": 0})
    assert isinstance(baseline, PROARPFed) and baseline.local_keys == frozenset()
