"""End to end over SSH only: the lab path, proven on emulated nodes running sshd.

`cluster up` gives every node an sshd on its management address. From then on the
test uses only the lab commands, as a user would on real Pis: `inventory check`
(all green, then one broken host per failure kind while the others pass),
`cluster provision` twice (the second finds nothing to do), and a campaign with
TLS and SuperNode authentication whose phase table has the same shape as the
namespace path's.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from inventory.models import Inventory
from testbed.emulation.naming import node_namespace
from testbed.emulation.sshd import state_dir
from tests.e2e.clusters import emulated_cluster

pytestmark = [pytest.mark.root, pytest.mark.e2e]

if os.geteuid() != 0:
    pytest.skip(
        "end-to-end tests build network namespaces: run as root",
        allow_module_level=True,
    )

FLOWERBED = str(Path(sys.executable).parent / "flowerbed")
APP = Path(__file__).resolve().parents[2] / "apps" / "digits"
CLIENTS = ("pi1", "pi2", "pi3")


def _inventory_yaml(
    name: str,
    folder: Path,
    host_vars: dict[str, dict[str, str]] | None = None,
    known_hosts: Path | None = None,
) -> str:
    """The test lab; ``host_vars`` overrides per host (``ifname_ethernet``...)."""
    host_vars = host_vars or {}
    clients = []
    for i, host in enumerate(CLIENTS, start=1):
        extra = host_vars.get(host, {})
        eth = extra.pop("ifname_ethernet", "eth0")
        lines = [f"        {host}:", f"          ansible_host: 10.233.0.{10 + i}"]
        lines += [f"          {k}: {v}" for k, v in extra.items()]
        lines += [
            "          interfaces:",
            f"            ethernet: {{ifname: {eth}, ip: 10.233.1.{10 + i}}}",
            f"            5g: {{ifname: wwan0, ip: 10.233.3.{10 + i}}}",
        ]
        clients.append("\n".join(lines) + "\n")
    known = f"    ssh_known_hosts: {known_hosts}\n" if known_hosts else ""
    return f"""all:
  vars:
    cluster_name: {name}
    superlink_port: 8000
    ansible_user: root
    flowerbed_dir: {folder}/nodes/{{host}}
    flowerbed_wheelhouse: {folder}/wheelhouse
    flowerbed_server_dir: {folder}/server
{known}    management: {{subnet: 10.233.0.0/24, server_address: 10.233.0.1}}
    networks:
      ethernet: {{subnet: 10.233.1.0/24, server_address: 10.233.1.1, profile: ethernet}}
      5g:
        subnet: 10.233.3.0/24
        server_address: 10.233.3.1
        profile: {{base: 5g, uplink_mbit: 4, downlink_mbit: 8}}
  children:
    server:
      hosts:
        server: {{ansible_host: 10.233.0.1}}
    clients:
      hosts:
{"".join(clients)}"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Inventory, Path]]:
    folder = tmp_path_factory.mktemp("lab")
    name = "fbs" + secrets.token_hex(2)
    with emulated_cluster(folder, _inventory_yaml(name, folder)) as (inventory, state):
        assert state.ssh is not None
        yield inventory, folder


