"""The durable decisions trail: every line the authorizing nodes write to their audit log,
collected on the host into ``certs/<env>/audit/decisions/<node>/<YYYY-MM-DD>.log``.

A node's own audit log (``ops/audit.py``) is rolled at auditLogFileMb (10 MB) with a bounded number of backups
and lives on the node's volume, so under load its oldest decisions are deleted by design. The
host collects from it often enough (``audit``, ``up``, ``down``, and ``audit collect --follow``
continuously), and what it collected stays until ``down --purge`` or the profile's retention.

Which lines are new is decided by content, not by file offsets: the log's files are renamed
as it rolls, and a node's volume can be replaced. The last ``FINGERPRINT_LINES`` lines
collected from a node are looked for in what the node holds now (oldest file first); what
follows them is new. Each line carries its millisecond and all of a decision, so that block of
lines does not occur twice. Not found: the node's log rolled past it or was replaced; every
line it holds is then new, and a gap line says that decisions may be missing in between.

Exactly once, also when the collector dies: the trail's own last lines are the checkpoint (no
second file that could disagree with it), an append is one write, fsynced, and lines a crash
left unsealed (a torn one too) are cut before the next collection: they are collected again.

Every line is sealed in a MAC chain as it is appended (``ops/decision_seals.py``): ``verify``
names the first line changed, removed or reordered since.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..fsutil import append_synced
from .decision_seals import NodeSeals
from .trail import Verdict

__all__ = ["Collected", "DecisionTrail", "FINGERPRINT_LINES", "GAP_PREFIX", "complete_lines", "new_lines"]

FINGERPRINT_LINES = 16
GAP_PREFIX = "# gap: "
SEGMENT = re.compile(r"^(\d{4}-\d\d-\d\d)\.log$")
READ_CHUNK = 64 * 1024  # segments are read from their end, this much at a time


def complete_lines(text: str) -> list[str]:
    """The lines of ``text`` that end in a newline: a line the node is still writing waits."""
    return text.split("\n")[:-1] if text else []


def new_lines(held: Sequence[str], collected_tail: Sequence[str]) -> tuple[list[str], bool]:
    """``(lines of held after what was collected, whether that point was found)``.

    ``held``: the node's audit lines now, oldest first; ``collected_tail``: the last lines
    collected from it. Nothing collected yet: all of ``held``; nothing held: nothing. Found as
    a block: what follows it. Else, the tail's end at the very
    start of ``held`` (the roll deleted the file holding the rest of the block): what follows
    that. Else nothing is known of where collection stopped: all of ``held``, not found.
    """
    tail = list(collected_tail)
    if not tail:
        return list(held), True
    if not held:  # a log not written yet: nothing to judge by
        return [], True
    size, last = len(tail), tail[-1]
    for end in range(len(held), size - 1, -1):
        if held[end - 1] == last and list(held[end - size:end]) == tail:
            return list(held[end:]), True
    for overlap in range(min(size, len(held)) - 1, 0, -1):
        if list(held[:overlap]) == tail[-overlap:]:
            return list(held[overlap:]), True
    return list(held), False


def _text(lines: Sequence[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


def _last_lines(path: Path, count: int | None = None, max_bytes: int | None = None) -> list[str]:
    """The last complete lines of ``path``: ``count`` of them, or those in its last ``max_bytes``;
    read backwards in chunks."""
    with open(path, "rb") as f:
        position = f.seek(0, os.SEEK_END)
        data = b""
        while position > 0 and (count is None or data.count(b"\n") <= count) \
                and (max_bytes is None or len(data) < max_bytes):
            step = min(READ_CHUNK, position)
            position -= step
            f.seek(position)
            data = f.read(step) + data
    lines = complete_lines(data.decode(errors="replace"))
    if position > 0 and lines:  # the first line read may have begun before the chunk
        lines = lines[1:]
    return lines[-count:] if count is not None else lines


@dataclass(frozen=True)
class Collected:
    node: str
    lines: tuple[str, ...]  # appended to the trail, oldest first
    gap: bool  # the node's log no longer held the point where the last collection stopped

    @property
    def text(self) -> str:
        return _text(self.lines)


class DecisionTrail:
    """One environment's collected audit lines, a directory per node, a file per UTC day."""

    def __init__(self, directory: Path, mac_key: Callable[[], bytes]):
        self.directory = directory
        self._mac_key = mac_key  # the environment's trail key, read when a seal is made or checked

    def _seals(self, node: str) -> NodeSeals:
        return NodeSeals(self.directory / node, self._mac_key)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Two collectors (an `audit` run beside `audit collect --follow`) take turns."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.directory / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _segments(self, node: str) -> list[Path]:
        folder = self.directory / node
        return sorted(p for p in folder.iterdir() if SEGMENT.match(p.name)) if folder.is_dir() else []

    def nodes(self) -> list[str]:
        return sorted(p.name for p in self.directory.iterdir() if p.is_dir()) if self.directory.is_dir() else []

    def tail(self, node: str, count: int = FINGERPRINT_LINES) -> list[str]:
        """The last ``count`` audit lines collected from ``node`` (gap lines are the trail's own),
        read from the end of its newest segments (a day's segment can be large), once what a
        killed collection left is put right."""
        self._seals(node).ready()
        return self._collected_tail(node, count)

    def _collected_tail(self, node: str, count: int = FINGERPRINT_LINES) -> list[str]:
        found: list[str] = []
        for segment in reversed(self._segments(node)):
            lines = [line for line in _last_lines(segment, count=count) if not line.startswith(GAP_PREFIX)]
            found = lines[-(count - len(found)):] + found
            if len(found) >= count:
                break
        return found

    def recent(self, max_bytes: int) -> list[tuple[str, str]]:
        """``(node, text)`` of the last ``max_bytes`` of each node's newest segment: what was
        collected a moment ago, without reading the whole trail."""
        return [(node, _text(_last_lines(segments[-1], max_bytes=max_bytes)))
                for node in self.nodes() if (segments := self._segments(node))]

    def append(self, node: str, held: Sequence[str], now: dt.datetime) -> Collected:
        """Appends what ``held`` (the node's audit lines now, oldest first) has that was not
        collected, and seals it."""
        seals = self._seals(node)
        head = seals.ready()
        fresh, found = new_lines(held, self._collected_tail(node))
        lines = fresh if found else [
            f"{GAP_PREFIX}{now.isoformat(timespec='seconds')} {node}'s audit log no longer holds the last line "
            f"collected from it (rolled past it, or its volume was replaced): decisions between that line and "
            f"the next may be missing", *fresh]
        if lines:
            folder = self.directory / node
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            day = now.astimezone(dt.timezone.utc).date().isoformat()
            append_synced(folder / f"{day}.log", _text(lines).encode())
            seals.seal(head, day, lines)
        return Collected(node, tuple(fresh), not found)

    def texts(self, since: dt.datetime | None = None) -> list[tuple[str, str]]:
        """``(node, text)`` of every segment (collected on ``since``'s UTC day or later), oldest
        first per node: a line is collected on the day it was written or later."""
        first = since.astimezone(dt.timezone.utc).strftime("%Y-%m-%d.log") if since else ""
        return [(node, segment.read_text(errors="replace")) for node in self.nodes() for segment in self._segments(node)
                if segment.name >= first]

    def gaps(self) -> list[str]:
        return [line[len(GAP_PREFIX):] for _, text in self.texts() for line in text.splitlines() if line.startswith(GAP_PREFIX)]

    def prune(self, retention_days: int, today: dt.date) -> list[Path]:
        """Deletes the segments of days before the retention window; returns them. A node's
        newest segment stays whatever its age: its last lines say where collection stopped."""
        oldest_kept = (today - dt.timedelta(days=retention_days)).isoformat()
        with self.locked():
            return [removed for node in self.nodes() for removed in self._seals(node).prune(oldest_kept)]

    def verify(self) -> Verdict:
        """Every node's lines against their seals: the lines checked, and the first problem."""
        checked = 0
        for node in self.nodes():
            verdict = self._seals(node).verify()
            checked += verdict.entries
            if not verdict.ok:
                return Verdict(checked, verdict.problem)
        return Verdict(checked, None)
