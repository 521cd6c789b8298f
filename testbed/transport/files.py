"""Atomic writes of local files: a temporary file beside the target, renamed."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def write_atomically(
    path: Path, write: Callable[[Path], object], mode: int | None = None
) -> None:
    """Have ``write`` fill a temporary file beside ``path``, sync it and rename it
    into place: a crash leaves the previous version, never half a file.

    The temporary name is unique, so concurrent writers never share one; on any
    error it is removed and the error propagates.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        write(tmp)
        if mode is not None:
            tmp.chmod(mode)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomically(path: Path, text: str, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` atomically (``mode`` set before it appears)."""
    write_atomically(path, lambda tmp: tmp.write_text(text), mode)


def write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    text = json.dumps(data, indent=2, default=str)
    write_text_atomically(path, text)


def copy_atomically(src: Path, dst: Path, mode: int | None = None) -> None:
    """Copy ``src`` to ``dst`` atomically (``mode`` set before it appears)."""
    write_atomically(dst, lambda tmp: shutil.copyfile(src, tmp), mode)
