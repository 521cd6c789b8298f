"""Link calibration: what each node's links actually carry, against their profiles.

``flowerbed cluster calibrate`` measures, per node and network, goodput in both
directions with iperf3 and the round trip with ping, from the node (its
namespace on the emulated cluster, SSH on a lab) to the server (this machine,
where the SuperLink runs). One iperf3 server per network listens on the
network's server address for the whole calibration; nodes and networks are
measured one at a time, so no two measurements share a link.

Each figure is judged against the profile (:func:`judge_rate`, :func:`judge_rtt`):
``link`` (within 10 %), ``below-profile`` / ``above-profile`` (the link carries
another rate: campaigns then take the measured one for floors), ``host`` (below
the profile while iperf3 kept a core busy: this machine or the node, not the
link, is the limit, and the profile stays the floor's rate), ``unshaped`` (no
shaper: the hosts set the rate). A node that cannot be reached, or lacks iperf3
or ping, gets an ``error`` row saying what to do; the others are still measured.

The result is a JSON file beside the inventory (:func:`default_path`), stamped
with the inventory file's hash so that a campaign uses it only while the
inventory is the one measured (:func:`last_calibration`).
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inventory.models import Host, Inventory, Network
from testbed.commands import calibratecmd as cmd
from testbed.transport.base import Background, CommandError, Executor

RATE_TOLERANCE = 0.10  # a rate within 10 % of the profile is the profile's
RTT_TOLERANCE = 0.10  # a round trip within max(1 ms, 10 %) of the profile's
RTT_TOLERANCE_MS = 1.0
HOST_CPU_PCT = 90.0  # iperf3 at this share of a core: the host is the limit
SERVER_START_S = 5.0
FORMAT_VERSION = 1
# Verdicts whose measured rate is the link's (campaigns use it for floors).
LINK_RATES = ("link", "below-profile", "above-profile")
QUANTITIES = {"down_mbit": "down", "up_mbit": "up"}

Connector = Callable[[], Executor]


class CalibrationError(RuntimeError):
    """Calibration cannot start: names what, where and what to do."""


@dataclass(frozen=True)
class Measurement:
    """One figure of one node's link: ``quantity`` is ``down_mbit``, ``up_mbit``
    or ``rtt_ms``; ``measured`` is None when it could not be measured (``error``
    says why and what to do)."""

    node: str
    network: str
    quantity: str
    profile: float
    measured: float | None
    verdict: str
    detail: str = ""
    error: str | None = None
    retransmits: int | None = None
    cpu_node_pct: float | None = None
    cpu_server_pct: float | None = None


@dataclass(frozen=True)
class Calibration:
    """A calibration of an inventory's links (see the module docstring)."""

    inventory: str
    inventory_sha256: str
    measured_at_ns: int
    transport: str
    seconds: float
    measurements: tuple[Measurement, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (``inf`` profiles as the string ``"inf"``)."""
        out = asdict(self)
        out["format"] = FORMAT_VERSION
        for row in out["measurements"]:
            if math.isinf(row["profile"]):
                row["profile"] = "inf"
        return out


# --- judging (pure) -------------------------------------------------------------


def judge_rate(
    measured: float, profile: float, cpu_pct: float | None = None
) -> tuple[str, str]:
    """The verdict on a measured goodput against its profile, and why."""
    if math.isinf(profile):
        return "unshaped", "no shaper on this network: the hosts set this rate"
    ratio = measured / profile
    said = f"{ratio:.2f}x the profile's {profile:g} Mbit/s"
    if abs(ratio - 1) <= RATE_TOLERANCE:
        return "link", said
    if ratio < 1 and cpu_pct is not None and cpu_pct >= HOST_CPU_PCT:
        return "host", (
            f"{said}, with iperf3 at {cpu_pct:.0f}% of a core: the host's CPU, not "
            "the link, is the limit (floors keep the profile's rate)"
        )
    side = "below" if ratio < 1 else "above"
    return f"{side}-profile", (
        f"{said}: the link carries {side} its profile; campaigns use the measured"
        " rate for floors (or fix the profile in the inventory)"
    )


def judge_rtt(
    measured_ms: float, profile_ms: float, delay_note: str | None = None
) -> tuple[str, str]:
    """The verdict on a measured round trip against the profile's (2 x delay).

    ``delay_note``: on the emulated cluster, what ``cluster up`` said about delay
    emulation (None on a lab), to explain a round trip below the profile's.
    """
    tolerance = max(RTT_TOLERANCE_MS, RTT_TOLERANCE * profile_ms)
    said = f"{measured_ms:.3g} ms against the profile's {profile_ms:g} ms"
    if abs(measured_ms - profile_ms) <= tolerance:
        return "link", said
    if measured_ms < profile_ms:
        why = (
            f"the emulated cluster applies less delay than the profile ({delay_note})"
            if delay_note is not None
            else "the link is faster than its profile: lower delay_ms in the inventory"
        )
        return "below-profile", f"{said}: {why}"
    return "above-profile", f"{said}: the path adds delay the profile does not hold"


def profile_of(network: Network, quantity: str) -> float:
    """The profile's value for ``quantity`` (``rtt_ms`` is twice the one-way delay)."""
    profile = network.profile
    if quantity == "down_mbit":
        return profile.downlink_mbit
    if quantity == "up_mbit":
        return profile.uplink_mbit
    return 2 * profile.delay_ms


# --- measuring ------------------------------------------------------------------


def calibrate(
    inventory: Inventory,
    connectors: Mapping[str, Connector],
    server: Executor,
    *,
    networks: Sequence[str] | None = None,
    transport: str = "netns",
    delay_note: str | None = None,
    seconds: float = 3.0,
    ping_count: int = 10,
    port: int = cmd.DEFAULT_PORT,
    progress: Callable[[str], None] = lambda _: None,
) -> Calibration:
    """Measure every client in ``connectors`` on ``networks`` (default: all).

    ``server`` runs the iperf3 servers (this machine); ``connectors`` open each
    node's executor (a failure to connect is that node's error row);
    ``delay_note``: the emulated cluster's delay emulation, as ``cluster up``
    describes it (None on a lab).
    """
    chosen = [inventory.network(n) for n in (networks or inventory.network_names)]
    _check_tool(server, "iperf3", "this machine (the server)")
    rows: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="flowerbed-calibrate-") as logs:
        servers = _start_servers(server, chosen, port, Path(logs))
        try:
            for name, connect in connectors.items():
                host = inventory.client(name)
                rows += _measure_node(
                    host,
                    connect,
                    chosen,
                    port,
                    seconds,
                    ping_count,
                    delay_note,
                    progress,
                )
        finally:
            from testbed.transport.processes import stop_all

            stop_all(list(servers.values()), grace_s=2.0)
    return Calibration(
        inventory=str(inventory.path),
        inventory_sha256=file_sha256(inventory.path),
        measured_at_ns=time.time_ns(),
        transport=transport,
        seconds=seconds,
        measurements=tuple(rows),
    )


