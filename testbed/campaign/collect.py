"""What a run leaves behind turned into data: fetched node files, capture and
SuperNode-log events, and the run's tables for the campaign."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.failures import failure_table
from analysis.linkbound import calibration_rates, mark_bound, profile_rates
from analysis.phases import RunInfo, phases_from_events
from analysis.system import read_samples, system_table
from analysis.wire import byte_accounting, reconcile_transfers
from instrumentation.capture import (
    read_packets,
    segment_transfers,
    transfer_events,
)
from instrumentation.events import EventLog, read_events
from instrumentation.link_pace import LinkPace
from instrumentation.schema import COMMON_FIELDS, EventKind
from instrumentation.supernode_log import supernode_log_events
from inventory.models import Inventory
from testbed.campaign.measure import RunCapture, node_pcap
from testbed.campaign.model import Campaign
from testbed.campaign.plan import RunOutcome
from testbed.campaign.run import Run
from testbed.campaign.sites import (
    fetch,
)
from testbed.lab.calibrate import last_calibration
from testbed.transport.processes import (
    read_stamped_log,
)

# Bursts are cut at 50 ms of silence, finer than the parser's default: a message is
# then rebuilt from every burst inside the SuperNode's send/receive window, and a
# poll or heartbeat 0.1-0.25 s beside the message stays a burst of its own instead
# of stretching the message's first or last byte.
CAPTURE_GAP_S = 0.05


def _capture_events(run: Run, captured: RunCapture) -> list[dict[str, Any]]:
    """The ``transfer`` (server side) or ``node_transfer`` (node side) events of
    one capture, without the keys the event log adds.

    On a real node tcpdump stamps packets with the node's clock; an emulated node
    with an injected offset gets it here, as its SuperNode log and samples do.
    """
    profile = run.network.profile
    transfers = segment_transfers(
        read_packets(captured.pcap),
        str(run.network.server_address),
        run.port,
        gap_s=CAPTURE_GAP_S,
        pace=LinkPace(
            down_mbit=profile.downlink_mbit,
            up_mbit=profile.uplink_mbit,
            rtt_s=2 * (profile.delay_ms + profile.jitter_ms) / 1e3,
        ),
    )
    offset = 0
    if captured.side == "node":
        offset = run.campaign.clock_offsets_ns.get(captured.host.name, 0)
    out = []
    for event in transfer_events(transfers, captured.host.name, run.network.name):
        fields = {k: v for k, v in event.items() if k not in COMMON_FIELDS}
        if captured.side == "node":
            fields["start_ns"] += offset
            fields["end_ns"] += offset
            fields["side"] = "node"
        out.append(fields)
    return out


def _fetch_node_files(run: Run) -> list[str]:
    """Copy each remote node's log, capture and samples into the run folder;
    return what could not be fetched."""
    missing = []
    for host in run.inventory.clients:
        site = run.site(host)
        if not site.fetch_needed:
            continue
        remote = run.node_dir(host)
        wanted = [f"nodes/{host.name}.log"]
        if run.campaign.instrument and run.campaign.capture:
            wanted += [node_pcap(host), f"captures/{host.name}-tcpdump.log"]
        if run.campaign.instrument and run.campaign.system_sampling_hz > 0:
            wanted += [f"system/{host.name}.jsonl", f"system/{host.name}.log"]
        for rel in wanted:
            if not fetch(site, remote, run.dir, rel):
                missing.append(f"{host.name}:{remote}/{rel}")
    return missing


def post_process(run: Run, captures: list[RunCapture]) -> None:
    """Turn captures and SuperNode logs into events of the run's log."""
    missing = _fetch_node_files(run)
    if missing:
        with EventLog(run.events_path, run_id=run.plan.run_id) as events:
            events.append(EventKind.FETCH_ERROR, missing=missing)
    with EventLog(run.events_path, run_id=run.plan.run_id) as events:
        for captured in captures:
            if not captured.pcap.exists():
                continue
            kind = (
                EventKind.TRANSFER
                if captured.side == "server"
                else EventKind.NODE_TRANSFER
            )
            for fields in _capture_events(run, captured):
                events.append(kind, **fields)
        for host in run.inventory.clients:
            log = run.dir / "nodes" / f"{host.name}.log"
            if log.exists():
                # On a real node the SuperNode log is read (and stamped) on the
                # node; an emulated node with an injected offset gets it here too.
                offset = run.campaign.clock_offsets_ns.get(host.name, 0)
                lines = [(t + offset, text) for t, text in read_stamped_log(log)]
                for event in supernode_log_events(lines, host.name):
                    events.append(EventKind.SUPERNODE_LOG, **event)


@dataclass(frozen=True)
class RunTables:
    """What one finished run contributes to the campaign's tables."""

    phases: pd.DataFrame
    system: pd.DataFrame | None
    clocks: list[dict[str, Any]]
    transfers: pd.DataFrame
    bytes: pd.DataFrame
    failures: pd.DataFrame


def _node_samples(path: Path, offset_ns: int) -> list[dict[str, Any]]:
    """A node's system samples, shifted by an emulated node's injected offset."""
    samples = read_samples(path)
    if offset_ns:
        for sample in samples:
            if "t_ns" in sample:
                sample["t_ns"] = int(sample["t_ns"]) + offset_ns
    return samples


def collect_run(
    campaign: Campaign, inventory: Inventory, outcome: RunOutcome, out: Path
) -> RunTables:
    """Read one run's event log and system samples into tables."""
    info = RunInfo(
        campaign=campaign.name,
        run_id=outcome.run_id,
        network=outcome.network,
        strategy=campaign.strategy.name,
        repetition=outcome.repetition,
    )
    run_dir = out / "runs" / outcome.run_id
    events = read_events(run_dir / "events.jsonl")
    clocks = [
        {
            k: e.get(k)
            for k in (
                "node",
                "path",
                "when",
                "offset_ns",
                "uncertainty_ns",
                "rtt_ns",
                "injected_offset_ns",
                "error",
            )
        }
        | {"run_id": outcome.run_id}
        for e in events
        if e["event"] in (EventKind.CLOCK, EventKind.CLOCK_ERROR)
    ]
    offsets = campaign.clock_offsets_ns
    tables = [
        system_table(
            _node_samples(path, offsets.get(path.stem, 0)),
            outcome.run_id,
            outcome.network,
        )
        for path in sorted((run_dir / "system").glob("*.jsonl"))
    ]
    system = pd.concat(tables, ignore_index=True) if tables else None
    phases = phases_from_events(events, info)
    nics = {}
    for host in inventory.clients:
        iface = host.interface(outcome.network)
        if iface is not None:
            nics[host.name] = iface.ifname
    profile = inventory.network(outcome.network).profile
    rates = {
        **profile_rates({outcome.network: asdict(profile)}),
        **calibration_rates(last_calibration(inventory.path)),
    }
    return RunTables(
        phases,
        system,
        clocks,
        mark_bound(reconcile_transfers(events), rates),
        byte_accounting(phases, system, nics),
        failure_table(events, outcome.run_id),
    )
