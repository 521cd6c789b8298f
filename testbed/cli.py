"""The ``flowerbed`` command line: one Typer app with noun-verb commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from testbed.cli_common import (
    Format,
    FormatOpt,
    InventoryArg,
    fail,
    first_line,
    jsonable,
)
from testbed.cli_report import report_app

app = typer.Typer(
    help="Measured federated-learning campaigns on emulated and real edge clusters.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
inventory_app = typer.Typer(help="Check cluster descriptions.", no_args_is_help=True)
cluster_app = typer.Typer(
    help="Build, inspect and remove the emulated cluster.", no_args_is_help=True
)
campaign_app = typer.Typer(help="Run measurement campaigns.", no_args_is_help=True)
app.add_typer(inventory_app, name="inventory")
app.add_typer(cluster_app, name="cluster")
app.add_typer(campaign_app, name="campaign")
app.add_typer(report_app, name="report")


def _load_inventory(path: Path, networks: list[str] | None = None) -> Any:
    from inventory.loader import InventoryError, load_inventory

    try:
        return load_inventory(path, networks=networks)
    except InventoryError as err:
        fail(str(err), 2)


@inventory_app.command("validate")
def inventory_validate(
    inventory: InventoryArg,
    networks: Annotated[
        str | None, typer.Option(help="Comma-separated networks a campaign will use.")
    ] = None,
    fmt: FormatOpt = Format.text,
) -> None:
    """Load and validate an inventory; print its hosts, networks and link profiles."""
    inv = _load_inventory(inventory, networks.split(",") if networks else None)
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
    for host in inv.clients:
        ifaces = ", ".join(
            f"{i.network}={i.ifname}:{i.address}" for i in host.interfaces
        )
        typer.echo(f"  client {host.name} ({host.ansible_host}): {ifaces}")


@cluster_app.command("up")
def cluster_up(inventory: InventoryArg, fmt: FormatOpt = Format.text) -> None:
    """Build the inventory here: namespaces as nodes, bridges as networks, tc shaping.

    Safe to run twice. Needs root.
    """
    from testbed import emulated

    inv = _load_inventory(inventory)
    try:
        emulated.require_root("cluster up")
        state = emulated.cluster_up(inv)
    except emulated.EmulationError as err:
        fail(str(err))
    if fmt is Format.json:
        typer.echo(json.dumps(jsonable(state), indent=2))
        return
    typer.echo(emulated.describe_state(state))


@cluster_app.command("down")
def cluster_down(inventory: InventoryArg) -> None:
    """Remove everything `cluster up` made, and nothing else. Needs root."""
    from testbed import emulated

    inv = _load_inventory(inventory)
    try:
        emulated.require_root("cluster down")
        removed = emulated.cluster_down(inv)
    except emulated.EmulationError as err:
        fail(str(err))
    typer.echo(f"cluster {inv.name}: removed {removed}")


@cluster_app.command("status")
def cluster_status(inventory: InventoryArg, fmt: FormatOpt = Format.text) -> None:
    """Show the emulated cluster's nodes, links and the shaping actually installed."""
    from testbed import emulated

    inv = _load_inventory(inventory)
    try:
        status = emulated.cluster_status(inv)
    except emulated.EmulationError as err:
        fail(str(err))
    if fmt is Format.json:
        typer.echo(json.dumps(jsonable(status), indent=2))
        return
    typer.echo(emulated.describe_status(status))


@campaign_app.command("run")
def campaign_run(
    campaign: Annotated[Path, typer.Argument(help="Campaign YAML file.")],
    inventory: Annotated[
        Path, typer.Option("--inventory", "-i", help="Inventory YAML file.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Results folder (default results/<name>)."),
    ] = None,
) -> None:
    """Run every network x repetition of a campaign; write results."""
    from testbed import emulated
    from testbed.campaign import CampaignError, load_campaign
    from testbed.runner import run_campaign

    try:
        camp = load_campaign(campaign)
    except CampaignError as err:
        fail(str(err), 2)
    inv = _load_inventory(inventory, list(camp.networks))
    try:
        emulated.require_root("campaign run on the emulated cluster")
        status = emulated.cluster_status(inv)
    except emulated.EmulationError as err:
        fail(str(err))
    if not emulated.is_up(status):
        fail(
            f"the emulated cluster of {inventory} is not (fully) up; "
            f"run `flowerbed cluster up {inventory}` first"
        )
    features = emulated.manifest_features(status)
    for name, feature in features.items():
        if not feature.get("active", True):
            typer.secho(
                f"note: {name} not emulated: {feature.get('detail', '')}",
                fg=typer.colors.YELLOW,
                err=True,
            )
    out_dir = out or Path("results") / camp.name
    typer.echo(
        f"campaign {camp.name}: {len(camp.networks)} network(s) x "
        f"{camp.repetitions} repetition(s), {camp.rounds} round(s) each -> {out_dir}"
    )
    try:
        outcomes = run_campaign(
            camp, inv, out_dir, progress=typer.echo, features=features
        )
    except KeyboardInterrupt:
        typer.secho(f"interrupted; finished runs are saved in {out_dir}", err=True)
        raise typer.Exit(130) from None
    failed = [o for o in outcomes if o.status != "ok"]
    typer.echo(
        f"results: {out_dir} ({len(outcomes) - len(failed)} ok, {len(failed)} not ok)"
    )
    if failed:
        for o in failed:
            typer.secho(
                f"  {o.run_id}: {o.status}: {first_line(o.reason)}",
                fg=typer.colors.RED,
                err=True,
            )
        raise typer.Exit(1)


def main() -> None:
    """Entry point for ``python -m testbed.cli``."""
    app()


if __name__ == "__main__":
    main()
