"""Commands of ``cluster calibrate``: iperf3 and ping argv builders, and parsers.

Pure functions: the executor quotes each argument, and the parsers turn iperf3's
JSON and ping's summary into typed values, so both are table-tested without a
host. iperf3's server runs on the server (this machine), bound to the
network's server address; the client runs on the node, bound to the node's
address on that network, so the measurement takes the network under test
whatever the node's routing table says.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

DEFAULT_PORT = 5201
# ping's summary: "rtt min/avg/max/mdev = 0.020/0.025/0.035/0.006 ms"
_PING_RTT = re.compile(
    r"(?:rtt|round-trip) min/avg/max/(?:mdev|stddev) = "
    r"([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms"
)
_PING_LOSS = re.compile(r"([\d.]+)% packet loss")


class ParseError(ValueError):
    """Output that is not what the tool prints when it worked."""


@dataclass(frozen=True)
class Goodput:
    """One iperf3 run as the receiver saw it.

    ``mbit``: goodput in Mbit/s at the receiver; ``retransmits`` at the
    sender (None when iperf3 did not say); ``cpu_node_pct`` and
    ``cpu_server_pct``: iperf3's own CPU use on each end, in % of one core
    summed over its threads (the client reports itself as ``host``).
    """

    mbit: float
    seconds: float
    retransmits: int | None
    cpu_node_pct: float | None
    cpu_server_pct: float | None


@dataclass(frozen=True)
class Rtt:
    """One ping run: round-trip times in ms and the share of lost probes."""

    min_ms: float
    avg_ms: float
    max_ms: float
    mdev_ms: float
    loss_pct: float


def iperf3_server_argv(
    bind: str, port: int = DEFAULT_PORT, one_off: bool = False
) -> list[str]:
    """An iperf3 server on ``bind``:``port`` (``one_off``: exit after one test)."""
    argv = ["iperf3", "--server", "--bind", bind, "--port", str(port), "--forceflush"]
    return [*argv, "--one-off"] if one_off else argv


def iperf3_client_argv(
    server: str,
    bind: str,
    *,
    port: int = DEFAULT_PORT,
    seconds: float = 3.0,
    omit_s: float = 1.0,
    download: bool = False,
) -> list[str]:
    """An iperf3 client on the node: upload (node to server) unless ``download``.

    The first ``omit_s`` seconds (TCP slow start) are left out of the result.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    argv = [
        "iperf3",
        "--client",
        server,
        "--bind",
        bind,
        "--port",
        str(port),
        "--time",
        f"{seconds:g}",
        "--omit",
        f"{omit_s:g}",
        "--json",
    ]
    return [*argv, "--reverse"] if download else argv


def ping_argv(
    server: str, source: str, *, count: int = 10, interval_s: float = 0.2
) -> list[str]:
    """``count`` pings from the node's ``source`` address, ``interval_s`` apart.

    Intervals under 0.2 s need root on most systems; 0.2 s is allowed to all.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    deadline = max(2, int(count * interval_s) + 2)
    return [
        "ping",
        "-n",
        "-c",
        str(count),
        "-i",
        f"{interval_s:g}",
        "-w",
        str(deadline),
        "-I",
        source,
        server,
    ]


def which_argv(tool: str) -> list[str]:
    """Exit 0 when ``tool`` is on the PATH (prints its path)."""
    return ["sh", "-c", 'command -v "$1"', "sh", tool]


def parse_iperf3(text: str) -> Goodput:
    """The goodput iperf3 ``--json`` reports, or ParseError with iperf3's error."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        head = text.strip()[:200] or "(no output)"
        raise ParseError(f"iperf3 printed no JSON ({err.msg}): {head}") from None
    if not isinstance(doc, dict):
        raise ParseError(f"iperf3 JSON is a {type(doc).__name__}, not an object")
    if doc.get("error"):
        raise ParseError(f"iperf3: {doc['error']}")
    end = doc.get("end") or {}
    received = end.get("sum_received") or {}
    try:
        bits = float(received["bits_per_second"])
        seconds = float(received["seconds"])
    except (KeyError, TypeError, ValueError):
        raise ParseError(
            "iperf3 JSON has no end.sum_received.bits_per_second"
        ) from None
    sent = end.get("sum_sent") or {}
    retransmits = sent.get("retransmits")
    cpu = end.get("cpu_utilization_percent") or {}
    return Goodput(
        mbit=bits / 1e6,
        seconds=seconds,
        retransmits=int(retransmits) if isinstance(retransmits, int | float) else None,
        cpu_node_pct=_float_or_none(cpu.get("host_total")),
        cpu_server_pct=_float_or_none(cpu.get("remote_total")),
    )


def parse_ping(text: str) -> Rtt:
    """The round-trip summary of iputils or BusyBox ping; ParseError when absent."""
    loss = _PING_LOSS.search(text)
    if loss is None:
        raise ParseError(f"ping printed no summary: {text.strip()[-200:] or '(none)'}")
    rtt = _PING_RTT.search(text)
    if rtt is None:
        raise ParseError(f"no ping reply ({loss.group(1)}% packet loss)")
    lo, avg, hi, mdev = (float(v) for v in rtt.groups())
    return Rtt(lo, avg, hi, mdev, float(loss.group(1)))


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
