"""Trace replay: the plan and tc lines (pure), and one real cluster (root).

The real test brings up its own two-node cluster on 10.226.x (name ``fbtr<hex>``)
whose ``cell`` network replays a 2-s CSV trace on the uplink and a Mahimahi
trace on the downlink, reads the HTB class rates back with ``tc class show``
while they move, and checks that ``cluster down`` leaves no replay process.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from inventory.traces import MIN_RATE_MBIT, parse_csv
from testbed.campaign.manifest import link_profiles
from testbed.commands import shaping
from testbed.emulation import replay
from testbed.emulation.naming import node_namespace
from testbed.emulation.plan import plan_cluster
from testbed.emulation.status import cluster_status
from tests.e2e.clusters import emulated_cluster
from tests.testbed.emulation.inventories import (
    SHORT_TRACE,
    TRACED_CELL,
    make_inventory,
)

# --- the plan (pure) ----------------------------------------------------------------


def test_only_traced_directions_are_replayed_each_from_its_nodes_phase() -> None:
    inv = make_inventory("emu", TRACED_CELL)
    plan = plan_cluster(inv)

    replays = replay.plan_replay(inv, plan)

    # pi1's cell uplink only: ethernet is flat, the cell downlink has no trace
    assert [(r.node, r.network, r.direction) for r in replays.links] == [
        ("pi1", "cell", "uplink")
    ]
    link = replays.links[0]
    assert link.namespace == node_namespace(inv, "pi1") and link.device == "wwan0"
    assert 0 <= link.phase_s < SHORT_TRACE.period_s
    assert plan.link("pi1", "cell").uplink.traced  # type: ignore[union-attr]
    assert not plan.link("pi1", "cell").downlink.traced  # type: ignore[union-attr]
    # the nominal rate, installed until the replay starts, is the trace's mean
    assert inv.network("cell").profile.uplink_mbit == 8.0


def test_the_rate_schedule_loops_from_the_phase_and_never_reaches_zero() -> None:
    trace = parse_csv("0,4\n0.5,0\n1.0,12\n", "t.csv")  # period 1.5 s
    at = [replay.replay_rate(trace, t, 0.25) for t in (0.0, 0.3, 0.8, 1.3, 1.6)]

    # 0.25, 0.55, 1.05, 1.55 (= 0.05 looped), 1.85 (= 0.35)
    assert at == [4.0, MIN_RATE_MBIT, 12.0, 4.0, 4.0]


def test_change_lines_set_rate_and_ceil_for_htb_and_the_root_for_tbf() -> None:
    htb = replay.change_line("wwan0", 2.6)
    tbf = replay.change_line("wwan0", 2.6, "tbf")

    assert htb.startswith("class change dev wwan0 parent 1: classid 1:10 htb ")
    assert "rate 2600000bit ceil 2600000bit" in htb
    assert f"burst {shaping.burst_bytes(2.6)}" in htb
    assert tbf.startswith("qdisc change dev wwan0 root handle 1: tbf rate 2600000bit")
    assert replay.batch_command("ns1") == ["tc", "-n", "ns1", "-force", "-batch", "-"]
    assert replay.batch_command(None) == ["tc", "-force", "-batch", "-"]


def test_the_feature_says_whether_the_replay_runs() -> None:
    inv = make_inventory("emu", TRACED_CELL)
    replays = replay.plan_replay(inv, plan_cluster(inv))

    running = replay.replay_use(replays, 1234, ("cell",))
    stopped = replay.replay_use(replays, None, ("cell",))
    none = replay.replay_use(replays, None, ())

    assert (
        running.active and "pid 1234" in running.detail and "20 times" in running.detail
    )
    assert running.mechanism == "trace-replay" and running.networks == ("cell",)
    assert stopped.requested and not stopped.active and "NOT running" in stopped.detail
    assert not none.requested


# --- against the real kernel --------------------------------------------------------

UP_CSV = "t_s,mbit_s\n0,3\n0.5,9\n1.0,3\n1.5,9\n"  # 2-s loop, 3 and 9 Mbit/s


def _mahimahi(rates_per_half_s: list[int]) -> str:
    """Packets spread evenly: ``n`` per 500 ms is n * 24 kbit/s."""
    lines = []
    for half, count in enumerate(rates_per_half_s):
        lines += [half * 500 + 1 + (k * 500) // count for k in range(count)]
    lines.append(len(rates_per_half_s) * 500)
    return "\n".join(map(str, lines)) + "\n"


INVENTORY = """
all:
  vars:
    cluster_name: {name}
    management: {{subnet: 10.226.0.0/24, server_address: 10.226.0.1}}
    networks:
      cell:
        subnet: 10.226.2.0/24
        server_address: 10.226.2.1
        profile:
          base: 5g
          delay_ms: 0
          jitter_ms: 0
          uplink_trace: up.csv
          downlink_trace: traces/down.mahimahi
  children:
    server:
      hosts:
        server: {{ansible_host: 10.226.0.1}}
    clients:
      hosts:
        pi1:
          ansible_host: 10.226.0.11
          interfaces: {{cell: {{ifname: wwan0, ip: 10.226.2.11}}}}
        pi2:
          ansible_host: 10.226.0.12
          interfaces: {{cell: {{ifname: wwan0, ip: 10.226.2.12}}}}
