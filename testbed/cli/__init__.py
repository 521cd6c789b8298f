"""The ``flowerbed`` command line: one Typer app with noun-verb commands."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from testbed.cli.common import (
    Format,
    FormatOpt,
    InventoryArg,
    fail,
    first_line,
    jsonable,
)
from testbed.cli.report import report_app

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


AcceptNewOpt = Annotated[
    bool,
    typer.Option(
        "--accept-new",
        help="Trust an unknown SSH host key on first use and save it to the "
        "inventory's known_hosts (a changed key is still refused).",
    ),
]


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
    from testbed.lab.check import CheckOptions, check_inventory, render_text
    from testbed.transport.executor import LocalExecutor
    from testbed.lab.access import ssh_connectors

    inv = _load_inventory(inventory)
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


@cluster_app.command("up")
def cluster_up(inventory: InventoryArg, fmt: FormatOpt = Format.text) -> None:
    """Build the inventory here: namespaces as nodes, bridges as networks, tc shaping.

    Safe to run twice. Needs root.
    """
    from testbed.emulation import cluster as emulated

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
    from testbed.emulation import cluster as emulated

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
    from testbed.emulation import cluster as emulated

    inv = _load_inventory(inventory)
    try:
        status = emulated.cluster_status(inv)
    except emulated.EmulationError as err:
        fail(str(err))
    if fmt is Format.json:
        typer.echo(json.dumps(jsonable(status), indent=2))
        return
    typer.echo(emulated.describe_status(status))


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
def cluster_bootstrap(
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

    inv = _load_inventory(inventory)
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
def cluster_provision(
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

    inv = _load_inventory(inventory)
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


class Via(StrEnum):
    """How a campaign reaches the nodes."""

    auto = "auto"
    netns = "netns"
    ssh = "ssh"


@campaign_app.command("run")
def campaign_run(
    campaign: Annotated[Path, typer.Argument(help="Campaign YAML file.")],
    inventory: Annotated[
        Path | None,
        typer.Option(
            "--inventory",
            "-i",
            help="Inventory YAML file (not needed with runtime: simulation).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Results folder (default results/<name>)."),
    ] = None,
    via: Annotated[
        Via,
        typer.Option(
            help="netns: the emulated cluster's namespaces; ssh: every node over "
            "SSH (a lab, or emulated nodes through their sshd); auto: netns when "
            "the inventory's emulated cluster is up here, else ssh."
        ),
    ] = Via.auto,
    insecure: Annotated[
        bool,
        typer.Option(
            help="Over SSH, run Flower without TLS and SuperNode authentication."
        ),
    ] = False,
    accept_new: AcceptNewOpt = False,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue an interrupted campaign in OUT: finished runs are kept, "
            "leftover processes stopped, the unfinished run starts again."
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Replace results already in OUT.")
    ] = False,
) -> None:
    """Run every network x repetition of a campaign; write results."""
    from contextlib import ExitStack

    from testbed.emulation import cluster as emulated
    from testbed.campaign.model import CampaignError, load_campaign
    from testbed.campaign.resume import CampaignStopped
    from testbed.campaign.runner import run_campaign
    from testbed.campaign.topology import emulated_topology

    try:
        camp = load_campaign(campaign)
    except CampaignError as err:
        fail(str(err), 2)
    if camp.runtime == "simulation":
        _run_simulated(camp, out or Path("results") / camp.name)
        return
    if inventory is None:
        fail("--inventory is needed to run on a cluster (runtime: deployment)", 2)
        return
    inv = _load_inventory(inventory, list(camp.networks))
    try:
        emulated.require_root("campaign run (captures and namespaces)")
        status = emulated.cluster_status(inv)
    except emulated.EmulationError as err:
        fail(str(err))
    is_emulated = emulated.is_up(status)
    chosen = via if via is not Via.auto else (Via.netns if is_emulated else Via.ssh)
    if chosen is Via.netns and not is_emulated:
        fail(
            f"the emulated cluster of {inventory} is not (fully) up; "
            f"run `flowerbed cluster up {inventory}` first, or use --via ssh"
        )
    features: dict[str, Any] = {}
    if is_emulated:
        features = emulated.manifest_features(status)
    for name, feature in features.items():
        if not feature.get("active", True):
            typer.secho(
                f"note: {name} not emulated: {feature.get('detail', '')}",
                fg=typer.colors.YELLOW,
                err=True,
            )
    out_dir = out or Path("results") / camp.name
    with ExitStack() as stack:
        if chosen is Via.ssh:
            from testbed.campaign.topology import ssh_topology
            from testbed.lab.access import LabError
            from testbed.transport.ssh import SSHError

            try:
                topology = ssh_topology(
                    inv,
                    stack,
                    emulated=is_emulated,
                    secure=not insecure,
                    accept_new=accept_new,
                )
            except (LabError, SSHError) as err:
                fail(str(err))
        else:
            topology = emulated_topology(inv)
        typer.echo(
            f"campaign {camp.name}: {len(camp.networks)} network(s) x "
            f"{camp.repetitions} repetition(s), {camp.rounds} round(s) each, "
            f"nodes via {chosen.value}, {topology.security.label} -> {out_dir}"
        )
        try:
            outcomes = run_campaign(
                camp,
                inv,
                out_dir,
                progress=typer.echo,
                features=features,
                topology=topology,
                resume=resume,
                overwrite=overwrite,
            )
        except CampaignStopped as err:
            fail(str(err))
        except KeyboardInterrupt:
            typer.secho(
                f"interrupted; finished runs are saved in {out_dir}; continue with "
                "the same command and --resume",
                err=True,
            )
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


def _run_simulated(camp: Any, out_dir: Path) -> None:
    """A campaign in Flower's simulation runtime (testbed/simulation.py)."""
    from testbed.campaign.simulation import run_simulated_campaign

    typer.echo(
        f"campaign {camp.name}: {camp.repetitions} repetition(s) of "
        f"{camp.rounds} round(s) in Flower's simulation runtime, "
        f"{camp.simulation_supernodes} simulated SuperNodes -> {out_dir}"
    )
    results = run_simulated_campaign(
        camp, out_dir, camp.simulation_supernodes, progress=typer.echo
    )
    failed = [(run_id, o) for run_id, o in results if o.status != "ok"]
    typer.echo(f"results: {out_dir} ({len(results) - len(failed)} ok)")
    for run_id, outcome in failed:
        typer.secho(f"  {run_id}: {outcome.status}", fg=typer.colors.RED, err=True)
    if failed:
        raise typer.Exit(1)


@campaign_app.command("status")
def campaign_status(
    results: Annotated[Path, typer.Argument(help="A campaign's results folder.")],
    fmt: FormatOpt = Format.text,
    watch: Annotated[
        float,
        typer.Option(help="Refresh every WATCH seconds until the campaign ends."),
    ] = 0.0,
) -> None:
    """Where a running or finished campaign is: run, round, ETA, finished runs."""
    import time

    from testbed.campaign.status import describe, process_alive, read_status

    while True:
        try:
            data = read_status(results)
        except FileNotFoundError as err:
            fail(str(err))
        if fmt is Format.json:
            data["process_alive"] = process_alive(int(data["pid"]))
            typer.echo(json.dumps(data, indent=2))
        else:
            typer.echo(describe(data))
        running = data["state"] == "running" and process_alive(int(data["pid"]))
        if watch <= 0 or not running:
            return
        time.sleep(watch)
        typer.echo("")


def main() -> None:
    """Entry point for ``python -m testbed.cli``."""
    app()


if __name__ == "__main__":
    main()
