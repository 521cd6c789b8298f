"""The client mod and the server timers on real Flower Message objects."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.supercore.task_identity import TaskIdentity

from instrumentation.client_mod import (
    STAMPS_KEY,
    ClientStamps,
    content_bytes,
    timing_mod,
)


@pytest.fixture(autouse=True)
def task_identity() -> Iterator[None]:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield


def _instruction(kind: str, server_round: int = 3, n: int = 1000) -> Message:
    content = RecordDict(
        {
            "arrays": ArrayRecord([np.ones(n, dtype=np.float32)]),
            "config": ConfigRecord({"server-round": server_round}),
        }
    )
    return Message(content=content, dst_node_id=7, message_type=kind)


def _context(name: str = "pi01") -> Context:
    return Context(
        run_id=1,
        node_id=7,
        node_config={"flowerbed-node": name},
        state=RecordDict(),
        run_config={},
    )


def _handler(sleep_s: float, n_out: int) -> Any:
    def handle(msg: Message, context: Context) -> Message:
        time.sleep(sleep_s)
        content = RecordDict(
            {
                "arrays": ArrayRecord([np.zeros(n_out, dtype=np.float32)]),
                "metrics": MetricRecord({"num-examples": 10, "loss": 0.5}),
            }
        )
        return Message(content=content, reply_to=msg)

    return handle


def test_training_is_stamped_in_a_config_record_not_a_metric_record() -> None:
    msg = _instruction("train")
    before = time.time_ns()
    reply = timing_mod(msg, _context(), _handler(0.2, 500))
    after = time.time_ns()
    assert list(reply.content.metric_records) == ["metrics"]  # no second MetricRecord
    stamps = ClientStamps.from_config_record(reply.content.config_records[STAMPS_KEY])
    assert stamps.phase == "training" and stamps.message_type == "train"
    assert stamps.node == "pi01" and stamps.round == 3
    assert before <= stamps.start_ns < stamps.end_ns <= after
    assert 0.19 < (stamps.end_ns - stamps.start_ns) / 1e9 < 0.5
    assert stamps.bytes_in == content_bytes(msg.content) and stamps.bytes_in >= 4000
    assert 2000 <= stamps.bytes_out < 2500  # 500 float32 plus the small metric record


def test_evaluate_is_stamped_as_evaluation() -> None:
    reply = timing_mod(_instruction("evaluate", 2), _context(), _handler(0.0, 1))
    stamps = ClientStamps.from_config_record(reply.content.config_records[STAMPS_KEY])
    assert (stamps.phase, stamps.round) == ("evaluation", 2)


def test_query_messages_pass_through_unstamped() -> None:
    reply = timing_mod(_instruction("query"), _context(), _handler(0.0, 1))
    assert STAMPS_KEY not in reply.content


def test_records_flower_cannot_count_do_not_break_the_handler() -> None:
    # flwr 1.42's count_bytes raises on an empty string or list; the mod must not.
    def handler(msg: Message, context: Context) -> Message:
        content = RecordDict(
            {
                "metrics": MetricRecord({"num-examples": 10, "losses": []}),
                "config": ConfigRecord({"note": "", "tags": ["a", "bc"]}),
            }
        )
        return Message(content=content, reply_to=msg)

    reply = timing_mod(_instruction("train"), _context(), handler)
    stamps = ClientStamps.from_config_record(reply.content.config_records[STAMPS_KEY])
    # keys plus values: 8 + 12 ("num-examples") + 6 ("losses"), 4 + 4 + 3 ("a", "bc")
    assert stamps.bytes_out == (8 + 12 + 0 + 6) + (4 + 0 + 4 + 3)


def test_process_start_is_this_process_start() -> None:
    import psutil

    from instrumentation.client_mod import _process_start_ns

    expected = psutil.Process().create_time()
    assert abs(_process_start_ns() / 1e9 - expected) < 1.0  # psutil: 1 s boot time
