"""Provisioning: the remote probe, the pure builders, shaping a real interface."""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess
import tarfile
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest

from inventory.models import Host, Interface, LinkProfile
from testbed.commands import shaping
from testbed.commands.provisioncmd import STAMPS, parse_probe, probe_argv, uv_argv
from testbed.lab.provision import (
    ProvisionOptions,
    _HostProvisioner,
    _MachineLocks,
    app_archive,
    wheelhouse_dir,
)
from testbed.lab.wheelhouse import Pin, Wheelhouse
from testbed.transport.executor import LocalExecutor, NetnsExecutor


def test_probe_reads_digests_boot_id_and_layout(tmp_path: Path) -> None:
    base, wheels = tmp_path / "fb", tmp_path / "wh"
    (base / "runs").mkdir(parents=True)
    (base / "tls").mkdir()
    (base / "tls" / "ca.crt").write_text("cert")
    wheels.mkdir()
    (wheels / "MANIFEST").write_text("m")

    result = LocalExecutor().run(probe_argv(str(base), str(wheels)), check=False)
    digests, boot_id = parse_probe(result.stdout, str(wheels))

    import hashlib

    assert digests["ca"] == hashlib.sha256(b"cert").hexdigest()
    assert digests["wheelhouse"] == hashlib.sha256(b"m").hexdigest()
    assert digests["layout"] == "ok"
    assert "venv" not in digests and "key" not in digests
    assert boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_probe_of_a_fresh_host_finds_nothing(tmp_path: Path) -> None:
    result = LocalExecutor().run(
        probe_argv(str(tmp_path / "none"), str(tmp_path / "nowh")), check=False
    )
    digests, boot_id = parse_probe(result.stdout, str(tmp_path / "nowh"))
    assert digests == {} and boot_id


def test_hostile_paths_reach_the_probe_as_data(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    base = f"{tmp_path}/x; touch {marker}"

    LocalExecutor().run(probe_argv(base, f"$(touch {marker})"), check=False)

    assert not marker.exists()


def test_uv_sync_is_offline_unless_asked() -> None:
    argv = uv_argv("/u/uv", "/fb/venv", "/wh", offline=True)
    assert argv[:3] == ["/u/uv", "pip", "sync"]
    assert "--no-index" in argv and argv[-1] == "/wh/requirements.txt"
    assert "--no-index" not in uv_argv("/u/uv", "/fb/venv", "/wh", offline=False)


def test_wheelhouse_defaults_under_flowerbed_dir() -> None:
    host = Host("pi1", "10.0.0.1", flowerbed_dir="/srv/fb")
    assert wheelhouse_dir(host) == "/srv/fb/wheelhouse"
    shared = Host("pi1", "10.0.0.1", wheelhouse_dir="/nfs/wh")
    assert wheelhouse_dir(shared) == "/nfs/wh"


def test_app_archive_is_deterministic_and_skips_caches(tmp_path: Path) -> None:
    app = tmp_path / "myapp"
    (app / "pkg" / "__pycache__").mkdir(parents=True)
    (app / "pyproject.toml").write_text("[project]\n")
    (app / "pkg" / "mod.py").write_text("x = 1\n")
    (app / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"junk")

    first = app_archive(app)
    os.utime(app / "pkg" / "mod.py", (1, 1))
    time.sleep(1.1)  # gzip headers carry a time unless told not to
    second = app_archive(app)

    assert first == second
    with tarfile.open(fileobj=BytesIO(first)) as tar:
        names = tar.getnames()
    assert "myapp/pkg/mod.py" in names and "myapp/pyproject.toml" in names
    assert not any("__pycache__" in n for n in names)
    (app / "pkg" / "mod.py").write_text("x = 2\n")
    assert app_archive(app) != first


def test_stamps_are_relative_paths() -> None:
    assert all(not p.startswith("/") for p in STAMPS.values())


# --- shaping a real interface (a veth in a namespace this test creates) ----------


@pytest.fixture
def node() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root for namespaces and tc")
    ns = "fbp" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(
            [
                "ip",
                "link",
                "add",
                f"{ns}a",
                "type",
                "veth",
                "peer",
                "name",
                "wlan0",
                "netns",
                ns,
            ],  # fmt: skip
            check=True,
        )
        subprocess.run(["ip", "-n", ns, "link", "set", "wlan0", "up"], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", f"{ns}a"], check=False)
        subprocess.run(["ip", "netns", "del", ns], check=True)


def _provisioner(ns: str, profile: LinkProfile, tmp_path: Path) -> _HostProvisioner:
    host = Host(
        "pi1",
        "10.0.0.1",
        ansible_user="root",
        interfaces=(Interface("wifi", "wlan0", ipaddress.IPv4Address("10.0.2.11")),),
    )
    wheelhouse = Wheelhouse(tmp_path, (Pin("x", "1"),), "d", ())
    options = ProvisionOptions(
        wheelhouse=wheelhouse, server_dir=tmp_path, shape={"wifi": profile}
    )
    return _HostProvisioner(
        host, NetnsExecutor(ns), options, _MachineLocks(), lambda _: None
    )


@pytest.mark.root
def test_shaping_applies_the_profile_uplink_once(node: str, tmp_path: Path) -> None:
    like_5g = LinkProfile(downlink_mbit=100, uplink_mbit=12.5)

    first = _provisioner(node, like_5g, tmp_path).shaping()
    second = _provisioner(node, like_5g, tmp_path).shaping()
    faster = _provisioner(
        node, LinkProfile(downlink_mbit=100, uplink_mbit=40), tmp_path
    ).shaping()

    assert first is not None and "12.5 Mbit/s" in first
    assert second is None  # nothing to do the second time
    assert faster is not None and "40 Mbit/s" in faster
    shown = NetnsExecutor(node).run(shaping.class_show("wlan0")).stdout
    rates = [c.rate_bit for c in shaping.parse_class_show(shown)]
    assert rates == [40_000_000]


@pytest.mark.root
def test_shaping_reports_delay_it_could_not_apply(node: str, tmp_path: Path) -> None:
    with_delay = LinkProfile(downlink_mbit=100, uplink_mbit=10, delay_ms=20)
    has_netem = (
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                node,
                "tc",
                "qdisc",
                "add",
                "dev",
                "lo",
                "root",
                "netem",
                "delay",
                "1ms",
            ],  # fmt: skip
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )

    detail = _provisioner(node, with_delay, tmp_path).shaping()
    again = _provisioner(node, with_delay, tmp_path).shaping()

    assert detail is not None
    if has_netem:
        assert "delay 20 ms" in detail
    else:
        assert "delay NOT applied" in detail and "netem" in detail
    assert again is None
