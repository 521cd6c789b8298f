"""Flower processes as pure command builders: SuperLink, SuperNode, ``flwr`` CLI.

Every function returns an argv list or a file's text; nothing here starts a process.
The facts behind the choices are in ../shared/FLOWER.md (flwr 1.42).
"""

from __future__ import annotations

import os
import shlex
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ConfigValue = str | int | float | bool

# Set for every Flower process we start (see FLOWER.md): no telemetry, no update
# check, and no `uv sync` of the app's dependencies at run time (needs the index,
# may pull a CUDA torch).
FLOWER_ENV: Mapping[str, str] = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "PYTHONUNBUFFERED": "1",
}

CONNECTION_NAME = "flowerbed"
# How often flower-superexec polls for a ClientApp/ServerApp task (Flower: 1 s).
SUPEREXEC_POLL_ENV = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"


@dataclass(frozen=True)
class Tls:
    """TLS material for a SuperLink and the nodes that trust it (paths on each host)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def launch_env(superexec_poll_s: float | None) -> dict[str, str]:
    """The low-latency launch's environment for SuperNodes and the SuperLink
    (empty for stock: Flower's defaults stay untouched)."""
    if superexec_poll_s is None:
        return {}
    if not 0.01 <= superexec_poll_s <= 60:
        raise ValueError(
            f"{SUPEREXEC_POLL_ENV} must be 0.01-60 s (Flower's range), "
            f"got {superexec_poll_s!r}"
        )
    return {SUPEREXEC_POLL_ENV: f"{superexec_poll_s:g}"}


def flower_env(
    flwr_home: Path,
    base: Mapping[str, str] | None = None,
    bin_dir: Path | None = None,
    launch: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for a Flower process with its own ``FLWR_HOME``.

    ``bin_dir`` (default: beside the running Python) goes first on ``PATH``: the
    SuperLink and SuperNode start ``flower-superexec`` and ``flwr-clientapp`` by
    name, which fails when the virtualenv is not activated. ``launch`` is
    :func:`launch_env`'s output (the launch mode's settings).
    """
    env = dict(base or {})
    env.update(FLOWER_ENV)
    env.update(launch or {})
    env["FLWR_HOME"] = str(flwr_home)
    inherited = (base if base is not None else os.environ).get("PATH", "")
    env["PATH"] = os.pathsep.join(
        p for p in (str(bin_dir or Path(sys.executable).parent), inherited) if p
    )
    return env


def superlink_argv(
    bin_dir: Path,
    host: str,
    port: int,
    database: Path | None = None,
    tls: Tls | None = None,
    supernode_auth: bool = False,
    *,
    simulation: bool = False,
    control_api_address: str | None = None,
    health_server_address: str | None = None,
) -> list[str]:
    """``flower-superlink`` on ``host:port`` (the server's address on a network).

    ``simulation`` runs Flower's simulation runtime in it (ClientApps in
    subprocesses); the two addresses move its Control API and health server
    off their default ports, so several SuperLinks can share a host.
    """
    argv = [str(bin_dir / "flower-superlink"), "--host", host, "--port", str(port)]
    argv += ["--disable-runtime-dependency-installation"]
    if simulation:
        argv += ["--simulation", "--isolation", "subprocess"]
    if control_api_address is not None:
        argv += ["--control-api-address", control_api_address]
    if health_server_address is not None:
        argv += ["--health-server-address", health_server_address]
    if database is not None:
        argv += ["--database", str(database)]
    if tls is None:
        if supernode_auth:
            raise ValueError(
                "SuperNode authentication needs TLS (Flower refuses it without)"
            )
        argv.append("--insecure")
    else:
        argv += [
            "--ssl-ca-certfile",
            str(tls.ca_cert),
            "--ssl-certfile",
            str(tls.server_cert),
            "--ssl-keyfile",
            str(tls.server_key),
        ]
        if supernode_auth:
            argv.append("--enable-supernode-auth")
    return argv


def node_config_arg(node_config: Mapping[str, ConfigValue]) -> str:
    """Render node config as Flower's ``key=value`` string (strings TOML-quoted)."""
    parts = []
    for key, value in node_config.items():
        if not key or any(c.isspace() or c in "='\"" for c in key):
            raise ValueError(
                f"node config key {key!r} may not contain spaces, '=' or quotes"
            )
        parts.append(f"{key}={_toml_value(value)}")
    return " ".join(parts)


def _toml_value(value: ConfigValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if '"' in text or "\\" in text or "\n" in text:
        # Flower's parser takes a quoted token verbatim: forbid what would break out.
        raise ValueError(
            f"node config value {text!r} may not contain quotes, backslashes "
            "or newlines"
        )
    return f'"{text}"'


def supernode_argv(
    bin_dir: Path,
    superlink: str,
    node_config: Mapping[str, ConfigValue],
    runtime_port: int = 9094,
    root_certificates: Path | None = None,
    auth_private_key: Path | None = None,
) -> list[str]:
    """``flower-supernode`` pointed at ``superlink`` (``host:port``)."""
    argv = [str(bin_dir / "flower-supernode"), "--superlink", superlink]
    argv += ["--node-config", node_config_arg(node_config)]
    argv += ["--port", str(runtime_port)]
    if root_certificates is None:
        argv.append("--insecure")
    else:
        argv += ["--root-certificates", str(root_certificates)]
    if auth_private_key is not None:
        argv += ["--auth-supernode-private-key", str(auth_private_key)]
    return argv


def connection_toml(address: str, root_certificates: Path | None = None) -> str:
    """The ``$FLWR_HOME/config.toml`` entry that ``flwr run``/``ls``/``stop`` name."""
    lines = [f"[superlink.{CONNECTION_NAME}]", f'address = "{address}"']
    if root_certificates is None:
        lines.append("insecure = true")
    else:
        lines.append(f'root-certificates = "{root_certificates}"')
    return "\n".join(lines) + "\n"


def run_config_toml(values: Mapping[str, ConfigValue]) -> str:
    """A TOML file of run-config overrides (``flwr run --run-config FILE``)."""
    lines = []
    for key, value in values.items():
        if isinstance(value, str):
            lines.append(f"{key} = {_toml_string(value)}")
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # fail here, not inside flwr, if we wrote bad TOML
    return text


def _toml_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def flwr_run_argv(
    bin_dir: Path,
    app_dir: Path,
    run_config_file: Path,
    federation_config: str | None = None,
    stream: bool = False,
) -> list[str]:
    """``flwr run APP CONNECTION --run-config FILE``, then ``--format json`` (it
    returns the run id), or ``--stream`` (it follows the run's log to its end).

    ``federation_config`` is a simulation's ``--federation-config`` value, see
    :func:`federation_config`.
    """
    argv = [str(bin_dir / "flwr"), "run", str(app_dir), CONNECTION_NAME]
    argv += ["--run-config", str(run_config_file)]
    if federation_config is not None:
        argv += ["--federation-config", federation_config]
    return argv + (["--stream"] if stream else ["--format", "json"])


def federation_config(num_supernodes: int, client_cpus: int) -> str:
    """The ``--federation-config`` value: simulated SuperNodes and CPUs per client."""
    return f"num-supernodes={num_supernodes} client-resources-num-cpus={client_cpus}"


def flwr_ls_argv(bin_dir: Path, run_id: int | None = None) -> list[str]:
    """``flwr ls CONNECTION --format json`` (optionally for one run)."""
    argv = [str(bin_dir / "flwr"), "ls", CONNECTION_NAME, "--format", "json"]
    if run_id is not None:
        argv += ["--run-id", str(run_id)]
    return argv


def flwr_supernode_register_argv(bin_dir: Path, public_key: Path) -> list[str]:
    """``flwr supernode register KEY.pub CONNECTION`` (SuperNode authentication)."""
    return [
        str(bin_dir / "flwr"), "supernode", "register", str(public_key),
        CONNECTION_NAME,
    ]  # fmt: skip


def flwr_stop_argv(bin_dir: Path, run_id: int) -> list[str]:
    """``flwr stop RUN_ID CONNECTION``."""
    return [str(bin_dir / "flwr"), "stop", str(run_id), CONNECTION_NAME]


def display(argv: list[str]) -> str:
    """A shell-quoted rendering of ``argv`` for logs and error messages."""
    return shlex.join(argv)
