"""Tests of instrumentation/system.py: parsing, scheduling, the sampler and its CLI.

The root test builds its own pair of network namespaces joined by a veth, runs the
sampler CLI inside them and checks the NIC counters against bytes really sent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from analysis.system import bytes_between, read_samples, system_table
from instrumentation.system import (
    NIC_COUNTERS,
    SHARED_HOST_NOTE,
    Sampler,
    SamplerConfig,
    ThrottleParseError,
    next_tick,
    parse_throttled,
    read_thermal_zones,
    select_nics,
    vcgencmd_throttled_argv,
)
from tests.netns import VethPair
from tests.netns import veth_pair as make_veth_pair

REPO = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------- pure parts

_ALL_CLEAR = {
    "under_voltage": False,
    "freq_capped": False,
    "throttled": False,
    "soft_temp_limit": False,
    "under_voltage_occurred": False,
    "freq_capped_occurred": False,
    "throttled_occurred": False,
    "soft_temp_limit_occurred": False,
}


@pytest.mark.parametrize(
    ("output", "raw", "set_flags"),
    [
        ("throttled=0x0\n", 0, set()),
        (
            "throttled=0x50000\n",
            0x50000,
            {"under_voltage_occurred", "throttled_occurred"},
        ),
        (
            "throttled=0x50005",
            0x50005,
            {
                "under_voltage",
                "throttled",
                "under_voltage_occurred",
                "throttled_occurred",
            },
        ),
        ("throttled=0x8", 8, {"soft_temp_limit"}),
        ("throttled=0x80002", 0x80002, {"freq_capped", "soft_temp_limit_occurred"}),
        (
            "throttled=0xe0000",
            0xE0000,
            {"freq_capped_occurred", "throttled_occurred", "soft_temp_limit_occurred"},
        ),  # fmt: skip
    ],
)
def test_parse_throttled(output: str, raw: int, set_flags: set[str]) -> None:
    expected: dict[str, Any] = {"raw": raw, **_ALL_CLEAR}
    expected.update(dict.fromkeys(set_flags, True))
    assert parse_throttled(output) == expected


@pytest.mark.parametrize(
    "output", ["", "throttled=", "throttled=0xzz", "temp=45.0'C", "VCHI init failed"]
)
def test_parse_throttled_rejects_other_output(output: str) -> None:
    with pytest.raises(ThrottleParseError, match="throttled=0x"):
        parse_throttled(output)


def test_vcgencmd_argv() -> None:
    assert vcgencmd_throttled_argv() == ["vcgencmd", "get_throttled"]


def _zone(root: Path, name: str, kind: str | None, temp: str | None) -> None:
    zone = root / name
    zone.mkdir()
    if kind is not None:
        (zone / "type").write_text(kind + "\n")
    if temp is not None:
        (zone / "temp").write_text(temp + "\n")


def test_read_thermal_zones_like_a_pi(tmp_path: Path) -> None:
    _zone(tmp_path, "thermal_zone0", "cpu-thermal", "48312")
    _zone(tmp_path, "thermal_zone1", "cpu-thermal", "-1500")
    _zone(tmp_path, "thermal_zone2", "gpu", None)  # no temp: left out
    _zone(tmp_path, "thermal_zone3", "sleepy", "not a number")
    _zone(tmp_path, "thermal_zone4", None, "30000")  # no type: zone name
    (tmp_path / "cooling_device0").mkdir()

    temps = read_thermal_zones(tmp_path)

    assert temps == {
        "cpu-thermal": 48.312,
        "cpu-thermal/thermal_zone1": -1.5,
        "thermal_zone4": 30.0,
    }


def test_read_thermal_zones_without_zones_is_empty(tmp_path: Path) -> None:
    assert read_thermal_zones(tmp_path) == {}


def _nic(base: int) -> SimpleNamespace:
    """A stand-in for psutil's snetio with counters base, base + 1, ..."""
    return SimpleNamespace(**{key: base + i for i, key in enumerate(NIC_COUNTERS)})


def test_select_nics_defaults_to_all_but_loopback() -> None:
    counters = {"lo": _nic(100), "eth0": _nic(10), "wlan0": _nic(20)}

    selected = select_nics(counters, None)

    assert list(selected) == ["eth0", "wlan0"]
    assert selected["eth0"] == dict(zip(NIC_COUNTERS, range(10, 18), strict=True))


