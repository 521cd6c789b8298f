"""Tests for inventory/loader.py: parsing, inheritance, validation errors."""

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inventory.loader import (
    InventoryError,
    InventoryErrors,
    load_inventory,
    parse_inventory,
)
from inventory.models import Inventory
from inventory.profiles import DEFAULT_PROFILES

EXAMPLES = Path(__file__).resolve().parents[2] / "inventory" / "examples"
Doc = dict[str, Any]


def base_doc() -> Doc:
    """A valid inventory: a server and two clients on ethernet and wifi."""
    return {
        "all": {
            "vars": {
                "cluster_name": "t",
                "ansible_user": "pi",
                "management": {"subnet": "10.9.0.0/24", "server_address": "10.9.0.1"},
                "networks": {
                    "ethernet": {
                        "subnet": "10.9.1.0/24",
                        "server_address": "10.9.1.1",
                        "profile": "ethernet",
                    },
                    "wifi": {
                        "subnet": "10.9.2.0/24",
                        "server_address": "10.9.2.1",
                        "profile": {"base": "wifi", "uplink_mbit": 80},
                    },
                },
            },
            "children": {
                "server": {"hosts": {"srv": {"ansible_host": "10.9.0.1"}}},
                "clients": {
                    "hosts": {
                        "c1": client(1),
                        "c2": client(2),
                    }
                },
            },
        }
    }


def client(n: int) -> Doc:
    return {
        "ansible_host": f"10.9.0.{10 + n}",
        "interfaces": {
            "ethernet": {"ifname": "eth0", "ip": f"10.9.1.{10 + n}"},
            "wifi": {"ifname": "wlan0", "ip": f"10.9.2.{10 + n}"},
        },
        "node_config": {"partition-id": n - 1},
    }


