"""Tests of instrumentation/events.py: writing, concurrent appending, reading back."""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest

from instrumentation.events import (
    REPAIR_EVENT,
    EventLog,
    EventLogError,
    append_phase,
    read_event_file,
    read_events,
)


def test_append_writes_one_object_per_line_with_common_keys(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    before = time.time_ns()
    with EventLog(path, "run-1") as log:
        log.append("run_start", network="wifi", strategy="fedavg", repetition=1)
        log.append("metrics", round=1, scope="train", values={"loss": 0.5})
    after = time.time_ns()

    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first == {
        "event": "run_start",
        "run_id": "run-1",
        "t_ns": first["t_ns"],
        "network": "wifi",
        "strategy": "fedavg",
        "repetition": 1,
    }
    assert isinstance(first["t_ns"], int)
    assert before <= first["t_ns"] <= second["t_ns"] <= after
    assert second["values"] == {"loss": 0.5}


def test_each_event_is_on_disk_before_append_returns(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, "r", fsync=True)
    log.append("fetch_error", missing=["pi1.log"])
    # Read while the log is still open: no user-space buffer may hold the event.
    assert [e["missing"] for e in read_events(path)] == [["pi1.log"]]
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.append("run_error", reason="late")


def test_numpy_scalars_and_arrays_become_plain_json(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path, "r") as log:
        log.append(
            "run_error",
            reason="numpy values",
            n=np.int64(7),
            f=np.float32(0.25),
            b=np.bool_(True),
            a=np.arange(3),
            nan=float("nan"),
        )

    (event,) = read_events(path)
    assert event["n"] == 7 and type(event["n"]) is int
    assert event["f"] == 0.25 and type(event["f"]) is float
    assert event["b"] is True
    assert event["a"] == [0, 1, 2]
    assert event["nan"] != event["nan"]  # NaN survives the round trip


def test_unserialisable_values_and_reserved_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path, "r") as log:
        with pytest.raises(TypeError, match="PosixPath"):
            log.append("run_error", reason="r", where=tmp_path)
        with pytest.raises(ValueError, match="t_ns"):
            log.append("run_error", reason="r", t_ns=5)
        with pytest.raises(ValueError, match="run_id"):
            log.append("run_error", reason="r", run_id="other")
    assert path.read_bytes() == b""


def test_opening_appends_and_never_rewrites(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path, "r") as log:
        log.append("run_error", reason="one")
    original = path.read_bytes()
    with EventLog(path, "r") as log:
        log.append("run_error", reason="two")

    assert path.read_bytes().startswith(original)
    assert [e["reason"] for e in read_events(path)] == ["one", "two"]


def test_unknown_kinds_and_missing_fields_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path, "r") as log:
        with pytest.raises(ValueError, match="unknown event kind 'tick'"):
            log.append("tick", i=1)
        with pytest.raises(ValueError, match="'dispatch' lacks field 'dispatch_ns'"):
            log.append(
                "dispatch",
                message_id="m1",
                node_id=1,
                message_type="train",
                round=1,
                pushed_ns=None,
                created_ns=0,
                bytes=10,
                via="push",
            )
    assert path.read_bytes() == b""


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="create the run folder"):
        EventLog(tmp_path / "absent" / "events.jsonl", "r")


def _writer(path: str, worker: int, count: int) -> None:
    with EventLog(path, "r") as log:
        for i in range(count):
            log.append("run_error", reason="tick", worker=worker, i=i, pad="x" * 3000)


def test_processes_appending_concurrently_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_writer, args=(str(path), w, 300)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(30)
        assert p.exitcode == 0

    events = read_events(path)
    assert len(events) == 1200
    for w in range(4):
        assert [e["i"] for e in events if e["worker"] == w] == list(range(300))


def test_truncated_final_line_is_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path, "r") as log:
        log.append("run_error", reason="a")
        log.append("run_error", reason="b")
    with path.open("ab") as f:
        f.write(b'{"event":"phase","run_id":"r","t_n')

    read = read_event_file(path)
    with caplog.at_level(logging.WARNING):
        events = read_events(path)

    assert read.cut_lines == 1
    assert [e["reason"] for e in read.events] == ["a", "b"]
    assert [e["reason"] for e in events] == ["a", "b"]
    assert "skipped 1 line" in caplog.text


def test_writer_after_a_crash_terminates_the_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path, "r") as log:
        log.append("run_error", reason="a")
    with path.open("ab") as f:
        f.write(b'{"event":"ph')
    with EventLog(path, "r") as log:
        log.append("run_error", reason="b")

    read = read_event_file(path)
    assert read.cut_lines == 1
    assert [e["event"] for e in read.events] == ["run_error", REPAIR_EVENT, "run_error"]
    assert [e.get("reason") for e in read.events][::2] == ["a", "b"]


def test_corrupt_line_in_the_middle_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"event":"a"}\nnot json\n{"event":"b"}\n')

    with pytest.raises(EventLogError, match=rf"{path}:2: not a JSON object"):
        read_events(path)


def test_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"event":"a"}\n{"event":"b"}')

    read = read_event_file(path)
    assert [e["event"] for e in read.events] == ["a", "b"]
    assert read.cut_lines == 0


def test_append_phase_writes_the_contract_shape(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path, "r") as log:
        append_phase(
            log,
            "training",
            2,
            "pi1",
            np.int64(42),  # type: ignore[arg-type]
            "train",
            10,
            25,
            bytes_in=100,
            bytes_out=np.int64(90),  # type: ignore[arg-type]
        )

    (event,) = read_events(path)
    del event["t_ns"]
    assert event == {
        "event": "phase",
        "run_id": "r",
        "phase": "training",
        "round": 2,
        "node": "pi1",
        "node_id": 42,
        "message_type": "train",
        "start_ns": 10,
        "end_ns": 25,
        "bytes_in": 100,
        "bytes_out": 90,
        "source": "client_mod",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"phase": "downlink"}, "phase must be one of"),
        ({"message_type": "query"}, "message_type"),
        ({"source": "capture"}, "source must be one of"),
        ({"start_ns": 30, "end_ns": 20}, "before start_ns"),
    ],
)
def test_append_phase_rejects_what_the_contract_does_not_allow(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {
        "phase": "aggregation",
        "round": 1,
        "node": "server",
        "node_id": 0,
        "message_type": "",
        "start_ns": 1,
        "end_ns": 2,
        "source": "server_timer",
    }
    args.update(kwargs)
    with EventLog(tmp_path / "events.jsonl", "r") as log:
        with pytest.raises(ValueError, match=message):
            append_phase(log, **args)  # type: ignore[arg-type]
    assert (tmp_path / "events.jsonl").read_bytes() == b""