def test_select_nics_keeps_listed_order_and_nulls_absent_ones() -> None:
    counters = {"lo": _nic(100), "eth0": _nic(10), "wlan0": _nic(20)}

    selected = select_nics(counters, ["wlan0", "wwan0", "lo"])

    assert list(selected) == ["wlan0", "wwan0", "lo"]
    assert selected["wwan0"] is None
    assert selected["lo"] == dict(zip(NIC_COUNTERS, range(100, 108), strict=True))


@pytest.mark.parametrize(
    ("start", "interval", "now", "expected"),
    [
        (1000, 100, 1000, (1, 1100)),  # just sampled tick 0
        (1000, 100, 1099, (1, 1100)),
        (1000, 100, 1100, (2, 1200)),  # exactly due: that tick is done, next one
        (1000, 100, 1351, (4, 1400)),  # ticks 1-3 missed: skipped, not burst
        (1000, 100, 900, (0, 1000)),  # clock before start
    ],
)
def test_next_tick(
    start: int, interval: int, now: int, expected: tuple[int, int]
) -> None:
    assert next_tick(start, interval, now) == expected


def test_next_tick_rejects_zero_interval() -> None:
    with pytest.raises(ValueError, match="interval_ns must be positive"):
        next_tick(0, 0, 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval_s": 0.0}, "interval must be > 0"),
        ({"interval_s": float("nan")}, "interval must be > 0"),
        ({"host": ""}, "host name is empty"),
        ({"interfaces": ("eth0", "")}, "empty interface name"),
    ],
)
def test_sampler_config_rejects(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"out_path": Path("x.jsonl"), "host": "pi1", **kwargs}
    with pytest.raises(ValueError, match=message):
        SamplerConfig(**args)


# ---------------------------------------------------------- sampler on this host


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sampler_on_this_machine(tmp_path: Path) -> None:
    out = tmp_path / "system.jsonl"
    duration_s, interval_s = 2.0, 0.25

    seen_nics: set[str] = set()  # other tests may add and remove NICs meanwhile
    with Sampler(out, "server", interval_s=interval_s):
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            seen_nics |= set(psutil.net_io_counters(pernic=True))
            time.sleep(0.05)

    records = _lines(out)
    assert records[0]["kind"] == "meta"
    assert records[-1]["kind"] == "end"
    samples = [r for r in records if r["kind"] == "sample"]
    expected = duration_s / interval_s + 1  # tick 0 at start
    assert abs(len(samples) - expected) <= 1
    assert records[-1]["samples"] == len(samples)
    t_ns = [s["t_ns"] for s in samples]
    assert t_ns == sorted(t_ns) and len(set(t_ns)) == len(t_ns)
    assert samples[0]["cpu_percent"] is None  # no interval yet: null, not 0
    for sample in samples[1:]:
        assert len(sample["cpu_percent"]) == psutil.cpu_count()
        assert all(0.0 <= c <= 100.0 for c in sample["cpu_percent"])
    for sample in samples:
        nics = set(sample["net"])
        assert nics and "lo" not in nics
        assert nics <= seen_nics  # real NICs only, no made-up total key
        assert all(list(c) == list(NIC_COUNTERS) for c in sample["net"].values())
    memory = samples[0]["memory"]
    assert 0 < memory["used_bytes"] < memory["total_bytes"]
    assert memory["available_bytes"] <= memory["total_bytes"]
    meta = records[0]
    assert meta["cpu_count"] == psutil.cpu_count()
    assert meta["shared_host"] is False and meta["note"] is None
    assert meta["temperature_available"] == (samples[0]["temperature_c"] is not None)
    assert meta["throttling_available"] == (samples[0]["throttled"] is not None)
    assert meta["throttling_available"] == (shutil.which("vcgencmd") is not None)


