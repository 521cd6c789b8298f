"""``flowerbed cluster``: the emulated cluster (up, down, status) and a lab's hosts
(bootstrap, provision)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from testbed.cli.common import (
    AcceptNewOpt,
    Format,
    FormatOpt,
    InventoryArg,
    Via,
    fail,
    jsonable,
    load_inventory_or_fail,
)

cluster_app = typer.Typer(
    help="Build, inspect and remove the emulated cluster.", no_args_is_help=True
)


@cluster_app.command("up")
def up(inventory: InventoryArg, fmt: FormatOpt = Format.text) -> None:
    """Build the inventory here: namespaces as nodes, bridges as networks, tc shaping.

    Safe to run twice. Needs root.
    """
    from testbed.emulation.apply import cluster_up
    from testbed.emulation.errors import EmulationError, require_root
    from testbed.emulation.status import describe_state

    inv = load_inventory_or_fail(inventory)
    try:
        require_root("cluster up")
        state = cluster_up(inv)
    except EmulationError as err:
        fail(str(err))
    if fmt is Format.json:
        typer.echo(json.dumps(jsonable(state), indent=2))
        return
    typer.echo(describe_state(state))


@cluster_app.command("down")
def down(inventory: InventoryArg) -> None:
    """Remove everything `cluster up` made, and nothing else. Needs root."""
    from testbed.emulation.apply import cluster_down
    from testbed.emulation.errors import EmulationError, require_root

    inv = load_inventory_or_fail(inventory)
    try:
        require_root("cluster down")
        removed = cluster_down(inv)
    except EmulationError as err:
        fail(str(err))
    typer.echo(f"cluster {inv.name}: removed {removed}")


@cluster_app.command("status")
def show_status(inventory: InventoryArg, fmt: FormatOpt = Format.text) -> None:
    """Show the emulated cluster's nodes, links and the shaping actually installed."""
    from testbed.emulation.errors import EmulationError
    from testbed.emulation.status import cluster_status, describe_status

    inv = load_inventory_or_fail(inventory)
    try:
        status = cluster_status(inv)
    except EmulationError as err:
        fail(str(err))
    if fmt is Format.json:
        typer.echo(json.dumps(jsonable(status), indent=2))
        return
    typer.echo(describe_status(status))


def _shape_profiles(inv: Any, specs: list[str]) -> dict[str, Any]:
    """``--shape NETWORK[=PROFILE]`` values as network -> LinkProfile."""
    from inventory.profiles import DEFAULT_PROFILES

    shaped = {}
    for spec in specs:
        network, _, profile = spec.partition("=")
        if network not in inv.network_names:
            raise ValueError(
                f"--shape {spec}: no network {network!r} in {inv.path} "
                f"(it has: {', '.join(inv.network_names)})"
            )
        name = profile or network
        if name in inv.network_names:
            shaped[network] = inv.network(name).profile
        elif name in DEFAULT_PROFILES:
            shaped[network] = DEFAULT_PROFILES[name]
        else:
            known = sorted({*inv.network_names, *DEFAULT_PROFILES})
            raise ValueError(
                f"--shape {spec}: unknown profile {name!r}; use one of "
                f"{', '.join(known)}"
            )
    return shaped


@cluster_app.command("bootstrap")
def bootstrap(
    inventory: InventoryArg,
    public_key: Annotated[
        Path,
        typer.Option(
            "--key", help="Public key to install (default: the hosts' key + .pub)."
        ),
    ] = Path(),
    accept_new: AcceptNewOpt = False,
) -> None:
    """First contact with freshly imaged hosts: log in once with the password
    (prompted, never stored or logged) and install a public key, so every later
    command uses key authentication. Idempotent."""
    from testbed.lab.access import known_hosts_for
    from testbed.transport.ssh import SSHError, bootstrap_authorize, target_for_host

    inv = load_inventory_or_fail(inventory)
    password = typer.prompt("SSH password of the hosts", hide_input=True)
    failed = 0
    for host in inv.clients:
        key = public_key
        if key == Path() and host.ssh_key_file is not None:
            key = host.ssh_key_file.with_name(host.ssh_key_file.name + ".pub")
        if key == Path() or not key.exists():
            fail(
                f"no public key for {host.name}: pass --key FILE.pub or set "
                "ansible_ssh_private_key_file (FILE.pub beside it)",
                2,
            )
        target = target_for_host(host, known_hosts_for(inv), accept_new)
        try:
            added = bootstrap_authorize(target, password, key.read_text())
        except SSHError as err:
            failed += 1
            typer.secho(f"  {host.name}: FAILED: {err}", fg=typer.colors.RED)
            continue
        typer.echo(
            f"  {host.name}: {'key installed' if added else 'key already there'}"
        )
    raise typer.Exit(1 if failed else 0)