def write(tmp_path: Path, doc: object, name: str = "inv.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def all_vars(doc: Doc) -> Doc:
    return doc["all"]["vars"]  # type: ignore[no-any-return]


def nets(doc: Doc) -> Doc:
    return all_vars(doc)["networks"]  # type: ignore[no-any-return]


def hosts(doc: Doc, group: str = "clients") -> Doc:
    return doc["all"]["children"][group]["hosts"]  # type: ignore[no-any-return]


def iface(doc: Doc, host: str, net: str) -> Doc:
    return hosts(doc)[host]["interfaces"][net]  # type: ignore[no-any-return]


def set_(
    getter: Callable[[Doc], Doc], key: str, value: object
) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        getter(doc)[key] = value

    return mutate


def delete(getter: Callable[[Doc], Doc], key: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        del getter(doc)[key]

    return mutate


def add_server(doc: Doc) -> None:
    hosts(doc, "server")["srv2"] = {"ansible_host": "10.9.0.2"}


def overlap_wifi_with_ethernet(doc: Doc) -> None:
    """Move wifi into the upper half of ethernet's subnet, addresses included."""
    nets(doc)["wifi"].update(subnet="10.9.1.128/25", server_address="10.9.1.129")
    for n, name in enumerate(("c1", "c2")):
        iface(doc, name, "wifi")["ip"] = f"10.9.1.{200 + n}"


def add_stranger(doc: Doc) -> None:
    doc["all"]["children"]["monitor"] = {"hosts": {"mon": None}}


# --- the happy path ------------------------------------------------------------


def test_base_doc_builds_the_models(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, base_doc()), ["ethernet", "wifi"])

    assert inv.name == "t"
    assert inv.server.name == "srv"
    assert [c.name for c in inv.clients] == ["c1", "c2"]
    assert inv.network_names == ("ethernet", "wifi")
    assert inv.network("wifi").profile.uplink_mbit == 80.0
    assert inv.network("ethernet").profile is DEFAULT_PROFILES["ethernet"]
    c2 = inv.client("c2")
    wlan = c2.interface("wifi")
    assert wlan is not None
    assert (wlan.ifname, wlan.address) == ("wlan0", ipaddress.IPv4Address("10.9.2.12"))
    assert c2.node_config_dict == {"partition-id": 1}
    assert c2.ansible_user == "pi"
    assert c2.ansible_port == 22
    assert inv.management is not None
    assert inv.management.subnet == ipaddress.IPv4Network("10.9.0.0/24")
    assert inv.superlink_port == 8000
    assert dict(inv.vars)["ansible_user"] == "pi"


@pytest.mark.parametrize(
    ("name", "clients", "networks"),
    [
        (
            "emulated.yaml",
            ["client1", "client2", "client3"],
            ["ethernet", "wifi", "5g"],
        ),
        ("lab.yaml", ["pi01", "pi02", "pi03", "pi04"], ["ethernet", "wifi", "5g"]),
    ],
)
def test_examples_load(name: str, clients: list[str], networks: list[str]) -> None:
    inv = load_inventory(EXAMPLES / name, networks)

    assert [c.name for c in inv.clients] == clients
    assert list(inv.network_names) == networks
    partitions = [c.node_config_dict["partition-id"] for c in inv.clients]
    assert partitions == list(range(len(clients)))
    for c in inv.clients:
        assert [i.ifname for i in c.interfaces] == ["eth0", "wlan0", "wwan0"]


def test_emulated_example_details() -> None:
    inv = load_inventory(EXAMPLES / "emulated.yaml")

    assert inv.name == "emu"
    assert inv.management is not None
    assert str(inv.management.subnet) == "10.77.0.0/24"
    for n, net in enumerate(inv.networks, start=1):
        assert str(net.subnet) == f"10.77.{n}.0/24"
        assert net.profile is DEFAULT_PROFILES[net.name]


def test_lab_example_details() -> None:
    inv = load_inventory(EXAMPLES / "lab.yaml")

    assert {c.ansible_user for c in inv.clients} == {"pi"}
    assert inv.server.ansible_user == "lab"
    assert str(inv.network("5g").subnet) == "10.45.0.0/24"
    assert str(inv.network("5g").server_address) == "10.45.0.1"
    assert all(c.ansible_host.startswith("192.168.50.") for c in inv.clients)
    assert inv.client("pi03").groups == ("clients", "shelf_b")


def test_cluster_name_defaults_to_file_stem(tmp_path: Path) -> None:
    doc = base_doc()
    del all_vars(doc)["cluster_name"]

    assert load_inventory(write(tmp_path, doc, "rack-7.yaml")).name == "rack-7"


def test_network_named_like_a_default_may_omit_its_profile(tmp_path: Path) -> None:
    doc = base_doc()
    del nets(doc)["ethernet"]["profile"]

    inv = load_inventory(write(tmp_path, doc))

    assert inv.network("ethernet").profile is DEFAULT_PROFILES["ethernet"]


def test_null_hosts_and_groups_are_allowed(tmp_path: Path) -> None:
    doc = base_doc()
    doc["all"]["children"]["clients"]["children"] = {"empty": None}
    hosts(doc)["c3"] = None

    inv = load_inventory(write(tmp_path, doc))

    c3 = inv.client("c3")
    assert (c3.ansible_host, c3.interfaces) == ("c3", ())


# --- inheritance ----------------------------------------------------------------


def nested_doc() -> Doc:
    """Clients in clients -> rack -> shelf, each level setting variables."""
    doc = base_doc()
    c1, c2 = hosts(doc).pop("c1"), hosts(doc).pop("c2")
    doc["all"]["children"]["clients"] = {
        "vars": {"ansible_user": "clientuser", "ansible_port": 2200, "color": "g"},
        "children": {
            "rack": {
                "vars": {"ansible_port": 2201, "color": "r"},
                "children": {
                    "shelf": {
                        "vars": {"color": "s"},
                        "hosts": {"c1": {**c1, "color": "h"}},
                    }
                },
                "hosts": {"c2": c2},
            }
        },
    }
    return doc


def test_all_vars_reach_every_host(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, base_doc()))

    assert inv.server.ansible_user == "pi"


def test_inner_groups_override_outer_and_hosts_override_groups(
    tmp_path: Path,
) -> None:
    inv = load_inventory(write(tmp_path, nested_doc()))

    c1, c2 = inv.client("c1"), inv.client("c2")
    assert c1.ansible_user == "clientuser"  # clients beats all
    assert c1.ansible_port == 2201  # rack beats clients
    assert c2.ansible_port == 2201
    assert inv.server.ansible_user == "pi"
    assert inv.server.ansible_port == 22


