"""Executors: where a command runs (this machine, a network namespace, an SSH host).

One small ``Executor`` protocol: run a command to its end, start a background
process (``Background``: its own process group, line-stamped log on that host),
put a file and get a file. Every command gets a timeout; a failure raises
``CommandError`` naming the command, its exit code, the tail of its stderr and
where it ran. ``testbed/ssh.py`` holds the SSH implementation.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

DEFAULT_TIMEOUT_S = 30.0
_STDERR_TAIL_CHARS = 600


class CommandError(RuntimeError):
    """A command failed or timed out; the message says which, where and why."""

    def __init__(
        self,
        argv: Sequence[str],
        where: str,
        returncode: int | None,
        stderr: str,
        timeout_s: float | None = None,
    ) -> None:
        self.argv = tuple(argv)
        self.where = where
        self.returncode = returncode
        self.stderr = stderr
        self.timeout_s = timeout_s
        command = shlex.join(self.argv)
        tail = stderr.strip()[-_STDERR_TAIL_CHARS:]
        if returncode is None and timeout_s is not None:
            what = f"timed out after {timeout_s:g} s"
        elif returncode is None:
            what = "did not finish"
        else:
            what = f"failed with exit code {returncode}"
        message = f"command `{command}` {what} on {where}"
        if tail:
            message += f": {tail}"
        super().__init__(message)


@runtime_checkable
class Background(Protocol):
    """A background process started by an executor, stopped with its whole group."""

    name: str

    def poll(self) -> int | None:
        """Exit code, or None while running."""
        ...

    def check_alive(self) -> None:
        """Raise ``ProcessError`` with the log tail if the process has exited."""
        ...

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (no error if it is gone)."""
        ...

    def gone(self) -> bool:
        """Whether the process and every member of its group have exited."""
        ...

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of its log, without the stamps."""
        ...

    def reap(self) -> None:
        """Release local resources once the process is gone."""
        ...


@runtime_checkable
class Executor(Protocol):
    """Runs commands somewhere and moves files there and back."""

    @property
    def where(self) -> str:
        """Human-readable place the commands run, for error messages."""
        ...

    def run(
        self,
        argv: Sequence[str],
        check: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` to completion and return its result (raise if ``check``)."""
        ...

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log_path: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Background:
        """Start ``argv`` in its own session; its output, each line prefixed with
        the ``time.time_ns()`` of that host when read, goes to ``log_path`` there.
        """
        ...

    def put(self, local: Path, remote: str, mode: int | None = None) -> None:
        """Copy local file ``local`` to path ``remote`` on this executor's host."""
        ...

    def get(self, remote: str, local: Path) -> None:
        """Copy file ``remote`` on this executor's host to local path ``local``."""
        ...


def _merged_env(env: Mapping[str, str] | None) -> dict[str, str] | None:
    if env is None:
        return None
    return {**os.environ, **env}


class LocalExecutor:
    """Runs commands on this machine, in the namespace the caller lives in."""

    @property
    def where(self) -> str:
        """Human-readable place the commands run."""
        return "local host"

    def run(
        self,
        argv: Sequence[str],
        check: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` to the end; raise ``CommandError`` if it fails and ``check``."""
        argv = list(argv)
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=_merged_env(env),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else ""
            raise CommandError(argv, self.where, None, stderr, timeout) from exc
        except FileNotFoundError as exc:
            raise CommandError(argv, self.where, 127, f"{argv[0]}: not found") from exc
        if check and result.returncode != 0:
            raise CommandError(argv, self.where, result.returncode, result.stderr)
        return result

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log_path: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Background:
        """Start ``argv`` here as a :class:`ManagedProcess`."""
        from testbed.transport.processes import ManagedProcess

        return ManagedProcess(
            name, argv, Path(log_path), env=env, cwd=Path(cwd) if cwd else None
        )

    def put(self, local: Path, remote: str, mode: int | None = None) -> None:
        """Copy ``local`` to ``remote`` on this machine (atomically, via rename)."""
        _copy_atomic(local, Path(remote), mode)

    def get(self, remote: str, local: Path) -> None:
        """Copy ``remote`` on this machine to ``local``."""
        _copy_atomic(Path(remote), local, None)


def _copy_atomic(src: Path, dst: Path, mode: int | None) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.part")
    shutil.copyfile(src, tmp)
    if mode is not None:
        tmp.chmod(mode)
    tmp.replace(dst)


class NetnsExecutor:
    """Runs commands inside network namespace ``namespace`` via ``ip netns exec``.

    ``inner`` runs the prefixed command (this machine by default; later an SSH host).
    """

    def __init__(self, namespace: str, inner: Executor | None = None) -> None:
        if not namespace or "/" in namespace or namespace.strip() != namespace:
            raise ValueError(f"invalid network namespace name {namespace!r}")
        self.namespace = namespace
        self.inner: Executor = inner if inner is not None else LocalExecutor()

    @property
    def where(self) -> str:
        """Human-readable place the commands run."""
        return f"network namespace {self.namespace} on {self.inner.where}"

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """Return ``argv`` prefixed so it runs inside the namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def run(
        self,
        argv: Sequence[str],
        check: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace; errors name the namespace."""
        try:
            return self.inner.run(
                self.wrap(argv), check=check, timeout=timeout, env=env
            )
        except CommandError as exc:
            raise CommandError(
                argv, self.where, exc.returncode, exc.stderr, exc.timeout_s
            ) from exc

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log_path: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Background:
        """Start ``argv`` inside the namespace, in its own session."""
        return self.inner.start(name, self.wrap(argv), log_path, env=env, cwd=cwd)

    def put(self, local: Path, remote: str, mode: int | None = None) -> None:
        """Namespaces share the file system of ``inner``'s host."""
        self.inner.put(local, remote, mode)

    def get(self, remote: str, local: Path) -> None:
        """Namespaces share the file system of ``inner``'s host."""
        self.inner.get(remote, local)
