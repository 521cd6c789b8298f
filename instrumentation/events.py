"""The run's append-only JSON-lines event log: writing events and reading them back.

One JSON object per line, as docs/events.md defines: every event carries ``event``,
``run_id`` and ``t_ns`` (``time.time_ns()`` when written) plus its own fields.

Writing: the file is opened with ``O_APPEND`` and each event goes out in a single
``write()`` under an exclusive ``flock``, so several processes (the runner, the
ServerApp, the capture parser) can append to the same file without interleaving
lines, a new writer never mistakes a line still being written for a cut one, and
nothing already written is ever rewritten. There is no user-space buffer: every
event is in the kernel when ``append`` returns; ``fsync=True`` also forces it to
disk.

Reading: a crash (power loss, full disk) can leave the last line cut short. That
line is skipped and counted, never an error. If a later writer opened the file
after such a crash, it first terminated the cut line and wrote a ``log_repaired``
event, so the cut line is recognised (and skipped) there too. Any other line that
is not a JSON object is an error naming the file and line.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from instrumentation.schema import COMMON_FIELDS, EventKind, field_problems
from instrumentation.schema import EventSink as EventSink

logger = logging.getLogger(__name__)

RESERVED_KEYS = frozenset(COMMON_FIELDS)
REPAIR_EVENT = EventKind.LOG_REPAIRED
PHASES = frozenset({"training", "evaluation", "aggregation"})
PHASE_SOURCES = frozenset({"client_mod", "server_timer"})
MESSAGE_TYPES = frozenset({"train", "evaluate", ""})


class EventLogError(ValueError):
    """An event log line that is neither valid nor an explicable crash leftover."""


def _to_json_value(value: object) -> object:
    """``json.dumps`` hook: numpy scalars and arrays become plain Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(
        f"event value {value!r} of type {type(value).__name__} is not JSON-"
        "serialisable; pass int, float, str, bool, None, list or dict"
    )


def encode_event(event: dict[str, Any]) -> bytes:
    """One event as one JSON line (UTF-8, newline-terminated, no inner newlines).

    Non-finite floats are written as ``NaN``/``Infinity`` (Python's json reads them
    back): a diverged loss is a result worth keeping, not a reason to lose the event.
    """
    text = json.dumps(event, default=_to_json_value, separators=(",", ":"))
    return text.encode("utf-8") + b"\n"


