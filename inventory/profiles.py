"""Default link profiles (Ethernet, WiFi, 5G) with their sources, and profile specs."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from types import MappingProxyType

from inventory.models import LinkProfile

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
_NUMERIC_FIELDS = tuple(name for name in PROFILE_FIELDS if name != "source")
_REQUIRED_WITHOUT_BASE = ("downlink_mbit", "uplink_mbit")


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


def _field_value(name: str, value: object, key: str) -> float | str:
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


def _overrides(spec: Mapping[object, object], where: str) -> dict[str, float | str]:
    known = ("base", *PROFILE_FIELDS)
    values: dict[str, float | str] = {}
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
        values[name] = _field_value(name, value, f"{where}.{name}")
    return values


def _build(base: LinkProfile | None, values: dict[str, float | str]) -> LinkProfile:
    if base is None:
        return LinkProfile(**values)  # type: ignore[arg-type]
    changed = [n for n in _NUMERIC_FIELDS if n in values]
    if changed and "source" not in values:
        # The base's source cites numbers that are no longer all in effect.
        shown = ", ".join(f"{n}={values[n]:g}" for n in changed)
        values = {**values, "source": f"{base.source} (overridden: {shown})"}
    return replace(base, **values)  # type: ignore[arg-type]


def resolve_profile(spec: object, where: str) -> LinkProfile:
    """Turn a profile spec from an inventory into a LinkProfile.

    Parameters
    ----------
    spec
        A default profile name (``"wifi"``); a mapping with an optional ``base``
        default profile plus overrides (``{base: wifi, uplink_mbit: 80}``); or a
        full mapping with at least ``downlink_mbit`` and ``uplink_mbit``.
    where
        Dotted key of the spec (``networks.wifi.profile``), used in errors.

    Raises
    ------
    ProfileError
        For an unknown name or key, a wrong type, a missing rate or a value the
        LinkProfile rejects; ``key`` names the offending field.
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
    values = _overrides(spec, where)
    if base is None:
        missing = [n for n in _REQUIRED_WITHOUT_BASE if n not in values]
        if missing:
            raise ProfileError(
                f"{where}.{missing[0]}",
                f"profile without 'base' lacks {', '.join(missing)}",
                f"add {', '.join(missing)}, or add 'base: <{_known_names()}>'",
            )
    try:
        return _build(base, values)
    except ValueError as err:
        # LinkProfile's messages start with the field they reject.
        first = str(err).split(" ", 1)[0]
        key = f"{where}.{first}" if first in PROFILE_FIELDS else where
        raise ProfileError(key, str(err), f"give {first} an allowed value") from err