"""


def _class_rate(namespace: str | None, device: str) -> int | None:
    where = [] if namespace is None else ["-n", namespace]
    out = subprocess.run(
        ["tc", *where, "class", "show", "dev", device],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for cls in shaping.parse_class_show(out):
        if cls.classid == shaping.CLASS_ID:
            return cls.rate_bit
    return None


def _replay_processes(config: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(config).encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


@pytest.mark.root
def test_htb_rates_follow_the_trace_and_down_stops_the_replay(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for namespaces and tc")
    (tmp_path / "up.csv").write_text(UP_CSV)
    (tmp_path / "traces").mkdir()
    # 1 s loop: 250 packets per 500 ms (6 Mbit/s), then 500 (12 Mbit/s)
    (tmp_path / "traces" / "down.mahimahi").write_text(_mahimahi([250, 500]))
    name = "fbtr" + secrets.token_hex(2)
    yaml_text = INVENTORY.format(name=name)

    with emulated_cluster(tmp_path, yaml_text, ssh=False) as (inv, state):
        config = replay.files_for(name).config
        uses = {use.feature: use for use in state.emulation}
        assert uses["trace"].active and uses["trace"].mechanism == "trace-replay"
        started = replay.started_at(name)
        assert started is not None
        links = {
            (link.node, link.direction): link
            for link in replay.plan_replay(inv, plan_cluster(inv)).links
        }
        assert len(links) == 4  # two nodes, both directions
        assert links["pi1", "uplink"].phase_s != links["pi2", "uplink"].phase_s
        seen: dict[tuple[str, str], set[int]] = {key: set() for key in links}
        agree = total = 0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            for key, link in links.items():
                now = time.time()
                rate = _class_rate(link.namespace, link.device)
                assert rate is not None
                seen[key].add(rate)
                elapsed = now - started
                # away from a step's edge (50 ms of replay tick + reading), the
                # installed rate is the trace's at this node's phase
                edges = [link.rate_at(elapsed + d) for d in (-0.08, 0.0, 0.04)]
                if len(set(edges)) == 1:
                    total += 1
                    agree += rate == shaping.rate_bits(edges[0])
            time.sleep(0.07)
        status = cluster_status(inv)
        assert status.is_up  # moving rates are no missing shaping
        assert {u.feature: u for u in status.emulation}["trace"].active

    for node in ("pi1", "pi2"):
        assert seen[node, "uplink"] == {3_000_000, 9_000_000}
        # Mahimahi bins of 100 ms: about 6 and 12 Mbit/s (the loop's last line
        # is also its first packet, and bins take whole packets)
        down = links[node, "downlink"].trace
        assert seen[node, "downlink"] <= {shaping.rate_bits(s.mbit) for s in down.steps}
        assert min(seen[node, "downlink"]) < 7e6 and max(seen[node, "downlink"]) > 11e6
    assert total > 40 and agree / total >= 0.9, (agree, total)
    assert replay.running_pid(name) is None
    assert _replay_processes(config) == []
    assert not replay.files_for(name).folder.exists()


def test_the_manifest_sums_a_trace_up_instead_of_listing_its_steps() -> None:
    inv = make_inventory("emu", TRACED_CELL)

    cell = link_profiles(inv, ["cell"])["cell"]

    assert cell["downlink_trace"] is None and cell["uplink_mbit"] == 8.0
    assert cell["uplink_trace"] == {
        "path": "short.csv",
        "format": "csv",
        "period_s": 2.0,
        "steps": 4,
        "mean_mbit": 8.0,
        "min_mbit": 4.0,
        "max_mbit": 12.0,
        "sha256": SHORT_TRACE.digest,
    }
