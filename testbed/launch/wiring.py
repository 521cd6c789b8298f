"""What the campaign code calls to wire the warm launcher into a node: pure builders.

Nothing here starts a process. The campaign starts the zygote (:func:`zygote_argv`)
in the node's namespace or on the Pi, with the SuperNode's environment, before the
SuperNode; writes the shim (:func:`shim_text` / :func:`write_shim`); starts the
SuperNode with :func:`shim_env`; and records :func:`zygote_report` of the zygote's
log in the manifest.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from testbed.launch import shim
from testbed.launch.guard import TESTED_FLWR_SERIES

ZYGOTE_MODULE = "testbed.launch.zygote"
SUPERNODE_POLL_MODULE = "testbed.launch.supernode_poll"
SHIM_NAME = shim.COMMAND
SOCKET_ENV = shim.SOCKET_ENV
# sun_path holds 108 bytes with the terminating NUL.
_SOCKET_PATH_MAX = 107
# Linux reads at most this many bytes of a shebang line (BINPRM_BUF_SIZE before 5.1).
_SHEBANG_MAX = 127


def zygote_argv(
    python: str,
    socket_path: str,
    preload: Sequence[str] = (),
    supported_flwr: Sequence[str] = TESTED_FLWR_SERIES,
) -> list[str]:
    """The node's zygote: ``python -m testbed.launch.zygote --socket PATH ...``.

    ``python`` must be the interpreter of the SuperNode's ``flwr-clientapp`` (the
    zygote refuses launches from another installation). ``preload`` names
    libraries to import up front (``torch``, ``numpy``,
    ``instrumentation.inject_client``), never the app's own modules: the FAB's
    copy of those must be imported per run.
    """
    check_socket_path(socket_path)
    argv = [python, "-m", ZYGOTE_MODULE, "--socket", socket_path]
    for module in preload:
        argv += ["--preload", module]
    for series in supported_flwr:
        argv += ["--supported-flwr", series]
    return argv


def check_socket_path(socket_path: str) -> None:
    """Raise if ``socket_path`` cannot name a unix socket (too long, or relative)."""
    if not socket_path.startswith("/"):
        raise ValueError(f"zygote socket {socket_path!r} must be an absolute path")
    if len(socket_path.encode()) > _SOCKET_PATH_MAX:
        raise ValueError(
            f"zygote socket path {socket_path!r} is longer than {_SOCKET_PATH_MAX} "
            "bytes, the limit of a unix socket; use a short one such as "
            "/run/flowerbed/<node>.sock (a directory only this user can write)"
        )


def shim_env(
    base_env: Mapping[str, str], shim_dir: str, socket_path: str
) -> dict[str, str]:
    """``base_env`` with the shim's directory first on ``PATH`` and the socket named."""
    check_socket_path(socket_path)
    env = dict(base_env)
    rest = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != shim_dir]
    env["PATH"] = os.pathsep.join([shim_dir, *rest])
    env[SOCKET_ENV] = socket_path
    return env


def shim_text(python: str) -> str:
    """The shim's file content: ``python -I -S`` runs it, standard library only."""
    shebang = f"#!{python} -IS"
    if any(c.isspace() for c in python) or len(shebang) > _SHEBANG_MAX:
        raise ValueError(
            f"shim interpreter {python!r} cannot go in a shebang (no spaces, at most "
            f"{_SHEBANG_MAX - 5} characters): use a shorter path or a symlink"
        )
    return shebang + "\n" + Path(shim.__file__).read_text(encoding="utf-8")


def write_shim(directory: Path, python: str) -> Path:
    """Write the executable shim as ``directory/flwr-clientapp``; return its path.

    Over SSH, write :func:`shim_text` to the same name and ``chmod 755`` it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SHIM_NAME
    path.write_text(shim_text(python), encoding="utf-8")
    path.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    return path


@dataclass(frozen=True)
class ZygoteReport:
    """What one node's zygote log says, for the manifest.

    ``active`` is whether the zygote served (``ready``); ``reason`` says why or
    why not; ``forks``/``refused`` count launches it took or sent back to stock;
    ``failed_exits`` counts children that did not exit 0.
    """

    active: bool
    reason: str
    flwr_version: str = ""
    forks: int = 0
    refused: int = 0
    failed_exits: int = 0
    preloaded: Mapping[str, float] = field(default_factory=dict)
    preload_failed: Mapping[str, str] = field(default_factory=dict)

    def as_manifest(self) -> dict[str, object]:
        """A JSON-ready mapping."""
        return {
            "active": self.active,
            "reason": self.reason,
            "flwr_version": self.flwr_version,
            "forks": self.forks,
            "refused": self.refused,
            "failed_exits": self.failed_exits,
            "preloaded": dict(self.preloaded),
            "preload_failed": dict(self.preload_failed),
        }


def zygote_events(log_text: str) -> list[dict[str, object]]:
    """The zygote's JSON events in ``log_text`` (other lines, e.g. stamps, skipped)."""
    events = []
    for line in log_text.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            event = json.loads(line[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "event" in event:
            events.append(event)
    return events


def zygote_report(log_text: str) -> ZygoteReport:
    """Summarise a zygote's log; no ``ready`` line means the node ran stock."""
    events = zygote_events(log_text)
    kinds = [str(e["event"]) for e in events]
    first = next((e for e in events if e["event"] in ("ready", "refused")), None)
    if first is None:
        return ZygoteReport(False, "the zygote never became ready; launching stock")
    preloaded = first.get("preloaded") or {}
    failed = first.get("preload_failed") or {}
    return ZygoteReport(
        active=first["event"] == "ready",
        reason=str(first.get("reason", "")),
        flwr_version=str(first.get("flwr_version", "")),
        forks=kinds.count("fork"),
        refused=kinds.count("refuse"),
        failed_exits=sum(1 for e in events if e["event"] == "exit" and e["code"] != 0),
        preloaded={str(k): float(v) for k, v in dict(preloaded).items()},  # type: ignore[call-overload]
        preload_failed={str(k): str(v) for k, v in dict(failed).items()},  # type: ignore[call-overload]
    )


def supernode_poll_argv(
    python: str,
    supernode_argv: Sequence[str],
    idle_s: float,
    handoff_s: float,
    supported: Sequence[str] = TESTED_FLWR_SERIES,
) -> list[str]:
    """``supernode_argv`` (``flower-supernode ARGS``) run through the
    ``supernode-poll`` entry point: ``python -m testbed.launch.supernode_poll
    --idle-s S --handoff-s H [--supported X.Y ...] -- ARGS``. ``python`` must be
    the interpreter of that ``flower-supernode``."""
    if not supernode_argv:
        raise ValueError("supernode_argv is empty: expected flower-supernode ARGS")
    argv = [python, "-m", SUPERNODE_POLL_MODULE]
    argv += ["--idle-s", f"{idle_s:g}", "--handoff-s", f"{handoff_s:g}"]
    for series in supported:
        argv += ["--supported", series]
    return [*argv, "--", *supernode_argv[1:]]
