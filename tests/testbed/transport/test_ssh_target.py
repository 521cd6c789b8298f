"""testbed.transport.ssh: targets refuse hostile names and follow the inventory."""

from __future__ import annotations

from pathlib import Path

import pytest

from inventory.models import Host
from testbed.transport.ssh import SSHTarget, target_for_host


@pytest.mark.parametrize(
    "host",
    [
        "a b",
        "h\n[x]:22 ssh-ed25519 AAAA",
        "*",
        "h,other",
        "[h]:22",
        "-oProxyCommand=x",
        "",
    ],
)
def test_target_rejects_hostile_host_names(host: str) -> None:
    with pytest.raises(ValueError, match="invalid host"):
        SSHTarget(name="pi01", host=host, user="pi", known_hosts=Path("kh"))


@pytest.mark.parametrize("user", ["pi me", "$(id)", "-l", "root\n"])
def test_target_rejects_hostile_user_names(user: str) -> None:
    with pytest.raises(ValueError, match="invalid user"):
        SSHTarget(name="pi01", host="10.0.0.1", user=user, known_hosts=Path("kh"))


def test_target_for_inventory_host() -> None:
    host = Host(
        name="pi01",
        ansible_host="192.168.50.11",
        ansible_user="pi",
        ansible_port=2222,
        ssh_key_file=Path("/keys/lab"),
    )
    target = target_for_host(host, Path("/kh"), accept_new=True)
    assert (target.name, target.host, target.port, target.user) == (
        "pi01",
        "192.168.50.11",
        2222,
        "pi",
    )
    assert (target.key_file, target.known_hosts, target.accept_new) == (
        Path("/keys/lab"),
        Path("/kh"),
        True,
    )
    assert target.where == "host pi01 (192.168.50.11:2222, user pi)"
    assert target.known_hosts_name == "[192.168.50.11]:2222"
