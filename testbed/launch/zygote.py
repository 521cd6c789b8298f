"""The zygote: Flower (and the app's libraries) imported once, one fork per message.

``python -m testbed.launch.zygote --socket PATH [--preload MODULE]...`` checks the
installed Flower version, imports ``flwr-clientapp``'s entry point and the
preloaded modules, then serves launch requests from the shim (testbed/launch/shim.py)
on a unix socket. Each request becomes one forked child that takes the shim's
standard descriptors, working directory, environment and argv, and runs the entry
point in-process; its exit status goes back to the shim. One child per message
keeps each message isolated like a fresh process: a crash or leak in one child is
gone with it. The zygote stays single-threaded, so forking is safe.

It writes one JSON object per line on stdout: ``ready`` (or ``refused``, then
exits 3 without a socket, so every shim falls back to stock), ``fork``, ``exit``
and ``refuse`` (one launch sent back to stock).
"""

from __future__ import annotations

import argparse
import array
import atexit
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from testbed.launch.guard import (
    TESTED_FLWR_SERIES,
    installed_flwr_version,
    warm_supported,
)
from testbed.launch.shim import (
    COMMAND,
    MAX_PACKET,
    PROTOCOL_VERSION,
    STD_FDS,
    namespaces,
    send_packet,
)

DEFAULT_ENTRY = "flwr.supernode.cli.flwr_clientapp:flwr_clientapp"
EXIT_REFUSED = 3
# Environment that shapes the interpreter at start-up: a child cannot take the
# shim's values, so they must already be the zygote's.
INTERPRETER_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "PYTHONNOUSERSITE")
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def emit(event: str, **fields: Any) -> None:
    """One line of the zygote's log (stdout), flushed before any fork."""
    print(json.dumps({"event": event, "ns": time.time_ns(), **fields}), flush=True)


def masked(token: str) -> str:
    """A task token shortened for the log (Flower masks them too)."""
    return token[:4] + "..." if len(token) > 4 else "..."


def token_of(argv: Sequence[str]) -> str:
    """The ``--token`` value of a ``flwr-clientapp`` argv ("" if none)."""
    for index, arg in enumerate(argv):
        if arg == "--token" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--token="):
            return arg.partition("=")[2]
    return ""


def resolve(entry: str) -> Callable[[], object]:
    """``module:function`` -> the function (its module imported)."""
    module_name, _, attribute = entry.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"entry {entry!r} is not of the form module:function")
    function = getattr(importlib.import_module(module_name), attribute)
    if not callable(function):
        raise ValueError(f"entry {entry!r} is not callable")
    return function  # type: ignore[no-any-return]


def preload(modules: Sequence[str]) -> tuple[dict[str, float], dict[str, str]]:
    """Import ``modules``; seconds per module, and the error of each that failed."""
    seconds: dict[str, float] = {}
    failed: dict[str, str] = {}
    for name in modules:
        start = time.monotonic()
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - a failed preload only costs speed
            failed[name] = repr(err)
            continue
        seconds[name] = round(time.monotonic() - start, 3)
    return seconds, failed


def native_threads() -> int:
    """Threads of this process as the kernel sees them.

    Forking wants one Python thread; numpy's OpenBLAS keeps an idle pool of native
    threads from import on, which it shuts down and restarts around a fork itself.
    """
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def refusal(body: dict[str, Any], peer_uid: int) -> str | None:
    """Why this zygote must not run the launch ``body`` describes (None: it may)."""
    if body.get("v") != PROTOCOL_VERSION:
        return f"protocol {body.get('v')!r}, zygote speaks {PROTOCOL_VERSION}"
    if peer_uid != os.getuid():
        return f"shim runs as uid {peer_uid}, zygote as {os.getuid()}"
    if body.get("ns") != namespaces():
        return f"shim namespaces {body.get('ns')} are not the zygote's {namespaces()}"
    env = body.get("env", {})
    for name in INTERPRETER_ENV:
        if env.get(name) != os.environ.get(name):
            return (
                f"{name} is {env.get(name)!r} for the SuperNode but "
                f"{os.environ.get(name)!r} for the zygote"
            )
    own = os.path.join(sys.prefix, "bin", COMMAND)
    real = body.get("real")
    if not real or not os.path.exists(own) or not os.path.samefile(real, own):
        return f"the SuperNode's {COMMAND} is {real}, the zygote's is {own}"
    return None


@dataclass
class Launch:
    """One forked child and the shim connection that stands in for it."""

    pid: int
    conn: socket.socket
    pidfd: int
    token: str
    start_ns: int = field(default_factory=time.time_ns)


