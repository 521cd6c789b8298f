"""Tests of testbed/cli/common.py: the JSON form of what commands print."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from typer.testing import CliRunner

from testbed.cli import app
from testbed.cli.common import jsonable


@dataclass(frozen=True)
class _Inner:
    rate: float


@dataclass(frozen=True)
class _Outer:
    name: str
    inner: _Inner
    vars: MappingProxyType[str, object]
    pairs: tuple[tuple[str, object], ...]


def test_jsonable_keeps_nested_mappings_and_dataclasses() -> None:
    value = _Outer(
        "a",
        _Inner(math.inf),
        MappingProxyType({"net": {"subnet": "10.0.0.0/24"}}),
        (("management", MappingProxyType({"server_address": "10.0.0.1"})),),
    )

    out = jsonable(value)

    assert out == {
        "name": "a",
        "inner": {"rate": None},  # strict JSON has no Infinity
        "vars": {"net": {"subnet": "10.0.0.0/24"}},
        "pairs": [["management", {"server_address": "10.0.0.1"}]],
    }
    json.dumps(out, allow_nan=False)


def test_inventory_validate_json_keeps_the_group_vars() -> None:
    example = Path(__file__).parents[3] / "inventory" / "examples" / "emulated.yaml"

    result = CliRunner().invoke(
        app, ["inventory", "validate", "--format", "json", str(example)]
    )

    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    group_vars = dict((k, v) for k, v in doc["vars"])
    assert group_vars["management"]["server_address"]
    assert set(group_vars["networks"]) >= {"ethernet", "wifi", "5g"}