class EventLog:
    """Append-only JSON-lines event log of one run (``events.jsonl``).

    Use as a context manager or call :meth:`close`. ``append`` is safe to call from
    several threads and several processes on the same file.
    """

    def __init__(self, path: Path | str, run_id: str, *, fsync: bool = False) -> None:
        if not run_id:
            raise ValueError("run_id must be a non-empty string")
        self.path = Path(path)
        self.run_id = run_id
        self.fsync = fsync
        if not self.path.parent.is_dir():
            raise FileNotFoundError(
                f"cannot open event log {self.path}: folder {self.path.parent} does "
                "not exist; create the run folder first"
            )
        self._fd: int | None = os.open(
            self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
        self._repair_cut_line()

    def _repair_cut_line(self) -> None:
        """Terminate a line cut short by an earlier crash, and say so in the log."""
        fd = self._require_fd()
        with self._locked(fd):
            size = os.fstat(fd).st_size
            if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
                return
            logger.warning(
                "event log %s ends with a cut line; terminating it", self.path
            )
            repair = self._record(
                REPAIR_EVENT, {"reason": "previous writer left an unterminated line"}
            )
            self._write_all(fd, b"\n" + encode_event(repair))

    def _require_fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"event log {self.path} is closed")
        return self._fd

    @contextmanager
    def _locked(self, fd: int) -> Iterator[None]:
        # A writer that dies releases its lock, so a cut line seen under the lock
        # is a crash leftover, never a line another process is still writing.
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if self.fsync:
            os.fsync(fd)

    def _record(self, event: str, fields: dict[str, Any]) -> dict[str, Any]:
        kind = EventKind(event).value  # a plain str in the JSON
        return {"event": kind, "run_id": self.run_id, "t_ns": time.time_ns(), **fields}

    def append(self, event: str, **fields: Any) -> None:
        """Write one event now: ``event``, ``run_id``, ``t_ns`` and ``fields``.

        ``event`` must be an :class:`~instrumentation.schema.EventKind` and
        ``fields`` must hold its required fields (instrumentation/schema.py).
        """
        clash = RESERVED_KEYS & fields.keys()
        if clash:
            raise ValueError(
                f"event {event!r}: fields {sorted(clash)} are set by the log itself"
            )
        problems = field_problems(event, fields)
        if problems:
            raise ValueError("; ".join(problems))
        line = encode_event(self._record(event, fields))
        fd = self._require_fd()
        with self._locked(fd):
            self._write_all(fd, line)

    def close(self) -> None:
        """Close the file; further appends raise."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def append_phase(
    log: EventLog,
    phase: str,
    round: int,
    node: str,
    node_id: int,
    message_type: str,
    start_ns: int,
    end_ns: int,
    bytes_in: int | None = None,
    bytes_out: int | None = None,
    source: str = "client_mod",
) -> None:
    """Write one ``phase`` event after checking it against docs/events.md."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {sorted(PHASES)}, got {phase!r}")
    if source not in PHASE_SOURCES:
        raise ValueError(
            f"source must be one of {sorted(PHASE_SOURCES)}, got {source!r}"
        )
    if message_type.split(".")[0] not in MESSAGE_TYPES:
        raise ValueError(
            f"message_type must be 'train', 'evaluate' or '', got {message_type!r}"
        )
    if round < 0:
        raise ValueError(f"round must be >= 0, got {round}")
    if end_ns < start_ns:
        raise ValueError(
            f"phase {phase!r} of {node!r}, round {round}: end_ns {end_ns} is before "
            f"start_ns {start_ns}"
        )
    log.append(
        EventKind.PHASE,
        phase=phase,
        round=int(round),
        node=node,
        node_id=int(node_id),
        message_type=message_type,
        start_ns=int(start_ns),
        end_ns=int(end_ns),
        bytes_in=None if bytes_in is None else int(bytes_in),
        bytes_out=None if bytes_out is None else int(bytes_out),
        source=source,
    )


@dataclass(frozen=True)
class EventFile:
    """An event log's events, and how many cut lines it skipped."""

    path: Path
    events: tuple[dict[str, Any], ...]
    cut_lines: int


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def read_event_file(path: Path | str) -> EventFile:
    """Read an event log, skipping (and counting) lines cut short by a crash.

    A line is a crash leftover if it is the last line and has no newline, or if the
    line right after it is the ``log_repaired`` event a later writer left. Any other
    line that is not a JSON object raises :class:`EventLogError`.
    """
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    # A complete file ends with "\n", so its last split element is empty.
    last_is_cut = lines[-1] != b""
    events: list[dict[str, Any]] = []
    cut = 0
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        parsed = _parse(line)
        if parsed is not None:
            events.append(parsed)
            continue
        is_last = index == len(lines) - 1
        following = _parse(lines[index + 1]) if index + 1 < len(lines) else None
        repaired = following is not None and following.get("event") == REPAIR_EVENT
        if (is_last and last_is_cut) or repaired:
            cut += 1
            continue
        raise EventLogError(
            f"{path}:{index + 1}: not a JSON object: {line[:80]!r}; the event log is "
            "corrupt in the middle, not just cut short by a crash; inspect or "
            "restore it"
        )
    return EventFile(path=path, events=tuple(events), cut_lines=cut)


def read_events(path: Path | str) -> list[dict[str, Any]]:
    """Events of a log as dicts, in file order; cut lines are skipped with a warning."""
    read = read_event_file(path)
    if read.cut_lines:
        logger.warning(
            "%s: skipped %d line(s) cut short by a crash", read.path, read.cut_lines
        )
    return list(read.events)