def test_host_var_beats_every_group(tmp_path: Path) -> None:
    doc = nested_doc()
    c1 = doc["all"]["children"]["clients"]["children"]["rack"]["children"]["shelf"]
    c1["hosts"]["c1"]["ansible_port"] = 2299

    inv = load_inventory(write(tmp_path, doc))

    assert inv.client("c1").ansible_port == 2299
    assert inv.client("c2").ansible_port == 2201


def test_groups_list_every_nesting_level(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, nested_doc()))

    assert inv.client("c1").groups == ("clients", "rack", "shelf")
    assert inv.client("c2").groups == ("clients", "rack")
    assert inv.server.groups == ("server",)


def test_clients_keep_file_order_across_subgroups(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, nested_doc()))

    # c1 is written first (inside shelf), c2 after it.
    assert [c.name for c in inv.clients] == ["c1", "c2"]


def test_group_vars_are_replaced_not_merged(tmp_path: Path) -> None:
    doc = base_doc()
    clients = doc["all"]["children"]["clients"]
    clients["vars"] = {"node_config": {"partition-id": 9, "batch-size": 32}}
    del hosts(doc)["c2"]["node_config"]

    inv = load_inventory(write(tmp_path, doc))

    # Ansible's default hash_behaviour=replace: the host's mapping wins whole.
    assert inv.client("c1").node_config_dict == {"partition-id": 0}
    assert inv.client("c2").node_config_dict == {"partition-id": 9, "batch-size": 32}


def test_a_capacity_ratio_reaches_the_node_config(tmp_path: Path) -> None:
    doc = base_doc()
    hosts(doc)["c1"]["node_config"] = {"partition-id": 0, "capacity-ratio": 0.25}

    inv = load_inventory(write(tmp_path, doc))

    assert inv.client("c1").node_config_dict["capacity-ratio"] == 0.25


def test_same_depth_groups_apply_in_name_order(tmp_path: Path) -> None:
    doc = base_doc()
    c1 = hosts(doc).pop("c1")
    doc["all"]["children"]["clients"]["children"] = {
        "zeta": {"vars": {"ansible_port": 2002}, "hosts": {"c1": c1}},
        "alpha": {"vars": {"ansible_port": 2001}, "hosts": {"c1": None}},
    }

    inv = load_inventory(write(tmp_path, doc))

    assert inv.client("c1").ansible_port == 2002
    assert inv.client("c1").groups == ("clients", "alpha", "zeta")


def test_interfaces_may_come_from_a_group(tmp_path: Path) -> None:
    doc = base_doc()
    shared = {"ethernet": {"ifname": "eth1", "ip": "10.9.1.50"}}
    doc["all"]["children"]["clients"]["vars"] = {"interfaces": shared}
    del hosts(doc)["c1"]["interfaces"]
    hosts(doc)["c2"]["interfaces"] = None  # explicitly none on c2

    inv = load_inventory(write(tmp_path, doc))

    assert inv.client("c1").interfaces[0].ifname == "eth1"
    assert inv.client("c2").interfaces == ()


# --- every bad input names file, host, key and fix ------------------------------

