"""A campaign's live status: ``status.json`` in its results folder, the ETA, and how
``flowerbed campaign status`` renders it.

The runner rewrites the file atomically at every step (run started, round
aggregated, run finished), so another shell can follow a running campaign and a
finished or interrupted one still says how far it got.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from testbed.transport.files import write_text_atomically

STATUS_FILE = "status.json"


@dataclass(frozen=True)
class CampaignStatus:
    """Where a campaign is. Times are ``time.time_ns()`` instants."""

    campaign: str
    total_runs: int
    rounds_per_run: int
    started_ns: int
    pid: int
    state: str = "running"  # running | finished | interrupted | failed
    run_index: int = 0  # 1-based index of the current (or last) run
    run_id: str = ""
    network: str = ""
    repetition: int = 0
    round: int = 0
    run_started_ns: int = 0
    finished_runs: tuple[tuple[str, str, float], ...] = ()  # (run_id, status, s)
    launch: str = "stock"  # stock | low-latency (testbed/campaign/launch.py)
    levers: tuple[str, ...] = ()
    updated_ns: int = field(default_factory=time.time_ns)

    def to_json(self) -> dict[str, Any]:
        """The status plus its derived ETA, as written to ``status.json``."""
        data = asdict(self)
        data["eta_s"] = eta_s(self, self.updated_ns)
        return data


def eta_s(status: CampaignStatus, now_ns: int) -> float | None:
    """Seconds until the campaign ends, from the runs (and rounds) done so far.

    A run's expected length is the mean of finished runs; before any finished, it
    is extrapolated from the current run's rounds. None until there is a basis.
    """
    if status.state != "running":
        return 0.0
    durations = [s for _, _, s in status.finished_runs]
    elapsed_run = max(0.0, (now_ns - status.run_started_ns) / 1e9)
    if durations:
        per_run = sum(durations) / len(durations)
    elif status.round > 0 and status.rounds_per_run > 0:
        per_run = elapsed_run * status.rounds_per_run / status.round
    else:
        return None
    remaining_runs = status.total_runs - len(durations)
    current_left = max(0.0, per_run - elapsed_run) if status.run_index else 0.0
    return current_left + max(0, remaining_runs - 1) * per_run


def write_status(folder: Path, status: CampaignStatus) -> CampaignStatus:
    """Stamp ``status`` with now and write it atomically; return the stamped one."""
    status = replace(status, updated_ns=time.time_ns())
    path = folder / STATUS_FILE
    write_text_atomically(path, json.dumps(status.to_json(), indent=2))
    return status


# The keys ``describe`` reads, and their types (bool is no int here).
_STATUS_KEYS: dict[str, type | tuple[type, ...]] = {
    "campaign": str,
    "total_runs": int,
    "rounds_per_run": int,
    "started_ns": int,
    "pid": int,
    "state": str,
    "run_index": int,
    "run_id": str,
    "network": str,
    "repetition": int,
    "round": int,
    "updated_ns": int,
}
_STATUS_FIX = (
    "the campaign rewrites it at its next step; for a campaign that ended, "
    "restore the file or delete it (its results are in manifest.json)"
)


def _status_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with a status read from JSON, or None."""
    for key, kind in _STATUS_KEYS.items():
        if key not in data:
            return f"key {key!r} is missing"
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            return f"key {key!r} is {value!r}, not a {getattr(kind, '__name__', kind)}"
    if data["pid"] <= 0:
        return f"key 'pid' is {data['pid']}, not a process id"
    eta = data.get("eta_s")
    if eta is not None and (isinstance(eta, bool) or not isinstance(eta, int | float)):
        return f"key 'eta_s' is {eta!r}, not a number of seconds"
    finished = data.get("finished_runs", [])
    if not isinstance(finished, list) or not all(
        isinstance(r, list)
        and len(r) == 3
        and isinstance(r[0], str)
        and isinstance(r[1], str)
        and isinstance(r[2], int | float)
        and not isinstance(r[2], bool)
        for r in finished
    ):
        return "key 'finished_runs' is not a list of [run_id, status, seconds]"
    levers = data.get("levers", [])
    if not isinstance(levers, list) or not all(isinstance(x, str) for x in levers):
        return "key 'levers' is not a list of names"
    return None


def read_status(folder: Path) -> dict[str, Any]:
    """The status a campaign wrote, checked.

    FileNotFoundError names the folder when there is none; a status that cannot
    be read, is not JSON, or lacks a key ``describe`` needs raises
    :class:`analysis.damage.ResultsError` naming the file and the fix.
    """
    from analysis.damage import ResultsError

    path = folder / STATUS_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: {folder} is not a campaign results folder "
            "(or the campaign was run by a flowerbed without live status)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        what = getattr(exc, "strerror", None) or str(exc)
        raise ResultsError(f"could not be read ({what})", path, _STATUS_FIX) from exc
    if not text.strip():
        raise ResultsError(
            "is empty (cut by a crash or a full disk)", path, _STATUS_FIX
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(
            f"not valid JSON ({exc.msg}; cut by a crash or a full disk?)",
            f"{path}:{exc.lineno}",
            _STATUS_FIX,
        ) from exc
    except RecursionError as exc:
        raise ResultsError("nested too deeply to read", path, _STATUS_FIX) from exc
    if not isinstance(data, dict):
        raise ResultsError(
            f"expected a JSON object, got {type(data).__name__}", path, _STATUS_FIX
        )
    problem = _status_problem(data)
    if problem is not None:
        raise ResultsError(f"not a campaign status: {problem}", path, _STATUS_FIX)
    return data


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _launch(data: dict[str, Any]) -> str:
    """``stock``, or ``low-latency (lever, lever)`` (older files: stock)."""
    mode = str(data.get("launch", "stock"))
    levers = list(data.get("levers", []))
    return f"{mode} ({', '.join(levers)})" if levers else mode


def describe(data: dict[str, Any], now_ns: int | None = None) -> str:
    """A few lines for people: state, current run and round, ETA, finished runs."""
    now_ns = now_ns if now_ns is not None else time.time_ns()
    state = str(data["state"])
    if state == "running" and not process_alive(int(data["pid"])):
        state = (
            f"stopped: the campaign process {data['pid']} is gone (killed or the "
            "machine rebooted); finished runs are saved"
        )
    elapsed = (now_ns - int(data["started_ns"])) / 1e9
    lines = [f"campaign {data['campaign']}: {state}, {_duration(elapsed)} elapsed"]
    lines.append(f"  launch: {_launch(data)}")
    if data["run_index"]:
        lines.append(
            f"  run {data['run_index']}/{data['total_runs']}: {data['run_id']} "
            f"(network {data['network']}, repetition {data['repetition']}), "
            f"round {data['round']}/{data['rounds_per_run']}"
        )
    if data["state"] == "running" and state == "running":
        stale_s = (now_ns - int(data["updated_ns"])) / 1e9
        eta = data.get("eta_s")
        eta = None if eta is None else max(0.0, float(eta) - stale_s)
        lines.append(f"  ETA {_duration(eta)}")
    finished = data.get("finished_runs", [])
    ok = sum(1 for _, status, _ in finished if status == "ok")
    lines.append(f"  finished runs: {len(finished)} ({ok} ok)")
    for run_id, status, seconds in finished:
        lines.append(f"    {run_id}: {status} in {seconds:.0f} s")
    return "\n".join(lines)
