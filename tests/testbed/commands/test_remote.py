"""testbed.commands.remote: the SSH remote-command builders, table-tested."""

from __future__ import annotations

import signal

import pytest

from testbed.commands.remote import (
    authorize_key_argv,
    env_prefix,
    remote_command,
    signal_argv,
)


@pytest.mark.parametrize(
    ("argv", "env", "timeout", "expected"),
    [
        (["echo", "hi"], None, None, "echo hi"),
        (["echo", "a b; rm -rf /"], None, None, "echo 'a b; rm -rf /'"),
        (["echo", "$(id)"], None, None, "echo '$(id)'"),
        (["echo", "it's"], None, None, "echo 'it'\"'\"'s'"),
        (["true"], {"A": "x y"}, None, "env 'A=x y' true"),
        (["sleep", "9"], None, 2.0, "timeout -k 2 3.000 sleep 9"),
    ],
)
def test_remote_command_quotes_every_word(
    argv: list[str], env: dict[str, str] | None, timeout: float | None, expected: str
) -> None:
    assert (
        remote_command(argv, env, timeout) == f"sh -c '\"$@\"; exit $?' sh {expected}"
    )


@pytest.mark.parametrize("name", ["A=B", "1X", "A B", "$(id)", ""])
def test_env_prefix_rejects_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="environment variable"):
        env_prefix({name: "v"})


@pytest.mark.parametrize(
    ("pgid", "sig", "expected"),
    [
        (1234, signal.SIGTERM, ["kill", "-s", "TERM", "--", "-1234"]),
        (77, signal.SIGKILL, ["kill", "-s", "KILL", "--", "-77"]),
        (77, 0, ["kill", "-s", "0", "--", "-77"]),
    ],
)
def test_signal_argv(pgid: int, sig: int, expected: list[str]) -> None:
    assert signal_argv(pgid, sig) == expected


@pytest.mark.parametrize("pgid", [0, 1, -5])
def test_signal_argv_refuses_init_and_all(pgid: int) -> None:
    with pytest.raises(ValueError):
        signal_argv(pgid, signal.SIGTERM)


def test_authorize_key_argv_rejects_private_material() -> None:
    with pytest.raises(ValueError):
        authorize_key_argv("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n", "x")
