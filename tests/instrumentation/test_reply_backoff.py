"""The reply back-off lever: applied only when asked and on a tested Flower, undone
afterwards, a logged fallback otherwise, and recorded in ``app_start``."""

from __future__ import annotations

import functools
import logging
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import flwr.superlink.grid.http_grid as http_grid
import pytest
from flwr.app import Context, RecordDict
from flwr.supercore.inflatable import inflatable_utils
from flwr.supercore.inflatable.inflatable_utils import ObjectUnavailableError

from instrumentation import reply_backoff as lever
from instrumentation.events import read_events
from instrumentation.inject_server import wrap_server_app
from instrumentation.reply_backoff import (
    REPLY_BACKOFF_KEY,
    BackoffOutcome,
    backoff_requested,
    backoff_supported,
    reply_backoff,
)


def grid_pull() -> Any:
    """The ``pull_objects`` that ``HttpGrid.pull_messages`` calls right now."""
    return vars(http_grid)["pull_objects"]


STOCK = grid_pull()


@pytest.mark.parametrize(
    ("version", "ok", "fragment"),
    [
        ("1.42.0", True, "tested series 1.42"),
        ("1.42.3", True, "tested series 1.42"),
        ("1.43.0", False, "not in the tested series 1.42"),
        ("1.41.9", False, "not in the tested series 1.42"),
        ("1.42.0rc1", False, "not a final release"),
        ("1.42", False, "not a final release"),
    ],
)
def test_only_the_tested_series_is_supported(
    version: str, ok: bool, fragment: str
) -> None:
    supported, reason = backoff_supported(version)
    assert supported is ok
    assert fragment in reason


@pytest.mark.parametrize(
    ("run_config", "expected"),
    [
        ({}, False),
        ({REPLY_BACKOFF_KEY: False}, False),
        ({REPLY_BACKOFF_KEY: True}, True),
        ({REPLY_BACKOFF_KEY: "true"}, True),
        ({REPLY_BACKOFF_KEY: "false"}, False),
    ],
)
def test_the_run_config_turns_it_on(run_config: dict[str, Any], expected: bool) -> None:
    assert backoff_requested(run_config) is expected


def test_off_changes_nothing() -> None:
    with reply_backoff(False, "1.42.0") as outcome:
        assert outcome is None
        assert grid_pull() is STOCK


def test_on_a_tested_flower_the_grid_pulls_with_the_short_backoff_then_stock() -> None:
    with reply_backoff(True, "1.42.0") as outcome:
        patched = grid_pull()
        assert outcome == BackoffOutcome(
            True, "flwr 1.42.0 is in the tested series 1.42"
        )
    assert isinstance(patched, functools.partial)
    assert patched.func is inflatable_utils.pull_objects
    assert patched.keywords == {"initial_backoff": 0.05, "backoff_cap": 0.5}
    assert grid_pull() is STOCK


def test_the_patch_is_undone_when_the_app_raises() -> None:
    with pytest.raises(RuntimeError), reply_backoff(True, "1.42.0"):
        assert grid_pull() is not STOCK
        raise RuntimeError("app broke")
    assert grid_pull() is STOCK


def test_the_patched_pull_retries_a_missing_object_within_a_fraction_of_a_second() -> (
    None
):
    tries: dict[str, int] = {}

    def pull_object(object_id: str) -> bytes:
        tries[object_id] = tries.get(object_id, 0) + 1
        if tries[object_id] < 3:  # still being uploaded by the node
            raise ObjectUnavailableError(object_id)
        return object_id.encode()

    with reply_backoff(True, "1.42.0"):
        start = time.monotonic()
        got = grid_pull()(["a", "b"], pull_object)
        elapsed = time.monotonic() - start

    assert got == {"a": b"a", "b": b"b"}
    # Two short sleeps (0.05 s, 0.1 s, +-20 %); Flower's first alone is 0.8-1.2 s.
    assert elapsed < 0.6


def test_another_flower_falls_back_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger=lever.__name__),
        reply_backoff(True, "1.43.0") as outcome,
    ):
        assert grid_pull() is STOCK
    assert outcome is not None and not outcome.applied
    assert "flwr 1.43.0 is not in the tested series" in outcome.reason
    assert "reply-backoff-0.05-0.5s" in caplog.text
    assert "keeping Flower's own back-off" in caplog.text
    assert outcome.event_fields() == {
        "reply_backoff": "fallback",
        "reply_backoff_reason": outcome.reason,
    }


def test_a_pull_without_backoff_parameters_falls_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def pull_objects(object_ids: list[str], pull_object_fn: Any) -> dict[str, bytes]:
        return {}

    monkeypatch.setattr(inflatable_utils, "pull_objects", pull_objects)
    with caplog.at_level(logging.WARNING), reply_backoff(True, "1.42.1") as outcome:
        assert grid_pull() is STOCK
    assert outcome is not None and not outcome.applied
    assert "takes no initial_backoff, backoff_cap" in outcome.reason
    assert "takes no initial_backoff" in caplog.text


# ------------------------------------------------- through the injected ServerApp

SERVER_MODULE = """
    import flwr.superlink.grid.http_grid as http_grid
    from flwr.serverapp import ServerApp

    seen = []
    app = ServerApp()

    @app.main()
    def main(grid, context):
        seen.append(http_grid.pull_objects)
"""


def _run_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on: bool) -> Any:
    name = f"backoffserver_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(SERVER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    app = wrap_server_app(f"{name}:app")
    context = Context(
        run_id=7,
        node_id=1,
        node_config={},
        state=RecordDict(),
        run_config={
            "flowerbed-event-log": str(tmp_path / "events.jsonl"),
            "flowerbed-run-id": "5g-r1",
            REPLY_BACKOFF_KEY: on,
        },
    )
    app(grid=object(), context=context)  # type: ignore[arg-type]
    return sys.modules[name].seen[0]


def test_the_injected_server_app_pulls_with_the_short_backoff_when_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lever, "installed_flwr_version", lambda: "1.42.0")
    seen = _run_app(tmp_path, monkeypatch, on=True)
    assert isinstance(seen, functools.partial)
    assert seen.keywords == {"initial_backoff": 0.05, "backoff_cap": 0.5}
    assert grid_pull() is STOCK
    start = read_events(tmp_path / "events.jsonl")[0]
    assert start["event"] == "app_start"
    assert start["reply_backoff"] == "reply-backoff-0.05-0.5s"


def test_the_injected_server_app_keeps_flowers_pull_when_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _run_app(tmp_path, monkeypatch, on=False) is STOCK
    start = read_events(tmp_path / "events.jsonl")[0]
    assert "reply_backoff" not in start


def test_the_injected_server_app_notes_a_fallback_on_another_flower(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lever, "installed_flwr_version", lambda: "1.43.0")
    assert _run_app(tmp_path, monkeypatch, on=True) is STOCK
    start = read_events(tmp_path / "events.jsonl")[0]
    assert start["reply_backoff"] == "fallback"
    assert "1.43.0" in start["reply_backoff_reason"]
