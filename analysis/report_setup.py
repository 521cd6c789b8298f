"""Report sections on how the numbers were made: emulation, links, clocks, runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.damage import ASYNCHRONY, Damage
from analysis.html import MAX_LISTED, details, folded
from analysis.html import esc as _esc
from analysis.html import fmt as _fmt
from analysis.html import note as _note
from analysis.html import table as _table
from analysis.phases import unmatched_frame
from analysis.results_files import scan_event_log
from analysis.summary import network_order
from instrumentation.schema import EventKind

_FEATURE_LABELS = {
    "rate": ("Rate limits", "were"),
    "loss": ("Packet loss", "was"),
    "delay": ("Delay and jitter", "were"),
    "jitter": ("Jitter", "was"),
    "cpu": ("A CPU share per node", "was"),
}


def _feature(value: object) -> tuple[bool, str]:
    if isinstance(value, Mapping):
        return bool(value.get("active")), str(value.get("detail") or "")
    return bool(value), ""


def _rate_only(value: object) -> list[str]:
    if isinstance(value, Mapping):
        return [str(n) for n in value.get("rate_only_networks") or ()]
    return []


def emulation_notices(manifest: Mapping[str, Any]) -> list[str]:
    """One sentence per link-emulation feature the manifest reports as NOT active,
    or active but leaving networks out (``rate_only_networks``: the delay line's
    fallback to rate only)."""
    emulation = manifest.get("emulation")
    if not isinstance(emulation, Mapping):
        return []
    notices = []
    for key, value in emulation.items():
        active, detail = _feature(value)
        label, verb = _FEATURE_LABELS.get(key, (key.capitalize(), "was"))
        left_out = _rate_only(value)
        if active and left_out:
            notices.append(
                f"{label} {verb} not emulated on {', '.join(left_out)} (rate only)"
                + (f": {detail}" if detail else ".")
            )
        if active:
            continue
        notices.append(
            f"{label} {verb} not emulated" + (f": {detail}" if detail else ".")
        )
    return notices


def emulation_section(manifest: Mapping[str, Any]) -> str:
    emulation = manifest.get("emulation")
    if not isinstance(emulation, Mapping):
        return _note("The manifest does not say which link features were emulated.")
    notices = emulation_notices(manifest)
    active = [k for k, v in emulation.items() if _feature(v)[0]]
    parts = []
    if notices:
        items = "".join(f"<li>{_esc(n)}</li>" for n in notices)
        parts.append(
            '<div class="notice"><strong>Not emulated — read the numbers with this in '
            f"mind:</strong><ul>{items}</ul></div>"
        )
    else:
        parts.append(
            '<p class="ok">Every link feature in the manifest was emulated.</p>'
        )
    if active:
        named = [
            f"{key} ({value['mechanism']})"
            if isinstance(value, Mapping) and value.get("mechanism")
            else key
            for key, value in sorted(emulation.items())
            if key in active
        ]
        parts.append(_note("Emulated: " + ", ".join(named) + "."))
    cpu_active, cpu_detail = _feature(emulation.get("cpu"))
    if cpu_active and cpu_detail:
        parts.append(_note(f"Each node's CPU: {cpu_detail}."))
    return "".join(parts)


def nodes_section(manifest: Mapping[str, Any]) -> str:
    """Each client's device class and CPU/memory as the inventory gave them
    (manifest ``inventory.nodes``), with the nodes per class."""
    inventory = manifest.get("inventory")
    nodes = inventory.get("nodes") if isinstance(inventory, Mapping) else None
    if not isinstance(nodes, list) or not nodes:
        return _note("The manifest does not list the nodes' device classes.")
    rows: list[list[object]] = []
    per_class: dict[str, int] = {}
    for node in nodes:
        if not isinstance(node, Mapping):
            continue
        board = node.get("device_class") or "none given"
        per_class[board] = per_class.get(board, 0) + 1
        rows.append(
            [
                node.get("name", ""),
                board,
                _fmt(node.get("cpu_quota"), 2),
                node.get("memory_mb") if node.get("memory_mb") is not None else "–",
                node.get("cpu_quota_source") or "–",
            ]
        )
    counts = ", ".join(f"{board}: {n}" for board, n in sorted(per_class.items()))
    headers = ["node", "device class", "cpu_quota (cores)", "memory_mb", "quota from"]
    return _note(
        f"Nodes per device class: {counts}. On the emulated cluster the quota and "
        "memory are cgroup limits; a real lab records them and applies none."
    ) + _table(headers, rows, numeric=lambda j: j in (2, 3))


def profiles_section(manifest: Mapping[str, Any]) -> str:
    profiles = manifest.get("link_profiles")
    if not isinstance(profiles, Mapping) or not profiles:
        return _note("The manifest lists no link profiles.")
    keys: list[str] = []
    for profile in profiles.values():
        if isinstance(profile, Mapping):
            keys.extend(k for k in profile if k not in keys)
    networks = network_order(profiles)
    rows = [[n, *(_fmt(_get(profiles[n], k), 2) for k in keys)] for n in networks]
    return _table(["network", *keys], rows, numeric=lambda j: j > 0)


def _get(mapping: object, key: str) -> object:
    return mapping.get(key) if isinstance(mapping, Mapping) else None


def _ms(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) / 1e6


def clocks_section(manifest: Mapping[str, Any]) -> str:
    clocks = manifest.get("clocks")
    if not isinstance(clocks, list) or not clocks:
        return _note("The manifest records no clock offsets.")
    rows, classes = [], []
    injected_n = recovered = 0
    for clock in clocks:
        if not isinstance(clock, Mapping):
            continue
        offset = _ms(clock.get("offset_ns"))
        bound = _ms(clock.get("uncertainty_ns"))
        injected = _ms(clock.get("injected_offset_ns"))
        error = None if offset is None or injected is None else offset - injected
        within = None if error is None or bound is None else abs(error) <= bound
        if within is not None:
            injected_n += 1
            recovered += int(within)
        rows.append(
            [
                clock.get("run_id", ""),
                clock.get("node", ""),
                clock.get("path", ""),
                clock.get("when", ""),
                _fmt(offset),
                _fmt(bound),
                _fmt(injected),
                _fmt(error),
                {None: "–", True: "yes", False: "no"}[within],
            ]
        )
        classes.append("failed" if within is False else "")
    headers = [
        "run",
        "node",
        "path",
        "when",
        "offset (ms)",
        "± (ms)",
        "injected (ms)",
        "measured − injected (ms)",
        "within ±",
    ]
    offsets = [abs(v) for c in clocks if isinstance(c, Mapping)
               if (v := _ms(c.get("offset_ns"))) is not None]  # fmt: skip
    largest = f" The largest |offset| is {max(offsets):.3f} ms." if offsets else ""
    zero = bool(offsets) and max(offsets) == 0.0
    summary = _note(
        f"{len(rows)} measurements of node clock minus server clock "
        "(docs/clocks.md); the true offset lies within offset ± uncertainty."
        + (" Every offset is 0 ms." if zero else largest)
        + (
            f" {recovered} of {injected_n} recovered their injected offset within "
            "that bound (misses highlighted)."
            if injected_n
            else ""
        )
    )
    listing = _table(headers, rows, classes, numeric=lambda j: 4 <= j <= 7)
    return summary + details(
        f"Every measurement ({len(rows)})", listing, bool(classes.count("failed"))
    )


def runs_section(manifest: Mapping[str, Any], df: pd.DataFrame) -> str:
    runs = manifest.get("runs")
    if not isinstance(runs, list) or not runs:
        return _note("The manifest lists no runs.")
    rows_per_run = df.groupby("run_id").size().to_dict()
    headers = ["run", "network", "repetition", "status", "reason", "phase rows"]
    rows, classes = [], []
    for run in runs:
        if not isinstance(run, Mapping):
            continue
        status = str(run.get("status", "unknown"))
        run_id = str(run.get("run_id", ""))
        rows.append(
            [
                run_id,
                run.get("network", ""),
                run.get("repetition", ""),
                status,
                run.get("reason") or "",
                rows_per_run.get(run_id, 0),
            ]
        )
        classes.append("" if status == "ok" else "failed")
    failed = sum(1 for c in classes if c)
    summary = _note(f"{len(rows)} runs, {failed} not ok (highlighted).")
    listing = _table(headers, rows, classes, numeric=lambda j: j in (2, 5))
    return summary + (
        folded("Every run", listing, len(rows)) if not failed else listing
    )


def _unmatched_part(df: pd.DataFrame) -> str:
    unmatched = unmatched_frame(df.attrs.get("unmatched", []))
    if unmatched.empty:
        return _note("Every client message was matched to its captured transfers.")
    counts = unmatched.groupby(["run_id", "direction", "reason"]).size().reset_index()
    rows = [list(r) for r in counts.itertuples(index=False)]
    return (
        f'<p class="notice">{len(unmatched)} message transfers had no matching capture '
        "and have no downlink/uplink row (nothing was estimated in their place).</p>"
        + _table(
            ["run", "direction", "reason", "messages"], rows, numeric=lambda j: j == 3
        )
    )


def _tiling_part(df: pd.DataFrame) -> str:
    """Node rounds the round anatomy could not tile, or tiled with doubts."""
    records = [r for r in df.attrs.get("anatomy", []) if isinstance(r, Mapping)]
    unresolved = df.loc[df["phase"] == "unresolved", ["run_id", "round", "node"]]
    if not records and unresolved.empty:
        return ""
    parts = []
    if records:
        tiled = sum(1 for r in records if r.get("tiled"))
        parts.append(
            _note(f"The round anatomy tiled {tiled} of {len(records)} node rounds.")
        )
    noted = [r for r in records if r.get("note")]
    if noted:
        counts: dict[tuple[str, str, str], int] = {}
        for r in noted:
            key = (str(r.get("run_id", "")), "yes" if r.get("tiled") else "no")
            counts[(*key, str(r["note"]))] = counts.get((*key, str(r["note"])), 0) + 1
        rows = [[*key, n] for key, n in sorted(counts.items())][:MAX_LISTED]
        parts.append(
            _table(
                ["run", "tiled", "note", "node rounds"],
                rows,
                numeric=lambda j: j == 3,
            )
        )
    if not unresolved.empty:
        n = len(unresolved.drop_duplicates())
        parts.append(
            _note(
                f"{n} tiled node rounds have unresolved stretches (instants missing "
                "inside them): their rounds are incomplete and left out of medians."
            )
        )
    return "<h3>Round anatomy</h3>" + "".join(parts)


def quality_section(df: pd.DataFrame) -> str:
    return _unmatched_part(df) + _tiling_part(df)


def provenance_section(manifest: Mapping[str, Any]) -> str:
    rows: list[list[object]] = []
    for key in ("git_commit", "kernel"):
        rows.append([key, manifest.get(key, "not recorded")])
    versions = manifest.get("versions")
    if isinstance(versions, Mapping):
        rows.extend([f"version: {k}", v] for k, v in sorted(versions.items()))
    else:
        rows.append(["versions", "not recorded"])
    return _table(["item", "value"], rows)


@dataclass(frozen=True)
class EventLogs:
    """The FedBuff updates of the runs' event logs (runs without any are absent).

    ``events`` maps a run id (its folder name) to its ``fedbuff_update`` events;
    damaged lines are recorded in the :class:`analysis.damage.Damage` given to
    :func:`read_event_logs`.
    """

    events: dict[str, tuple[dict[str, Any], ...]]


def read_event_logs(results_dir: Path, damage: Damage | None = None) -> EventLogs:
    """The FedBuff updates of ``runs/*/events.jsonl``; damaged lines recorded.

    Each log is scanned line by line (analysis/results_files.py): a long
    campaign's logs hold millions of events the report reads elsewhere.
    """
    events: dict[str, tuple[dict[str, Any], ...]] = {}
    for path in sorted(Path(results_dir).glob("runs/*/events.jsonl")):
        updates = scan_event_log(
            path, (EventKind.FEDBUFF_UPDATE,), damage, (ASYNCHRONY,)
        )
        if updates:
            events[path.parent.name] = tuple(updates)
    return EventLogs(events=events)
