"""Clock-offset estimation between the server and a node: NTP-style UDP probes.

A node sends a request stamped ``t1`` (node clock); the server's responder stamps
``t2`` on receipt and ``t3`` just before replying (server clock); the node stamps
``t4`` on receipt (node clock). Per sample, with clocks that do not drift during
the exchange:

- ``offset_ns = ((t1 - t2) + (t4 - t3)) / 2`` is the **node clock minus the server
  clock** (the negation of NTP's theta, which is server minus client);
- ``delay_ns = (t4 - t1) - (t3 - t2)`` is the round-trip time on the wire;
- the true offset lies within ``offset_ns +- delay_ns / 2`` whatever the split of
  the delay between the two directions, so half the delay is the uncertainty.

The estimate keeps the sample with the smallest delay (its error bound is the
tightest). ``correct_ns`` maps a node instant to the server clock.

Emulated nodes share the machine's clock, so ``inject_offset_ns`` adds a known
offset to the node's stamps to emulate a node whose clock is off.

Command line (for ``ip netns exec NS ...`` or SSH)::

    python -m instrumentation.clock serve --host H --port P
    python -m instrumentation.clock probe --host H --port P --samples N \
        [--inject-offset-ns X]

``serve`` prints one JSON line ``{"listening": true, "host": ..., "port": ...}``
once bound and runs until SIGTERM/SIGINT (exit 0); ``probe`` prints the estimate
as one JSON object. Both exit with status 2 and a message on stderr on failure.
See docs/clocks.md.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any

# Wire format, network byte order, same size both ways (symmetric packet sizes keep
# serialisation delay symmetric): magic, version, kind, 2 pad bytes, probe id,
# t1, t2, t3 (int64 ns since the epoch; 0 where not yet stamped).
_WIRE = struct.Struct("!4sBBxxQqqq")
PACKET_SIZE = _WIRE.size
_MAGIC = b"FBCK"
_VERSION = 1
_KIND_REQUEST = 1
_KIND_REPLY = 2

DEFAULT_SAMPLES = 8
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_INTERVAL_S = 0.02
# Injected offsets stay far from the int64 limits of the wire format.
MAX_INJECT_OFFSET_NS = 10**18
# How often the responder thread and the serve loop look at their stop flag.
_POLL_S = 0.2
STOP_TIMEOUT_S = 5.0
CHRONYC_TIMEOUT_S = 5.0


class ClockProbeError(RuntimeError):
    """A clock probe got no usable reply from the responder."""


class ChronyError(RuntimeError):
    """``chronyc tracking`` exists but did not run successfully."""


def _check_ns(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int of nanoseconds, got {value!r}")


@dataclass(frozen=True)
class ClockSample:
    """One request/reply exchange: node stamps ``t1``/``t4``, server ``t2``/``t3``."""

    probe_id: int
    t1_ns: int
    t2_ns: int
    t3_ns: int
    t4_ns: int

    def __post_init__(self) -> None:
        for name in ("probe_id", "t1_ns", "t2_ns", "t3_ns", "t4_ns"):
            _check_ns(name, getattr(self, name))

    @property
    def offset_ns(self) -> int:
        """Node clock minus server clock, from this sample (floor of the half)."""
        return ((self.t1_ns - self.t2_ns) + (self.t4_ns - self.t3_ns)) // 2

    @property
    def delay_ns(self) -> int:
        """Round-trip time on the wire, without the responder's turnaround."""
        return (self.t4_ns - self.t1_ns) - (self.t3_ns - self.t2_ns)

    @property
    def uncertainty_ns(self) -> int:
        """Half the delay, rounded up: the offset's error bound for this sample."""
        return -(-self.delay_ns // 2)

    def to_dict(self) -> dict[str, int]:
        """Plain-JSON form, derived values included for readers of the output."""
        return {
            "probe_id": self.probe_id,
            "t1_ns": self.t1_ns,
            "t2_ns": self.t2_ns,
            "t3_ns": self.t3_ns,
            "t4_ns": self.t4_ns,
            "offset_ns": self.offset_ns,
            "delay_ns": self.delay_ns,
        }


@dataclass(frozen=True)
class ClockEstimate:
    """A node's clock offset to the server: node clock minus server clock.

    ``uncertainty_ns`` is half the round-trip delay ``rtt_ns`` of the chosen
    (minimum-delay) sample. ``samples_sent`` requests went out, ``all_samples``
    holds every reply received, ``samples_used`` of them were usable (a negative
    delay means a clock stepped during the exchange; such samples are kept for the
    record but never chosen).
    """

    offset_ns: int
    uncertainty_ns: int
    rtt_ns: int
    samples_used: int
    samples_sent: int
    all_samples: tuple[ClockSample, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("offset_ns", "uncertainty_ns", "rtt_ns"):
            _check_ns(name, getattr(self, name))
        if self.rtt_ns < 0 or self.uncertainty_ns < 0:
            raise ValueError(
                f"rtt_ns and uncertainty_ns must be >= 0, got {self.rtt_ns} "
                f"and {self.uncertainty_ns}"
            )
        if not 1 <= self.samples_used <= len(self.all_samples) <= self.samples_sent:
            raise ValueError(
                "need 1 <= samples_used <= len(all_samples) <= samples_sent, got "
                f"{self.samples_used}, {len(self.all_samples)}, {self.samples_sent}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (what ``probe`` prints)."""
        return {
            "offset_ns": self.offset_ns,
            "uncertainty_ns": self.uncertainty_ns,
            "rtt_ns": self.rtt_ns,
            "samples_used": self.samples_used,
            "samples_sent": self.samples_sent,
            "all_samples": [s.to_dict() for s in self.all_samples],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClockEstimate:
        """Rebuild an estimate from ``to_dict`` output (a probe's stdout, parsed)."""
        try:
            samples = tuple(
                ClockSample(
                    probe_id=s["probe_id"],
                    t1_ns=s["t1_ns"],
                    t2_ns=s["t2_ns"],
                    t3_ns=s["t3_ns"],
                    t4_ns=s["t4_ns"],
                )
                for s in data["all_samples"]
            )
            return cls(
                offset_ns=data["offset_ns"],
                uncertainty_ns=data["uncertainty_ns"],
                rtt_ns=data["rtt_ns"],
                samples_used=data["samples_used"],
                samples_sent=data["samples_sent"],
                all_samples=samples,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"not a clock estimate ({exc!r}); expected the JSON object printed "
                "by `python -m instrumentation.clock probe`"
            ) from exc


def estimate_from_samples(
    samples: Sequence[ClockSample], samples_sent: int
) -> ClockEstimate:
    """Pick the minimum-delay sample among ``samples`` and build the estimate.

    Raises ``ValueError`` when no sample has a non-negative delay.
    """
    usable = [s for s in samples if s.delay_ns >= 0]
    if not usable:
        raise ValueError(
            f"none of {len(samples)} clock samples has a non-negative delay "
            "(no replies, or a clock stepped during every exchange)"
        )
    best = min(usable, key=lambda s: s.delay_ns)
    return ClockEstimate(
        offset_ns=best.offset_ns,
        uncertainty_ns=best.uncertainty_ns,
        rtt_ns=best.delay_ns,
        samples_used=len(usable),
        samples_sent=samples_sent,
        all_samples=tuple(samples),
    )


def correct_ns(node_instant_ns: int, estimate: ClockEstimate) -> int:
    """Map an instant read on the node's clock to the server's clock."""
    return node_instant_ns - estimate.offset_ns


def _sockaddr(host: str, port: int) -> tuple[socket.AddressFamily, Any]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, _, _, _, address = infos[0]
    return family, address


class ClockResponder:
    """UDP responder stamping ``t2`` on receipt and ``t3`` just before replying.

    Runs in a daemon thread between ``start()`` and ``stop()`` (or as a context
    manager). ``port=0`` binds a free port; read the bound one from ``port``.
    Malformed packets are counted in ``malformed`` and otherwise ignored.
    """

    def __init__(self, host: str, port: int) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
        self.host = host
        self._requested_port = port
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.replies_sent = 0
        self.malformed = 0

    @property
    def port(self) -> int:
        """The bound UDP port (after ``start()``)."""
        if self._sock is None:
            raise RuntimeError("ClockResponder is not started; call start() first")
        return int(self._sock.getsockname()[1])

    def start(self) -> ClockResponder:
        """Bind the socket (errors raise here) and start answering in a thread."""
        if self._sock is not None:
            raise RuntimeError("ClockResponder already started")
        family, address = _sockaddr(self.host, self._requested_port)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind(address)
        except OSError as exc:
            sock.close()
            raise OSError(
                exc.errno,
                f"clock responder cannot bind UDP {self.host}:{self._requested_port}:"
                f" {exc.strerror}; is the address on this host (or namespace) and "
                "the port free?",
            ) from exc
        sock.settimeout(_POLL_S)
        self._sock = sock
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._answer_loop, name=f"clock-responder-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering, join the thread (bounded) and close the socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @property
    def running(self) -> bool:
        """Whether the answering thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> ClockResponder:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _answer_loop(self) -> None:
        sock = self._sock
        assert sock is not None  # set by start() before the thread
        while not self._stop.is_set():
            try:
                data, peer = sock.recvfrom(PACKET_SIZE + 1)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            t2 = time.time_ns()
            request = _parse(data, _KIND_REQUEST)
            if request is None:
                self.malformed += 1
                continue
            probe_id, t1 = request[0], request[1]
            # Counted before sending, so a probe that got its reply sees the count.
            self.replies_sent += 1
            try:
                t3 = time.time_ns()
                sock.sendto(_pack(_KIND_REPLY, probe_id, t1, t2, t3), peer)
            except OSError:
                # The peer is unreachable: its probe times out and says so.
                self.replies_sent -= 1


def _pack(kind: int, probe_id: int, t1: int, t2: int, t3: int) -> bytes:
    return _WIRE.pack(_MAGIC, _VERSION, kind, probe_id, t1, t2, t3)


def _parse(data: bytes, kind: int) -> tuple[int, int, int, int] | None:
    """Return (probe id, t1, t2, t3) of a well-formed packet of ``kind``."""
    if len(data) != PACKET_SIZE:
        return None
    magic, version, got_kind, probe_id, t1, t2, t3 = _WIRE.unpack(data)
    if magic != _MAGIC or version != _VERSION or got_kind != kind:
        return None
    return probe_id, t1, t2, t3


def _validate_probe_args(
    port: int, samples: int, timeout_s: float, inject_offset_ns: int, interval_s: float
) -> None:
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in 1..65535, got {port}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    if interval_s < 0:
        raise ValueError(f"interval_s must be >= 0, got {interval_s}")
    _check_ns("inject_offset_ns", inject_offset_ns)
    if abs(inject_offset_ns) > MAX_INJECT_OFFSET_NS:
        raise ValueError(
            f"inject_offset_ns must be within +-{MAX_INJECT_OFFSET_NS}, "
            f"got {inject_offset_ns}"
        )


def _one_sample(
    sock: socket.socket, probe_id: int, timeout_s: float, inject_offset_ns: int
) -> ClockSample | None:
    """Send one request and wait (bounded) for its reply; None if none came."""
    t1 = time.time_ns() + inject_offset_ns
    sock.send(_pack(_KIND_REQUEST, probe_id, t1, 0, 0))
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            data = sock.recv(PACKET_SIZE + 1)
        except TimeoutError:
            return None
        t4 = time.time_ns() + inject_offset_ns
        reply = _parse(data, _KIND_REPLY)
        # Late replies to earlier samples and foreign packets are skipped.
        if reply is not None and reply[0] == probe_id and reply[1] == t1:
            return ClockSample(probe_id, t1, reply[2], reply[3], t4)
    return None


def probe_offset(
    host: str,
    port: int,
    samples: int = DEFAULT_SAMPLES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    inject_offset_ns: int = 0,
    interval_s: float = DEFAULT_INTERVAL_S,
) -> ClockEstimate:
    """Estimate this node's clock offset to the responder at ``host:port``.

    Sends ``samples`` requests, ``interval_s`` apart, each waiting at most
    ``timeout_s`` for its reply. The node clock is ``time.time_ns()`` plus
    ``inject_offset_ns``. Raises ``ClockProbeError`` when no usable reply came.
    """
    _validate_probe_args(port, samples, timeout_s, inject_offset_ns, interval_s)
    received: list[ClockSample] = []
    refused = 0
    base_id = secrets.randbits(32) << 32
    try:
        family, address = _sockaddr(host, port)
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            # Connected, so the kernel drops replies from other peers and an ICMP
            # port-unreachable surfaces as ConnectionRefusedError.
            sock.connect(address)
            for index in range(samples):
                if index:
                    time.sleep(interval_s)
                try:
                    sample = _one_sample(
                        sock, base_id | index, timeout_s, inject_offset_ns
                    )
                except ConnectionRefusedError:
                    refused += 1
                    continue
                if sample is not None:
                    received.append(sample)
    except OSError as exc:
        raise ClockProbeError(
            f"clock probe to UDP {host}:{port} failed: {exc}. Check that {host} is "
            "the server's address and is reachable from the network the probe runs "
            "in (a route exists, the interface is up)."
        ) from exc
    try:
        return estimate_from_samples(received, samples_sent=samples)
    except ValueError as exc:
        raise ClockProbeError(
            _no_reply_message(host, port, samples, len(received), refused)
        ) from exc


def _no_reply_message(
    host: str, port: int, sent: int, received: int, refused: int
) -> str:
    what = f"clock probe to UDP {host}:{port}: {sent} requests sent, "
    if received:
        what += f"{received} replies, none usable (a clock stepped during each). "
    else:
        what += "no reply"
        what += f" ({refused} refused: nothing listens there). " if refused else ". "
    return what + (
        "Check that the responder runs there (`python -m instrumentation.clock "
        "serve --host HOST --port PORT` on the server), that no firewall drops UDP "
        f"port {port}, and that {host} is the server's address on the network the "
        "probe runs in (the management network for real nodes)."
    )


# --- chrony -------------------------------------------------------------------

_CHRONY_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z ()]*?)\s*:\s*(.*?)\s*$")
_SECONDS = re.compile(r"^([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?) seconds")
_PPM = re.compile(r"^([-+]?\d+(?:\.\d+)?) ppm")


def _seconds(value: str) -> float | None:
    match = _SECONDS.match(value)
    if match is None:
        return None
    seconds = float(match.group(1))
    # "seconds slow of NTP time": the local clock is behind, node minus true < 0.
    return -seconds if "slow" in value else seconds


def _ppm(value: str) -> float | None:
    match = _PPM.match(value)
    if match is None:
        return None
    ppm = float(match.group(1))
    return -ppm if value.endswith("slow") else ppm


def parse_chrony_tracking(text: str) -> dict[str, str | int | float]:
    """Parse ``chronyc tracking`` output into typed keys (absent lines are left out).

    Keys: ``reference_id`` (str), ``stratum`` (int), ``system_time_s`` (local
    clock minus NTP time: positive = fast), ``last_offset_s``, ``rms_offset_s``,
    ``frequency_ppm`` (positive = fast), ``skew_ppm``, ``root_delay_s``,
    ``root_dispersion_s`` (floats), ``leap_status`` (str).
    """
    raw: dict[str, str] = {}
    for line in text.splitlines():
        match = _CHRONY_LINE.match(line)
        if match:
            raw[match.group(1)] = match.group(2)
    parsed: dict[str, str | int | float] = {}
    if "Reference ID" in raw:
        parsed["reference_id"] = raw["Reference ID"]
    if "Stratum" in raw and raw["Stratum"].isdigit():
        parsed["stratum"] = int(raw["Stratum"])
    for label, key in (
        ("System time", "system_time_s"),
        ("Last offset", "last_offset_s"),
        ("RMS offset", "rms_offset_s"),
        ("Root delay", "root_delay_s"),
        ("Root dispersion", "root_dispersion_s"),
    ):
        seconds = _seconds(raw.get(label, ""))
        if seconds is not None:
            parsed[key] = seconds
    for label, key in (("Frequency", "frequency_ppm"), ("Skew", "skew_ppm")):
        ppm = _ppm(raw.get(label, ""))
        if ppm is not None:
            parsed[key] = ppm
    if "Leap status" in raw:
        parsed["leap_status"] = raw["Leap status"]
    return parsed


def chrony_tracking(
    timeout_s: float = CHRONYC_TIMEOUT_S,
) -> dict[str, str | int | float] | None:
    """Run ``chronyc tracking`` here and parse it; None when chronyc is not installed.

    Raises ``ChronyError`` when chronyc exists but fails or times out (chronyd not
    running, no permission), so a missing error bar is never silent.
    """
    chronyc = shutil.which("chronyc")
    if chronyc is None:
        return None
    argv = [chronyc, "tracking"]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ChronyError(
            f"`{' '.join(argv)}` did not answer within {timeout_s} s; "
            "check that chronyd runs (systemctl status chrony)"
        ) from exc
    if done.returncode != 0:
        raise ChronyError(
            f"`{' '.join(argv)}` exited {done.returncode}: "
            f"{(done.stderr or done.stdout).strip()}; "
            "check that chronyd runs (systemctl status chrony)"
        )
    return parse_chrony_tracking(done.stdout)


# --- command line -------------------------------------------------------------


def serve_argv(host: str, port: int, python: str = "python3") -> list[str]:
    """Argv running the responder (prefix it with ``ip netns exec NS`` or ssh)."""
    return [
        *(python, "-m", "instrumentation.clock", "serve"),
        *("--host", host, "--port", str(port)),
    ]


def probe_argv(
    host: str,
    port: int,
    samples: int = DEFAULT_SAMPLES,
    inject_offset_ns: int = 0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    python: str = "python3",
) -> list[str]:
    """Argv running one probe that prints a ``ClockEstimate`` as JSON."""
    argv = [
        *(python, "-m", "instrumentation.clock", "probe"),
        *("--host", host, "--port", str(port), "--samples", str(samples)),
    ]
    if timeout_s != DEFAULT_TIMEOUT_S:
        argv += ["--timeout-s", repr(float(timeout_s))]
    if inject_offset_ns:
        argv += ["--inject-offset-ns", str(inject_offset_ns)]
    return argv


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m instrumentation.clock",
        description="Clock-offset responder and probe (NTP-style, UDP).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="answer probes until SIGTERM/SIGINT")
    probe = sub.add_parser("probe", help="estimate node-minus-server offset, as JSON")
    for p in (serve, probe):
        p.add_argument("--host", required=True, help="responder address")
        p.add_argument("--port", required=True, type=int, help="responder UDP port")
    probe.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    probe.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S)
    probe.add_argument("--interval-s", type=float, default=DEFAULT_INTERVAL_S)
    probe.add_argument(
        "--inject-offset-ns",
        type=int,
        default=0,
        help="add this to the node clock (emulates a node whose clock is off)",
    )
    return parser


def _serve(host: str, port: int) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with ClockResponder(host, port) as responder:
        print(
            json.dumps({"listening": True, "host": host, "port": responder.port}),
            flush=True,
        )
        # No deadline: a campaign's responder lives as long as the campaign.
        while not stop.wait(_POLL_S):
            if not responder.running:
                print(f"clock responder on {host}:{port} died", file=sys.stderr)
                return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``serve`` or ``probe`` command; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args.host, args.port)
        estimate = probe_offset(
            args.host,
            args.port,
            samples=args.samples,
            timeout_s=args.timeout_s,
            inject_offset_ns=args.inject_offset_ns,
            interval_s=args.interval_s,
        )
    except (ClockProbeError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(estimate.to_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
