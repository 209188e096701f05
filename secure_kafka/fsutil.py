"""File writes that never leave a half-written file behind, and reads of the JSON documents
written that way."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .errors import SecureKafkaError

__all__ = ["write_atomic", "read_json", "archive_dir"]

T = TypeVar("T")


def write_atomic(path: Path, data: str | bytes, mode: int = 0o600, uid: int | None = None) -> None:
    """Writes ``data`` to a temp file beside ``path``, fsyncs it and renames it into place.

    The temp file is created with ``mode`` from the start, so a secret is never readable by
    others, not even for a moment. ``uid`` (root only) hands the file to a container user.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        if uid is not None:
            os.fchown(fd, uid, uid)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_synced(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Appends ``data`` to ``path`` (created with ``mode``) in one write, fsynced before it returns."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def archive_dir(source: Path, target: Path) -> None:
    """Moves the directory ``source`` to ``target`` (replacing an older one there), keeping it as history."""
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.move(str(source), str(target))


def read_json(path: Path, parse: Callable[[Any], T], missing: str, unreadable: str) -> T:
    """``parse`` of the JSON document at ``path``.

    A missing file raises ``missing``. A file that cannot be read, is no JSON or lacks what
    ``parse`` looks for (it may fail with KeyError, TypeError or ValueError) raises
    ``unreadable`` with the error's class and the fix: these documents are written atomically,
    so a bad one is damaged, not half-written.
    """
    try:
        return parse(json.loads(path.read_text()))
    except FileNotFoundError:
        raise SecureKafkaError(missing) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SecureKafkaError(f"{unreadable} ({exc.__class__.__name__}): restore it from backup") from None
