"""testbed.emulation.plan and naming: the pure plan of an emulated cluster."""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import replace

import pytest

from inventory.models import Interface, Inventory
from testbed.emulation.errors import (
    PlanError,
    RootRequiredError,
    require_root,
)
from testbed.emulation.features import EmulationFeatures
from testbed.emulation.naming import host_side_veth, node_namespace
from testbed.emulation.plan import ClusterState, feature_uses, plan_cluster
from testbed.emulation.status import manifest_features
from tests.testbed.emulation.inventories import ETH, IP, LOSSY, make_inventory, network

# --- the plan (pure) ----------------------------------------------------------------


def test_plan_names_are_deterministic_short_and_ours() -> None:
    inv = make_inventory("emu")

    plan = plan_cluster(inv)

    assert plan == plan_cluster(make_inventory("emu"))
    assert plan.namespaces == ("fb-emu-pi1", "fb-emu-pi2")
    names = [*plan.bridge_names, *plan.host_side_veths]
    assert len(set(names)) == len(names) == 3 + 5
    for bridge in plan.bridge_names:
        assert bridge.startswith("fbb") and len(bridge) <= 15
    for veth in plan.host_side_veths:
        assert veth.startswith("fbv") and len(veth) <= 15
    other = plan_cluster(make_inventory("emu2"))
    assert set(other.bridge_names).isdisjoint(plan.bridge_names)
    assert set(other.host_side_veths).isdisjoint(plan.host_side_veths)
    assert plan.names()[plan.bridge_names[0]] == "bridge of network ethernet"


def test_plan_links_addresses_and_shaping() -> None:
    inv = make_inventory("emu")

    plan = plan_cluster(inv)

    cell = plan.link("pi1", "cell")
    assert cell.node_ifname == "wwan0"
    assert cell.address == ipaddress.IPv4Interface("10.250.2.11/24")
    assert cell.host_side == host_side_veth(inv, "pi1", "cell")
    assert cell.namespace == node_namespace(inv, "pi1")
    assert cell.downlink is not None and cell.uplink is not None
    assert (cell.downlink.device, cell.downlink.namespace) == (cell.host_side, None)
    assert cell.downlink.rate_mbit == 24
    assert (cell.uplink.device, cell.uplink.namespace) == ("wwan0", "fb-emu-pi1")
    assert cell.uplink.rate_mbit == 8 and cell.uplink.delay_ms == 15
    mgmt = plan.link("pi2", "mgmt")
    assert mgmt.node_ifname == "mgmt0" and mgmt.management
    assert mgmt.downlink is None and mgmt.uplink is None
    assert mgmt.address == ipaddress.IPv4Interface("10.250.0.12/24")
    bridges = {b.network: b for b in plan.bridges}
    assert bridges["cell"].address == ipaddress.IPv4Interface("10.250.2.1/24")
    assert bridges["mgmt"].management
    with pytest.raises(KeyError):
        plan.link("pi2", "cell")


def test_plan_loss_rules_live_in_node_namespaces() -> None:
    inv = make_inventory("emu", cell=LOSSY)

    plan = plan_cluster(inv, loss_mode="nth")

    rules = plan.loss_rules
    assert [(ns, r.chain, r.ifname, r.every) for ns, r in rules] == [
        ("fb-emu-pi1", "OUTPUT", "wwan0", 4),
        ("fb-emu-pi1", "INPUT", "wwan0", 4),
    ]


def _with_client(inv: Inventory, index: int, **changes: object) -> Inventory:
    clients = list(inv.clients)
    clients[index] = replace(clients[index], **changes)  # type: ignore[arg-type]
    return replace(inv, clients=tuple(clients))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda inv: _with_client(
                inv, 1, interfaces=(Interface("ethernet", "eth0", IP("10.250.9.12")),)
            ),
            "outside 10.250.1.0/24",
        ),
        (
            lambda inv: _with_client(
                inv, 1, interfaces=(Interface("ethernet", "eth0", IP("10.250.1.11")),)
            ),
            "clashes",
        ),
        (
            lambda inv: _with_client(
                inv, 1, interfaces=(Interface("wifi", "wlan0", IP("10.250.1.12")),)
            ),
            "unknown network 'wifi'",
        ),
        (
            lambda inv: _with_client(
                inv, 1, interfaces=(Interface("ethernet", "lo", IP("10.250.1.12")),)
            ),
            "not usable",
        ),
        (lambda inv: _with_client(inv, 1, ansible_host="pi2.lab"), "must be an IPv4"),
        (
            lambda inv: replace(
                inv, management=network("mgmt", 1, ETH)
            ),  # same subnet as ethernet
            "overlap",
        ),
    ],
)
def test_plan_rejects_unbuildable_inventories(mutate: object, message: str) -> None:
    inv = mutate(make_inventory("emu"))  # type: ignore[operator]

    with pytest.raises(PlanError, match=message) as info:
        plan_cluster(inv)
    assert "/tmp/test-inventory.yaml" in str(info.value)


def test_helpers_reject_unknown_hosts_and_networks() -> None:
    inv = make_inventory("emu")
    with pytest.raises(KeyError):
        node_namespace(inv, "server")
    with pytest.raises(KeyError, match="unknown network"):
        host_side_veth(inv, "pi1", "wifi")


def test_require_root_says_what_and_how(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(RootRequiredError) as info:
        require_root("flowerbed cluster up")
    text = str(info.value)
    assert "namespaces" in text and "tc" in text and "iptables" in text
    assert "sudo .venv/bin/flowerbed cluster up INVENTORY" in text


def test_manifest_says_delay_is_not_emulated_and_why() -> None:
    inv = make_inventory("emu")
    plan = plan_cluster(inv)
    features = EmulationFeatures(
        True, True, False, False, {"delay": "tc netem unavailable: Error: unknown"}
    )
    uses = feature_uses(inv, features, "htb", "random")
    state = ClusterState(plan, features, uses)

    manifest = manifest_features(state)

    assert manifest["delay"] == {
        "requested": True,
        "active": False,
        "detail": "tc netem unavailable: Error: unknown",
        "networks": ["cell"],
        "mechanism": "none",
    }
    assert manifest["rate"]["active"] is True
    assert manifest["loss"]["requested"] is False
    json.dumps(state.manifest())  # JSON-ready
