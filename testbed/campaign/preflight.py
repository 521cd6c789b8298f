"""What ``campaign run`` checks before anything starts, shared with ``campaign check``.

The campaign file (testbed/campaign/model.py) and the inventory
(inventory/loader.py, with the campaign's networks) are validated by their
loaders; here are the checks that need both, and the results folder's.
Nothing here starts a process or contacts a host.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from inventory.models import Inventory
from inventory.profiles import did_you_mean
from inventory.reading import line_of
from testbed.campaign.model import Campaign, CampaignError


def _names(hosts: Iterable[str]) -> str:
    listed = sorted(hosts)
    shown = ", ".join(listed[:8])
    return shown + (f" and {len(listed) - 8} more" if len(listed) > 8 else "")


def check_hosts(campaign: Campaign, inventory: Inventory) -> None:
    """Every host a fault or clock offset names is a client of ``inventory``.

    Raises
    ------
    CampaignError
        Naming the campaign file, the line and key, the host, and the clients.
    """
    clients = [h.name for h in inventory.clients]
    known = set(clients)
    named: list[tuple[str, tuple[object, ...], str]] = [
        (f"faults[{i}].node", ("faults", i, "node"), fault.node)
        for i, fault in enumerate(campaign.faults)
        if fault.node is not None
    ]
    named += [
        (f"clock_offsets_ms.{host}", ("clock_offsets_ms", host), host)
        for host in campaign.clock_offsets_ns
    ]
    for key, parts, host in named:
        if host not in known:
            raise CampaignError(
                campaign.path,
                key,
                f"host {host!r} is not a client of {inventory.path}"
                f"{did_you_mean(host, clients)} (clients: {_names(clients)})",
                "name one of the inventory's clients, or give the inventory this "
                "campaign is for",
                line_of(campaign.raw, parts),
            )


@dataclass(frozen=True)
class FolderState:
    """The results folder a run would write to, as ``campaign run`` would find it."""

    path: Path
    problem: str | None  # why `campaign run` would refuse it, None when it would not
    finished_runs: int  # runs kept with --resume
    free_bytes: int


def check_results_folder(
    campaign: Campaign, out: Path, resume: bool, overwrite: bool
) -> FolderState:
    """Would ``campaign run`` accept ``out``: a campaign already there, free space."""
    # resume.py brings pandas: imported only once the files are known good.
    from testbed.campaign.resume import MIN_FREE_BYTES, CampaignStopped, previous_runs

    problem = None
    finished = 0
    try:
        finished = len(previous_runs(out, campaign, resume, overwrite))
    except CampaignStopped as err:
        problem = str(err)
    except (OSError, ValueError) as err:  # a damaged manifest or status file
        problem = (
            f"cannot read the results already in {out} ({err}): move the folder "
            "away or choose another --out"
        )
    existing = out.resolve()
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if problem is None and free < MIN_FREE_BYTES:
        problem = (
            f"the disk of {existing} has {free / 2**20:.0f} MiB free; a run needs at "
            f"least {MIN_FREE_BYTES / 2**20:.0f} MiB: free some space or choose "
            "another --out"
        )
    return FolderState(out, problem, finished, free)


@dataclass(frozen=True)
class CheckSummary:
    """What ``campaign check`` found: the campaign would start, or why not."""

    campaign: str
    path: Path
    runtime: str
    strategy: str
    networks: tuple[str, ...]
    runs: int
    rounds: int
    longest_s: float  # every run at its deadline
    inventory: Path | None
    clients: tuple[str, ...]
    folder: FolderState | None  # None: simulation runs refuse no folder
    notes: tuple[str, ...]


def summarize(
    campaign: Campaign,
    inventory: Inventory | None,
    folder: FolderState | None,
    is_root: bool,
) -> CheckSummary:
    """The summary of checks that passed, with what the user should still know."""
    runs = campaign.repetitions * (
        len(campaign.networks) if campaign.runtime == "deployment" else 1
    )
    notes = []
    if inventory is not None:
        if not is_root:
            notes.append(
                "`campaign run` needs root on this machine (captures, namespaces): "
                "run it with sudo"
            )
        notes.append(
            "hosts were not contacted; `flowerbed inventory check "
            f"{inventory.path}` checks each over SSH"
        )
    return CheckSummary(
        campaign=campaign.name,
        path=campaign.path,
        runtime=campaign.runtime,
        strategy=campaign.strategy.name,
        networks=campaign.networks,
        runs=runs,
        rounds=campaign.rounds,
        longest_s=runs * campaign.run_deadline_s,
        inventory=None if inventory is None else inventory.path,
        clients=() if inventory is None else tuple(h.name for h in inventory.clients),
        folder=folder,
        notes=tuple(notes),
    )


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def describe_check(summary: CheckSummary) -> str:
    """``campaign check``'s text output."""
    lines = [
        f"campaign {summary.campaign} ({summary.path}): valid",
        f"  {summary.runs} run(s) of {summary.rounds} round(s), strategy "
        f"{summary.strategy}, {summary.runtime}; at most "
        f"{_duration(summary.longest_s)} if every run reaches its deadline",
    ]
    if summary.inventory is not None:
        lines.append(
            f"  inventory {summary.inventory}: {len(summary.clients)} client(s), "
            f"each on {', '.join(summary.networks)}"
        )
    folder = summary.folder
    if folder is not None:
        state = (
            f"refused: {folder.problem}"
            if folder.problem
            else f"{folder.finished_runs} finished run(s) kept"
            if folder.finished_runs
            else "ok"
        )
        lines.append(
            f"  results folder {folder.path}: {state} "
            f"({folder.free_bytes / 2**30:.1f} GiB free)"
        )
    lines += [f"  note: {note}" for note in summary.notes]
    lines.append("nothing was started")
    return "\n".join(lines)