def _reseed() -> None:
    """A fresh process seeds its generators from the OS; a forked one must too."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.seed()


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def become_task(
    entry: Callable[[], object], body: dict[str, Any], fds: Sequence[int]
) -> NoReturn:
    """In the forked child: take the shim's place and run ``entry``; never returns."""
    code = 1
    try:
        for sig in (*_STOP_SIGNALS, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        sent = list(body.get("fds", []))
        for target in STD_FDS:
            source = fds[sent.index(target)] if target in sent else None
            if source is None:
                source = os.open(os.devnull, os.O_RDWR)
            os.dup2(source, target)
        for fd in fds:
            if fd not in STD_FDS:
                os.close(fd)
        os.chdir(body["cwd"])
        os.environ.clear()
        os.environ.update(body["env"])
        sys.argv = list(body["argv"])
        _reseed()
        try:
            entry()
            code = 0
        except SystemExit as done:
            code = _exit_code(done.code)
    except BaseException:  # noqa: BLE001 - whatever happens, the child must exit here
        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


class Zygote:
    """The serving loop: accept launches, fork, report exits, clean up."""

    def __init__(self, listener: socket.socket, entry: Callable[[], object]) -> None:
        self.listener = listener
        self.entry = entry
        self.selector = selectors.DefaultSelector()
        self.launches: dict[int, Launch] = {}
        self.selector.register(listener, selectors.EVENT_READ, self._accept)

    def serve(self) -> None:
        """Serve until a stop signal raises out of the loop."""
        while True:
            for key, _ in self.selector.select():
                key.data(key.fileobj)

    def _accept(self, _listener: object) -> None:
        conn, _ = self.listener.accept()
        try:
            self._launch(conn)
        except (OSError, ValueError, KeyError) as err:
            emit("refuse", reason=f"bad request: {err!r}")
            conn.close()

    def _launch(self, conn: socket.socket) -> None:
        data, ancdata, _, _ = conn.recvmsg(MAX_PACKET, socket.CMSG_SPACE(4 * 8))
        fds = _received_fds(ancdata)
        try:
            body = json.loads(data)
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            shim_pid, peer_uid, _ = array.array("i", creds)
            why = refusal(body, peer_uid)
            if why is not None:
                emit("refuse", shim_pid=shim_pid, reason=why)
                send_packet(conn, {"refused": why}, [])
                conn.close()
                return
            pid = self._fork(body, fds, conn)
        finally:
            _close_all(fds)  # the child has its copies
        token = token_of(body["argv"])
        launch = Launch(pid, conn, os.pidfd_open(pid), masked(token))
        self.launches[pid] = launch
        self.selector.register(conn, selectors.EVENT_READ, self._shim_gone(pid))
        self.selector.register(launch.pidfd, selectors.EVENT_READ, self._exited(pid))
        emit(
            "fork",
            pid=pid,
            shim_pid=shim_pid,
            token=launch.token,
            launch_ns=body.get("launch_ns", 0),
            fork_ns=launch.start_ns,
        )
        send_packet(conn, {"pid": pid}, [])

    def _fork(
        self, body: dict[str, Any], fds: Sequence[int], conn: socket.socket
    ) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        # No stop signal may run the zygote's handler in the child.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:
            self.selector.close()
            self.listener.close()
            conn.close()
            for launch in self.launches.values():
                launch.conn.close()
                os.close(launch.pidfd)
            become_task(self.entry, body, fds)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return pid

    def _shim_gone(self, pid: int) -> Callable[[object], None]:
        def handle(_conn: object) -> None:
            launch = self.launches[pid]
            try:
                alive = bool(launch.conn.recv(MAX_PACKET))
            except OSError:
                alive = False
            if not alive:  # the shim died: its child must not outlive it
                emit("kill", pid=pid, reason="shim gone")
                _kill(pid)
                self.selector.unregister(launch.conn)

        return handle

    def _exited(self, pid: int) -> Callable[[object], None]:
        def handle(_pidfd: object) -> None:
            launch = self.launches.pop(pid)
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            self.selector.unregister(launch.pidfd)
            os.close(launch.pidfd)
            seconds = (time.time_ns() - launch.start_ns) / 1e9
            emit("exit", pid=pid, token=launch.token, code=code, wall_s=seconds)
            try:
                self.selector.unregister(launch.conn)
            except KeyError:
                pass  # already unregistered: the shim is gone
            try:
                send_packet(launch.conn, {"exit": code}, [])
            except OSError:
                pass
            launch.conn.close()

        return handle

    def stop(self) -> None:
        """Kill the children still running: their run is being torn down."""
        for pid in list(self.launches):
            _kill(pid)


def _received_fds(ancdata: Sequence[tuple[int, int, bytes]]) -> list[int]:
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    return list(fds)


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _listen(path: str) -> socket.socket:
    """A unix socket at ``path`` only this user can use (a stale one replaced)."""
    if os.path.exists(path):
        os.unlink(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    old_umask = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    listener.listen(64)
    return listener


def _stop(_sig: int, _frame: object) -> None:
    raise SystemExit(0)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The zygote's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="unix socket to serve on")
    parser.add_argument(
        "--preload", action="append", default=[], help="module to import up front"
    )
    parser.add_argument("--entry", default=DEFAULT_ENTRY, help="module:function")
    parser.add_argument(
        "--supported-flwr",
        action="append",
        default=None,
        help=f"Flower series to trust (default: {', '.join(TESTED_FLWR_SERIES)})",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Check, import, serve; 3 (without a socket) when this node must run stock."""
    args = parse_args(argv)
    version = installed_flwr_version()
    ok, reason = warm_supported(version, args.supported_flwr or TESTED_FLWR_SERIES)
    if not ok:
        emit("refused", flwr_version=version, reason=reason)
        return EXIT_REFUSED
    start = time.monotonic()
    try:
        entry = resolve(args.entry)
    except (ImportError, AttributeError, ValueError) as err:
        emit("refused", flwr_version=version, reason=f"entry {args.entry}: {err!r}")
        return EXIT_REFUSED
    entry_s = round(time.monotonic() - start, 3)
    seconds, failed = preload(args.preload)
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _stop)
    listener = _listen(args.socket)
    zygote = Zygote(listener, entry)
    own_pid = os.getpid()
    emit(
        "ready",
        pid=own_pid,
        socket=args.socket,
        flwr_version=version,
        reason=reason,
        python=sys.executable,
        entry=args.entry,
        entry_s=entry_s,
        preloaded=seconds,
        preload_failed=failed,
        threads=native_threads(),
        python_threads=threading.active_count(),
    )
    try:
        zygote.serve()
    finally:
        if os.getpid() == own_pid:
            zygote.stop()
            if os.path.exists(args.socket):
                os.unlink(args.socket)
            emit("stopped", pid=own_pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
