"""Tests for inventory/reading.py: only regular UTF-8 files, bounded aliases."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from inventory import reading
from inventory.loader import InventoryError, load_inventory
from inventory.reading import ReadProblem, read_document

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory" / "examples"
REPO = EXAMPLE.parents[1]

BOMB = "all:\n  vars:\n    a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"    {b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n"
    for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


def _read(path: Path) -> object:
    return read_document(path, "an inventory file", "inventory/examples/emulated.yaml")


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    # Prepare: a named pipe that nobody writes to.
    fifo = tmp_path / "inventory.yaml"
    os.mkfifo(fifo)

    # Execute: in a child with a time limit, so a regression fails, not hangs.
    code = (
        "from inventory.loader import load_inventory, InventoryError\n"
        f"try:\n    load_inventory({str(fifo)!r})\n"
        "except InventoryError as err:\n    print(err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )

    # Assert
    assert "is not a regular file" in done.stdout
    assert "Fix:" in done.stdout


def test_binary_content_names_the_file_not_the_codec(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_bytes(b"all:\n  vars:\n\x89PNG\r\n\x1a\n\x00\xff\xfe")

    with pytest.raises(InventoryError) as caught:
        load_inventory(path)

    assert "is not UTF-8 text" in str(caught.value)
    assert caught.value.line == 3


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReadProblem, match="is a directory"):
        _read(tmp_path)


def test_a_file_larger_than_the_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reading, "MAX_BYTES", 100)
    path = tmp_path / "big.yaml"
    path.write_text("all:\n" + "  # comment\n" * 20)

    with pytest.raises(ReadProblem, match="larger than"):
        _read(path)


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)

    with pytest.raises(InventoryError) as caught:
        load_inventory(path)

    found = re.search(r"into ([\d,]+)", str(caught.value))
    assert "alias bomb" in str(caught.value) and found is not None
    assert int(found.group(1).replace(",", "")) > 9**9


def test_the_cli_refuses_an_alias_bomb_in_json_mode_too(tmp_path: Path) -> None:
    # The model builds in no time (aliases are shared objects); its JSON dump is
    # what expanded a billion values.
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)

    done = subprocess.run(
        [sys.executable, "-m", "testbed.cli", "inventory", "validate"]
        + ["--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )

    assert done.returncode == 2
    assert "alias bomb" in done.stderr and "Traceback" not in done.stderr


def test_an_alias_inside_itself_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("all: &top\n  vars:\n    again: *top\n")

    with pytest.raises(ReadProblem, match="contains it") as caught:
        _read(path)

    assert caught.value.line == 1


def test_modest_aliases_and_merge_keys_still_load(tmp_path: Path) -> None:
    # Prepare: the example with each client's interfaces merged from an anchor.
    text = (EXAMPLE / "emulated.yaml").read_text()
    text = text.replace(
        "    cluster_name: emu\n", "    cluster_name: emu\n    base: &base {}\n"
    ).replace(
        "          node_config: {partition-id: 0}",
        "          node_config: {<<: *base, partition-id: 0}",
    )
    path = tmp_path / "inventory.yaml"
    path.write_text(text)

    # Execute
    inventory = load_inventory(path)

    # Assert
    assert inventory.clients[0].node_config == (("partition-id", 0),)


def test_the_c_parser_is_used_and_keeps_lines(tmp_path: Path) -> None:
    if not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML built without libyaml")
    path = tmp_path / "dup.yaml"
    path.write_text("all:\n  vars:\n    a: 1\n    a: 2\n")

    with pytest.raises(InventoryError) as caught:
        load_inventory(path)

    assert issubclass(reading._LineLoader, yaml.CSafeLoader)
    assert caught.value.line == 4 and "duplicate key 'a'" in str(caught.value)


def test_the_collector_is_enabled_again_after_a_failed_read(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("all: [\n")

    with pytest.raises(ReadProblem):
        _read(path)

    import gc

    assert gc.isenabled()
