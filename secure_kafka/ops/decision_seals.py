"""Tamper evidence for the decisions trail: every collected line sealed in a MAC chain.

Beside each day segment ``<node>/<day>.log`` of the decisions trail (``ops/decision_trail.py``)
lies ``<day>.seal``: one 16-byte seal per line, the HMAC-SHA256 (under the trail key of the
environment, the operations trail's: ``ops/trail.py``) of the seal before it and the line, cut
to 128 bits. A node's chain runs across its days and starts from a value derived from its name,
so a line cannot move to another node or day unseen. ``<node>/head.json``, MACed too, holds
where the chain starts (the first segment kept after retention, and the seal before it) and
where it ends (the last segment, its lines, bytes and last seal): a cut tail shows.

The seals are kept apart from the lines so that the trail stays the nodes' own lines, which
every reader (``audit``, ``grep``) takes as they are.

A collection writes the lines (fsynced), then their seals (fsynced), then the head. What a
collector killed in between leaves is put right by the next collection before it appends:
seals whose lines are there move the head on; lines without seals are cut (they are collected
again: they are still in the node's log). Anything else (seals without their lines, a file
shorter than the head says) is not a crash's: that node's collection stops with an error
naming the file, and ``audit verify`` names the first line that is not as collected.

What it cannot show: someone who holds the key can seal lines of their own; an older head
put back together with the trail cut to match it looks like an older trail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import SecureKafkaError
from ..fsutil import append_synced, write_atomic
from .trail import Verdict

__all__ = ["SEAL_BYTES", "Head", "NodeSeals"]

SEAL_BYTES = 16
LINE_MAX = 1024 * 1024  # an audit line is far shorter: a longer one is taken as changed
HEAD = "head.json"


@dataclass(frozen=True)
class Head:
    first: str  # the day of the first segment the chain covers (older ones were pruned)
    start: str  # hex: the seal before its first line
    day: str  # the last segment sealed
    lines: int  # lines sealed in it
    bytes: int  # its size up to the end of its last sealed line
    last: str  # hex: its last seal


def _lines_from(path: Path, offset: int) -> Iterator[tuple[int, bytes]]:
    """``(end offset, line without its newline)`` of each complete line of ``path`` from ``offset``."""
    with open(path, "rb") as f:
        f.seek(offset)
        for raw in f:
            if not raw.endswith(b"\n"):
                return
            offset += len(raw)
            yield offset, raw[:-1]


def _truncate(path: Path, size: int) -> None:
    with open(path, "rb+") as f:
        f.truncate(size)
        os.fsync(f.fileno())


class NodeSeals:
    """The seals of one node's segments in ``folder`` (``decisions/<node>``)."""

    def __init__(self, folder: Path, key: Callable[[], bytes]):
        self.folder = folder
        self.node = folder.name
        self._key = key

    def _mac(self, data: bytes) -> bytes:
        return hmac.digest(self._key(), data, hashlib.sha256)

    def seal_after(self, previous: bytes, line: bytes) -> bytes:
        return self._mac(previous + line)[:SEAL_BYTES]

    def _chain(self, last: bytes, lines: Sequence[bytes]) -> tuple[bytes, bytes]:
        """``(the seals of lines, one after another from last, the last of them)``."""
        seals = bytearray()
        for line in lines:
            last = self.seal_after(last, line)
            seals += last
        return bytes(seals), last

    @property
    def genesis(self) -> bytes:
        return self._mac(f"secure-kafka decisions of {self.node}".encode())[:SEAL_BYTES]

    def _segment(self, day: str) -> Path:
        return self.folder / f"{day}.log"

    def _seal_file(self, day: str) -> Path:
        return self.folder / f"{day}.seal"

    def _days(self) -> list[str]:
        return sorted(p.name[:-4] for p in self.folder.glob("????-??-??.log")) if self.folder.is_dir() else []

    # --- the head -------------------------------------------------------------------------

    def _head_mac(self, head: Head) -> str:
        return self._mac(json.dumps(asdict(head), sort_keys=True).encode()).hex()

    def head(self) -> Head | None:
        """The head as written, MAC checked; None when there is none. A head that does not check raises."""
        path = self.folder / HEAD
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            head = Head(**{k: v for k, v in data.items() if k != "mac"})
        except (OSError, ValueError, TypeError) as exc:
            raise SecureKafkaError(f"{path}: unreadable ({exc.__class__.__name__}): restore it from backup") from None
        if not hmac.compare_digest(str(data.get("mac")), self._head_mac(head)):
            raise SecureKafkaError(f"{path}: changed after it was written: restore it from backup")
        return head

    def _write_head(self, head: Head) -> None:
        write_atomic(self.folder / HEAD, json.dumps({**asdict(head), "mac": self._head_mac(head)}, sort_keys=True) + "\n",
                     mode=0o600)

    # --- collection -----------------------------------------------------------------------

    def ready(self) -> Head | None:
        """The head, once what a killed collection left is put right (see the module's doc);
        None for a node nothing was collected from."""
        head = self.head()
        days = self._days()
        if head is None:
            if any(self.folder.glob("*.seal")):
                raise SecureKafkaError(f"{self.folder / HEAD} is missing but {self.node}'s lines are sealed: "
                                       "restore it from backup (`secure-kafka audit verify` names what else changed)")
            return self._adopt(days) if days else None
        if head.day not in days:
            raise SecureKafkaError(f"{self._segment(head.day)}: removed (the trail's head ends there): "
                                   "run `secure-kafka audit verify` and restore the trail from backup")
        moved = head
        for day in [d for d in days if d >= head.day]:
            moved = self._take_over(moved, day)
        if moved != head:
            self._write_head(moved)
        return moved

    def _adopt(self, days: list[str]) -> Head:
        """Seals a trail collected before seals existed, as it is (sealing starts now); a torn
        last line is cut (it is collected again)."""
        head = Head(days[0], self.genesis.hex(), days[0], 0, 0, self.genesis.hex())
        for day in days:
            found = list(_lines_from(self._segment(day), 0))
            seals, last = self._chain(bytes.fromhex(head.last), [line for _, line in found])
            offset = found[-1][0] if found else 0
            _truncate(self._segment(day), offset)
            append_synced(self._seal_file(day), seals)
            head = Head(head.first, head.start, day, len(found), offset, last.hex())
        self._write_head(head)
        return head

    def _take_over(self, head: Head, day: str) -> Head:
        """``head`` moved over the seals of ``day`` that have their lines; lines without seals cut."""
        segment, seal_file = self._segment(day), self._seal_file(day)
        lines, offset = (head.lines, head.bytes) if day == head.day else (0, 0)
        size = segment.stat().st_size
        sealed = seal_file.stat().st_size if seal_file.exists() else 0
        if sealed % SEAL_BYTES:  # a seal torn by a crash: its line is cut below and collected again
            sealed -= sealed % SEAL_BYTES
            _truncate(seal_file, sealed)
        if size < offset or sealed < lines * SEAL_BYTES:
            raise SecureKafkaError(f"{segment}: shorter than its head says: lines were removed; "
                                   "run `secure-kafka audit verify` and restore the trail from backup")
        last = bytes.fromhex(head.last)
        if day == head.day and lines and not self._ends_sealed(head, day):
            raise SecureKafkaError(f"{segment}: its last collected line is not where its head says (lines before it "
                                   "were changed or removed): run `secure-kafka audit verify` and restore the trail from backup")
        if sealed > lines * SEAL_BYTES:
            with open(seal_file, "rb") as f:
                f.seek(lines * SEAL_BYTES)
                pending = f.read()
            for end, line in _lines_from(segment, offset):
                if not pending:
                    break
                if not hmac.compare_digest(pending[:SEAL_BYTES], expected := self.seal_after(last, line)):
                    break
                last, pending, lines, offset = expected, pending[SEAL_BYTES:], lines + 1, end
            if pending:
                raise SecureKafkaError(f"{seal_file}: seals without their lines in {segment.name}: "
                                       "run `secure-kafka audit verify` and restore the trail from backup")
        if size > offset:  # lines written, seals not: cut, they are collected again
            _truncate(segment, offset)
        if offset == 0 and day != head.day:
            segment.unlink()
            seal_file.unlink(missing_ok=True)
            return head
        return Head(head.first, head.start, day, lines, offset, last.hex())

    def _seal_before(self, head: Head, day: str) -> bytes:
        """The seal the chain has before ``day``'s first line."""
        earlier = [d for d in self._days() if head.first <= d < day]
        if not earlier:
            return bytes.fromhex(head.start)
        return self._last_seal(earlier[-1])

    def _last_seal(self, day: str) -> bytes:
        with open(self._seal_file(day), "rb") as f:
            f.seek(-SEAL_BYTES, os.SEEK_END)
            return f.read(SEAL_BYTES)

    def _ends_sealed(self, head: Head, day: str) -> bool:
        """Whether the line that ends where the head says is the one sealed last: else bytes
        before it moved, and what follows is no crash's unsealed lines, whatever it looks like."""
        with open(self._seal_file(day), "rb") as f:
            f.seek((head.lines - 2) * SEAL_BYTES)
            previous = f.read(SEAL_BYTES) if head.lines > 1 else self._seal_before(head, day)
        with open(self._segment(day), "rb") as f:
            window = 4096
            while True:  # back from the head's end to the newline before the last sealed line
                window = min(window, head.bytes)
                f.seek(head.bytes - window)
                data = f.read(window)
                newline = data.rfind(b"\n", 0, len(data) - 1)
                if newline >= 0 or window == head.bytes or window > LINE_MAX:
                    break
                window *= 16
        line = data[newline + 1:] if newline >= 0 or window == head.bytes else b""
        return line.endswith(b"\n") and hmac.compare_digest(self.seal_after(previous, line[:-1]), bytes.fromhex(head.last))

    def seal(self, head: Head | None, day: str, appended: Sequence[str]) -> Head:
        """Seals ``appended`` (just written to ``day``'s segment, whose size is now the new end)."""
        if head is None:
            head = Head(day, self.genesis.hex(), day, 0, 0, self.genesis.hex())
        seals, last = self._chain(bytes.fromhex(head.last), [line.encode() for line in appended])
        append_synced(self._seal_file(day), seals)
        lines = (head.lines if day == head.day else 0) + len(appended)
        head = Head(head.first, head.start, day, lines, self._segment(day).stat().st_size, last.hex())
        self._write_head(head)
        return head

    def prune(self, before: str) -> list[Path]:
        """Removes the segments (and seals) of days before ``before`` but the last one; the head
        moves to the first kept one first, so a prune cut short leaves only what the next removes."""
        head = self.head()
        days = self._days()
        doomed = [d for d in days[:-1] if d < before]
        if head is None or not doomed:
            return []
        kept = days[len(doomed)]
        if kept > head.first:
            head = Head(kept, self._last_seal(doomed[-1]).hex(), head.day, head.lines, head.bytes, head.last)
            self._write_head(head)
        removed = []
        for day in doomed:
            self._seal_file(day).unlink(missing_ok=True)
            self._segment(day).unlink()
            removed.append(self._segment(day))
        return removed

    # --- verification ---------------------------------------------------------------------

    def verify(self) -> Verdict:
        """Every line of every kept segment against its seal, and the end against the head."""
        try:
            head = self.head()
        except SecureKafkaError as exc:
            return Verdict(0, str(exc))
        days = [d for d in self._days() if head is None or d >= head.first]  # older: a prune cut short
        if head is None:
            return Verdict(0, f"{self.folder / HEAD}: missing, with lines collected") if days else Verdict(0, None)
        if not days or days[0] != head.first:
            return Verdict(0, f"{self._segment(head.first)}: removed (the chain starts there)")
        last, count, where = bytes.fromhex(head.start), 0, (head.first, 0)
        for day in days:
            segment, number = self._segment(day), 0
            seals = self._seal_file(day).read_bytes() if self._seal_file(day).exists() else b""
            for _, line in _lines_from(segment, 0):
                number += 1
                seal = seals[(number - 1) * SEAL_BYTES:number * SEAL_BYTES]
                if not seal:
                    return Verdict(count, f"{segment} line {number}: not sealed (added after it was collected)")
                if not hmac.compare_digest(seal, self.seal_after(last, line)):
                    before = " (or the segment before it was removed)" if number == 1 else ""
                    return Verdict(count, f"{segment} line {number}: changed, removed or reordered{before}")
                last, count = seal, count + 1
            if len(seals) > number * SEAL_BYTES:
                return Verdict(count, f"{segment}: the lines after line {number} were removed")
            where = (day, number)
        if where != (head.day, head.lines) or last.hex() != head.last:
            return Verdict(count, f"{self.node}'s trail ends at {where[0]} line {where[1]}, its head says "
                                  f"{head.day} line {head.lines}: lines at its end were removed")
        return Verdict(count, None)

