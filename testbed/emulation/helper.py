"""The cluster's helper processes (delay line, trace replay): started detached by
``cluster up``, found again by pid file and command line, stopped by ``down``.

Each helper is ``python -m <module> CONFIG.json``; it writes its ready file once
it serves, and ends on SIGTERM. Its files live in
``/var/lib/flowerbed/emulated/<cluster>/<stem>/``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from testbed.emulation.errors import ClusterUpError
from testbed.emulation.sshd import STATE_ROOT

READY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class HelperFiles:
    """Where one cluster's helper keeps its config, pid, readiness and log."""

    folder: Path
    stem: str = "delay_line"

    @property
    def config(self) -> Path:
        """What the process reads."""
        return self.folder / "config.json"

    @property
    def pid(self) -> Path:
        """The process id, written by ``start``."""
        return self.folder / f"{self.stem}.pid"

    @property
    def ready(self) -> Path:
        """Written by the process once it serves."""
        return self.folder / "ready.json"

    @property
    def log(self) -> Path:
        """The process's output."""
        return self.folder / f"{self.stem}.log"


def files_for(cluster: str, stem: str) -> HelperFiles:
    """The files of ``cluster``'s helper ``stem`` (``delay_line``, ``trace_replay``)."""
    return HelperFiles(STATE_ROOT / cluster / stem, stem)


def start_command(module: str, config: Path) -> list[str]:
    """The argv that starts helper ``module`` on ``config``."""
    return [sys.executable, "-m", module, str(config)]


def is_helper(pid: int, module: str) -> bool:
    """Whether process ``pid`` runs ``python -m module``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return module.encode() in cmdline


def running_pid(files: HelperFiles, module: str) -> int | None:
    """The pid in ``files`` if that process still runs ``module``, else None."""
    try:
        pid = int(files.pid.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if is_helper(pid, module) else None


def stop(files: HelperFiles, module: str, grace_s: float = 3.0) -> int | None:
    """Stop the helper (SIGTERM, then SIGKILL); return its pid if it ran."""
    pid = running_pid(files, module)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and is_helper(pid, module):
            time.sleep(0.05)
        if is_helper(pid, module):
            os.kill(pid, signal.SIGKILL)
            while is_helper(pid, module):
                time.sleep(0.05)
    for path in (files.pid, files.ready):
        path.unlink(missing_ok=True)
    return pid


def forget(files: HelperFiles) -> None:
    """Remove the helper's files, and the cluster's state folder if nothing else
    is left in it."""
    shutil.rmtree(files.folder, ignore_errors=True)
    try:
        files.folder.parent.rmdir()
    except OSError:
        pass  # the SSH state (or another helper) still lives there


def read_ready(files: HelperFiles) -> dict[str, object]:
    """What the running helper wrote into its ready file ({} if none)."""
    try:
        ready = json.loads(files.ready.read_text())
    except (OSError, ValueError):
        return {}
    return ready if isinstance(ready, dict) else {}


def start(
    files: HelperFiles, module: str, config: dict[str, object], what: str, hint: str
) -> int:
    """Start helper ``module`` detached on ``config``; return its pid once ready.

    ``config`` gets ``ready_file``; ``what`` names the helper in errors, ``hint``
    says what to check when it does not start.
    """
    files.folder.mkdir(parents=True, exist_ok=True)
    files.ready.unlink(missing_ok=True)
    config = {**config, "ready_file": str(files.ready)}
    files.config.write_text(json.dumps(config, indent=2))
    root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    with files.log.open("w") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            start_command(module, files.config),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd=root,
        )
    files.pid.write_text(str(process.pid))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not files.ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            files.pid.unlink(missing_ok=True)
            tail = files.log.read_text()[-1500:]
            raise ClusterUpError(
                f"{what} did not start ({files.log}):\n{tail}\n"
                f"Run `flowerbed cluster down` and {hint}"
            )
        time.sleep(0.02)
    return process.pid