@cluster_app.command("provision")
def provision_hosts(
    inventory: InventoryArg,
    fmt: FormatOpt = Format.text,
    accept_new: AcceptNewOpt = False,
    app_dir: Annotated[
        Path | None,
        typer.Option("--app", help="Flower app to copy to every host."),
    ] = Path("apps/digits"),
    online: Annotated[
        bool,
        typer.Option(
            help="Let hosts fetch dependencies from the package index (default: "
            "only from the wheelhouse this server pushes)."
        ),
    ] = False,
    chrony: Annotated[
        bool,
        typer.Option(
            help="Point each host's chrony at the server's management address."
        ),
    ] = False,
    parallel: Annotated[int, typer.Option(help="Hosts provisioned at once.")] = 16,
    shape: Annotated[
        list[str] | None,
        typer.Option(
            help="NETWORK[=PROFILE]: shape each host's interface on NETWORK (its "
            "uplink) like PROFILE (a network of the inventory or a default "
            "profile: ethernet, wifi, 5g, 5g-commercial); repeatable. Example: "
            "--shape wifi=5g makes WiFi uplinks behave like 5G."
        ),
    ] = None,
) -> None:
    """Bring every client to a known state over SSH, idempotently: virtualenv at the
    server's versions (from a wheelhouse pushed from here), the app, the cluster CA
    certificate, a SuperNode authentication key per host, optionally chrony.

    A second run finds nothing to do. One host failing never stops the others.
    """
    from testbed.lab.access import server_dir, ssh_connectors
    from testbed.lab.provision import ProvisionOptions, describe, provision
    from testbed.lab.tls import ensure_tls
    from testbed.lab.wheelhouse import WheelhouseError, build_wheelhouse

    inv = load_inventory_or_fail(inventory)
    if app_dir is not None and not (app_dir / "pyproject.toml").exists():
        fail(f"--app {app_dir} is not a Flower app (no pyproject.toml)", 2)
    chrony_server = None
    if chrony:
        if inv.management is None:
            fail("--chrony needs a management network in the inventory", 2)
        chrony_server = str(inv.management.server_address)
    typer.echo("building the wheelhouse (reused while nothing changed) ...", err=True)
    try:
        wheelhouse = build_wheelhouse()
    except WheelhouseError as err:
        fail(str(err))
    try:
        shaped = _shape_profiles(inv, shape or [])
    except ValueError as err:
        fail(str(err), 2)
    folder = server_dir(inv)
    tls, renewed = ensure_tls(inv, folder / "tls")
    if renewed:
        typer.echo(f"TLS: new server certificate in {folder / 'tls'}", err=True)
    options = ProvisionOptions(
        wheelhouse=wheelhouse,
        server_dir=folder,
        tls=tls,
        app=app_dir,
        chrony_server=chrony_server,
        offline=not online,
        parallel=parallel,
        shape=shaped,
    )
    report = provision(
        inv,
        ssh_connectors(inv, accept_new),
        options,
        progress=lambda line: typer.echo(line, err=True),
    )
    if fmt is Format.json:
        typer.echo(json.dumps(jsonable(report), indent=2))
    else:
        typer.echo(describe(report))
    raise typer.Exit(0 if report.ok else 1)