Mutation = Callable[[Doc], None]
CASES: list[
    tuple[str, Mutation, list[str] | None, str | None, str | None, str, str]
] = [
    # id, mutation, campaign networks, host, key, problem part, fix part
    (
        "no-server",
        lambda d: d["all"]["children"].pop("server"),
        None,
        None,
        "all.children.server",
        "no host in group 'server'",
        "exactly one host",
    ),
    (
        "several-servers",
        add_server,
        None,
        None,
        "all.children.server",
        "2 hosts (srv, srv2)",
        "exactly one host",
    ),
    (
        "no-clients",
        lambda d: d["all"]["children"]["clients"].pop("hosts"),
        None,
        None,
        "all.children.clients",
        "no host in group 'clients'",
        "at least one host",
    ),
    (
        "unknown-network-in-interfaces",
        lambda d: hosts(d)["c1"]["interfaces"].update(
            {"wfi": {"ifname": "wlan1", "ip": "10.9.2.99"}}
        ),
        None,
        "c1",
        "interfaces.wfi",
        "unknown network 'wfi' (did you mean 'wifi'?); all.vars.networks has: "
        "ethernet, wifi",
        "declare this one under all.vars.networks",
    ),
    (
        "campaign-network-unknown",
        lambda d: None,
        ["wifi", "lte"],
        None,
        "networks.lte",
        "the campaign uses network 'lte'",
        "declare 'lte' under all.vars.networks, or drop it from the campaign",
    ),
    (
        "duplicate-client-ip",
        set_(lambda d: iface(d, "c2", "wifi"), "ip", "10.9.2.11"),
        None,
        "c2",
        "interfaces.wifi.ip",
        "10.9.2.11 is already c1's address on 'wifi'",
        "its own address on every network",
    ),
    (
        "client-ip-is-server-address",
        set_(lambda d: iface(d, "c1", "ethernet"), "ip", "10.9.1.1"),
        None,
        "c1",
        "interfaces.ethernet.ip",
        "10.9.1.1 is already the server's address on 'ethernet'",
        "its own address on every network",
    ),
    (
        "duplicate-management-address",
        set_(lambda d: hosts(d)["c2"], "ansible_host", "10.9.0.11"),
        None,
        "c2",
        "ansible_host",
        "10.9.0.11 is already c1's management address",
        "its own address on every network",
    ),
    (
        "client-management-is-server-management",
        set_(lambda d: hosts(d)["c1"], "ansible_host", "10.9.0.1"),
        None,
        "c1",
        "ansible_host",
        "10.9.0.1 is already the server's management address",
        "its own address on every network",
    ),
    (
        "client-ip-outside-subnet",
        set_(lambda d: iface(d, "c2", "wifi"), "ip", "10.9.9.12"),
        None,
        "c2",
        "interfaces.wifi.ip",
        "10.9.9.12 is outside subnet 10.9.2.0/24 of network 'wifi'",
        "give c2 an address inside 10.9.2.0/24, or change the subnet of 'wifi'",
    ),
    (
        "server-address-outside-subnet",
        set_(lambda d: nets(d)["wifi"], "server_address", "10.9.3.1"),
        None,
        None,
        "networks.wifi.server_address",
        "10.9.3.1 is outside subnet 10.9.2.0/24",
        "give the server an address inside 10.9.2.0/24",
    ),
    (
        "server-address-is-network-address",
        set_(lambda d: nets(d)["wifi"], "server_address", "10.9.2.0"),
        None,
        None,
        "networks.wifi.server_address",
        "10.9.2.0 is the network address of 10.9.2.0/24",
        "like 10.9.2.1",
    ),
    (
        "server-address-is-broadcast",
        set_(lambda d: nets(d)["ethernet"], "server_address", "10.9.1.255"),
        None,
        None,
        "networks.ethernet.server_address",
        "10.9.1.255 is the broadcast address",
        "host address of 10.9.1.0/24",
    ),
    (
        "management-address-outside-subnet",
        set_(lambda d: hosts(d)["c1"], "ansible_host", "192.168.1.5"),
        None,
        "c1",
        "ansible_host",
        "192.168.1.5 is outside management subnet 10.9.0.0/24",
        "give c1 a management address inside 10.9.0.0/24",
    ),
    (
        "duplicate-ifname",
        set_(lambda d: iface(d, "c1", "wifi"), "ifname", "eth0"),
        None,
        "c1",
        "interfaces.wifi.ifname",
        "ifname eth0 is already used for network 'ethernet'",
        "its own name",
    ),
    (
        "ifname-too-long",
        set_(lambda d: iface(d, "c1", "wifi"), "ifname", "wlan-much-too-long0"),
        None,
        "c1",
        "interfaces.wifi.ifname",
        "'wlan-much-too-long0' is not a valid Linux interface name",
        "like wlan0",
    ),
    (
        "invalid-host-name",
        lambda d: hosts(d).update({"pi[01:04]": None}),
        None,
        None,
        "all.children.clients.hosts.pi[01:04]",
        "'pi[01:04]' is not a valid host name",
        "listing each host on its own",
    ),
    (
        "invalid-network-name",
        set_(
            nets,
            "-lte",
            {"subnet": "10.9.5.0/24", "server_address": "10.9.5.1", "profile": "5g"},
        ),
        None,
        None,
        "networks.-lte",
        "'-lte' is not a valid network name",
        "starting with a letter or digit",
    ),
    (
        "network-named-management",
        set_(
            nets,
            "management",
            {"subnet": "10.9.5.0/24", "server_address": "10.9.5.1", "profile": "5g"},
        ),
        None,
        None,
        "networks.management",
        "'management' names the control network",
        "rename this network",
    ),
    (
        "invalid-cluster-name",
        set_(all_vars, "cluster_name", "my cluster"),
        None,
        None,
        "cluster_name",
        "'my cluster' is not a valid cluster name",
        "letters, digits",
    ),
    (
        "client-missing-campaign-interface",
        lambda d: hosts(d)["c2"]["interfaces"].pop("wifi"),
        ["ethernet", "wifi"],
        "c2",
        "interfaces.wifi",
        "c2 has no interface on network 'wifi', which the campaign uses",
        "ip: <address in 10.9.2.0/24>",
    ),
    (
        "profile-negative-rate",
        lambda d: nets(d)["wifi"]["profile"].update({"uplink_mbit": -5}),
        None,
        None,
        "networks.wifi.profile.uplink_mbit",
        "uplink_mbit must be > 0",
        "give uplink_mbit an allowed value",
    ),
    (
        "profile-loss-100",
        set_(
            nets,
            "ethernet",
            {
                **base_doc()["all"]["vars"]["networks"]["ethernet"],
                "profile": {"base": "ethernet", "loss_pct": 100},
            },
        ),
        None,
        None,
        "networks.ethernet.profile.loss_pct",
        "loss_pct must be in [0, 100)",
        "allowed value",
    ),
    (
        "profile-unknown-key",
        lambda d: nets(d)["wifi"]["profile"].update({"delay": 3}),
        None,
        None,
        "networks.wifi.profile.delay",
        "unknown profile key 'delay' (did you mean 'delay_ms'?)",
        "use only: base, downlink_mbit",
    ),
    (
        "profile-unknown-default",
        set_(lambda d: nets(d)["ethernet"], "profile", "gigabit"),
        None,
        None,
        "networks.ethernet.profile",
        "unknown default profile 'gigabit'",
        "ethernet, wifi, 5g, 5g-commercial",
    ),
    (
        "port-not-int",
        set_(lambda d: hosts(d)["c1"], "ansible_port", "22"),
        None,
        "c1",
        "ansible_port",
        "a port must be an integer, got str '22'",
        "plain number",
    ),
    (
        "port-out-of-range",
        set_(lambda d: hosts(d)["c1"], "ansible_port", 70000),
        None,
        "c1",
        "ansible_port",
        "port 70000 is outside 1-65535",
        "1-65535",
    ),
    (
        "superlink-port-not-int",
        set_(all_vars, "superlink_port", 8000.5),
        None,
        None,
        "superlink_port",
        "a port must be an integer",
        "plain number",
    ),
    (
        "ip-not-parseable",
        set_(lambda d: iface(d, "c1", "wifi"), "ip", "10.9.2.300"),
        None,
        "c1",
        "interfaces.wifi.ip",
        "'10.9.2.300' is not an IPv4 address",
        "like 10.77.1.11",
    ),
    (
        "ip-with-prefix",
        set_(lambda d: iface(d, "c1", "wifi"), "ip", "10.9.2.11/24"),
        None,
        "c1",
        "interfaces.wifi.ip",
        "has a prefix length",
        "bare address",
    ),
    (
        "ip-not-text",
        set_(lambda d: iface(d, "c1", "wifi"), "ip", 167772171),
        None,
        "c1",
        "interfaces.wifi.ip",
        "expected an IPv4 address, got int 167772171",
        "as text",
    ),
    (
        "subnet-host-bits",
        set_(lambda d: nets(d)["wifi"], "subnet", "10.9.2.1/24"),
        None,
        None,
        "networks.wifi.subnet",
        "10.9.2.1/24 has host bits set",
        "write the subnet as 10.9.2.0/24",
    ),
    (
        "subnet-overlap",
        overlap_wifi_with_ethernet,
        None,
        None,
        "networks.wifi.subnet",
        "10.9.1.128/25 overlaps 10.9.1.0/24 of network 'ethernet'",
        "its own subnet",
    ),
    (
        "network-unknown-key",
        lambda d: nets(d)["wifi"].update(subent="10.9.2.0/24"),
        None,
        None,
        "networks.wifi.subent",
        "unknown key 'subent' (did you mean 'subnet'?)",
        "use only: subnet, server_address, profile",
    ),
    (
        "interface-unknown-key",
        lambda d: iface(d, "c1", "wifi").update(ifnam="wlan0"),
        None,
        "c1",
        "interfaces.wifi.ifnam",
        "unknown interface key 'ifnam' (did you mean 'ifname'?)",
        "only ifname and ip",
    ),
    (
        "management-unknown-key",
        lambda d: all_vars(d)["management"].update(profile="ethernet"),
        None,
        None,
        "management.profile",
        "unknown key 'profile'",
        "use only: subnet, server_address",
    ),
    (
        "interface-missing-ip",
        delete(lambda d: iface(d, "c1", "wifi"), "ip"),
        None,
        "c1",
        "interfaces.wifi",
        "interface on 'wifi' has no ip",
        "add ip to interfaces.wifi of c1",
    ),
    (
        "network-missing-subnet",
        delete(lambda d: nets(d)["wifi"], "subnet"),
        None,
        None,
        "networks.wifi",
        "network 'wifi' has no subnet",
        "add subnet",
    ),
    (
        "node-config-nested",
        set_(lambda d: hosts(d)["c1"], "node_config", {"partition-id": [0, 1]}),
        None,
        "c1",
        "node_config.partition-id",
        "node_config values must be text, numbers or booleans, got list",
        "single value",
    ),
    (
        "capacity-ratio-above-one",
        set_(lambda d: hosts(d)["c1"], "node_config", {"capacity-ratio": 2}),
        None,
        "c1",
        "node_config.capacity-ratio",
        "capacity-ratio must be a number in (0, 1]",
        "capacity-ratio: 0.5",
    ),
    (
        "capacity-ratio-text",
        set_(lambda d: hosts(d)["c1"], "node_config", {"capacity-ratio": "half"}),
        None,
        "c1",
        "node_config.capacity-ratio",
        "got str 'half'",
        "(1 = the full model)",
    ),
    (
        "unknown-group-key",
        lambda d: d["all"]["children"]["clients"].update(host={}),
        None,
        None,
        "all.children.clients.host",
        "unknown group key 'host' (did you mean 'hosts'?)",
        "hosts, children and vars",
    ),
    (
        "host-in-no-role",
        add_stranger,
        None,
        "mon",
        None,
        "mon is in neither 'server' nor 'clients'",
        "put it in 'clients'",
    ),
    (
        "cluster-key-in-host",
        set_(lambda d: hosts(d)["c1"], "networks", {}),
        None,
        "c1",
        "all.children.clients.hosts.c1.networks",
        "describes the whole cluster",
        "move 'networks' to all.vars",
    ),
    (
        "extra-top-level-key",
        lambda d: d.update(clients={"hosts": {}}),
        None,
        None,
        "clients",
        "top-level key 'clients' is not 'all'",
        "nest group 'clients' under all.children",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "campaign", "host", "key", "problem_part", "fix_part"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_input_names_file_host_key_and_fix(
    tmp_path: Path,
    mutate: Mutation,
    campaign: list[str] | None,
    host: str | None,
    key: str | None,
    problem_part: str,
    fix_part: str,
) -> None:
    doc = base_doc()
    mutate(doc)
    path = write(tmp_path, doc)

    with pytest.raises(InventoryError) as caught:
        load_inventory(path, campaign)

    err = caught.value
    assert type(err) is InventoryError, str(err)  # exactly one problem
    message = str(err)
    assert (err.host, err.key) == (host, key)
    assert message.startswith(f"{path}:{err.line}: ")
    assert isinstance(err.line, int)
    if host is not None:
        assert f"host '{host}'" in message
    if key is not None:
        assert f"key '{key}'" in message
    assert problem_part in err.problem
    assert f"Fix: {err.fix}." in message
    assert fix_part in err.fix


def test_line_points_at_the_offending_key(tmp_path: Path) -> None:
    doc = base_doc()
    iface(doc, "c2", "wifi")["ip"] = "10.9.9.12"
    path = write(tmp_path, doc)
    lines = path.read_text().splitlines()
    expected = [i for i, text in enumerate(lines, 1) if "10.9.9.12" in text]

    with pytest.raises(InventoryError) as caught:
        load_inventory(path)

    assert [caught.value.line] == expected


def test_message_matches_documented_shape(tmp_path: Path) -> None:
    text = (EXAMPLES / "emulated.yaml").read_text()
    path = tmp_path / "emulated.yaml"
    path.write_text(text.replace("10.77.2.12", "10.77.9.12"))
    line = 1 + text.splitlines().index(
        "            wifi: {ifname: wlan0, ip: 10.77.2.12}"
    )

    with pytest.raises(InventoryError) as caught:
        load_inventory(path)

    assert str(caught.value) == (
        f"{path}:{line}: host 'client2', key 'interfaces.wifi.ip': 10.77.9.12 is "
        "outside subnet 10.77.2.0/24 of network 'wifi'. Fix: give client2 an "
        "address inside 10.77.2.0/24, or change the subnet of 'wifi'."
    )


def test_inherited_value_error_points_into_the_group(tmp_path: Path) -> None:
    doc = base_doc()
    doc["all"]["children"]["clients"]["vars"] = {"ansible_port": "ssh"}
    path = write(tmp_path, doc)
    stripped = [text.strip() for text in path.read_text().splitlines()]
    line = 1 + stripped.index("ansible_port: ssh")

    with pytest.raises(InventoryErrors) as caught:
        load_inventory(path)

    # Both clients inherit the bad value; each error names its host.
    assert [(e.host, e.key, e.line) for e in caught.value.errors] == [
        ("c1", "ansible_port", line),
        ("c2", "ansible_port", line),
    ]


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    doc = base_doc()
    iface(doc, "c1", "wifi")["ifname"] = "x" * 16
    nets(doc)["ethernet"]["profile"] = {"base": "ethernet", "delay_ms": -1}
    path = write(tmp_path, doc)

    with pytest.raises(InventoryErrors) as caught:
        load_inventory(path)

    err = caught.value
    assert isinstance(err, InventoryError)
    assert [e.key for e in err.errors] == [
        "networks.ethernet.profile.delay_ms",
        "interfaces.wifi.ifname",
    ]
    message = str(err)
    assert message.startswith(f"{path}: 2 problems")
    assert all(str(e) in message for e in err.errors)


@pytest.mark.parametrize(
    ("text", "problem_part", "line"),
    [
        ("all: [unclosed\n", "not valid YAML", 2),
        ("all:\n  vars: {a: 1}\n  vars: {a: 2}\n", "duplicate key 'vars'", 3),
        ("all:\n\tvars: {}\n", "not valid YAML", 2),
        ("", "got an empty file", None),
        ("- all\n", "got list ['all']", None),
        ("servers:\n  hosts: {}\n", "top-level 'all' key", 1),
        ("all: {? [a, b] : 1}\n", "not a plain value", 1),
    ],
)
def test_file_that_is_no_inventory(
    tmp_path: Path, text: str, problem_part: str, line: int | None
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)

    with pytest.raises(InventoryError) as caught:
        load_inventory(path)

    assert type(caught.value) is InventoryError
    assert problem_part in caught.value.problem
    assert caught.value.line == line
    assert str(caught.value).startswith(str(path))
    assert "Fix: " in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"

    with pytest.raises(InventoryError) as caught:
        load_inventory(path)

    assert str(caught.value) == (
        f"{path}: file not found. Fix: check the path, or start from "
        "inventory/examples/emulated.yaml."
    )


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="is a directory"):
        load_inventory(tmp_path)


def test_group_cycle_is_an_error_not_a_hang(tmp_path: Path) -> None:
    doc = base_doc()
    doc["all"]["children"]["a"] = {"children": {"b": None}}
    doc["all"]["children"]["b"] = {"children": {"a": None}}

    with pytest.raises(InventoryError, match="contain each other"):
        load_inventory(write(tmp_path, doc))


def test_server_interface_must_match_server_address(tmp_path: Path) -> None:
    doc = base_doc()
    hosts(doc, "server")["srv"]["interfaces"] = {
        "wifi": {"ifname": "wlan0", "ip": "10.9.2.1"},
        "ethernet": {"ifname": "eth0", "ip": "10.9.1.2"},
    }

    with pytest.raises(InventoryError) as caught:
        load_inventory(write(tmp_path, doc))

    assert caught.value.host == "srv"
    assert caught.value.key == "interfaces.ethernet.ip"
    assert "differs from networks.ethernet.server_address 10.9.1.1" in str(caught.value)


def test_loopback_management_addresses_may_repeat(tmp_path: Path) -> None:
    doc = base_doc()
    del all_vars(doc)["management"]
    for name, port in (("c1", 2201), ("c2", 2202)):
        hosts(doc)[name].update(ansible_host="127.0.0.1", ansible_port=port)

    inv = load_inventory(write(tmp_path, doc))

    assert [c.ansible_port for c in inv.clients] == [2201, 2202]


def test_campaign_networks_given_as_one_string(tmp_path: Path) -> None:
    doc = base_doc()
    hosts(doc)["c2"]["interfaces"].pop("ethernet")
    path = write(tmp_path, doc)

    load_inventory(path, "wifi")
    with pytest.raises(InventoryError, match="no interface on network 'ethernet'"):
        load_inventory(path, "ethernet")


# --- never anything but an Inventory or an InventoryError -----------------------

VOCABULARY = [
    "all", "vars", "children", "hosts", "server", "clients", "networks",
    "management", "interfaces", "node_config", "subnet", "server_address",
    "profile", "ifname", "ip", "ansible_host", "ansible_user", "ansible_port",
    "cluster_name", "superlink_port", "base", "downlink_mbit", "uplink_mbit",
    "delay_ms", "loss_pct", "wifi", "ethernet", "5g", "c1", "eth0",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        ["10.9.1.11", "10.9.1.0/24", "10.9.1.1/24", "::1", "wlan0", "wifi", "x" * 20]
    ),
    st.text(max_size=12),
)
KEYS = st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=8), st.integers())
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4)
    ),
    max_leaves=20,
)


