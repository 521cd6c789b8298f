"""Property tests: any inventory input gives a valid model or a clear error, never a
traceback of another kind."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inventory.loader import InventoryError, load_inventory, parse_inventory
from inventory.models import Inventory
from tests.yaml_values import yaml_values

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory" / "examples"
BASE: dict[str, Any] = yaml.safe_load((EXAMPLE / "emulated.yaml").read_text())

values = yaml_values(["10.77.1.11", "10.77.0.0/24", "eth0", "wlan0", "5g", "ethernet"])


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


PATHS = _paths(BASE)[1:]


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def _outcome(document: object) -> Inventory | InventoryError:
    try:
        return parse_inventory(document, "fuzz.yaml", ["ethernet"])
    except InventoryError as err:  # InventoryErrors is a subclass
        return err


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=values)
def test_any_one_value_changed_gives_a_model_or_a_clear_error(
    path: tuple[Any, ...], value: Any
) -> None:
    result = _outcome(_replace(BASE, path, value))

    if isinstance(result, InventoryError):
        text = str(result)
        assert "fuzz.yaml" in text and "Fix:" in text
    else:
        assert isinstance(result, Inventory) and result.clients


@settings(max_examples=200, deadline=None)
@given(document=values)
def test_any_document_gives_a_model_or_a_clear_error(document: Any) -> None:
    result = _outcome(document)
    assert isinstance(result, InventoryError | Inventory)
    if isinstance(result, InventoryError):
        assert "Fix:" in str(result)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_any_file_text_gives_a_model_or_a_clear_error(
    tmp_path_factory: Any, text: str
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "inventory.yaml"
    path.write_text(text)
    try:
        load_inventory(path)
    except InventoryError as err:
        assert str(path) in str(err)
