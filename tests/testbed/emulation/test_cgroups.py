"""Per-node CPU and memory limits: planning, argv and the inventory keys behind them."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from inventory.loader import InventoryError, load_inventory
from testbed.commands.cgroupcmd import join_argv
from testbed.emulation import cgroups
from testbed.transport.executor import NetnsExecutor
from tests.inventory.test_loader import base_doc, hosts, write
from tests.testbed.emulation.inventories import make_inventory


@pytest.mark.parametrize(
    ("cores", "nodes", "share"),
    [(2, 3, 0.5), (2, 1, 1.0), (8, 3, 2.0), (2, 20, 0.09), (1, 100, 0.05)],
)
def test_default_share_keeps_one_for_the_server(
    cores: int, nodes: int, share: float
) -> None:
    assert cgroups.default_share(cores, nodes) == share


def test_plan_takes_the_inventorys_quota_and_the_default_for_the_rest() -> None:
    inv = make_inventory()
    pi1 = replace(inv.clients[0], cpu_quota=0.25, memory_mb=1024)
    inv = replace(inv, clients=(pi1, inv.clients[1]))

    limits = {lim.node: lim for lim in cgroups.plan_limits(inv, cores=2)}

    assert limits["pi1"] == cgroups.NodeLimits("pi1", 0.25, 1024, "inventory")
    assert limits["pi2"] == cgroups.NodeLimits(
        "pi2", cgroups.default_share(2, 2), None, "default share"
    )


def test_v1_setup_writes_quota_period_and_memory() -> None:
    limits = cgroups.NodeLimits("pi1", 0.25, 512, "inventory")

    argvs = cgroups.setup_argvs("v1", "lab", limits)

    writes = {a[-1]: a[-2] for a in argvs if a[0] == "sh"}
    base = "/sys/fs/cgroup/{}/flowerbed/lab/pi1/"
    assert ["mkdir", "-p", base.format("cpu").rstrip("/")] in argvs
    assert writes[base.format("cpu") + "cpu.cfs_quota_us"] == "25000"
    assert writes[base.format("cpu") + "cpu.cfs_period_us"] == "100000"
    assert writes[base.format("memory") + "memory.limit_in_bytes"] == str(512 << 20)


def test_v2_setup_enables_controllers_then_writes_cpu_max() -> None:
    argvs = cgroups.setup_argvs("v2", "lab", cgroups.NodeLimits("pi1", 2, None, "x"))

    writes = [(a[-1], a[-2]) for a in argvs if a[0] == "sh"]
    assert writes[0] == ("/sys/fs/cgroup/cgroup.subtree_control", "+cpu +memory")
    assert ("/sys/fs/cgroup/flowerbed/lab/pi1/cpu.max", "200000 100000") in writes
    assert ("/sys/fs/cgroup/flowerbed/lab/pi1/memory.max", "max") in writes


def test_remove_goes_nodes_first_then_the_cluster() -> None:
    argvs = cgroups.remove_argvs("v1", "lab", ["pi1", "pi2"])

    assert all(a[0] == "rmdir" for a in argvs)
    assert argvs[-2:] == [
        ["rmdir", "/sys/fs/cgroup/cpu/flowerbed/lab"],
        ["rmdir", "/sys/fs/cgroup/memory/flowerbed/lab"],
    ]


def test_join_wraps_outside_the_namespace_and_only_when_there_are_groups() -> None:
    assert join_argv((), ["true"]) == ["true"]
    plain = NetnsExecutor("fb-x")
    limited = NetnsExecutor("fb-x", cgroup_procs=("/a/cgroup.procs", "/b/cgroup.procs"))

    assert plain.wrap(["true"]) == ["ip", "netns", "exec", "fb-x", "true"]
    wrapped = limited.wrap(["true"])
    # the shell joins first (ip netns exec remounts /sys), then execs ip netns exec
    assert wrapped[:2] == ["sh", "-c"]
    assert wrapped[4] == "/a/cgroup.procs /b/cgroup.procs"
    assert wrapped[5:] == ["ip", "netns", "exec", "fb-x", "true"]


def test_join_really_moves_the_process_and_fails_loudly(tmp_path: Path) -> None:
    import subprocess

    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    done = subprocess.run(
        join_argv([str(procs)], ["sh", "-c", "echo $$"]),
        capture_output=True,
        text=True,
        check=True,
    )
    assert procs.read_text().strip() == done.stdout.strip()  # exec kept the pid
    missing = subprocess.run(
        join_argv([str(tmp_path / "gone" / "cgroup.procs")], ["true"]),
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 125
    assert "cannot join cgroup" in missing.stderr


@pytest.mark.parametrize(("quota", "threads"), [(0.25, 1), (1.0, 1), (1.6, 2), (4, 4)])
def test_threads_follow_the_quota(quota: float, threads: int) -> None:
    assert cgroups.threads_for(quota) == threads


def test_read_quota_reads_v1_and_v2_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import PurePosixPath

    monkeypatch.setattr(cgroups, "CGROUP_ROOT", PurePosixPath(tmp_path))
    v1 = tmp_path / "cpu" / "flowerbed" / "lab" / "pi1"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("25000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    v2 = tmp_path / "flowerbed" / "lab" / "pi1"
    v2.mkdir(parents=True)
    (v2 / "cpu.max").write_text("max 100000\n")

    assert cgroups.read_quota("v1", "lab", "pi1") == 0.25
    assert cgroups.read_quota("v2", "lab", "pi1") == math.inf
    assert cgroups.read_quota("v1", "lab", "pi2") is None


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("cpu_quota", 0, r"outside \(0, 1024\] cores"),
        ("cpu_quota", "half", "must be a number of cores"),
        ("memory_mb", 16, "below 64 MiB"),
        ("memory_mb", 1.5, "whole number of MiB"),
    ],
)
def test_inventory_limits_are_checked(
    tmp_path: Path, key: str, value: Any, said: str
) -> None:
    doc = base_doc()
    hosts(doc)["c1"][key] = value

    with pytest.raises(InventoryError, match=said) as info:
        load_inventory(write(tmp_path, doc))

    assert "c1" in str(info.value)


def test_inventory_limits_load(tmp_path: Path) -> None:
    doc = base_doc()
    hosts(doc)["c1"].update(cpu_quota=0.25, memory_mb=2048)

    inv = load_inventory(write(tmp_path, doc))

    assert (inv.client("c1").cpu_quota, inv.client("c1").memory_mb) == (0.25, 2048)
    assert (inv.client("c2").cpu_quota, inv.client("c2").memory_mb) == (None, None)
