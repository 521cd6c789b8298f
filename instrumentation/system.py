"""Sampling one host's CPU, memory, per-NIC counters, temperature and throttling.

A :class:`Sampler` thread (or ``python -m instrumentation.system``) appends JSON lines
to one file per host: first a ``meta`` line, then one ``sample`` line per tick, and
an ``end`` line (samples written, ticks skipped, the sampler's own CPU time) when it
stops cleanly. Each line goes out in a single ``write()`` on an ``O_APPEND`` file, so
a crash loses at most the line being written; ``analysis/system.py`` reads them back.

Ticks are on a fixed schedule, ``start + k * interval`` on the monotonic clock: a
late tick never shifts later ones, and ticks missed while the host was stalled are
skipped (counted in ``missed_ticks``), never sampled in a burst. Tick 0 is taken at
start with ``cpu_percent`` null, since a CPU share needs an interval before it; its
network counters are the baseline for byte accounting.

What a sample holds (docs/system-metrics.md has units and caveats): per-core CPU
percent, memory used/available/total bytes, the counters of each selected NIC (the
listed ones, else all but ``lo``; never psutil's all-NIC total), temperatures in °C
from psutil or ``/sys/class/thermal``, and the Raspberry Pi throttling flags of
``vcgencmd get_throttled``. A value this host cannot measure is ``null``, never
made up. In a network namespace the NIC counters are the namespace's own while CPU
and memory are the whole machine's: ``shared_host`` records that in the meta line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import psutil

NIC_COUNTERS = (
    "bytes_sent",
    "bytes_recv",
    "packets_sent",
    "packets_recv",
    "errin",
    "errout",
    "dropin",
    "dropout",
)
# Bits of `vcgencmd get_throttled` (Raspberry Pi firmware documentation): the low
# nibble is the current state, bits 16-19 latch once the condition has occurred
# since boot.
THROTTLE_BITS: Mapping[str, int] = {
    "under_voltage": 0,
    "freq_capped": 1,
    "throttled": 2,
    "soft_temp_limit": 3,
    "under_voltage_occurred": 16,
    "freq_capped_occurred": 17,
    "throttled_occurred": 18,
    "soft_temp_limit_occurred": 19,
}
THERMAL_ROOT = Path("/sys/class/thermal")
SHARED_HOST_NOTE = (
    "cpu_percent and memory are the whole machine's (network namespaces share its "
    "CPUs and memory); only the NIC counters are this namespace's own"
)
VCGENCMD_TIMEOUT_S = 2.0


class ThrottleParseError(ValueError):
    """``vcgencmd get_throttled`` printed something that is not ``throttled=0x...``."""


def vcgencmd_throttled_argv() -> list[str]:
    """Argv that asks the Raspberry Pi firmware for its throttling state."""
    return ["vcgencmd", "get_throttled"]


def parse_throttled(output: str) -> dict[str, Any]:
    """Decode ``throttled=0x50005`` into ``raw`` (int) and one bool per named flag.

    Raises
    ------
    ThrottleParseError
        If the output is not of the form ``throttled=<hex>``.
    """
    key, sep, value = output.strip().partition("=")
    try:
        if key != "throttled" or not sep:
            raise ValueError(output)
        raw = int(value, 16)
    except ValueError:
        raise ThrottleParseError(
            f"`vcgencmd get_throttled` printed {output.strip()!r}, expected "
            "'throttled=0x<hex>'; check the firmware tools on this Pi"
        ) from None
    flags: dict[str, Any] = {"raw": raw}
    flags.update({name: bool(raw >> bit & 1) for name, bit in THROTTLE_BITS.items()})
    return flags


def read_thermal_zones(root: Path = THERMAL_ROOT) -> dict[str, float]:
    """°C of every readable ``thermal_zone*`` under ``root``, keyed by zone type.

    Zones report millidegrees; a zone whose ``temp`` cannot be read (some report
    EINVAL or ENODATA while their sensor sleeps) is left out rather than guessed.
    Two zones of the same type are told apart by their zone directory name.
    """
    temps: dict[str, float] = {}
    for zone in sorted(root.glob("thermal_zone*")):
        try:
            millideg = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            name = (zone / "type").read_text().strip() or zone.name
        except OSError:
            name = zone.name
        if name in temps:
            name = f"{name}/{zone.name}"
        temps[name] = millideg / 1000.0
    return temps


def read_psutil_temperatures() -> dict[str, float]:
    """°C of every psutil sensor, keyed ``chip`` or ``chip/label``; empty if none."""
    read = getattr(psutil, "sensors_temperatures", None)
    if read is None:
        return {}
    temps: dict[str, float] = {}
    for chip, entries in read().items():
        for index, entry in enumerate(entries):
            name = f"{chip}/{entry.label}" if entry.label else chip
            if name in temps:
                name = f"{name}/{index}"
            temps[name] = float(entry.current)
    return temps


def read_temperatures() -> dict[str, float] | None:
    """°C per sensor from psutil, else from ``/sys/class/thermal``; None if neither."""
    return read_psutil_temperatures() or read_thermal_zones() or None


def read_throttled(vcgencmd: str | None) -> dict[str, Any] | None:
    """Throttling flags from ``vcgencmd`` at ``vcgencmd``; None if absent or failing."""
    if vcgencmd is None:
        return None
    argv = [vcgencmd, *vcgencmd_throttled_argv()[1:]]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=VCGENCMD_TIMEOUT_S
        )
        return parse_throttled(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ThrottleParseError):
        return None


def select_nics(
    counters: Mapping[str, Any], interfaces: Sequence[str] | None
) -> dict[str, dict[str, int] | None]:
    """Counters of the listed NICs (null when absent), else of all NICs but ``lo``."""
    names = (
        list(interfaces) if interfaces is not None else sorted(set(counters) - {"lo"})
    )
    selected: dict[str, dict[str, int] | None] = {}
    for name in names:
        nic = counters.get(name)
        selected[name] = (
            None
            if nic is None
            else {key: int(getattr(nic, key)) for key in NIC_COUNTERS}
        )
    return selected


def next_tick(start_ns: int, interval_ns: int, now_ns: int) -> tuple[int, int]:
    """Index and due instant of the first tick of the schedule strictly after now."""
    if interval_ns <= 0:
        raise ValueError(f"interval_ns must be positive, got {interval_ns}")
    k = max(0, (now_ns - start_ns) // interval_ns + 1)
    return k, start_ns + k * interval_ns


@dataclass(frozen=True)
class SamplerConfig:
    """What to sample, where to write it and how often."""

    out_path: Path
    host: str
    interval_s: float = 0.5
    interfaces: tuple[str, ...] | None = None
    shared_host: bool = False

    def __post_init__(self) -> None:
        """Reject a non-positive interval, an empty host or empty interface names."""
        if not self.interval_s > 0:
            raise ValueError(
                f"sampling interval must be > 0 s, got {self.interval_s} "
                f"(sampler for host {self.host!r})"
            )
        if not self.host:
            raise ValueError("sampler host name is empty; pass the inventory host name")
        if self.interfaces is not None and any(not i for i in self.interfaces):
            raise ValueError(
                f"empty interface name in {list(self.interfaces)!r} for host "
                f"{self.host!r}; pass names like eth0,wlan0"
            )


class Sampler:
    """Background thread appending system samples of this host to a JSON-lines file.

    Use ``start()`` / ``stop()`` or ``with Sampler(...):``. ``stop()`` waits for the
    thread and writes the ``end`` line; it is safe to call twice.
    """

    def __init__(
        self,
        out_path: Path,
        host: str,
        interval_s: float = 0.5,
        interfaces: Sequence[str] | None = None,
        shared_host: bool = False,
    ) -> None:
        self.config = SamplerConfig(
            out_path=Path(out_path),
            host=host,
            interval_s=interval_s,
            interfaces=tuple(interfaces) if interfaces is not None else None,
            shared_host=shared_host,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._vcgencmd = shutil.which("vcgencmd")
        self.samples_written = 0
        self.missed_ticks = 0
        self.cpu_time_ns = 0

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Open the file, write the meta line and start sampling (tick 0 now)."""
        if self._thread is not None:
            raise RuntimeError(f"sampler for {self.config.host!r} already started")
        self._fd = _open_append(self.config.out_path)
        psutil.cpu_percent(percpu=True)  # primes psutil's per-core baseline
        self._write(self._meta())
        self._thread = threading.Thread(
            target=self._run, name=f"system-sampler-{self.config.host}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current sample, write the ``end`` line and close the file."""
        if self._thread is None or self._fd is None:
            return
        self._stop.set()
        self._thread.join()
        self._write(
            {
                "kind": "end",
                "t_ns": time.time_ns(),
                "mono_ns": time.monotonic_ns(),
                "host": self.config.host,
                "samples": self.samples_written,
                "missed_ticks": self.missed_ticks,
                "sampler_cpu_ns": self.cpu_time_ns,
            }
        )
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> Sampler:
        """Start sampling."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop sampling."""
        self.stop()

    # -- sampling -----------------------------------------------------------------

    def _run(self) -> None:
        interval_ns = round(self.config.interval_s * 1e9)
        start_ns = time.monotonic_ns()
        k, due_ns = 0, start_ns
        while True:
            self._write(self.sample(cpu_primed=k > 0))
            self.samples_written += 1
            # Thread CPU time: the sampler's own cost, not its host process's.
            self.cpu_time_ns = time.thread_time_ns()
            next_k, due_ns = next_tick(start_ns, interval_ns, time.monotonic_ns())
            self.missed_ticks += next_k - k - 1
            k = next_k
            if self._stop.wait((due_ns - time.monotonic_ns()) / 1e9):
                return

    def sample(self, cpu_primed: bool = True) -> dict[str, Any]:
        """One ``sample`` record of this host now (``cpu_percent`` null if unprimed)."""
        cpu = psutil.cpu_percent(percpu=True)
        memory = psutil.virtual_memory()
        return {
            "kind": "sample",
            "t_ns": time.time_ns(),
            "mono_ns": time.monotonic_ns(),
            "host": self.config.host,
            "cpu_percent": [float(c) for c in cpu] if cpu_primed else None,
            "memory": {
                "used_bytes": int(memory.used),
                "available_bytes": int(memory.available),
                "total_bytes": int(memory.total),
            },
            "net": select_nics(
                psutil.net_io_counters(pernic=True), self.config.interfaces
            ),
            "temperature_c": read_temperatures(),
            "throttled": read_throttled(self._vcgencmd),
        }

    def _meta(self) -> dict[str, Any]:
        return {
            "kind": "meta",
            "t_ns": time.time_ns(),
            "mono_ns": time.monotonic_ns(),
            "host": self.config.host,
            "hostname": socket.gethostname(),
            "cpu_count": psutil.cpu_count(),
            "platform": platform.platform(),
            "interval_s": self.config.interval_s,
            "interfaces": (
                list(self.config.interfaces)
                if self.config.interfaces is not None
                else None
            ),
            "temperature_available": read_temperatures() is not None,
            "throttling_available": read_throttled(self._vcgencmd) is not None,
            "shared_host": self.config.shared_host,
            "note": SHARED_HOST_NOTE if self.config.shared_host else None,
        }

    def _write(self, record: Mapping[str, Any]) -> None:
        assert self._fd is not None
        os.write(self._fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())


def _open_append(path: Path) -> int:
    """Open ``path`` for appending; end a line cut by an earlier crash first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    size = os.fstat(fd).st_size
    if size:
        with path.open("rb") as existing:
            existing.seek(size - 1)
            if existing.read(1) != b"\n":
                os.write(fd, b"\n")
    return fd


# -- command line -------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    # argparse, not the project's Typer app: this runs on every node (inside each
    # namespace, or over SSH on a Pi) and should start with nothing but psutil.
    parser = argparse.ArgumentParser(
        prog="python -m instrumentation.system",
        description="Sample this host's CPU, memory, NIC counters, temperature and "
        "throttling to JSON lines until SIGTERM/SIGINT or --duration.",
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines file")
    parser.add_argument("--host", required=True, help="inventory host name")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds")
    parser.add_argument(
        "--interfaces", default=None, help="comma-separated NICs (default: all but lo)"
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds")
    parser.add_argument(
        "--shared-host",
        action="store_true",
        help="CPU and memory are shared with other emulated nodes (network namespace)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sampler until SIGTERM/SIGINT or ``--duration``; 0 on a clean stop."""
    args = _parse_args(argv)
    interfaces = (
        [name.strip() for name in args.interfaces.split(",")]
        if args.interfaces is not None
        else None
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    sampler = Sampler(
        args.out,
        args.host,
        interval_s=args.interval,
        interfaces=interfaces,
        shared_host=args.shared_host,
    )
    with sampler:
        stop.wait(args.duration)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