def paths_in(doc: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found.extend(paths_in(value, (*prefix, key)))
    return found


def replace_at(doc: Doc, path: tuple[Any, ...], value: object) -> None:
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def expect_inventory_or_error(build: Callable[[], Inventory]) -> None:
    try:
        result = build()
    except InventoryError as err:
        assert str(err)
        return
    assert isinstance(result, Inventory)


CAMPAIGNS = st.none() | st.lists(st.sampled_from(["wifi", "ethernet", "5g", ""]))


@settings(max_examples=300, deadline=None)
@given(doc=VALUES, campaign=CAMPAIGNS)
def test_arbitrary_documents_never_crash(
    doc: object, campaign: list[str] | None
) -> None:
    expect_inventory_or_error(lambda: parse_inventory(doc, "fuzz.yaml", campaign))
    wrapped = {"all": doc}
    expect_inventory_or_error(lambda: parse_inventory(wrapped, "fuzz.yaml", campaign))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), campaign=CAMPAIGNS)
def test_one_bad_value_anywhere_never_crashes(
    data: st.DataObject, campaign: list[str] | None
) -> None:
    doc = base_doc()
    path = data.draw(st.sampled_from(paths_in(doc)))
    replace_at(doc, path, data.draw(VALUES))

    expect_inventory_or_error(lambda: parse_inventory(doc, "fuzz.yaml", campaign))


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    text=st.text(
        alphabet=st.sampled_from(list("all:vars{}[]-&*!? \n\t'\"#0.")), max_size=60
    )
)
def test_arbitrary_text_files_never_crash(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)

    expect_inventory_or_error(lambda: load_inventory(path))