def _flowerbed(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOWERBED, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _check(path: Path) -> tuple[int, dict[str, dict[str, dict[str, Any]]]]:
    result = _flowerbed("inventory", "check", str(path), "--format", "json")
    report = json.loads(result.stdout)
    rows = {
        host["host"]: {row["check"]: row for row in host["checks"]}
        for host in report["hosts"]
    }
    return result.returncode, rows


def _passed(rows: dict[str, dict[str, Any]]) -> bool:
    return all(row["ok"] is not False for row in rows.values())


def test_check_passes_on_every_host_over_ssh(lab: tuple[Inventory, Path]) -> None:
    inventory, _ = lab

    code, rows = _check(inventory.path)

    assert code == 0, rows
    assert set(rows) == {"server", *CLIENTS}
    for host in CLIENTS:
        assert rows[host]["authenticated"]["ok"] is True
        assert rows[host]["route:5g"]["ok"] is True
        assert rows[host]["python"]["ok"] is True


def test_host_key_and_reachability_failures_are_per_host_rows(
    lab: tuple[Inventory, Path],
) -> None:
    inventory, folder = lab
    known = (state_dir(inventory) / "known_hosts").read_text().splitlines()
    other_key = folder / "other_host_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)],
        check=True,
    )
    other = other_key.with_suffix(".pub").read_text().split()
    edited = []
    for line in known:
        name = line.split()[0]
        if name == "10.233.0.11":
            continue  # pi1: unknown host key
        if name == "10.233.0.12":
            line = f"{name} {other[0]} {other[1]}"  # pi2: changed host key
        edited.append(line)
    known_file = folder / "known_hosts.edited"
    known_file.write_text("\n".join(edited) + "\n")
    path = folder / "inventory-keys.yaml"
    path.write_text(
        _inventory_yaml(
            inventory.name,
            folder,
            {"pi3": {"ansible_port": "2222"}},  # pi3: nothing listens there
            known_hosts=known_file,
        )
    )

    code, rows = _check(path)

    assert code == 1
    assert rows["pi1"]["host-key"]["ok"] is False
    assert "SHA256:" in rows["pi1"]["host-key"]["message"]
    assert "--accept-new" in rows["pi1"]["host-key"]["message"]
    assert rows["pi2"]["host-key"]["ok"] is False
    assert "ssh-keygen -R" in rows["pi2"]["host-key"]["message"]
    assert rows["pi3"]["reachable"]["ok"] is False
    assert "2222" in rows["pi3"]["reachable"]["message"]
    assert _passed(rows["server"])
    # the changed key was not overwritten by the check
    assert other[1] in known_file.read_text()


def test_key_interface_and_route_failures_are_per_host_rows(
    lab: tuple[Inventory, Path],
) -> None:
    inventory, folder = lab
    wrong_key = folder / "wrong_user_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong_key)],
        check=True,
    )
    path = folder / "inventory-hosts.yaml"
    path.write_text(
        _inventory_yaml(
            inventory.name,
            folder,
            {
                "pi1": {"ansible_ssh_private_key_file": str(wrong_key)},
                "pi2": {"ifname_ethernet": "eth9"},
            },
        )
    )
    pi3 = node_namespace(inventory, "pi3")
    detour = ["10.233.1.1/32", "dev", "wwan0"]  # ethernet's server via the 5G link
    subprocess.run(["ip", "-n", pi3, "route", "add", *detour], check=True)
    try:
        code, rows = _check(path)
    finally:
        subprocess.run(["ip", "-n", pi3, "route", "del", *detour], check=True)

    assert code == 1
    assert rows["pi1"]["authenticated"]["ok"] is False
    assert str(wrong_key) in rows["pi1"]["authenticated"]["message"]
    assert rows["pi2"]["interface:ethernet"]["ok"] is False
    assert "eth9" in rows["pi2"]["interface:ethernet"]["message"]
    assert rows["pi2"]["interface:5g"]["ok"] is True
    assert rows["pi3"]["route:ethernet"]["ok"] is False
    assert "wwan0" in rows["pi3"]["route:ethernet"]["message"]
    assert rows["pi3"]["route:5g"]["ok"] is True
    assert _passed(rows["server"])


@pytest.fixture(scope="module")
def provisioned(lab: tuple[Inventory, Path]) -> tuple[float, float, dict[str, Any]]:
    inventory, _ = lab
    args = ("cluster", "provision", str(inventory.path), "--app", str(APP))
    started = time.monotonic()
    first = _flowerbed(*args, "--format", "json")
    first_s = time.monotonic() - started
    assert first.returncode == 0, first.stdout + first.stderr
    started = time.monotonic()
    second = _flowerbed(*args, "--format", "json")
    second_s = time.monotonic() - started
    assert second.returncode == 0, second.stdout + second.stderr
    return first_s, second_s, json.loads(second.stdout)