def netns_connector(
    namespace: str, inventory_path: Path, procs: Sequence[str] = ()
) -> Connector:
    """A connector to an emulated node's namespace (its processes in the node's
    cgroups ``procs``, so iperf3 gets the node's CPU share); connecting to one
    that is gone raises with what to do (that node's error row)."""

    def connect() -> Executor:
        from testbed.transport.executor import NetnsExecutor

        if not Path("/run/netns", namespace).exists():
            raise CalibrationError(
                f"its namespace {namespace} is gone; run "
                f"`flowerbed cluster up {inventory_path}` again"
            )
        return NetnsExecutor(namespace, cgroup_procs=procs)

    return connect


def _check_tool(executor: Executor, tool: str, where: str) -> str | None:
    """None when ``tool`` runs on ``executor``, else what to do."""
    try:
        found = executor.run(cmd.which_argv(tool), check=False, timeout=15)
    except CommandError as err:
        return str(err)
    if found.returncode == 0:
        return None
    fix = (
        f"{tool} is not installed on {where}: install it (Debian/Raspberry Pi OS:"
        f" `sudo apt-get install {'iputils-ping' if tool == 'ping' else tool}`)"
    )
    if where.startswith("this machine"):
        raise CalibrationError(fix)
    return fix


def _start_servers(
    server: Executor, networks: Iterable[Network], port: int, logs: Path
) -> dict[str, Background]:
    """One iperf3 server per network on its server address; wait until each listens."""
    started: dict[str, Background] = {}
    try:
        for network in networks:
            address = str(network.server_address)
            log = logs / f"iperf3-{network.name}.log"
            started[network.name] = server.start(
                f"iperf3-{network.name}",
                cmd.iperf3_server_argv(address, port),
                str(log),
            )
            _wait_listening(started[network.name], log, network, port)
    except BaseException:
        from testbed.transport.processes import stop_all

        stop_all(list(started.values()), grace_s=2.0)
        raise
    return started


def _wait_listening(proc: Background, log: Path, network: Network, port: int) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if "Server listening" in text:
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = proc.log_tail(5) or "(no output)"
    raise CalibrationError(
        f"the iperf3 server for network {network.name} did not start on "
        f"{network.server_address}:{port}: {tail}. Fix: run calibrate on the server"
        " (the machine that holds the server address of every network) and free"
        f" port {port}, or pass --port"
    )