class _SlowSampler(Sampler):
    """Takes 0.25 s per sample at a 0.1 s interval, noting when each one began."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.began_ns: list[int] = []

    def sample(self, cpu_primed: bool = True) -> dict[str, Any]:
        self.began_ns.append(time.monotonic_ns())
        time.sleep(0.25)
        return super().sample(cpu_primed)


def test_late_ticks_are_skipped_on_the_fixed_schedule(tmp_path: Path) -> None:
    out = tmp_path / "system.jsonl"
    sampler = _SlowSampler(out, "pi1", interval_s=0.1, interfaces=["lo"])

    with sampler:
        time.sleep(1.5)

    interval_ns, slack_ns = 100_000_000, 30_000_000
    offsets = [t - sampler.began_ns[0] for t in sampler.began_ns]
    # Every sample starts on the 0.1 s grid of tick 0: no drift (a sampler sleeping
    # one interval after each sample would start every 0.35 s) and no burst (one
    # catching up at once would start right after the previous one, 0.25 s on).
    assert all(
        min(o % interval_ns, interval_ns - o % interval_ns) < slack_ns for o in offsets
    ), offsets
    assert all(b - a > 0.25e9 for a, b in pairwise(offsets)), offsets
    samples = [r for r in _lines(out) if r["kind"] == "sample"]
    assert len(samples) == len(offsets) >= 4
    assert sampler.missed_ticks >= 2 * (len(samples) - 1)
    assert _lines(out)[-1]["missed_ticks"] == sampler.missed_ticks


def test_restart_after_a_crash_ends_the_cut_line(tmp_path: Path) -> None:
    out = tmp_path / "system.jsonl"
    out.write_text('{"kind":"meta","host":"pi1"}\n{"kind":"sample","t_ns":17')

    with Sampler(out, "pi1", interval_s=0.1, interfaces=["lo"]):
        time.sleep(0.15)

    records = read_samples(out)
    assert [r["kind"] for r in records[:2]] == ["meta", "meta"]
    assert out.read_text().splitlines()[1] == '{"kind":"sample","t_ns":17'


def test_shared_host_flag_writes_the_note(tmp_path: Path) -> None:
    out = tmp_path / "system.jsonl"

    with Sampler(out, "pi1", interval_s=0.1, interfaces=["eth9"], shared_host=True):
        time.sleep(0.05)

    records = _lines(out)
    assert records[0]["shared_host"] is True
    assert records[0]["note"] == SHARED_HOST_NOTE
    assert records[0]["interfaces"] == ["eth9"]
    assert records[1]["net"] == {"eth9": None}


def _cli(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "instrumentation.system", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_samples(path: Path, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count('"kind":"sample"') >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"sampler wrote fewer than {count} samples to {path}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_stops_cleanly_on_signal(tmp_path: Path, signum: int) -> None:
    out = tmp_path / "system.jsonl"
    proc = _cli("--out", str(out), "--host", "pi1", "--interval", "0.5")
    _wait_for_samples(out, 1)

    sent = time.monotonic()
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=5)
    took_s = time.monotonic() - sent

    assert proc.returncode == 0, stderr
    assert took_s < 2.0
    assert _lines(out)[-1]["kind"] == "end"


def test_cli_duration_and_interfaces(tmp_path: Path) -> None:
    out = tmp_path / "system.jsonl"
    proc = _cli(
        "--out", str(out), "--host", "pi1", "--interval", "0.2",
        "--interfaces", "lo, eth9", "--duration", "0.5", "--shared-host",
    )  # fmt: skip
    _, stderr = proc.communicate(timeout=10)

    assert proc.returncode == 0, stderr
    records = _lines(out)
    samples = [r for r in records if r["kind"] == "sample"]
    assert abs(len(samples) - 3) <= 1  # ticks at 0, 0.2, 0.4 s; 0.6 s is past the end
    assert list(samples[0]["net"]) == ["lo", "eth9"]
    assert samples[0]["net"]["eth9"] is None
    assert records[0]["shared_host"] is True


def test_cli_rejects_a_bad_interval(tmp_path: Path) -> None:
    proc = _cli("--out", str(tmp_path / "x"), "--host", "pi1", "--interval", "0")
    _, stderr = proc.communicate(timeout=10)

    assert proc.returncode != 0
    assert "interval must be > 0" in stderr


def test_sampler_overhead_at_2_hz_over_10_s(tmp_path: Path) -> None:
    """The sampler's own CPU time stays under 1 % of one core (docs quote it)."""
    out = tmp_path / "system.jsonl"
    before = os.times()
    proc = _cli("--out", str(out), "--host", "server", "--duration", "10")
    _, stderr = proc.communicate(timeout=30)
    after = os.times()

    assert proc.returncode == 0, stderr
    end = _lines(out)[-1]
    assert abs(end["samples"] - 21) <= 1  # tick 20 is due as --duration ends
    thread_cpu_s = end["sampler_cpu_ns"] / 1e9
    process_cpu_s = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    print(  # the figure docs/system-metrics.md quotes
        f"sampler thread CPU {thread_cpu_s:.3f} s, whole process (with interpreter "
        f"start-up and imports) {process_cpu_s:.3f} s over 10 s at 2 Hz"
    )
    assert thread_cpu_s < 0.1
    assert process_cpu_s < 2.0