def test_provision_twice_the_second_finds_nothing_to_do(
    lab: tuple[Inventory, Path], provisioned: tuple[float, float, dict[str, Any]]
) -> None:
    inventory, folder = lab
    first_s, second_s, report = provisioned

    print(f"provision: first {first_s:.1f} s, second {second_s:.1f} s")
    for host in report["hosts"]:
        steps = ", ".join(f"{s['step']} {s['seconds']:.2f}" for s in host["steps"])
        print(f"  {host['host']}: {host['seconds']:.2f} s ({steps})")
    for host in report["hosts"]:
        assert host["error"] == ""
        changed = [
            (s["step"], s["detail"])
            for s in host["steps"]
            if s["status"] != "unchanged"
        ]
        assert changed == [], (host["host"], changed)
    assert second_s < 0.2 * first_s
    for host in CLIENTS:
        python = folder / "nodes" / host / "venv" / "bin" / "python"
        version = subprocess.run(
            [str(python), "-c", "import flwr; print(flwr.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert version.stdout.strip() == "1.42.0"
        # the private key stayed on the node; the server has only the public half
        assert (folder / "nodes" / host / "keys" / "supernode").exists()
        assert (folder / "server" / "supernode-keys" / f"{host}.pub").exists()
        assert not (folder / "server" / "supernode-keys" / host).exists()


def _campaign(folder: Path, name: str, networks: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nnetworks: {networks}\nrounds: 1\nstrategy: fedavg\n"
        "run_deadline_s: 300\nround_timeout_s: 120\n"
        "workload: {samples-per-node: 64, local-epochs: 1, batch-size: 16}\n"
    )
    return path


def _shape(phases: pd.DataFrame) -> set[tuple[str, str, str]]:
    return set(phases[["node", "phase", "source"]].itertuples(index=False, name=None))


def test_campaign_over_ssh_with_tls_and_auth_matches_the_namespace_path(
    lab: tuple[Inventory, Path], provisioned: tuple[float, float, dict[str, Any]]
) -> None:
    inventory, folder = lab
    ssh_out, netns_out = folder / "results-ssh", folder / "results-netns"

    over_ssh = _flowerbed(
        "campaign", "run", str(_campaign(folder, "ssh", "[ethernet, 5g]")),
        "-i", str(inventory.path), "--via", "ssh", "--out", str(ssh_out),
    )  # fmt: skip
    over_netns = _flowerbed(
        "campaign", "run", str(_campaign(folder, "netns", "[ethernet]")),
        "-i", str(inventory.path), "--via", "netns", "--out", str(netns_out),
    )  # fmt: skip

    assert over_ssh.returncode == 0, over_ssh.stdout + over_ssh.stderr
    assert "nodes via ssh, tls+supernode-auth" in over_ssh.stdout
    assert over_netns.returncode == 0, over_netns.stdout + over_netns.stderr
    ssh_phases = pd.read_parquet(ssh_out / "phases.parquet")
    netns_phases = pd.read_parquet(netns_out / "phases.parquet")
    ssh_eth = ssh_phases[ssh_phases.network == "ethernet"]
    assert _shape(ssh_eth) == _shape(netns_phases)
    assert set(ssh_phases.network) == {"ethernet", "5g"}
    assert list(ssh_phases.columns) == list(netns_phases.columns)
    # node-side files came back over SFTP: wire views from both ends, samples
    lines = (ssh_out / "runs" / "5g-r1" / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    kinds = {e["event"] for e in events}
    assert "node_transfer" in kinds and "supernode_log" in kinds
    assert "fetch_error" not in kinds
    system = pd.read_parquet(ssh_out / "system.parquet")
    assert set(CLIENTS) <= set(system.host)
    assert events[0]["event"] == "run_start"
    assert events[0]["security"] == "tls+supernode-auth"
    # the 4 Mbit/s 5G uplink is slower than ethernet's over SSH too
    uplink = ssh_phases[ssh_phases.phase == "uplink"].groupby("network").duration_s
    assert uplink.median()["5g"] > 3 * uplink.median()["ethernet"]
