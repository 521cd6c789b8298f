"""Tests of instrumentation/schema.py: event kinds, their fields, who meets them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from analysis.synthetic import SyntheticCampaign, write_synthetic_results
from instrumentation.capture import Transfer, transfer_events
from instrumentation.events import EventLog, append_phase, read_events
from instrumentation.schema import (
    COMMON_FIELDS,
    SPECS,
    EventKind,
    field_problems,
    spec_of,
    validate_event,
)
from instrumentation.supernode_log import supernode_log_events

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def _documented_kinds() -> set[str]:
    """The kinds in the first cell of each body row of docs/events.md's event table."""
    text = DOC.read_text(encoding="utf-8")
    table = text.split("## phases.parquet")[0]
    rows = table.split("|---|---|---|\n")[1].split("\n\n")[0]
    kinds: set[str] = set()
    for line in rows.splitlines():
        first_cell = line.split("|")[1]
        kinds.update(re.findall(r"`(\w+)`", first_cell))
    return kinds


def test_every_kind_has_one_spec() -> None:
    assert set(SPECS) == set(EventKind)
    for kind, spec in SPECS.items():
        assert spec.kind is kind
        assert spec.required, f"{kind} requires nothing"
        assert not spec.fields & set(COMMON_FIELDS)


def test_docs_list_exactly_the_kinds_of_the_enum() -> None:
    documented = _documented_kinds()
    assert len(documented) == 23
    assert documented == {k.value for k in EventKind}


def test_a_valid_event_has_no_problems() -> None:
    event = {
        "event": "run_error",
        "run_id": "wifi-r1",
        "t_ns": 1_700_000_000_000_000_000,
        "reason": "the SuperLink died",
    }
    assert validate_event(event) == []
    assert validate_event(event, strict=True) == []


def test_a_missing_field_is_named() -> None:
    event = {"event": "fault", "run_id": "r", "t_ns": 1, "kind": "node-down"}
    problems = validate_event(event)
    assert "event 'fault' lacks field 'action' (docs/events.md)" in problems
    assert len(problems) == len(spec_of("fault").required) - 1


def test_an_unknown_kind_lists_the_known_ones() -> None:
    (problem,) = validate_event({"event": "tick", "run_id": "r", "t_ns": 1})
    assert problem.startswith("unknown event kind 'tick'")
    assert "fedbuff_update" in problem
    with pytest.raises(ValueError, match="unknown event kind 'tick'"):
        spec_of("tick")


def test_common_keys_are_checked() -> None:
    problems = validate_event({"event": "run_error", "t_ns": 1.5, "reason": ""})
    assert problems == [
        "run_id must be a non-empty string, got None",
        "t_ns must be integer nanoseconds, got 1.5",
    ]
    assert validate_event({"run_id": "r", "t_ns": 1}) == [
        "event kind must be a string, got None"
    ]


def test_strict_reports_undeclared_fields_only() -> None:
    fields = {"reason": "x", "color": "red"}
    assert field_problems("run_error", fields) == []
    (problem,) = field_problems("run_error", fields, strict=True)
    assert "undeclared field 'color'" in problem


def test_spec_refuses_a_field_both_required_and_optional() -> None:
    from instrumentation.schema import EventSpec

    with pytest.raises(ValueError, match="both required and optional"):
        EventSpec(EventKind.RUN_ERROR, frozenset({"reason"}), frozenset({"reason"}))
    with pytest.raises(ValueError, match="set by the log"):
        EventSpec(EventKind.RUN_ERROR, frozenset({"t_ns"}))


def _write_through_the_instrumentation(log: EventLog) -> None:
    """Events from the code paths that write outside a Flower run."""
    append_phase(log, "training", 1, "pi1", 7, "train", 10, 20, 100, 200)
    append_phase(log, "aggregation", 1, "server", 0, "", 30, 40, source="server_timer")
    transfer = Transfer("up", "10.0.0.2", 20, 25, 4_000, 3, 0, 1)
    for event in transfer_events([transfer], "pi1", "wifi"):
        log.append(**event)
    lines = [
        (1, "Receiving: train message (ID: ab12)"),
        (2, "Received successfully"),
        (3, "Start `flwr-clientapp` process"),
        (4, "Sending: train message (ID: cd34)"),
        (5, "Sent successfully"),
    ]
    for fields in supernode_log_events(lines, "pi1"):
        log.append(EventKind.SUPERNODE_LOG, **fields)


def _write_through_the_strategies(log: EventLog) -> None:
    """FedBuff's update records and HeteroFL's coverage, as the registry wires them."""
    from strategies.client_side import ModelShape
    from strategies.fedbuff import FedBuff, UpdateRecord
    from strategies.registry import build_strategy, client_side

    fedbuff = build_strategy("fedbuff", {"max_wall_s": 30}, sink=log)
    assert isinstance(fedbuff, FedBuff)
    fedbuff._emit(UpdateRecord(7, 1, 0, 10, 20, "applied", 1.0, 2, True))
    model = client_side("heterofl").build_model(ModelShape(1, 10, 0.1))
    heterofl: Any = build_strategy("heterofl", {}, model=model, sink=log)
    heterofl.on_coverage(1, {"gamma-round": 0.5})


def _write_through_the_server_timers(log: EventLog) -> None:
    from instrumentation import inject_server

    inject_server._record(log, "aggregate_train", 1, 5, (None, {"loss": 0.5}))
    inject_server._record(log, "aggregate_evaluate", 1, 6, {"accuracy": 0.9})


def test_what_the_instrumentation_writes_meets_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"event":"run_start","run_id":"r","t_')  # a crash's cut line
    with EventLog(path, "wifi-r1") as log:
        _write_through_the_instrumentation(log)
        _write_through_the_strategies(log)
        _write_through_the_server_timers(log)

    events = read_events(path)
    kinds = {e["event"] for e in events}
    assert kinds == {
        "log_repaired",
        "phase",
        "transfer",
        "supernode_log",
        "fedbuff_update",
        "metrics",
        "evaluate_aggregation",
    }
    for event in events:
        assert validate_event(event, strict=True) == [], event


def test_a_synthetic_results_folder_meets_the_schema(tmp_path: Path) -> None:
    spec = SyntheticCampaign(rounds=3, repetitions=1, nodes=3, system_hosts=1)
    out = write_synthetic_results(spec, tmp_path / "results")

    logs = sorted((out / "runs").glob("*/events.jsonl"))
    assert len(logs) == len(spec.run_ids())
    for log in logs:
        events = read_events(log)
        assert {e["event"] for e in events} == {"run_start", "metrics", "run_end"}
        for event in events:
            assert validate_event(event, strict=True) == [], (log, event)
