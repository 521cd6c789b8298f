"""``flowerbed campaign``: run a campaign (on a cluster or simulated) and follow it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from testbed.cli.common import (
    AcceptNewOpt,
    Format,
    FormatOpt,
    Via,
    fail,
    first_line,
    jsonable,
    load_inventory_or_fail,
)

campaign_app = typer.Typer(help="Run measurement campaigns.", no_args_is_help=True)


CampaignArg = Annotated[Path, typer.Argument(help="Campaign YAML file.")]
CampaignInventoryOpt = Annotated[
    Path | None,
    typer.Option(
        "--inventory",
        "-i",
        help="Inventory YAML file (not needed with runtime: simulation).",
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Results folder (default results/<name>)."),
]


@campaign_app.command("run")
def run(
    campaign: CampaignArg,
    inventory: CampaignInventoryOpt = None,
    out: OutOpt = None,
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
    # Only the campaign model before the file is validated: a bad file gets its
    # error at once, without waiting for the runner's imports (pandas, analysis).
    from testbed.campaign.model import CampaignError, load_campaign

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
    from contextlib import ExitStack

    from testbed.campaign.resume import CampaignStopped
    from testbed.campaign.runner import run_campaign
    from testbed.campaign.topology import emulated_topology
    from testbed.emulation.errors import EmulationError, require_root
    from testbed.emulation.status import cluster_status, is_up, manifest_features

    inv = load_inventory_or_fail(inventory, list(camp.networks))
    _check_hosts_or_fail(camp, inv)
    try:
        require_root("campaign run (captures and namespaces)")
        status = cluster_status(inv)
    except EmulationError as err:
        fail(str(err))
    is_emulated = is_up(status)
    chosen = via if via is not Via.auto else (Via.netns if is_emulated else Via.ssh)
    if chosen is Via.netns and not is_emulated:
        fail(
            f"the emulated cluster of {inventory} is not (fully) up; "
            f"run `flowerbed cluster up {inventory}` first, or use --via ssh"
        )
    features: dict[str, Any] = {}
    if is_emulated:
        features = manifest_features(status)
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


def _check_hosts_or_fail(camp: Any, inv: Any) -> None:
    from testbed.campaign.model import CampaignError
    from testbed.campaign.preflight import check_hosts

    try:
        check_hosts(camp, inv)
    except CampaignError as err:
        fail(str(err), 2)


@campaign_app.command("check")
def check(
    campaign: CampaignArg,
    inventory: CampaignInventoryOpt = None,
    out: OutOpt = None,
    resume: Annotated[
        bool, typer.Option(help="Check as `campaign run --resume` would.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Check as `campaign run --overwrite` would.")
    ] = False,
    fmt: FormatOpt = Format.text,
) -> None:
    """Check a campaign as `campaign run` does before it starts; start nothing.

    The campaign file, the inventory with the campaign's networks, the hosts
    that faults and clock offsets name, and the results folder (a campaign
    already there, free space). Hosts are not contacted: `flowerbed inventory
    check` does that. Exits 2 on a bad file, 1 when the results folder would be
    refused, 0 when `campaign run` would start.
    """
    import os

    from testbed.campaign.model import CampaignError, load_campaign
    from testbed.campaign.preflight import (
        check_results_folder,
        describe_check,
        summarize,
    )

    try:
        camp = load_campaign(campaign)
    except CampaignError as err:
        fail(str(err), 2)
    inv = None
    folder = None
    if camp.runtime == "deployment":
        if inventory is None:
            fail("--inventory is needed to check a campaign on a cluster", 2)
            return
        inv = load_inventory_or_fail(inventory, list(camp.networks))
        _check_hosts_or_fail(camp, inv)
        out_dir = out or Path("results") / camp.name
        folder = check_results_folder(camp, out_dir, resume, overwrite)
    summary = summarize(camp, inv, folder, is_root=os.geteuid() == 0)
    if fmt is Format.json:
        typer.echo(json.dumps(jsonable(summary), indent=2))
    else:
        typer.echo(describe_check(summary))
    if folder is not None and folder.problem is not None:
        fail(folder.problem)


def _run_simulated(camp: Any, out_dir: Path) -> None:
    """A campaign in Flower's simulation runtime (testbed/campaign/simulation.py)."""
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
def show_status(
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
