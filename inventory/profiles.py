"""Default link profiles (Ethernet, WiFi, 5G) with their sources, and profile specs."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from types import MappingProxyType

from inventory.models import LinkProfile
from inventory.traces import BandwidthTrace, TraceError

# Reads the trace a profile names (a path as written) or raises TraceError.
TraceLoader = Callable[[str], BandwidthTrace]

# Starting points from /work/shared/NETWORK.md; every lab should calibrate its own
# with iperf3 (rates, both directions) and ping (RTT / 2 = one-way delay).
DEFAULT_PROFILES: Mapping[str, LinkProfile] = MappingProxyType(
    {
        "ethernet": LinkProfile(
            downlink_mbit=940.0,
            uplink_mbit=940.0,
            delay_ms=0.25,
            source="iperf3 reports for Raspberry Pi 4 GbE",
        ),
        "wifi": LinkProfile(
            downlink_mbit=150.0,
            uplink_mbit=100.0,
            delay_ms=2.5,
            jitter_ms=1.0,
            source=(
                "Pi 4 onboard 1x1 802.11ac; PHY limit 433 Mbit/s; calibrate on site"
            ),
        ),
        "5g": LinkProfile(
            downlink_mbit=100.0,
            uplink_mbit=10.0,
            delay_ms=15.0,
            jitter_ms=3.0,
            source=(
                "5G SA SDR testbed (OAI/srsRAN n78 TDD 40 MHz, ~1/4 uplink symbols):"
                " 23-121 down, 2.6-14.8 up"
            ),
        ),
        "5g-commercial": LinkProfile(
            downlink_mbit=166.0,
            uplink_mbit=21.0,
            delay_ms=15.0,
            source="Ookla 2021 median for commercial 5G: 166 down, 21 up",
        ),
    }
)

# The management network carries SSH, chrony and control traffic and is never shaped.
UNSHAPED = LinkProfile(
    downlink_mbit=math.inf,
    uplink_mbit=math.inf,
    source="management network: not shaped",
)

PROFILE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(LinkProfile))
TRACE_FIELDS = ("downlink_trace", "uplink_trace")
_NUMERIC_FIELDS = tuple(
    name for name in PROFILE_FIELDS if name != "source" and name not in TRACE_FIELDS
)
_REQUIRED_WITHOUT_BASE = ("downlink_mbit", "uplink_mbit")
ProfileValue = float | str | BandwidthTrace


class ProfileError(ValueError):
    """A profile spec that cannot become a LinkProfile.

    ``key`` is the dotted key of the offending value (``networks.wifi.profile.
    uplink_mbit``), ``problem`` says what is wrong and ``fix`` what to do.
    """

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key = key
        self.problem = problem
        self.fix = fix
        super().__init__(f"{key}: {problem}. Fix: {fix}")


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _names() -> list[str]:
    return list(DEFAULT_PROFILES)


def _known_names() -> str:
    return ", ".join(DEFAULT_PROFILES)


def _default(name: object, key: str) -> LinkProfile:
    if not isinstance(name, str):
        raise ProfileError(
            key,
            f"expected a default profile name, got {type(name).__name__} {name!r}",
            f"use one of: {_known_names()}",
        )
    if name not in DEFAULT_PROFILES:
        raise ProfileError(
            key,
            f"unknown default profile {name!r}{did_you_mean(name, _names())}",
            f"use one of: {_known_names()}, or give a mapping with downlink_mbit and "
            "uplink_mbit",
        )
    return DEFAULT_PROFILES[name]


def _trace_value(
    name: str, value: object, key: str, load_trace: TraceLoader | None
) -> BandwidthTrace:
    if not isinstance(value, str) or not value:
        raise ProfileError(
            key,
            f"{name} must be the path of a trace file, got {value!r}",
            f"write e.g. {name}: traces/5g-uplink-fades.csv (relative to the "
            "inventory file)",
        )
    if load_trace is None:
        raise ProfileError(
            key,
            f"{name} names a file, and this profile belongs to no inventory file",
            "give the trace in a profile of an inventory file",
        )
    try:
        return load_trace(value)
    except TraceError as err:
        err.key = key
        raise


def _field_value(
    name: str, value: object, key: str, load_trace: TraceLoader | None = None
) -> ProfileValue:
    if name in TRACE_FIELDS:
        return _trace_value(name, value, key, load_trace)
    if name == "source":
        if not isinstance(value, str):
            raise ProfileError(
                key, f"source must be text, got {value!r}", "quote the source"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProfileError(
            key,
            f"{name} must be a number, got {type(value).__name__} {value!r}",
            f"write {name} as a plain number, e.g. {name}: 10",
        )
    if not math.isfinite(value):
        raise ProfileError(
            key, f"{name} must be finite, got {value!r}", f"give {name} a finite number"
        )
    return float(value)


def _overrides(
    spec: Mapping[object, object], where: str, load_trace: TraceLoader | None
) -> dict[str, ProfileValue]:
    known = ("base", *PROFILE_FIELDS)
    values: dict[str, ProfileValue] = {}
    for name, value in spec.items():
        if name == "base":
            continue
        if not isinstance(name, str) or name not in PROFILE_FIELDS:
            hint = did_you_mean(name, known) if isinstance(name, str) else ""
            raise ProfileError(
                f"{where}.{name}",
                f"unknown profile key {name!r}{hint}",
                f"use only: {', '.join(known)}",
            )
        values[name] = _field_value(name, value, f"{where}.{name}", load_trace)
    return _rates_from_traces(values, where)


def _rates_from_traces(
    values: dict[str, ProfileValue], where: str
) -> dict[str, ProfileValue]:
    """A traced direction's rate is its trace's mean (never given twice)."""
    for name in TRACE_FIELDS:
        trace = values.get(name)
        if not isinstance(trace, BandwidthTrace):
            continue
        rate = name.replace("_trace", "_mbit")
        if rate in values:
            raise ProfileError(
                f"{where}.{rate}",
                f"both {rate} and {name} are given; the trace sets the rate",
                f"drop {rate} (the rate becomes the trace's mean), or drop {name}",
            )
        if not trace.mean_mbit > 0:
            raise ProfileError(
                f"{where}.{name}",
                f"the trace {trace.path} has a mean rate of 0 Mbit/s",
                "give a trace that carries traffic some of the time",
            )
        values[rate] = round(trace.mean_mbit, 3)
    return values


def _shown(name: str, value: ProfileValue) -> str:
    if isinstance(value, BandwidthTrace):
        return f"{name}={value.path}"
    return f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"


def _build(base: LinkProfile | None, values: dict[str, ProfileValue]) -> LinkProfile:
    if base is None:
        return LinkProfile(**values)  # type: ignore[arg-type]
    changed = [n for n in (*_NUMERIC_FIELDS, *TRACE_FIELDS) if n in values]
    if changed and "source" not in values:
        # The base's source cites numbers that are no longer all in effect.
        shown = ", ".join(_shown(n, values[n]) for n in changed)
        values = {**values, "source": f"{base.source} (overridden: {shown})"}
    return replace(base, **values)  # type: ignore[arg-type]


def resolve_profile(
    spec: object, where: str, load_trace: TraceLoader | None = None
) -> LinkProfile:
    """Turn a profile spec from an inventory into a LinkProfile.

    Parameters
    ----------
    spec
        A default profile name (``"wifi"``); a mapping with an optional ``base``
        default profile plus overrides (``{base: wifi, uplink_mbit: 80}``); or a
        full mapping with at least ``downlink_mbit`` and ``uplink_mbit``.
    where
        Dotted key of the spec (``networks.wifi.profile``), used in errors.
    load_trace
        Reads the file a ``downlink_trace`` or ``uplink_trace`` names (the
        inventory resolves it against its own folder); None refuses traces.

    Raises
    ------
    ProfileError
        For an unknown name or key, a wrong type, a missing rate or a value the
        LinkProfile rejects; ``key`` names the offending field.
    TraceError
        From ``load_trace``, for a missing or malformed trace file.
    """
    if isinstance(spec, str):
        return _default(spec, where)
    if not isinstance(spec, Mapping):
        raise ProfileError(
            where,
            f"a profile is a default profile name or a mapping, got "
            f"{type(spec).__name__} {spec!r}",
            f"write e.g. 'profile: wifi' or 'profile: {{base: wifi, uplink_mbit: 80}}'"
            f" (defaults: {_known_names()})",
        )
    base = _default(spec["base"], f"{where}.base") if "base" in spec else None
    values = _overrides(spec, where, load_trace)
    if base is None:
        missing = [n for n in _REQUIRED_WITHOUT_BASE if n not in values]
        if missing:
            raise ProfileError(
                f"{where}.{missing[0]}",
                f"profile without 'base' lacks {', '.join(missing)}",
                f"add {', '.join(missing)} (or a *_trace), or add 'base: "
                f"<{_known_names()}>'",
            )
    try:
        return _build(base, values)
    except ValueError as err:
        # LinkProfile's messages start with the field they reject.
        first = str(err).split(" ", 1)[0]
        key = f"{where}.{first}" if first in PROFILE_FIELDS else where
        raise ProfileError(key, str(err), f"give {first} an allowed value") from err
