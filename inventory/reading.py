"""Reading an inventory: YAML that keeps every key's line, and problems at lines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from inventory.errors import InventoryError, InventoryErrors
from inventory.values import BadValue

Parts = tuple[object, ...]


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


# Built with type() so mypy sees no subclass of an untyped base.
_LineLoader: Any = type("_LineLoader", (yaml.SafeLoader,), {})
_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def read_yaml(path: Path) -> object:
    """The YAML document in ``path``, its mappings remembering their lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(
            path,
            "file not found",
            "check the path, or start from inventory/examples/emulated.yaml",
        ) from None
    except IsADirectoryError:
        raise InventoryError(
            path, "is a directory, not an inventory file", "give the YAML file's path"
        ) from None
    except UnicodeDecodeError:
        raise InventoryError(
            path, "is not UTF-8 text", "save the inventory as UTF-8 YAML"
        ) from None
    except OSError as err:
        raise InventoryError(
            path, f"cannot read the file: {err.strerror}", "check its permissions"
        ) from None
    loader: _LineLoader | None = None
    try:
        # the reader rejects control characters already when it is built
        loader = _LineLoader(text)
        return loader.get_single_data()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        raise InventoryError(
            path,
            f"not valid YAML: {problem}",
            "fix the YAML at that line (indent with spaces; quote values that "
            "contain ': ' or start with a special character)",
            line=None if mark is None else mark.line + 1,
        ) from None
    except RecursionError:
        raise InventoryError(
            path, "YAML nested too deeply", "flatten the structure"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


def line_of(root: object, parts: Parts) -> int | None:
    """Line of the deepest key of ``parts`` found by descending from ``root``."""
    line = root.line if isinstance(root, _Mapping) else None
    current = root
    for part in parts:
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
