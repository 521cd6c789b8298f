"""Background processes we own: own process group, stamped logs, always stopped.

Flower's SuperNode and SuperLink spawn children (``flower-superexec``,
``flwr-clientapp``, ``flwr-serverapp``) that survive a plain SIGTERM of their
parent, so every process starts a new session and is stopped by signalling its
whole group. Each output line is written to a log file prefixed with the
``time.time_ns()`` at which we read it, which turns Flower's un-timestamped log
events into instants.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from testbed.transport.base import Background


class ProcessError(RuntimeError):
    """A background process failed to start or died; carries its log tail."""


def _pump(stream: IO[bytes], log_path: Path) -> None:
    with log_path.open("ab", buffering=0) as log:
        for line in iter(stream.readline, b""):
            log.write(f"{time.time_ns()} ".encode() + line)
    stream.close()


class ManagedProcess:
    """A process in its own session; its output lands, line-stamped, in ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        full_env = dict(os.environ)
        full_env.update(env or {})
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as err:
            raise ProcessError(f"{name}: cannot start {self.argv[0]}: {err}") from err
        assert self._proc.stdout is not None
        self._pump = threading.Thread(
            target=_pump, args=(self._proc.stdout, log_path), daemon=True
        )
        self._pump.start()

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        return self._proc.pid

    def poll(self) -> int | None:
        """Exit code, or None while running."""
        return self._proc.poll()

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of the process's log, without our stamps."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(line.partition(" ")[2] for line in text[-lines:])

    def check_alive(self) -> None:
        """Raise ProcessError with the log tail if the process has exited."""
        code = self.poll()
        if code is not None:
            raise ProcessError(
                f"{self.name} exited with status {code}; "
                f"last lines of {self.log_path}:\n"
                f"{self.log_tail()}"
            )

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (no error if it is gone)."""
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass

    def gone(self) -> bool:
        """Whether the process and every member of its group have exited."""
        return self._proc.poll() is not None and not _group_alive(self._proc.pid)

    def stop(self, grace_s: float = 5.0) -> int | None:
        """SIGTERM the group, SIGKILL after ``grace_s``; return the exit code."""
        stop_all([self], grace_s)
        return self._proc.poll()

    def reap(self) -> None:
        """Collect the exit status and the log pump once the group is gone."""
        try:
            self._proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        self._pump.join(timeout=2.0)


def stop_all(processes: Sequence[Background], grace_s: float = 5.0) -> None:
    """Stop process groups at once: SIGTERM, wait ``grace_s``, SIGKILL the rest."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        alive = [p for p in processes if not p.gone()]
        if not alive:
            break
        for proc in alive:
            proc.signal(sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not all(p.gone() for p in alive):
            time.sleep(0.05)
    for proc in processes:
        proc.reap()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_stamped_log(path: Path) -> list[tuple[int, str]]:
    """Lines of a log written by :class:`ManagedProcess` as (time_ns, text)."""
    out: list[tuple[int, str]] = []
    for raw in path.read_text(errors="replace").splitlines():
        stamp, _, text = raw.partition(" ")
        if stamp.isdigit():
            out.append((int(stamp), text))
    return out


def wait_for_port(
    host: str, port: int, deadline_s: float, process: ManagedProcess
) -> None:
    """Wait until ``host:port`` accepts TCP connections or raise, naming the process."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        process.check_alive()
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise ProcessError(
        f"{process.name} did not listen on {host}:{port} within {deadline_s:.0f} s; "
        f"last lines of {process.log_path}:\n{process.log_tail()}"
    )
