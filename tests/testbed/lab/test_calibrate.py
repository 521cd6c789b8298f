"""Link calibration without hosts: argv, parsers, verdicts, storing, the rates
campaigns take from it, and a node that cannot be measured (fake executors)."""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from analysis.linkbound import calibration_rates, mark_bound
from testbed.commands import calibratecmd as cmd
from testbed.lab import calibrate as cal
from testbed.transport.base import CommandError
from tests.testbed.emulation.inventories import make_inventory

IPERF_OK = {
    "start": {"test_start": {"reverse": 0}},
    "end": {
        "sum_sent": {"bits_per_second": 8.1e6, "retransmits": 3, "seconds": 3.0},
        "sum_received": {"bits_per_second": 7.7e6, "seconds": 3.0},
        "cpu_utilization_percent": {"host_total": 4.5, "remote_total": 1.2},
    },
}
PING_OK = """PING 10.0.0.1 (10.0.0.1) from 10.0.0.2 : 56(84) bytes of data.
--- 10.0.0.1 ping statistics ---
10 packets transmitted, 10 received, 0% packet loss, time 1810ms
rtt min/avg/max/mdev = 29.812/30.405/31.220/0.391 ms
"""


def test_client_argv_binds_to_the_nodes_address_and_reverses_for_download() -> None:
    up = cmd.iperf3_client_argv("10.0.2.1", "10.0.2.11", seconds=2, port=5301)
    down = cmd.iperf3_client_argv("10.0.2.1", "10.0.2.11", download=True)
    assert up[:3] == ["iperf3", "--client", "10.0.2.1"]
    assert up[up.index("--bind") + 1] == "10.0.2.11"
    assert up[up.index("--port") + 1] == "5301"
    assert "--json" in up and "--reverse" not in up
    assert down[-1] == "--reverse"
    with pytest.raises(ValueError, match="seconds"):
        cmd.iperf3_client_argv("a", "b", seconds=0)


def test_ping_argv_sends_from_the_node_address_with_a_deadline() -> None:
    argv = cmd.ping_argv("10.0.2.1", "10.0.2.11", count=5, interval_s=0.2)
    assert argv[-1] == "10.0.2.1"
    assert argv[argv.index("-I") + 1] == "10.0.2.11"
    assert argv[argv.index("-c") + 1] == "5"
    assert int(argv[argv.index("-w") + 1]) >= 3


def test_parse_iperf3_takes_the_receivers_goodput_and_both_cpus() -> None:
    got = cmd.parse_iperf3(json.dumps(IPERF_OK))
    assert got.mbit == pytest.approx(7.7)
    assert got.retransmits == 3
    assert (got.cpu_node_pct, got.cpu_server_pct) == (4.5, 1.2)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('{"start": {}, "end": {}, "error": "unable to connect"}', "unable to connect"),
        ("iperf3: error - no such host", "no JSON"),
        ('{"end": {"sum_received": {}}}', "bits_per_second"),
        ("[1, 2]", "not an object"),
    ],
)
def test_parse_iperf3_errors_say_what_iperf3_said(text: str, said: str) -> None:
    with pytest.raises(cmd.ParseError, match=said):
        cmd.parse_iperf3(text)


def test_parse_ping_reads_the_summary_and_loss() -> None:
    got = cmd.parse_ping(PING_OK)
    assert (got.min_ms, got.avg_ms, got.mdev_ms, got.loss_pct) == (
        29.812,
        30.405,
        0.391,
        0.0,
    )
    lost = "5 packets transmitted, 0 received, 100% packet loss, time 4000ms\n"
    with pytest.raises(cmd.ParseError, match="100% packet loss"):
        cmd.parse_ping(lost)


@pytest.mark.parametrize(
    ("measured", "profile", "cpu", "verdict"),
    [
        (9.5, 10.0, None, "link"),
        (10.9, 10.0, None, "link"),
        (7.0, 10.0, 20.0, "below-profile"),
        (300.0, 940.0, 99.0, "host"),
        (12.0, 10.0, None, "above-profile"),
        (5000.0, math.inf, None, "unshaped"),
    ],
)
def test_rate_verdicts(
    measured: float, profile: float, cpu: float | None, verdict: str
) -> None:
    assert cal.judge_rate(measured, profile, cpu)[0] == verdict


def test_rtt_verdicts_allow_a_millisecond_or_ten_percent() -> None:
    assert cal.judge_rtt(30.9, 30.0)[0] == "link"
    assert cal.judge_rtt(33.5, 30.0)[0] == "above-profile"
    assert cal.judge_rtt(1.4, 0.5)[0] == "link"  # within 1 ms
    verdict, detail = cal.judge_rtt(0.1, 30.0, "delay not emulated: no netem")
    assert verdict == "below-profile" and "no netem" in detail


