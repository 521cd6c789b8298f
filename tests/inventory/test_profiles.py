"""Tests for inventory/profiles.py: default profiles and profile specs."""

import math

import pytest

from inventory.models import LinkProfile
from inventory.profiles import DEFAULT_PROFILES, ProfileError, resolve_profile

WHERE = "networks.wifi.profile"


@pytest.mark.parametrize(
    ("name", "down", "up", "delay", "jitter", "source_part"),
    [
        ("ethernet", 940, 940, 0.25, 0, "Raspberry Pi 4 GbE"),
        ("wifi", 150, 100, 2.5, 1, "PHY limit 433 Mbit/s"),
        ("5g", 100, 10, 15, 3, "23-121 down, 2.6-14.8 up"),
        ("5g-commercial", 166, 21, 15, 0, "Ookla 2021"),
    ],
)
def test_default_profiles_hold_documented_figures(
    name: str, down: float, up: float, delay: float, jitter: float, source_part: str
) -> None:
    profile = DEFAULT_PROFILES[name]

    assert (profile.downlink_mbit, profile.uplink_mbit) == (down, up)
    assert (profile.delay_ms, profile.jitter_ms, profile.loss_pct) == (delay, jitter, 0)
    assert source_part in profile.source


def test_default_profiles_cannot_be_changed() -> None:
    with pytest.raises(TypeError):
        DEFAULT_PROFILES["wifi"] = DEFAULT_PROFILES["5g"]  # type: ignore[index]


def test_name_gives_the_default() -> None:
    assert resolve_profile("5g", WHERE) is DEFAULT_PROFILES["5g"]


def test_base_with_overrides_keeps_the_rest_and_says_what_changed() -> None:
    profile = resolve_profile({"base": "wifi", "uplink_mbit": 80}, WHERE)

    assert profile.uplink_mbit == 80.0
    assert profile.downlink_mbit == 150.0
    assert profile.jitter_ms == 1.0
    assert profile.source.startswith(DEFAULT_PROFILES["wifi"].source)
    assert "overridden: uplink_mbit=80" in profile.source


def test_base_with_own_source_uses_it() -> None:
    profile = resolve_profile({"base": "wifi", "delay_ms": 4, "source": "ping"}, WHERE)

    assert profile == LinkProfile(150.0, 100.0, 4.0, 1.0, 0.0, "ping")


def test_full_mapping() -> None:
    spec = {"downlink_mbit": 100, "uplink_mbit": 10, "delay_ms": 15, "source": "x"}

    assert resolve_profile(spec, WHERE) == LinkProfile(100.0, 10.0, 15.0, source="x")


@pytest.mark.parametrize(
    ("spec", "key", "problem_part", "fix_part"),
    [
        ("wify", WHERE, "did you mean 'wifi'?", "ethernet, wifi, 5g, 5g-commercial"),
        (12, WHERE, "int 12", "profile: wifi"),
        ({"base": "lte"}, f"{WHERE}.base", "unknown default profile 'lte'", "5g"),
        ({"base": "wifi", "uplnk_mbit": 1}, f"{WHERE}.uplnk_mbit", "'uplink_mbit'", ""),
        ({"uplink_mbit": 10}, f"{WHERE}.downlink_mbit", "lacks downlink_mbit", "base"),
        ({"base": "wifi", "uplink_mbit": -1}, f"{WHERE}.uplink_mbit", "> 0", ""),
        ({"base": "wifi", "loss_pct": 100}, f"{WHERE}.loss_pct", "[0, 100)", ""),
        ({"base": "wifi", "delay_ms": "5ms"}, f"{WHERE}.delay_ms", "number", "10"),
        ({"base": "wifi", "delay_ms": True}, f"{WHERE}.delay_ms", "number", ""),
        ({"base": "wifi", "jitter_ms": math.nan}, f"{WHERE}.jitter_ms", "finite", ""),
        ({"base": "wifi", "source": 3}, f"{WHERE}.source", "text", "quote"),
    ],
)
def test_bad_specs_name_the_field(
    spec: object, key: str, problem_part: str, fix_part: str
) -> None:
    with pytest.raises(ProfileError) as caught:
        resolve_profile(spec, WHERE)

    assert caught.value.key == key
    assert problem_part in caught.value.problem
    assert fix_part in caught.value.fix
    assert isinstance(caught.value, ValueError)
