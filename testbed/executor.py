"""Executors: where a command runs (this machine, or inside a network namespace on it).

Every command gets a timeout; a failure raises ``CommandError`` naming the command,
its exit code, the tail of its stderr and where it ran. An SSH executor will follow
the same small ``Executor`` protocol.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from typing import IO, Any, Protocol, runtime_checkable

DEFAULT_TIMEOUT_S = 30.0
_STDERR_TAIL_CHARS = 600

Stream = int | IO[Any] | None


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
        if returncode is None:
            what = f"timed out after {timeout_s:g} s"
        else:
            what = f"failed with exit code {returncode}"
        message = f"command `{command}` {what} on {where}"
        if tail:
            message += f": {tail}"
        super().__init__(message)


@runtime_checkable
class Executor(Protocol):
    """Runs commands somewhere: ``run`` waits for the end, ``popen`` starts one."""

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

    def popen(
        self,
        argv: Sequence[str],
        stdout: Stream = None,
        stderr: Stream = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in the background, in its own process group."""
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

    def popen(
        self,
        argv: Sequence[str],
        stdout: Stream = None,
        stderr: Stream = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in its own process group (stop it with ``os.killpg``)."""
        return subprocess.Popen(
            list(argv),
            stdout=stdout,
            stderr=stderr,
            env=_merged_env(env),
            process_group=0,
        )


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

    def popen(
        self,
        argv: Sequence[str],
        stdout: Stream = None,
        stderr: Stream = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the namespace, in its own process group."""
        return self.inner.popen(self.wrap(argv), stdout=stdout, stderr=stderr, env=env)
