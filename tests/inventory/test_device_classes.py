"""Device classes: a class becomes a quota and memory; explicit keys override it."""

from __future__ import annotations

from pathlib import Path

import pytest

from inventory.device_classes import DEVICE_CLASSES, REFERENCE_GB6_SINGLE
from inventory.loader import InventoryError, load_inventory
from testbed.emulation import cgroups
from tests.inventory.test_loader import all_vars, base_doc, hosts, write


def test_each_class_is_its_cores_times_its_per_core_speed() -> None:
    for board in DEVICE_CLASSES.values():
        expected = board.cores * board.gb6_single / REFERENCE_GB6_SINGLE
        assert board.cpu_quota() == pytest.approx(expected, abs=0.025)
        # a twice faster machine needs half the cores for the same board
        assert board.cpu_quota(2.0) == pytest.approx(expected / 2, abs=0.025)
        assert board.cores == 4
    # the order the boards are known in: pi3 < jetson-nano < pi4 < pi5
    quota = {name: c.cpu_quota() for name, c in DEVICE_CLASSES.items()}
    assert quota["pi3"] < quota["jetson-nano"] < quota["pi4"] < quota["pi5"]
    with pytest.raises(ValueError, match="host_core_speed"):
        DEVICE_CLASSES["pi4"].cpu_quota(0)


def test_a_class_sets_quota_and_memory(tmp_path: Path) -> None:
    doc = base_doc()
    hosts(doc)["c1"]["device_class"] = "pi4"

    inv = load_inventory(write(tmp_path, doc))

    c1, c2 = inv.client("c1"), inv.client("c2")
    pi4 = DEVICE_CLASSES["pi4"]
    assert (c1.device_class, c1.cpu_quota, c1.memory_mb) == (
        "pi4",
        pi4.cpu_quota(),
        pi4.memory_mb,
    )
    assert c1.cpu_quota_source == "device class pi4"
    assert (c2.device_class, c2.cpu_quota, c2.cpu_quota_source) == (None, None, None)


def test_explicit_keys_override_the_class(tmp_path: Path) -> None:
    doc = base_doc()
    hosts(doc)["c1"].update(device_class="pi5", cpu_quota=0.3)
    hosts(doc)["c2"].update(device_class="pi5", memory_mb=512)

    inv = load_inventory(write(tmp_path, doc))

    c1, c2 = inv.client("c1"), inv.client("c2")
    assert (c1.cpu_quota, c1.memory_mb, c1.cpu_quota_source) == (
        0.3,
        DEVICE_CLASSES["pi5"].memory_mb,
        "inventory",
    )
    assert (c2.cpu_quota, c2.memory_mb) == (DEVICE_CLASSES["pi5"].cpu_quota(), 512)
    assert c1.device_class == c2.device_class == "pi5"


def test_group_vars_give_the_class_and_host_core_speed_scales_it(
    tmp_path: Path,
) -> None:
    doc = base_doc()
    doc["all"]["children"]["clients"]["vars"] = {"device_class": "jetson-nano"}
    all_vars(doc)["host_core_speed"] = 0.5
    hosts(doc)["c2"]["device_class"] = "pi3"  # the host's own beats its group's

    inv = load_inventory(write(tmp_path, doc))

    nano, pi3 = DEVICE_CLASSES["jetson-nano"], DEVICE_CLASSES["pi3"]
    assert inv.client("c1").device_class == "jetson-nano"
    assert inv.client("c1").cpu_quota == nano.cpu_quota(0.5)
    assert nano.cpu_quota(0.5) > nano.cpu_quota()
    assert inv.client("c2").cpu_quota == pi3.cpu_quota(0.5)


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("device_class", "pi9", "unknown device_class 'pi9'; the known classes are: "),
        ("device_class", 4, "device_class must name a class"),
        ("host_core_speed", 0, "host_core_speed must be a number > 0"),
    ],
)
def test_bad_class_names_the_known_ones(
    tmp_path: Path, key: str, value: object, said: str
) -> None:
    doc = base_doc()
    hosts(doc)["c1"]["device_class"] = "pi4"
    hosts(doc)["c1"][key] = value

    with pytest.raises(InventoryError, match=said) as info:
        load_inventory(write(tmp_path, doc))

    assert "c1" in str(info.value)
    if key == "device_class":
        for name in ("pi3", "pi4", "pi5", "jetson-nano"):
            assert name in str(info.value)


def test_the_apply_plan_gives_a_classed_node_its_class_quota(tmp_path: Path) -> None:
    doc = base_doc()
    hosts(doc)["c1"]["device_class"] = "pi4"

    inv = load_inventory(write(tmp_path, doc))
    limits = {lim.node: lim for lim in cgroups.plan_limits(inv, cores=2)}

    pi4 = DEVICE_CLASSES["pi4"]
    assert limits["c1"] == cgroups.NodeLimits(
        "c1", pi4.cpu_quota(), pi4.memory_mb, "device class pi4"
    )
    assert limits["c2"].source == "default share"
    argvs = cgroups.setup_argvs("v1", inv.name, limits["c1"])
    writes = {a[-1]: a[-2] for a in argvs if a[0] == "sh"}
    cpu = "/sys/fs/cgroup/cpu/flowerbed/t/c1/"
    assert writes[cpu + "cpu.cfs_quota_us"] == str(round(pi4.cpu_quota() * 100_000))
    memory = "/sys/fs/cgroup/memory/flowerbed/t/c1/memory.limit_in_bytes"
    assert writes[memory] == str(pi4.memory_mb << 20)
    described = cgroups.describe_limits("v1", tuple(limits.values()), 2)
    assert "c1 0.65 core, 4096 MiB (device class pi4" in described


def test_quotas_beyond_the_machine_are_said() -> None:
    pi5 = DEVICE_CLASSES["pi5"].cpu_quota()
    limits = tuple(
        cgroups.NodeLimits(f"n{i}", pi5, None, "device class pi5") for i in range(3)
    )

    described = cgroups.describe_limits("v1", limits, 2)

    assert f"add up to {3 * pi5:g} cores, more than this machine's 2" in described


def test_the_manifest_records_each_nodes_class_and_the_report_lists_them() -> None:
    from analysis.report_setup import nodes_section
    from testbed.campaign.manifest import build_manifest
    from testbed.campaign.model import load_campaign

    root = Path(__file__).resolve().parents[2]
    inv = load_inventory(root / "inventory" / "examples" / "lab.yaml")
    campaign = load_campaign(root / "campaigns" / "demo.yaml")

    manifest = build_manifest(campaign, inv, [], None)

    nodes = {n["name"]: n for n in manifest["inventory"]["nodes"]}
    assert set(nodes) == {"pi01", "pi02", "pi03", "pi04"}
    assert [nodes[n]["device_class"] for n in sorted(nodes)] == [
        "pi4",
        "pi4",
        "pi5",
        "pi5",
    ]
    assert nodes["pi01"]["cpu_quota"] == DEVICE_CLASSES["pi4"].cpu_quota()
    assert nodes["pi01"]["cpu_quota_source"] == "device class pi4"
    html = nodes_section(manifest)
    assert "Nodes per device class: pi4: 2, pi5: 2." in html
    assert "<td>pi03</td><td>pi5</td>" in html
    assert "does not list" in nodes_section({"inventory": {"clients": ["a"]}})