def _measure_node(
    host: Host,
    connect: Connector,
    networks: Sequence[Network],
    port: int,
    seconds: float,
    ping_count: int,
    delay_note: str | None,
    progress: Callable[[str], None],
) -> list[Measurement]:
    mine = [n for n in networks if host.interface(n.name) is not None]
    try:
        executor = connect()
    except Exception as err:  # noqa: BLE001 - any failure to reach is this node's
        why = f"{host.name} could not be reached: {err}"
        return _failed(host, mine, why)
    missing = [
        fix
        for tool in ("iperf3", "ping")
        if (fix := _check_tool(executor, tool, host.name)) is not None
    ]
    rows: list[Measurement] = []
    for network in mine:
        iface = host.interface(network.name)
        assert iface is not None
        if missing:
            rows += _failed(host, [network], "; ".join(missing))
            continue
        for quantity in ("down_mbit", "up_mbit"):
            argv = cmd.iperf3_client_argv(
                str(network.server_address),
                str(iface.address),
                port=port,
                seconds=seconds,
                download=quantity == "down_mbit",
            )
            rows.append(_goodput(host, network, quantity, executor, argv, seconds))
        argv = cmd.ping_argv(
            str(network.server_address), str(iface.address), count=ping_count
        )
        rows.append(_rtt(host, network, executor, argv, delay_note))
        progress(
            f"{host.name} over {network.name}: "
            + "  ".join(
                f"{r.quantity} {r.measured:.3g} ({r.verdict})"
                if r.measured is not None
                else f"{r.quantity} error"
                for r in rows[-3:]
            )
        )
    return rows


def _goodput(
    host: Host,
    network: Network,
    quantity: str,
    executor: Executor,
    argv: list[str],
    seconds: float,
) -> Measurement:
    profile = profile_of(network, quantity)
    try:
        done = executor.run(argv, check=False, timeout=seconds + 20)
        got = cmd.parse_iperf3(done.stdout)
    except (CommandError, cmd.ParseError) as err:
        return Measurement(
            host.name, network.name, quantity, profile, None, "error",
            error=f"iperf3 from {host.name} to {network.server_address}: {err}",
        )  # fmt: skip
    busy = max((c for c in (got.cpu_node_pct, got.cpu_server_pct) if c), default=None)
    verdict, detail = judge_rate(got.mbit, profile, busy)
    return Measurement(
        host.name,
        network.name,
        quantity,
        profile,
        got.mbit,
        verdict,
        detail,
        retransmits=got.retransmits,
        cpu_node_pct=got.cpu_node_pct,
        cpu_server_pct=got.cpu_server_pct,
    )


def _rtt(
    host: Host,
    network: Network,
    executor: Executor,
    argv: list[str],
    delay_note: str | None,
) -> Measurement:
    profile = profile_of(network, "rtt_ms")
    try:
        done = executor.run(argv, check=False, timeout=60)
        got = cmd.parse_ping(done.stdout)
    except (CommandError, cmd.ParseError) as err:
        return Measurement(
            host.name, network.name, "rtt_ms", profile, None, "error",
            error=f"ping from {host.name} to {network.server_address}: {err}",
        )  # fmt: skip
    verdict, detail = judge_rtt(got.avg_ms, profile, delay_note)
    if got.loss_pct:
        detail += f"; {got.loss_pct:g}% of probes lost"
    return Measurement(
        host.name, network.name, "rtt_ms", profile, got.avg_ms, verdict, detail
    )


def _failed(host: Host, networks: Iterable[Network], why: str) -> list[Measurement]:
    return [
        Measurement(host.name, n.name, q, profile_of(n, q), None, "error", error=why)
        for n in networks
        for q in ("down_mbit", "up_mbit", "rtt_ms")
    ]


# --- storing --------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes ("" when it cannot be read)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def default_path(inventory_path: Path) -> Path:
    """Where a calibration of ``inventory_path`` is kept: beside it."""
    return inventory_path.with_name(f"{inventory_path.stem}.calibration.json")


def write_calibration(calibration: Calibration, path: Path) -> None:
    """Write ``calibration`` as JSON, atomically (a failed write leaves the old)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(calibration.as_dict(), indent=2) + "\n")
    tmp.replace(path)


def last_calibration(inventory_path: Path) -> dict[str, Any] | None:
    """The calibration beside ``inventory_path`` as the manifest records it.

    None when there is none. ``stale`` is True when the inventory changed since
    (its hash differs): the report then keeps the profiles' rates. A file that
    cannot be read gives ``{"path": ..., "error": ...}`` rather than stopping a
    campaign.
    """
    path = default_path(inventory_path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("measurements"), list):
            raise ValueError("no measurements list")
    except (OSError, ValueError) as err:
        return {"path": str(path), "error": f"unreadable calibration: {err}"}
    data["path"] = str(path)
    data["stale"] = data.get("inventory_sha256") != file_sha256(inventory_path)
    return data


def describe(calibration: Calibration) -> str:
    """The calibration as a table against the profiles, for the terminal."""
    head = (
        f"{'node':<12} {'network':<10} {'quantity':<9} {'profile':>9} "
        f"{'measured':>9}  verdict"
    )
    lines = [head]
    for m in calibration.measurements:
        profile = "-" if math.isinf(m.profile) else f"{m.profile:g}"
        measured = "-" if m.measured is None else f"{m.measured:.3g}"
        lines.append(
            f"{m.node:<12} {m.network:<10} {m.quantity:<9} {profile:>9} "
            f"{measured:>9}  {m.verdict}"
        )
        if m.error or m.verdict not in ("link",):
            lines.append(f"{'':<12} {m.error or m.detail}")
    return "\n".join(lines)
