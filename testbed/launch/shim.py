"""The ``flwr-clientapp`` shim: hands its launch to the node's zygote, else runs stock.

This file is shipped as-is (a shebang line in front) to every node and runs with
``python -I -S``: it may import only the standard library. ``flower-superexec``
starts ``flwr-clientapp --token ...`` by name, so a directory holding this shim
first on the SuperNode's ``PATH`` puts it in the real one's place. The shim sends
its argv, environment, working directory and standard descriptors (SCM_RIGHTS) to
the zygote's unix socket, named by ``FLOWERBED_WARM_SOCKET``; the zygote forks a
child that runs the real entry point in-process. The shim then stands in for that
child: it forwards the signals it gets and exits as the child did. Whenever the
zygote cannot take the launch, the shim says why on stderr (one line starting with
``flowerbed-warm:``) and execs the real ``flwr-clientapp`` (stock behaviour).
"""

from __future__ import annotations

import array
import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

SOCKET_ENV = "FLOWERBED_WARM_SOCKET"
COMMAND = "flwr-clientapp"
LOG_PREFIX = "flowerbed-warm:"
PROTOCOL_VERSION = 1
MAX_PACKET = 1 << 20
STD_FDS = (0, 1, 2)
# How long the zygote may take to say it forked (it answers in milliseconds).
ACCEPT_TIMEOUT_S = 10.0
FORWARDED_SIGNALS: tuple[int, ...] = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
# A child must reach the SuperNode's Runtime API (net) and be signalled by pid
# (pid). Not mnt: every ``ip netns exec`` makes its own mount namespace.
NAMESPACES = ("net", "pid")


class Refused(Exception):
    """The zygote cannot take this launch; the message says why."""


def process_start_ns() -> int:
    """Wall-clock instant this process started, to a clock tick (0 if unknown)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            start_ticks = int(stat.read().rpartition(")")[2].split()[19])
        since_start_s = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / float(
            os.sysconf("SC_CLK_TCK")
        )
        return time.time_ns() - int(since_start_s * 1e9)
    except (OSError, ValueError, IndexError):
        return 0


def namespaces() -> dict[str, str]:
    """This process's namespaces (``net:[4026531840]``...): the zygote's must match."""
    found = {}
    for name in NAMESPACES:
        try:
            found[name] = os.readlink(f"/proc/self/ns/{name}")
        except OSError:
            found[name] = ""
    return found


def real_command(path_env: str, shim_dir: str, command: str = COMMAND) -> str | None:
    """The first ``command`` on ``path_env`` outside ``shim_dir`` (the real one)."""
    own = os.path.realpath(shim_dir)
    for entry in path_env.split(os.pathsep):
        if not entry or os.path.realpath(entry) == own:
            continue
        candidate = os.path.join(entry, command)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def request(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    real: str | None,
    launch_ns: int,
    fds: Sequence[int],
) -> bytes:
    """One launch request, as the JSON packet the zygote reads."""
    body = {
        "v": PROTOCOL_VERSION,
        "argv": list(argv),
        "env": dict(env),
        "cwd": cwd,
        "real": real,
        "launch_ns": launch_ns,
        "ns": namespaces(),
        "fds": list(fds),
    }
    return json.dumps(body).encode()


def send_packet(sock: socket.socket, body: dict[str, Any], fds: Sequence[int]) -> None:
    """Send ``body`` as one packet, with ``fds`` attached (SCM_RIGHTS)."""
    ancillary = []
    if fds:
        ancillary = [
            (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())
        ]
    sock.sendmsg([json.dumps(body).encode()], ancillary)


def read_packet(sock: socket.socket) -> dict[str, Any] | None:
    """The next JSON packet from ``sock``; None at end of stream."""
    data = sock.recv(MAX_PACKET)
    if not data:
        return None
    body = json.loads(data)
    if not isinstance(body, dict):
        raise ValueError(f"zygote sent {body!r}, not an object")
    return body


def _open_std_fds() -> list[int]:
    open_fds = []
    for fd in STD_FDS:
        try:
            os.fstat(fd)
        except OSError:
            continue
        open_fds.append(fd)
    return open_fds


def _say(text: str) -> None:
    try:
        os.write(2, f"{LOG_PREFIX} {text}\n".encode())
    except OSError:
        pass


def _exec_stock(real: str | None, reason: str, pending: list[int]) -> NoReturn:
    """Run the real ``flwr-clientapp`` in this process, after saying why."""
    if real is None:
        _say(f"{reason}; and no real {COMMAND} on PATH: giving up")
        sys.exit(127)
    _say(f"{reason}; running the stock {COMMAND} ({real})")
    for sig in pending:  # a stop asked for before the exec still stops us
        _die_by(sig)
    os.execv(real, [real, *sys.argv[1:]])  # noqa: S606 - argv as given, no shell


def _die_by(sig: int) -> NoReturn:
    signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)


def _connect(path: str, packet: bytes, fds: Sequence[int]) -> tuple[socket.socket, int]:
    """Hand the launch to the zygote; return the socket and the child's pid."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.settimeout(ACCEPT_TIMEOUT_S)
        sock.connect(path)
        ancillary = [
            (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())
        ]
        sock.sendmsg([packet], ancillary)
        reply = read_packet(sock)
    except (OSError, ValueError) as err:
        sock.close()
        raise Refused(f"zygote at {path} unreachable ({err!r})") from err
    if reply is None or "pid" not in reply:
        sock.close()
        why = "closed the connection" if reply is None else reply.get("refused")
        raise Refused(f"zygote at {path} refused the launch: {why}")
    sock.settimeout(None)
    return sock, int(reply["pid"])


def _wait_gone(pid: int) -> None:
    """Wait until ``pid`` (not our child) has exited."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    with os.fdopen(pidfd, "rb", buffering=0):
        select.select([pidfd], [], [])


def _relay(sock: socket.socket, pid: int, pending: list[int]) -> NoReturn:
    """Stand in for the child: forward signals, then exit as it did."""

    def forward(sig: int, _frame: object) -> None:
        try:
            os.kill(pid, sig)
        except OSError:
            pass

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    for sig in pending:
        forward(sig, None)
    try:
        reply = read_packet(sock)
    except (OSError, ValueError):
        reply = None
    if reply is None or "exit" not in reply:
        _say(f"zygote went away while child {pid} ran; waiting for the child")
        _wait_gone(pid)
        sys.exit(1)
    code = int(reply["exit"])
    if code < 0:
        _die_by(-code)
    sys.exit(code)


def main() -> NoReturn:
    """Entry point of the shipped shim."""
    launch_ns = process_start_ns()
    pending: list[int] = []

    def remember(sig: int, _frame: object) -> None:
        pending.append(sig)

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, remember)
    shim_dir = os.path.dirname(os.path.abspath(sys.argv[0]))
    real = real_command(os.environ.get("PATH", ""), shim_dir)
    path = os.environ.get(SOCKET_ENV, "")
    if not path:
        _exec_stock(real, f"{SOCKET_ENV} is not set", pending)
    fds = _open_std_fds()
    packet = request(sys.argv, os.environ, os.getcwd(), real, launch_ns, fds)
    try:
        sock, pid = _connect(path, packet, fds)
    except Refused as why:
        _exec_stock(real, str(why), pending)
    _relay(sock, pid, pending)


if __name__ == "__main__":
    main()
