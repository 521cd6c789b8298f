"""Reading a YAML file safely: regular files only, libyaml where present, no
duplicate keys, bounded aliases, every key's line kept; problems at lines.

Both loaders read through here: the inventory (:func:`read_yaml`) and the
campaign file (testbed/campaign/model.py, through :func:`read_document`).
"""

from __future__ import annotations

import gc
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from inventory.errors import InventoryError, InventoryErrors
from inventory.values import BadValue

Parts = tuple[object, ...]

# A configuration file larger than this is a mistake (a log, a dataset): 50,000
# hosts take about 10 MB.
MAX_BYTES = 64 * 2**20
# Aliases may repeat what is written (Ansible's `<<: *defaults`), but not blow it
# up: an alias bomb of 9 nested lists of 9 aliases is a billion values.
MAX_EXPANSION = 10
MIN_EXPANSION_BUDGET = 100_000


class ReadProblem(Exception):
    """Why a file could not be read as YAML: what, the fix, and the line if known."""

    def __init__(self, problem: str, fix: str, line: int | None = None) -> None:
        super().__init__(problem)
        self.problem, self.fix, self.line = problem, fix, line


class _Mapping(dict[Any, Any]):
    """A YAML mapping that remembers its own line and the line of each key (1-based)."""

    def __init__(self, line: int | None = None) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _reject_duplicate_keys(node: Any) -> None:
    # PyYAML keeps the last of two equal keys silently; two `client1:` entries
    # would then lose one host without a word.
    seen: set[tuple[str, str]] = set()
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
            ident = (key_node.tag, key_node.value)
            if ident in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key_node.value!r}",
                    key_node.start_mark,
                )
            seen.add(ident)


def _construct_mapping(loader: Any, node: Any) -> Iterator[_Mapping]:
    mapping = _Mapping(node.start_mark.line + 1)
    yield mapping
    _reject_duplicate_keys(node)
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError as err:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found a key that is not a plain value: {key!r}",
                key_node.start_mark,
            ) from err
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1


# Built with type() so mypy sees no subclass of an untyped base. libyaml's parser
# (CSafeLoader) is several times faster; the constructor, which keeps the lines
# and refuses duplicate keys, is the same Python code in both.
_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_LineLoader: Any = type("_LineLoader", (_BASE_LOADER,), {})
_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def _read_text(path: Path, what: str, example: str) -> str:
    """The UTF-8 text of the regular file at ``path``; never blocks on a FIFO."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ReadProblem(
            "file not found", f"check the path, or start from {example}"
        ) from None
    except IsADirectoryError:
        raise ReadProblem(
            f"is a directory, not {what}", "give the YAML file's path"
        ) from None
    except OSError as err:
        raise ReadProblem(
            f"cannot open the file: {err.strerror}", "check the path and permissions"
        ) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ReadProblem(
                f"is a directory, not {what}", "give the YAML file's path"
            )
        if not stat.S_ISREG(mode):
            raise ReadProblem(
                "is not a regular file (a pipe, socket or device)",
                "copy it to a regular file and give that file's path",
            )
        with open(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as err:
        raise ReadProblem(
            f"cannot read the file: {err.strerror}", "check its permissions"
        ) from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise ReadProblem(
            f"is larger than {MAX_BYTES // 2**20} MiB, too large for {what}",
            "check that the path names the YAML file",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ReadProblem(
            f"is not UTF-8 text (byte {err.start} cannot be decoded; a binary file?)",
            f"give {what} as UTF-8 YAML",
            line,
        ) from None


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_aliases(root: Any) -> None:
    """Refuse an alias that holds itself, or aliases that expand too far.

    The composed YAML is a graph: an alias is the anchored node again. Its size
    once expanded (what a JSON dump or a walk of the data visits) is counted
    node by node, each node once, so the check is linear in what is written.
    """
    expanded: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            expanded[key] = 1 + sum(expanded[id(c)] for c in _children(node))
            continue
        if key in expanded:
            continue
        if key in open_nodes:
            raise ReadProblem(
                "an alias refers to a mapping or list that contains it (endless data)",
                "replace the alias by the values it stands for",
                node.start_mark.line + 1,
            )
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))
    written = len(expanded)
    total = expanded[id(root)]
    if total > max(MIN_EXPANSION_BUDGET, MAX_EXPANSION * written):
        raise ReadProblem(
            f"its aliases expand {written} written values into {total:,} (an alias "
            "bomb?)",
            "write the values out, or use fewer nested aliases (*name)",
        )


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a large document is built.

    The collector walks every live object again and again as a large file is
    composed and its models built: 50,000 hosts took 5 times as long per host as
    5,000. Loading makes no garbage cycles worth collecting meanwhile.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def read_document(path: Path, what: str, example: str) -> object:
    """The YAML document in the file at ``path``, its mappings remembering lines.

    ``what`` names the file in messages ("an inventory file"); ``example`` is a
    file to start from when the path does not exist.

    Raises
    ------
    ReadProblem
        For anything that keeps the file from being read: a path that is not a
        regular file, binary content, YAML errors, duplicate keys, alias bombs.
    """
    text = _read_text(path, what, example)
    loader: Any = None
    try:
        # the reader rejects control characters already when it is built
        with collector_paused():
            loader = _LineLoader(text)
            node = loader.get_single_node()
            if node is None:
                return None
            if "&" in text:  # without an anchor there is no alias
                _check_aliases(node)
            return loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        raise ReadProblem(
            f"not valid YAML: {problem}",
            "fix the YAML at that line (indent with spaces; quote values that "
            "contain ': ' or start with a special character)",
            None if mark is None else mark.line + 1,
        ) from None
    except RecursionError:
        raise ReadProblem("YAML nested too deeply", "flatten the structure") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: Path) -> object:
    """The inventory document in ``path``, its mappings remembering their lines."""
    try:
        return read_document(
            path, "an inventory file", "inventory/examples/emulated.yaml"
        )
    except ReadProblem as err:
        raise InventoryError(path, err.problem, err.fix, line=err.line) from None


def line_of(root: object, parts: Parts) -> int | None:
    """Line of the deepest key of ``parts`` found by descending from ``root``.

    An integer part indexes a list; the line is then that item's, if it is a
    mapping.
    """
    line = root.line if isinstance(root, _Mapping) else None
    current = root
    for part in parts:
        if isinstance(current, list) and isinstance(part, int):
            if not 0 <= part < len(current):
                break
            current = current[part]
            line = current.line if isinstance(current, _Mapping) else line
            continue
        if not isinstance(current, _Mapping) or part not in current.key_lines:
            break
        line = current.key_lines[part]
        current = current[part]
    return line


class Problems:
    """Every problem found in one inventory file, each at its line when known."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors: list[InventoryError] = []

    def error(
        self,
        problem: str,
        fix: str,
        *,
        root: object = None,
        parts: Parts = (),
        host: str | None = None,
        line: int | None = None,
    ) -> None:
        key = ".".join(str(p) for p in parts) if parts else None
        if line is None and root is not None:
            line = line_of(root, parts)
        self.errors.append(
            InventoryError(self.path, problem, fix, host=host, key=key, line=line)
        )

    def bad(self, bad: BadValue, root: object, parts: Parts, host: str | None) -> None:
        self.error(bad.problem, bad.fix, root=root, parts=parts, host=host)

    def raise_if_any(self) -> None:
        """Raise the problem found, or all of them in line order, if any."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            ordered = sorted(self.errors, key=lambda e: (e.line is None, e.line or 0))
            raise InventoryErrors(ordered)
