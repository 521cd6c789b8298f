"""``flowerbed inventory``: validate an inventory file and check its hosts."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from testbed.cli.common import (
    AcceptNewOpt,
    Format,
    FormatOpt,
    InventoryArg,
    jsonable,
    load_inventory_or_fail,
)

inventory_app = typer.Typer(help="Check cluster descriptions.", no_args_is_help=True)


@inventory_app.command("validate")
def inventory_validate(
    inventory: InventoryArg,
    networks: Annotated[
        str | None, typer.Option(help="Comma-separated networks a campaign will use.")
    ] = None,
    fmt: FormatOpt = Format.text,
) -> None:
    """Load and validate an inventory; print its hosts, networks and link profiles."""
    inv = load_inventory_or_fail(inventory, networks.split(",") if networks else None)
    if fmt is Format.json:
        typer.echo(json.dumps(jsonable(inv), indent=2))
        return
    typer.echo(f"inventory {inv.name} ({inventory}): valid")
    typer.echo(
        f"  server {inv.server.name} ({inv.server.ansible_host}), "
        f"SuperLink port {inv.superlink_port}"
    )
    for net in inv.networks:
        p = net.profile
        typer.echo(
            f"  network {net.name}: {net.subnet}, server {net.server_address}, "
            f"down {p.downlink_mbit:g} / up {p.uplink_mbit:g} Mbit/s, "
            f"delay {p.delay_ms:g} ms, jitter {p.jitter_ms:g} ms, loss {p.loss_pct:g}%"
        )
        for direction in ("downlink", "uplink"):
            trace = p.trace(direction)
            if trace is not None:
                typer.echo(
                    f"    {direction} traced: {trace.path} ({trace.format}, "
                    f"{trace.period_s:g} s loop, mean {trace.mean_mbit:.3g} Mbit/s)"
                )
    for host in inv.clients:
        ifaces = ", ".join(
            f"{i.network}={i.ifname}:{i.address}" for i in host.interfaces
        )
        limits = ""
        if host.cpu_quota is not None or host.memory_mb is not None:
            board = f"{host.device_class}: " if host.device_class else ""
            quota = f"{host.cpu_quota:g} core" if host.cpu_quota is not None else ""
            memory = f"{host.memory_mb} MiB" if host.memory_mb is not None else ""
            limits = f" [{board}{', '.join(x for x in (quota, memory) if x)}]"
        typer.echo(f"  client {host.name} ({host.ansible_host}): {ifaces}{limits}")


@inventory_app.command("check")
def inventory_check(
    inventory: InventoryArg,
    fmt: FormatOpt = Format.text,
    accept_new: AcceptNewOpt = False,
    timeout: Annotated[
        float, typer.Option(help="Time limit per host, in seconds.")
    ] = 60.0,
    disk_path: Annotated[
        str | None,
        typer.Option(help="Directory whose free space to check (default: home)."),
    ] = None,
) -> None:
    """Check every host over SSH, in parallel: access, host key, OS, Python, disk,
    memory, each network's interface and route, clock sync, tcpdump/tc.

    Exits non-zero if any host fails a check; each failure says what to do.
    """
    from testbed.lab.access import ssh_connectors
    from testbed.lab.check import check_inventory
    from testbed.lab.check_report import CheckOptions, render_text
    from testbed.transport.executor import LocalExecutor

    inv = load_inventory_or_fail(inventory)
    executors: dict[str, Any] = {inv.server.name: LocalExecutor}
    executors.update(ssh_connectors(inv, accept_new, min(timeout, 10.0)))
    report = check_inventory(
        inv,
        executors,
        CheckOptions(host_timeout_s=timeout, disk_path=disk_path),
        progress=lambda name, rows: typer.echo(f"checked {name}", err=True),
    )
    if fmt is Format.json:
        typer.echo(json.dumps(jsonable(report.to_json()), indent=2))
    else:
        typer.echo(render_text(report))
    raise typer.Exit(0 if report.ok else 1)