@cluster_app.command("calibrate")
def calibrate_links(
    inventory: InventoryArg,
    networks: Annotated[
        str | None,
        typer.Option(help="Comma-separated networks to measure (default: all)."),
    ] = None,
    nodes: Annotated[
        str | None,
        typer.Option(help="Comma-separated clients to measure (default: all)."),
    ] = None,
    seconds: Annotated[
        float,
        typer.Option(
            min=0.5,
            max=600,
            help="iperf3 seconds per direction, after 1 s of slow start left out.",
        ),
    ] = 3.0,
    pings: Annotated[
        int, typer.Option(min=1, max=1000, help="Pings per node and network.")
    ] = 10,
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="iperf3 port on the server.")
    ] = 5201,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Where to write the result (default: <inventory>.calibration.json "
            "beside the inventory, where campaigns look for it).",
        ),
    ] = None,
    via: Annotated[
        Via,
        typer.Option(
            help="netns: the emulated cluster's namespaces; ssh: every node over "
            "SSH; auto: netns when the inventory's emulated cluster is up here."
        ),
    ] = Via.auto,
    accept_new: AcceptNewOpt = False,
    fmt: FormatOpt = Format.text,
) -> None:
    """Measure what each node's links carry (iperf3 both ways, ping) against the
    profiles; campaigns then judge transfers by the measured rates.

    Run it on the server (the machine holding every network's server address).
    An unreachable node or one without iperf3 gets an error row; the others are
    still measured. Exits 1 when any node could not be measured.
    """
    from contextlib import ExitStack

    from testbed.lab.calibrate import (
        CalibrationError,
        calibrate,
        default_path,
        describe,
        write_calibration,
    )
    from testbed.transport.executor import LocalExecutor

    inv = load_inventory_or_fail(inventory)
    chosen_networks = _names(networks, inv.network_names, "network", inventory)
    chosen_nodes = _names(nodes, [h.name for h in inv.clients], "client", inventory)
    with ExitStack() as stack:
        transport, delay_note, connectors = _connectors(inv, via, accept_new, stack)
        connectors = {n: c for n, c in connectors.items() if n in chosen_nodes}
        try:
            result = calibrate(
                inv,
                connectors,
                LocalExecutor(),
                networks=chosen_networks,
                transport=transport,
                delay_note=delay_note,
                seconds=seconds,
                ping_count=pings,
                port=port,
                progress=lambda line: typer.echo(line, err=True),
            )
        except CalibrationError as err:
            fail(str(err))
    path = out or default_path(inventory)
    write_calibration(result, path)
    if fmt is Format.json:
        typer.echo(json.dumps(jsonable(result), indent=2))
    else:
        typer.echo(describe(result))
        typer.echo(f"written to {path}")
    if any(m.verdict == "error" for m in result.measurements):
        raise typer.Exit(1)


def _names(
    given: str | None, known: list[str], what: str, inventory: Path
) -> list[str]:
    if given is None:
        return list(known)
    names = [n.strip() for n in given.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        fail(
            f"{inventory}: no {what} {', '.join(unknown) or '(empty list)'}; "
            f"use some of: {', '.join(known)}",
            2,
        )
    return names


def _connectors(
    inv: Any, via: Via, accept_new: bool, stack: Any
) -> tuple[str, str | None, dict[str, Any]]:
    """(transport, delay note, client -> connector) for ``--via``; the note is
    what ``cluster up`` says of delay emulation (None when not emulated)."""
    from testbed.emulation import cgroups
    from testbed.emulation.errors import EmulationError
    from testbed.emulation.naming import node_namespace
    from testbed.emulation.status import cluster_status, is_up, manifest_features
    from testbed.lab.calibrate import netns_connector

    delay_note = None
    try:
        status = cluster_status(inv)
        emulated = is_up(status)
    except EmulationError:
        emulated = False
    if emulated:
        delay = manifest_features(status).get("delay", {})
        state = "active" if delay.get("active") else "not emulated"
        delay_note = f"delay {state}: {delay.get('detail', 'unknown')}"
    chosen = via if via is not Via.auto else (Via.netns if emulated else Via.ssh)
    if chosen is Via.netns:
        if not emulated:
            fail(
                f"the emulated cluster of {inv.path} is not (fully) up; run "
                f"`flowerbed cluster up {inv.path}` first, or use --via ssh",
            )

        return (
            "netns",
            delay_note,
            {
                h.name: netns_connector(
                    node_namespace(inv, h.name),
                    inv.path,
                    cgroups.node_procs(inv, h.name),
                )
                for h in inv.clients
            },
        )
    from testbed.lab.access import ssh_connectors

    def closing(connect: Any) -> Any:
        def opened() -> Any:
            executor = connect()
            stack.callback(executor.close)
            return executor

        return opened

    connectors = ssh_connectors(inv, accept_new)
    return "ssh", delay_note, {n: closing(c) for n, c in connectors.items()}