# ------------------------------------------------------- real network namespaces


@pytest.fixture
def veth_pair() -> Iterator[VethPair]:
    with make_veth_pair("fbtsys") as pair:
        yield pair


PAYLOAD_BYTES = 3_000_000
PORT = 9093
SINK_CODE = """
import socket, sys
srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
conn, _ = srv.accept()
total = 0
while chunk := conn.recv(1 << 16):
    total += len(chunk)
print(total, flush=True)
"""
SOURCE_CODE = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2]))) as conn:
    conn.sendall(b"x" * int(sys.argv[3]))
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)
"""


@pytest.mark.root
def test_counters_in_a_namespace_match_the_bytes_sent(
    veth_pair: VethPair, tmp_path: Path
) -> None:
    pair = veth_pair
    out_a, out_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    samplers = [
        _cli(
            "--out", str(out), "--host", host, "--interval", "0.2",
            "--interfaces", ifname, "--shared-host",
            prefix=("ip", "netns", "exec", ns),
        )
        for out, host, ns, ifname in (
            (out_a, "nodeA", pair.ns_a, pair.if_a),
            (out_b, "nodeB", pair.ns_b, pair.if_b),
        )
    ]  # fmt: skip
    sink = subprocess.Popen(
        ["ip", "netns", "exec", pair.ns_a, sys.executable, "-c", SINK_CODE,
         pair.ip_a, str(PORT)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        _wait_for_samples(out_a, 2)
        _wait_for_samples(out_b, 2)
        before_ns = time.time_ns()
        subprocess.run(
            ["ip", "netns", "exec", pair.ns_b, sys.executable, "-c", SOURCE_CODE,
             pair.ip_a, str(PORT), str(PAYLOAD_BYTES)],
            check=True, timeout=30,
        )  # fmt: skip
        received = int(sink.communicate(timeout=10)[0].strip())
        after_ns = time.time_ns()
        time.sleep(0.5)  # at least two more ticks after the traffic
    finally:
        sink.kill()
        for proc in samplers:
            proc.send_signal(signal.SIGTERM)
        results = [proc.communicate(timeout=5) for proc in samplers]
    assert [p.returncode for p in samplers] == [0, 0], results
    assert received == PAYLOAD_BYTES

    samples_b = [r for r in read_samples(out_b) if r["kind"] == "sample"]
    nic_b = [s["net"][pair.if_b] for s in samples_b]
    sent = nic_b[-1]["bytes_sent"] - nic_b[0]["bytes_sent"]
    assert PAYLOAD_BYTES <= sent <= 1.10 * PAYLOAD_BYTES
    assert set(samples_b[0]["net"]) == {pair.if_b}
    samples_a = [r for r in read_samples(out_a) if r["kind"] == "sample"]
    recv = (
        samples_a[-1]["net"][pair.if_a]["bytes_recv"]
        - samples_a[0]["net"][pair.if_a]["bytes_recv"]
    )
    assert PAYLOAD_BYTES <= recv <= 1.10 * PAYLOAD_BYTES
    print(f"payload {PAYLOAD_BYTES} B: B sent {sent} B, A received {recv} B")
    # The samples taken before and after the transfer bracket all its bytes.
    table = system_table(samples_b, run_id="r1", network="veth")
    in_window = bytes_between(
        table, "nodeB", pair.if_b, samples_b[0]["t_ns"], samples_b[-1]["t_ns"], "sent"
    )
    assert in_window == sent
    assert before_ns > samples_b[0]["t_ns"] and after_ns < samples_b[-1]["t_ns"]