class FakeNode:
    """A node whose tools answer from a table; ``missing`` tools are not found."""

    def __init__(self, missing: Sequence[str] = ()) -> None:
        self.missing = set(missing)
        self.ran: list[list[str]] = []

    @property
    def where(self) -> str:
        return "fake node"

    def run(
        self,
        argv: Sequence[str],
        check: bool = True,
        timeout: float | None = 30,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.ran.append(argv)
        if argv[0] == "sh":  # which
            code = 1 if argv[-1] in self.missing else 0
            return subprocess.CompletedProcess(argv, code, "", "")
        if argv[0] == "iperf3":
            return subprocess.CompletedProcess(argv, 0, json.dumps(IPERF_OK), "")
        return subprocess.CompletedProcess(argv, 0, PING_OK, "")

    def start(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a node starts nothing")

    def put(self, local: Path, remote: str, mode: int | None = None) -> None:
        raise AssertionError

    def get(self, remote: str, local: Path) -> None:
        raise AssertionError


def test_a_node_without_iperf3_or_unreachable_gets_error_rows_others_measured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: no real servers (they are tested on a real cluster elsewhere).
    monkeypatch.setattr(cal, "_start_servers", lambda *a, **k: {})
    inv = make_inventory()

    def unreachable() -> Any:
        raise CommandError(["ssh"], "pi2", 255, "No route to host")

    lacking = FakeNode(missing=["iperf3"])

    # Execute: pi1 lacks iperf3, pi2 cannot be reached
    result = cal.calibrate(
        inv, {"pi1": lambda: lacking, "pi2": unreachable}, FakeNode()
    )

    # Assert: every (node, network, quantity) has a row with what to do
    rows = {(m.node, m.network, m.quantity): m for m in result.measurements}
    assert len(rows) == 3 * 2 + 3  # pi1 on two networks, pi2 on one
    assert all(m.verdict == "error" and m.measured is None for m in rows.values())
    assert "apt-get install iperf3" in (rows["pi1", "cell", "up_mbit"].error or "")
    assert "No route to host" in (rows["pi2", "ethernet", "rtt_ms"].error or "")
    assert not any(argv[0] == "iperf3" for argv in lacking.ran)


def test_a_reachable_node_gets_verdicts_against_its_profile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cal, "_start_servers", lambda *a, **k: {})
    inv = make_inventory()  # cell: 24 down, 8 up, 15 ms each way
    node = FakeNode()

    result = cal.calibrate(inv, {"pi1": lambda: node}, FakeNode(), networks=["cell"])

    rows = {m.quantity: m for m in result.measurements}
    assert rows["up_mbit"].verdict == "link"  # 7.7 of 8
    assert rows["down_mbit"].verdict == "below-profile"  # 7.7 of 24
    assert rows["rtt_ms"].measured == pytest.approx(30.405)
    assert rows["rtt_ms"].verdict == "link"
    bound = [a for a in node.ran if a[0] == "iperf3"]
    assert all(a[a.index("--bind") + 1] == "10.250.2.11" for a in bound)


def test_storing_and_staleness(tmp_path: Path) -> None:
    inventory = tmp_path / "lab.yaml"
    inventory.write_text("all: {}\n")
    row = cal.Measurement("pi1", "5g", "up_mbit", 10.0, 7.2, "below-profile")
    unshaped = cal.Measurement("pi1", "mgmt", "up_mbit", math.inf, 900.0, "unshaped")
    result = cal.Calibration(
        str(inventory), cal.file_sha256(inventory), 1, "ssh", 3.0, (row, unshaped)
    )
    assert cal.last_calibration(inventory) is None

    cal.write_calibration(result, cal.default_path(inventory))

    found = cal.last_calibration(inventory)
    assert found is not None and found["stale"] is False
    assert found["measurements"][1]["profile"] == "inf"  # strict JSON
    assert calibration_rates(found) == {("5g", "up", "pi1"): (7.2, "calibrated")}
    inventory.write_text("all: {vars: {}}\n")  # the inventory changed since
    stale = cal.last_calibration(inventory)
    assert stale is not None and stale["stale"] is True
    assert calibration_rates(stale) == {}
    cal.default_path(inventory).write_text("{not json")
    assert "unreadable" in (cal.last_calibration(inventory) or {}).get("error", "")


def test_calibrated_rates_win_over_the_profile_and_host_verdicts_do_not() -> None:
    import pandas as pd

    calibration = {
        "stale": False,
        "measurements": [
            {"node": "pi1", "network": "5g", "quantity": "up_mbit",
             "measured": 5.0, "verdict": "below-profile"},
            {"node": "pi2", "network": "5g", "quantity": "up_mbit",
             "measured": 2.0, "verdict": "host"},
        ],
    }  # fmt: skip
    rates = {("5g", "up"): (10.0, "profile"), **calibration_rates(calibration)}
    transfers = pd.DataFrame(
        {
            "network": ["5g", "5g"],
            "direction": ["up", "up"],
            "node": ["pi1", "pi2"],
            "wire_s": [1.0, 1.0],
            "wire_bytes": [625_000, 625_000],
        }
    )

    marked = mark_bound(transfers, rates).set_index("node")

    assert marked.loc["pi1", "rate_source"] == "calibrated"
    assert marked.loc["pi1", "floor_s"] == pytest.approx(1.0)
    assert marked.loc["pi2", "rate_source"] == "profile"
    assert marked.loc["pi2", "floor_s"] == pytest.approx(0.5)
