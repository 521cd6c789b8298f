"""Tests of instrumentation/clock.py: arithmetic, loopback, CLI, a real netns pair.

The root test builds its own pair of network namespaces joined by a veth, runs the
responder (``serve``) in one and the probe (``ip netns exec``) in the other.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from instrumentation import clock
from instrumentation.clock import (
    ChronyError,
    ClockEstimate,
    ClockProbeError,
    ClockResponder,
    ClockSample,
    chrony_tracking,
    correct_ns,
    estimate_from_samples,
    parse_chrony_tracking,
    probe_argv,
    probe_offset,
    serve_argv,
)
from tests.netns import VethPair, veth_pair

REPO = Path(__file__).resolve().parents[2]
# Tolerance on top of the uncertainty bound: time.time_ns() is read in Python a few
# microseconds away from the packet's actual send/receive.
EPSILON_NS = 200_000
LOOPBACK_MAX_UNCERTAINTY_NS = 5_000_000


def _exchange(
    server_at_t1: int, offset: int, up: int, turnaround: int, down: int
) -> tuple[int, int, int, int]:
    """Timestamps of one exchange for a node whose clock reads server + ``offset``."""
    t1 = server_at_t1 + offset
    t2 = server_at_t1 + up
    t3 = t2 + turnaround
    t4 = t3 + down + offset
    return t1, t2, t3, t4


# --- arithmetic ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "up", "turnaround", "down", "expected_offset", "expected_delay"),
    [
        # Symmetric delays: the offset is exact, whatever its sign.
        (1_000, 50, 10, 50, 1_000, 100),
        (-250_000_000, 400, 7, 400, -250_000_000, 800),
        (0, 0, 0, 0, 0, 0),
        # Asymmetric: the error is half the difference of the one-way delays.
        (1_000, 30, 10, 70, 1_020, 100),
        (1_000, 70, 10, 30, 980, 100),
        # All the delay in one direction: the error reaches the bound, delay / 2.
        (5_000, 0, 3, 100, 5_050, 100),
        (5_000, 100, 3, 0, 4_950, 100),
    ],
)
def test_sample_offset_and_delay(
    offset: int,
    up: int,
    turnaround: int,
    down: int,
    expected_offset: int,
    expected_delay: int,
) -> None:
    sample = ClockSample(7, *_exchange(10**18, offset, up, turnaround, down))

    assert sample.offset_ns == expected_offset
    assert sample.delay_ns == expected_delay
    assert abs(sample.offset_ns - offset) <= sample.uncertainty_ns


def test_sign_convention_node_ahead_is_positive() -> None:
    # The node's clock reads 1 s more than the server's: offset = +1 s.
    sample = ClockSample(1, *_exchange(10**18, 10**9, 100, 0, 100))
    estimate = estimate_from_samples([sample], samples_sent=1)

    assert estimate.offset_ns == 10**9
    # A node instant maps back to the server instant it happened at.
    assert correct_ns(10**18 + 10**9, estimate) == 10**18


def test_uncertainty_rounds_odd_delay_up() -> None:
    sample = ClockSample(1, 0, 0, 0, 101)

    assert sample.delay_ns == 101
    assert sample.uncertainty_ns == 51


def test_best_sample_is_minimum_delay() -> None:
    offset = 42_000
    samples = [
        ClockSample(0, *_exchange(10**18, offset, 100, 5, 200)),  # delay 300
        ClockSample(1, *_exchange(10**18 + 10**6, offset, 60, 5, 20)),  # delay 80
        ClockSample(2, *_exchange(10**18 + 2 * 10**6, offset, 75, 5, 75)),  # 150
    ]

    estimate = estimate_from_samples(samples, samples_sent=5)

    assert estimate.rtt_ns == 80
    assert estimate.uncertainty_ns == 40
    assert estimate.offset_ns == samples[1].offset_ns == offset - 20
    assert estimate.samples_used == 3
    assert estimate.samples_sent == 5
    assert estimate.all_samples == tuple(samples)


def test_negative_delay_sample_is_never_chosen() -> None:
    stepped = ClockSample(0, 1_000, 0, 0, 900)  # node clock stepped back: delay -100
    good = ClockSample(1, *_exchange(10**18, 0, 500, 0, 500))

    estimate = estimate_from_samples([stepped, good], samples_sent=2)

    assert stepped.delay_ns < 0
    assert estimate.rtt_ns == 1_000
    assert estimate.samples_used == 1
    assert len(estimate.all_samples) == 2
    with pytest.raises(ValueError, match="non-negative delay"):
        estimate_from_samples([stepped], samples_sent=1)


def test_estimate_validates_counts() -> None:
    sample = ClockSample(1, 0, 0, 0, 10)
    with pytest.raises(ValueError, match="samples_sent"):
        ClockEstimate(0, 5, 10, samples_used=1, samples_sent=0, all_samples=(sample,))
    with pytest.raises(ValueError, match=">= 0"):
        ClockEstimate(0, -1, 10, samples_used=1, samples_sent=1, all_samples=(sample,))
    with pytest.raises(TypeError, match="nanoseconds"):
        ClockSample(1, 0, 0, 0, 1.5)  # type: ignore[arg-type]


def test_estimate_round_trips_through_json() -> None:
    samples = [
        ClockSample(3, *_exchange(10**18, -7, 40, 2, 60)),
        ClockSample(4, *_exchange(10**18 + 5, -7, 10, 2, 10)),
    ]
    estimate = estimate_from_samples(samples, samples_sent=3)

    again = ClockEstimate.from_dict(json.loads(json.dumps(estimate.to_dict())))

    assert again == estimate
    with pytest.raises(ValueError, match="not a clock estimate"):
        ClockEstimate.from_dict({"offset_ns": 1})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 0}, "port"),
        ({"samples": 0}, "samples"),
        ({"timeout_s": 0.0}, "timeout_s"),
        ({"interval_s": -1.0}, "interval_s"),
        ({"inject_offset_ns": 10**19}, "inject_offset_ns"),
    ],
)
def test_probe_rejects_bad_arguments(kwargs: dict[str, float], message: str) -> None:
    arguments: dict[str, float] = {"port": 9} | kwargs
    port = int(arguments.pop("port"))
    with pytest.raises(ValueError, match=message):
        probe_offset("127.0.0.1", port, **arguments)  # type: ignore[arg-type]


# --- command builders ------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            lambda: serve_argv("10.0.1.1", 9123),
            ["python3", "-m", "instrumentation.clock", "serve", "--host",
             "10.0.1.1", "--port", "9123"],
        ),
        (
            lambda: probe_argv("10.0.1.1", 9123),
            ["python3", "-m", "instrumentation.clock", "probe", "--host",
             "10.0.1.1", "--port", "9123", "--samples", "8"],
        ),
        (
            lambda: probe_argv(
                "10.0.1.1", 9123, samples=4, inject_offset_ns=-5, timeout_s=0.5,
                python="/venv/bin/python",
            ),
            ["/venv/bin/python", "-m", "instrumentation.clock", "probe", "--host",
             "10.0.1.1", "--port", "9123", "--samples", "4", "--timeout-s", "0.5",
             "--inject-offset-ns", "-5"],
        ),
    ],
)  # fmt: skip
def test_command_builders(call: object, expected: list[str]) -> None:
    assert callable(call)
    assert call() == expected


# --- chrony ------------------------------------------------------------------------

CHRONY_OUTPUT = """\
Reference ID    : C0A80001 (pi-server.lab)
Stratum         : 3
Ref time (UTC)  : Thu Mar 07 10:15:42 2024
System time     : 0.000012345 seconds slow of NTP time
Last offset     : -0.000004567 seconds
RMS offset      : 0.000023456 seconds
Frequency       : 7.123 ppm fast
Residual freq   : +0.002 ppm
Skew            : 0.045 ppm
Root delay      : 0.000345678 seconds
Root dispersion : 0.000056789 seconds
Update interval : 64.5 seconds
Leap status     : Normal
"""


def test_parse_chrony_tracking() -> None:
    parsed = parse_chrony_tracking(CHRONY_OUTPUT)

    assert parsed == {
        "reference_id": "C0A80001 (pi-server.lab)",
        "stratum": 3,
        "system_time_s": -0.000012345,
        "last_offset_s": -0.000004567,
        "rms_offset_s": 0.000023456,
        "frequency_ppm": 7.123,
        "skew_ppm": 0.045,
        "root_delay_s": 0.000345678,
        "root_dispersion_s": 0.000056789,
        "leap_status": "Normal",
    }


def test_parse_chrony_signs_fast_and_slow() -> None:
    parsed = parse_chrony_tracking(
        "System time     : 0.5 seconds fast of NTP time\n"
        "Frequency       : 1.5 ppm slow\n"
    )

    assert parsed == {"system_time_s": 0.5, "frequency_ppm": -1.5}


def _fake_chronyc(directory: Path, body: str) -> None:
    script = directory / "chronyc"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_chrony_tracking_absent_returns_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    assert chrony_tracking() is None


def test_chrony_tracking_runs_and_parses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "out.txt").write_text(CHRONY_OUTPUT)
    _fake_chronyc(tmp_path, f'[ "$1" = tracking ] && cat {tmp_path / "out.txt"}')
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")

    parsed = chrony_tracking()

    assert parsed is not None
    assert parsed["stratum"] == 3
    assert parsed["system_time_s"] == -0.000012345


def test_chrony_tracking_failure_and_timeout_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    _fake_chronyc(tmp_path, 'echo "506 Cannot talk to daemon" >&2; exit 1')
    with pytest.raises(ChronyError, match="Cannot talk to daemon"):
        chrony_tracking()

    _fake_chronyc(tmp_path, "exec sleep 5")
    started = time.monotonic()
    with pytest.raises(ChronyError, match="did not answer"):
        chrony_tracking(timeout_s=0.3)
    assert time.monotonic() - started < 3


# --- loopback --------------------------------------------------------------------


@pytest.fixture
def responder() -> Iterator[ClockResponder]:
    with ClockResponder("127.0.0.1", 0) as running:
        yield running


@pytest.mark.parametrize("injected", [-500_000_000, 0, 300_000_000])
def test_loopback_recovers_injected_offset(
    responder: ClockResponder, injected: int
) -> None:
    estimate = probe_offset("127.0.0.1", responder.port, inject_offset_ns=injected)

    assert abs(estimate.offset_ns - injected) <= estimate.uncertainty_ns + EPSILON_NS
    assert 0 <= estimate.uncertainty_ns < LOOPBACK_MAX_UNCERTAINTY_NS
    assert estimate.samples_sent == 8
    assert estimate.samples_used == 8
    assert responder.replies_sent >= 8
    best = min(estimate.all_samples, key=lambda s: s.delay_ns)
    assert estimate.rtt_ns == best.delay_ns


def test_responder_ignores_malformed_packets(responder: ClockResponder) -> None:
    garbage = [
        b"",
        b"short",
        b"X" * clock.PACKET_SIZE,  # right size, wrong magic
        b"\x00" * (clock.PACKET_SIZE + 10),
        clock._pack(2, 1, 0, 0, 0),  # a reply sent as a request
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        for packet in garbage:
            sock.sendto(packet, ("127.0.0.1", responder.port))
        with pytest.raises(TimeoutError):
            sock.recv(1024)

    estimate = probe_offset("127.0.0.1", responder.port, samples=2)

    assert responder.malformed == len(garbage)
    assert responder.running
    assert estimate.samples_used == 2


def test_responder_stop_releases_port() -> None:
    responder = ClockResponder("127.0.0.1", 0).start()
    port = responder.port
    responder.stop()

    assert not responder.running
    with ClockResponder("127.0.0.1", port) as again:
        assert again.port == port


def test_responder_bind_error_names_address() -> None:
    with ClockResponder("127.0.0.1", 0) as first:
        with pytest.raises(OSError, match=f"127.0.0.1:{first.port}"):
            ClockResponder("127.0.0.1", first.port).start()


def test_probe_refused_port_fails_quickly() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    samples, timeout_s = 3, 0.3

    started = time.monotonic()
    with pytest.raises(ClockProbeError) as error:
        probe_offset("127.0.0.1", free_port, samples=samples, timeout_s=timeout_s)
    elapsed = time.monotonic() - started

    assert elapsed < samples * timeout_s + 1
    message = str(error.value)
    assert f"127.0.0.1:{free_port}" in message
    assert "3 requests sent" in message
    assert "responder" in message and "firewall" in message


def test_probe_silent_port_times_out_per_sample() -> None:
    # A bound socket that never answers: each sample waits out its timeout.
    samples, timeout_s = 3, 0.3
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        port = black_hole.getsockname()[1]

        started = time.monotonic()
        with pytest.raises(ClockProbeError, match="no reply"):
            probe_offset("127.0.0.1", port, samples=samples, timeout_s=timeout_s)
        elapsed = time.monotonic() - started

    assert samples * timeout_s <= elapsed < samples * timeout_s + 1


# --- command line ----------------------------------------------------------------


def _python_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _start_serve(
    prefix: list[str], host: str, port: int
) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [*prefix, *serve_argv(host, port, python=sys.executable)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=_python_env(),
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # the ready line; EOF if serve failed
    if not line:
        _, stderr = process.communicate(timeout=10)
        raise AssertionError(f"serve did not start: {stderr}")
    ready = json.loads(line)
    assert ready["listening"] is True
    return process, int(ready["port"])


def _stop_serve(process: subprocess.Popen[str], signum: int) -> int:
    if process.poll() is None:
        process.send_signal(signum)
    try:
        return process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        raise


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_probe_against_cli_responder(signum: int) -> None:
    server, port = _start_serve([], "127.0.0.1", 0)
    try:
        done = subprocess.run(
            probe_argv(
                "127.0.0.1", port, samples=4, inject_offset_ns=300_000_000,
                python=sys.executable,
            ),
            capture_output=True, text=True, timeout=30, cwd=REPO, env=_python_env(),
        )  # fmt: skip
    finally:
        status = _stop_serve(server, signum)

    assert done.returncode == 0, done.stderr
    estimate = ClockEstimate.from_dict(json.loads(done.stdout))
    assert estimate.samples_sent == 4
    assert abs(estimate.offset_ns - 300_000_000) <= (
        estimate.uncertainty_ns + EPSILON_NS
    )
    assert status == 0, server.stderr.read() if server.stderr else ""


def test_cli_probe_failure_exits_2_with_message() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]

    done = subprocess.run(
        [*probe_argv("127.0.0.1", free_port, samples=2, timeout_s=0.2,
                     python=sys.executable)],
        capture_output=True, text=True, timeout=30, cwd=REPO, env=_python_env(),
    )  # fmt: skip

    assert done.returncode == 2
    assert done.stdout == ""
    assert f"127.0.0.1:{free_port}" in done.stderr
    assert "2 requests sent" in done.stderr


def test_cli_serve_bind_failure_exits_2() -> None:
    with ClockResponder("127.0.0.1", 0) as taken:
        port = taken.port
        done = subprocess.run(
            serve_argv("127.0.0.1", port, python=sys.executable),
            capture_output=True, text=True, timeout=30, cwd=REPO, env=_python_env(),
        )  # fmt: skip

    assert done.returncode == 2
    assert f"127.0.0.1:{port}" in done.stderr


# --- real network namespaces ------------------------------------------------------


@pytest.fixture
def netns_pair() -> Iterator[VethPair]:
    with veth_pair("fbtclk") as pair:
        yield pair


@pytest.mark.root
def test_netns_probe_recovers_injected_offset(netns_pair: VethPair) -> None:
    pair = netns_pair
    injected = 300_000_000
    server, port = _start_serve(["ip", "netns", "exec", pair.ns_a], pair.ip_a, 0)
    try:
        done = subprocess.run(
            [
                "ip", "netns", "exec", pair.ns_b,
                *probe_argv(pair.ip_a, port, samples=8,
                            inject_offset_ns=injected, python=sys.executable),
            ],
            capture_output=True, text=True, timeout=60, cwd=REPO, env=_python_env(),
        )  # fmt: skip
    finally:
        status = _stop_serve(server, signal.SIGTERM)

    assert done.returncode == 0, done.stderr
    estimate = ClockEstimate.from_dict(json.loads(done.stdout))
    assert abs(estimate.offset_ns - injected) <= estimate.uncertainty_ns + EPSILON_NS
    assert estimate.uncertainty_ns < LOOPBACK_MAX_UNCERTAINTY_NS
    assert estimate.samples_used == 8
    assert status == 0
