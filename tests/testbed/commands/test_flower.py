from pathlib import Path

import pytest

from testbed.commands import flower

BIN = Path("/venv/bin")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"host": "10.77.3.1", "port": 8000},
            [
                "/venv/bin/flower-superlink",
                "--host",
                "10.77.3.1",
                "--port",
                "8000",
                "--disable-runtime-dependency-installation",
                "--insecure",
            ],
        ),
        (
            {
                "host": "0.0.0.0",
                "port": 9000,
                "database": Path("/r/state.db"),  # noqa: S104
                "tls": flower.Tls(Path("ca.crt"), Path("s.pem"), Path("s.key")),
                "supernode_auth": True,
            },
            [
                "/venv/bin/flower-superlink",
                "--host",
                "0.0.0.0",
                "--port",
                "9000",
                "--disable-runtime-dependency-installation",
                "--database",
                "/r/state.db",
                "--ssl-ca-certfile",
                "ca.crt",
                "--ssl-certfile",
                "s.pem",
                "--ssl-keyfile",
                "s.key",
                "--enable-supernode-auth",
            ],
        ),
    ],
)
def test_superlink_argv(kwargs: dict, expected: list[str]) -> None:
    assert flower.superlink_argv(BIN, **kwargs) == expected


def test_supernode_auth_without_tls_is_refused() -> None:
    with pytest.raises(ValueError, match="needs TLS"):
        flower.superlink_argv(BIN, "10.0.0.1", 8000, supernode_auth=True)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"partition-id": 0, "num-partitions": 3}, "partition-id=0 num-partitions=3"),
        ({"flowerbed-node": "pi01"}, 'flowerbed-node="pi01"'),
        ({"fast": True, "ratio": 0.5}, "fast=true ratio=0.5"),
        ({"name": "a b; rm -rf /"}, 'name="a b; rm -rf /"'),
    ],
)
def test_node_config_arg(config: dict, expected: str) -> None:
    assert flower.node_config_arg(config) == expected


@pytest.mark.parametrize(
    "config",
    [{"bad key": 1}, {"k=v": 1}, {"name": 'x" other="y'}, {"name": "line\nbreak"}],
)
def test_node_config_arg_refuses_what_would_break_out(config: dict) -> None:
    with pytest.raises(ValueError):
        flower.node_config_arg(config)


def test_supernode_argv() -> None:
    argv = flower.supernode_argv(
        BIN, "10.77.1.1:8000", {"partition-id": 1}, runtime_port=9095
    )
    assert argv == [
        "/venv/bin/flower-supernode",
        "--superlink",
        "10.77.1.1:8000",
        "--node-config",
        "partition-id=1",
        "--port",
        "9095",
        "--insecure",
    ]
    tls = flower.supernode_argv(
        BIN, "s:1", {}, root_certificates=Path("ca.crt"), auth_private_key=Path("k")
    )
    assert tls[-4:] == [
        "--root-certificates",
        "ca.crt",
        "--auth-supernode-private-key",
        "k",
    ]
    assert "--insecure" not in tls


def test_connection_and_run_config_toml() -> None:
    assert flower.connection_toml("10.77.1.1:8000") == (
        '[superlink.flowerbed]\naddress = "10.77.1.1:8000"\ninsecure = true\n'
    )
    text = flower.run_config_toml(
        {
            "num-server-rounds": 2,
            "event-log": '/r/"x"/e.jsonl',
            "learning-rate": 0.05,
            "fast": False,
        }
    )
    import tomllib

    assert tomllib.loads(text) == {
        "num-server-rounds": 2,
        "event-log": '/r/"x"/e.jsonl',
        "learning-rate": 0.05,
        "fast": False,
    }


def test_flwr_commands() -> None:
    assert flower.flwr_run_argv(BIN, Path("app"), Path("rc.toml")) == [
        "/venv/bin/flwr",
        "run",
        "app",
        "flowerbed",
        "--run-config",
        "rc.toml",
        "--format",
        "json",
    ]
    assert flower.flwr_stop_argv(BIN, 7) == ["/venv/bin/flwr", "stop", "7", "flowerbed"]
    assert flower.flwr_ls_argv(BIN, 7)[-2:] == ["--run-id", "7"]


def test_flower_env_sets_the_switches() -> None:
    env = flower.flower_env(Path("/h"), {"PATH": "/bin"}, bin_dir=Path("/venv/bin"))
    assert env["PATH"] == "/venv/bin:/bin"
    assert env["FLWR_HOME"] == "/h"
    assert env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] == "1"
    assert env["FLWR_TELEMETRY_ENABLED"] == "0"
    assert env["PATH"].endswith(":/bin")


def test_superlink_is_a_private_simulation_superlink() -> None:
    argv = flower.superlink_argv(
        BIN,
        "127.0.0.1",
        41001,
        simulation=True,
        control_api_address="127.0.0.1:41002",
        health_server_address="127.0.0.1:41003",
    )
    assert argv[0] == "/venv/bin/flower-superlink"
    assert "--simulation" in argv and "--insecure" in argv
    assert argv[argv.index("--isolation") + 1] == "subprocess"
    assert argv[argv.index("--port") + 1] == "41001"
    assert argv[argv.index("--control-api-address") + 1] == "127.0.0.1:41002"
    assert argv[argv.index("--health-server-address") + 1] == "127.0.0.1:41003"


def test_flwr_run_names_the_federation_config_and_streams() -> None:
    fed = flower.federation_config(5, 1)
    assert fed == "num-supernodes=5 client-resources-num-cpus=1"
    argv = flower.flwr_run_argv(BIN, Path("/app"), Path("/rc.toml"), fed, stream=True)
    assert argv[:4] == ["/venv/bin/flwr", "run", "/app", "flowerbed"]
    assert argv[argv.index("--federation-config") + 1] == fed
    assert argv[-1] == "--stream" and "--format" not in argv
