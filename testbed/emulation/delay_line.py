"""The userspace delay line: one process per cluster holding NFQUEUE'd packets.

Run as ``python -m testbed.emulation.delay_line CONFIG.json`` (``cluster up`` does
this; see ``testbed/emulation/delay.py``). For every queue of the config it opens a
netlink socket in that queue's network namespace, receives packet ids only (never
payloads), and gives each packet its ACCEPT verdict when its due time comes
(``delay_schedule.py``). It asks for SCHED_FIFO so that the machine's load does not
add to the delay, writes ``ready_file`` once every queue is bound, and unbinds
its queues on SIGTERM.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.emulation import nfqueue
from testbed.emulation.delay_schedule import DelaySchedule, DelaySpec

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/var/run/netns")
RCVBUF_BYTES = 8 * 1024 * 1024
RT_PRIORITY = 10
_NETLINK_NO_ENOBUFS = 5
_SOL_NETLINK = 270


@dataclass(frozen=True)
class QueueConfig:
    """One NFQUEUE the delay line serves: where, which number, which delay."""

    namespace: str | None
    queue: int
    spec: DelaySpec
    label: str

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form the process reads."""
        return {
            "namespace": self.namespace,
            "queue": self.queue,
            "delay_ms": self.spec.delay_ms,
            "jitter_ms": self.spec.jitter_ms,
            "reorder": self.spec.reorder,
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> QueueConfig:
        """Read one queue of the config file."""
        spec = DelaySpec(
            float(raw["delay_ms"]), float(raw["jitter_ms"]), bool(raw["reorder"])
        )
        return cls(raw["namespace"], int(raw["queue"]), spec, str(raw["label"]))


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def _request(sock: socket.socket, data: bytes, what: str) -> None:
    sock.send(data)
    for item in nfqueue.parse(sock.recv(65536)):
        if isinstance(item, nfqueue.Ack) and item.error != 0:
            raise OSError(-item.error, f"{what}: {os.strerror(-item.error)}")


def open_queue(config: QueueConfig, maxlen: int) -> socket.socket:
    """Bind ``config.queue`` in its namespace; the socket stays in that namespace."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        if config.namespace is not None:
            target = os.open(NETNS_DIR / config.namespace, os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
    finally:
        _setns(home)
        os.close(home)
    sock.bind((0, 0))
    try:
        sock.setsockopt(socket.SOL_SOCKET, 33, RCVBUF_BYTES)  # SO_RCVBUFFORCE
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
    sock.setsockopt(_SOL_NETLINK, _NETLINK_NO_ENOBUFS, 1)
    where = f"queue {config.queue} in {config.namespace or 'the host namespace'}"
    _request(sock, nfqueue.bind(config.queue), f"binding {where}")
    _request(sock, nfqueue.configure(config.queue, maxlen), f"configuring {where}")
    return sock


def realtime() -> str:
    """Ask for SCHED_FIFO; return what the process got."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
    except (OSError, AttributeError) as exc:
        return f"normal scheduling (SCHED_FIFO refused: {exc})"
    return f"SCHED_FIFO priority {RT_PRIORITY}"


class DelayLine:
    """The sockets and schedules of every queue, and the loop that serves them."""

    def __init__(self, queues: list[QueueConfig], maxlen: int, seed: int) -> None:
        self.sockets: dict[int, socket.socket] = {}
        self.schedules: dict[int, tuple[int, DelaySchedule]] = {}
        for i, config in enumerate(queues):
            sock = open_queue(config, maxlen)
            sock.setblocking(False)
            rng = random.Random(seed * 1000 + i)  # noqa: S311 - jitter, not crypto
            self.sockets[sock.fileno()] = sock
            self.schedules[sock.fileno()] = (
                config.queue,
                DelaySchedule(config.spec, rng),
            )
        self.stopping = False

    def _receive(self, fd: int, now_ns: int) -> None:
        sock = self.sockets[fd]
        _, schedule = self.schedules[fd]
        while True:
            try:
                data = sock.recv(262144)
            except BlockingIOError:
                return
            for item in nfqueue.parse(data):
                if isinstance(item, nfqueue.Queued):
                    schedule.admit(item.packet_id, now_ns)

    def _release(self, now_ns: int) -> int | None:
        soonest: int | None = None
        for fd, (queue, schedule) in self.schedules.items():
            ids = schedule.release(now_ns)
            if ids:
                sock = self.sockets[fd]
                if schedule.spec.reorder:
                    sock.send(b"".join(nfqueue.verdict(queue, i) for i in ids))
                else:
                    sock.send(nfqueue.verdict_batch(queue, ids[-1]))
            due = schedule.next_due_ns()
            if due is not None and (soonest is None or due < soonest):
                soonest = due
        return soonest

    def serve(self) -> None:
        """Receive and release until SIGTERM; then unbind every queue."""
        fds = list(self.sockets)
        soonest: int | None = None
        while not self.stopping:
            now = time.monotonic_ns()
            timeout = 1.0 if soonest is None else max(0.0, (soonest - now) / 1e9)
            try:
                readable, _, _ = select.select(fds, [], [], timeout)
            except InterruptedError:
                continue
            now = time.monotonic_ns()
            for fd in readable:
                self._receive(fd, now)
            soonest = self._release(time.monotonic_ns())
        self.close()

    def close(self) -> None:
        """Let every held packet go and unbind the queues."""
        for fd, (queue, schedule) in self.schedules.items():
            sock = self.sockets[fd]
            ids = schedule.release(2**62)
            try:
                if ids:
                    sock.send(nfqueue.verdict_batch(queue, max(ids)))
                sock.send(nfqueue.unbind(queue))
            except OSError:
                pass
            sock.close()


def main(argv: list[str]) -> int:
    """Serve the queues of the config file ``argv[0]`` until SIGTERM."""
    config = json.loads(Path(argv[0]).read_text())
    queues = [QueueConfig.from_dict(q) for q in config["queues"]]
    line = DelayLine(queues, int(config["maxlen"]), int(config.get("seed", 0)))

    def stop(signum: int, frame: object) -> None:
        line.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduling = realtime()
    ready = {"pid": os.getpid(), "queues": len(queues), "scheduling": scheduling}
    Path(config["ready_file"]).write_text(json.dumps(ready))
    print(f"delay line ready: {len(queues)} queue(s), {scheduling}", flush=True)
    line.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
