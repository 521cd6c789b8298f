"""Detect which link emulation this kernel offers by trying it in a probe namespace.

Nothing is inferred from module lists or kernel versions: each feature is tried on a
veth pair inside a throwaway namespace ``fbprobe-<random>`` and the kernel's own
error text is kept when it refuses. The probe namespace is always removed.
"""

from __future__ import annotations

import errno
import secrets
import socket
from dataclasses import dataclass, field

from testbed.commands import netcmd, shaping
from testbed.emulation import nfqueue
from testbed.transport.executor import (
    CommandError,
    Executor,
    LocalExecutor,
    NetnsExecutor,
)

PROBE_PREFIX = "fbprobe-"
_DEV, _PEER, _IFB = "fbp0", "fbp1", "fbpifb0"
_MANGLE = ("iptables", "-w", "5", "-t", "mangle")


@dataclass(frozen=True)
class EmulationFeatures:
    """What link emulation works here; ``details`` holds why (error text) per feature.

    ``rate``: HTB and TBF qdiscs; ``loss``: iptables statistic match; ``delay``:
    sch_netem (delay and jitter); ``ifb``: IFB devices for ingress shaping;
    ``nfqueue``: iptables NFQUEUE and nfnetlink_queue, for the userspace delay line.
    """

    rate: bool
    loss: bool
    delay: bool
    ifb: bool
    details: dict[str, str] = field(default_factory=dict)
    nfqueue: bool = False

    def as_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict (for a run manifest)."""
        return {
            "rate": self.rate,
            "loss": self.loss,
            "delay": self.delay,
            "ifb": self.ifb,
            "nfqueue": self.nfqueue,
            "details": dict(self.details),
        }


def _attempt(run: Executor, argv: list[str]) -> str | None:
    """Run ``argv``; return None on success or the failure text."""
    try:
        run.run(argv, timeout=10.0)
    except CommandError as exc:
        return exc.stderr.strip() or str(exc)
    return None


def _probe(ns: NetnsExecutor, namespace: str) -> EmulationFeatures:
    setup_error = _attempt(ns, netcmd.veth_add(_DEV, _PEER)) or _attempt(
        ns, netcmd.link_up(_DEV)
    )
    if setup_error is not None:
        reason = (
            f"could not create a veth in probe namespace {namespace}: {setup_error}"
        )
        return EmulationFeatures(False, False, False, False, {"setup": reason})
    details: dict[str, str] = {}

    htb_error = _attempt(ns, shaping.htb_root(_DEV)) or _attempt(
        ns, shaping.htb_class(_DEV, 8.0)
    )
    details["htb"] = htb_error or "ok"
    netem_error = (
        _attempt(ns, shaping.netem_leaf(_DEV, delay_ms=1.0))
        if htb_error is None
        else f"not tried: htb failed ({htb_error})"
    )
    details["netem"] = netem_error or "ok"
    _attempt(ns, shaping.qdisc_del_root(_DEV))
    tbf_error = _attempt(ns, shaping.tbf_root(_DEV, 8.0))
    details["tbf"] = tbf_error or "ok"

    rule = shaping.LossRule("uplink", _DEV, "random", probability=0.5)
    iptables_error = _attempt(ns, shaping.iptables_append(rule))
    details["iptables_statistic"] = iptables_error or "ok"

    ifb_error = _attempt(ns, ["ip", "link", "add", _IFB, "type", "ifb"])
    details["ifb"] = ifb_error or "ok"

    nfqueue_error = (
        _attempt(
            ns,
            [
                *_MANGLE,
                "-A",
                "PREROUTING",
                "-i",
                _DEV,
                "-j",
                "NFQUEUE",
                "--queue-num",
                "0",
            ],
        )
        or _netlink_queue_error()
    )
    details["nfqueue"] = nfqueue_error or "ok"

    rate_ok = htb_error is None or tbf_error is None
    details["rate"] = "ok" if rate_ok else f"htb: {htb_error}; tbf: {tbf_error}"
    details["loss"] = "ok" if iptables_error is None else str(iptables_error)
    details["delay"] = (
        "ok" if netem_error is None else f"tc netem unavailable: {netem_error}"
    )
    return EmulationFeatures(
        rate=rate_ok,
        loss=iptables_error is None,
        delay=netem_error is None,
        ifb=ifb_error is None,
        details=details,
        nfqueue=nfqueue_error is None,
    )


def _netlink_queue_error() -> str | None:
    """Why nfnetlink_queue cannot be used from here (None: it can)."""
    try:
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW, nfqueue.NETLINK_NETFILTER
        )
    except OSError as exc:
        return f"no netfilter netlink socket: {exc}"
    with sock:
        sock.bind((0, 0))
        sock.settimeout(2.0)
        # A queue number no cluster uses; binding proves nfnetlink_queue is there.
        queue = 0x7FFF
        try:
            sock.send(nfqueue.bind(queue))
            answers = nfqueue.parse(sock.recv(4096))
        except OSError as exc:
            return f"nfnetlink_queue did not answer: {exc}"
        errors = [a.error for a in answers if isinstance(a, nfqueue.Ack) and a.error]
        # EPERM/EBUSY: someone else's queue, so the module works
        if errors and errors[0] not in (-errno.EPERM, -errno.EBUSY):
            return f"binding an NFQUEUE failed: errno {-errors[0]}"
        sock.send(nfqueue.unbind(queue))
    return None


def detect_features(executor: Executor | None = None) -> EmulationFeatures:
    """Try each emulation feature in a fresh probe namespace and report what worked.

    Needs root (it creates a namespace). Raises ``CommandError`` only if the probe
    namespace itself cannot be created; a missing feature is a False with its reason.
    """
    host = executor if executor is not None else LocalExecutor()
    namespace = PROBE_PREFIX + secrets.token_hex(4)
    host.run(netcmd.netns_add(namespace), timeout=10.0)
    try:
        return _probe(NetnsExecutor(namespace, host), namespace)
    finally:
        host.run(netcmd.netns_del(namespace), check=False, timeout=10.0)
