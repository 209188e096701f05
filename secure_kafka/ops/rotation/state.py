"""The pure part of a rotation: durations, materials, the phases and the resumable ``State``.

Which phases a leaf or CA rotation walks forward, how ``abort`` finds its way back from the
materials on disk and in the running nodes, and what ``state.json`` records. No files, no
cluster: ``orchestrator`` does the I/O.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ...errors import SecureKafkaError

STATE_FORMAT = 1
LEAF, CA = "leaf", "ca"
OLD, NEW = "old", "new"


# --- durations ------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+)\s*([wdhm])\s*$")
_UNITS = {"w": dt.timedelta(weeks=1), "d": dt.timedelta(days=1), "h": dt.timedelta(hours=1), "m": dt.timedelta(minutes=1)}


def parse_duration(text: str) -> dt.timedelta:
    """``30d``, ``12h``, ``2w``, ``90m`` as a timedelta."""
    match = _DURATION.match(text or "")
    if not match:
        raise SecureKafkaError(f"invalid duration {text!r}: use a number and a unit, like 30d, 12h, 2w or 90m")
    return int(match.group(1)) * _UNITS[match.group(2)]


# --- materials and phases (pure) ------------------------------------------------------------


@dataclass(frozen=True)
class Material:
    """What an owner's files hold: which leaf, and which CAs its truststore trusts."""

    leaf: str
    trust: tuple[str, ...]

    def to_json(self) -> dict:
        return {"leaf": self.leaf, "trust": list(self.trust)}

    @classmethod
    def of(cls, data: dict) -> "Material":
        return cls(data["leaf"], tuple(data["trust"]))


INITIAL = Material(OLD, (OLD,))
# Files being written, or a process being restarted, when the rotation stopped: could be either
# material, so the next phase rewrites/restarts it whatever its target.
UNKNOWN = Material("unknown", ())


@dataclass(frozen=True)
class Phase:
    name: str
    target: Material

    def to_json(self) -> dict:
        return {"name": self.name, **self.target.to_json()}

    @classmethod
    def of(cls, data: dict) -> "Phase":
        return cls(data["name"], Material.of(data))


def forward_phases(kind: str) -> list[Phase]:
    if kind == LEAF:
        return [Phase("new-leaves", Material(NEW, (OLD,)))]
    if kind == CA:
        return [
            Phase("trust-both", Material(OLD, (OLD, NEW))),
            Phase("new-leaves", Material(NEW, (OLD, NEW))),
            Phase("drop-old-ca", Material(NEW, (NEW,))),
        ]
    raise ValueError(kind)


def abort_phases(materials: Iterable[Material], resume_hint: str) -> list[Phase]:
    """The way back to ``INITIAL`` from the materials on disk and in the running nodes.

    Old leaves return while the new CA is still trusted (a peer may still present a new leaf
    until it is rolled); the new CA goes last.
    """
    seen = set(materials) - {UNKNOWN}
    if any(OLD not in m.trust for m in seen):
        raise SecureKafkaError(
            f"the rotation is past the point of no return (the old CA is no longer trusted everywhere): finish it with {resume_hint}"
        )
    new_trusted = any(NEW in m.trust for m in seen)
    phases = []
    if any(m.leaf == NEW for m in seen):
        phases.append(Phase("restore-old-leaves", Material(OLD, (OLD, NEW) if new_trusted else (OLD,))))
    if new_trusted:
        phases.append(Phase("drop-new-ca", INITIAL))
    return phases


STEPS = ("files", "reload", "roll")


@dataclass
class State:
    """``certs/<env>/rotation/state.json``: everything needed to resume or abort."""

    kind: str
    owners: dict[str, str]  # owner -> kind (broker, zookeeper, client)
    generations: dict[str, int]  # owner (and "ca") -> generation of the old material
    phases: list[Phase]
    index: int = 0
    step: str = "files"
    disk: dict[str, Material] = field(default_factory=dict)  # owner -> material of its files
    running: dict[str, Material] = field(default_factory=dict)  # node -> material its process loaded
    rolling: str | None = None  # the node being restarted, if the process stopped mid-restart
    writing: str | None = None  # the owner whose files were being written
    aborting: bool = False
    pause_after: str | None = None  # a phase name to stop after (clients restart meanwhile)
    started: str = ""

    @property
    def done(self) -> bool:
        return self.index >= len(self.phases)

    @property
    def phase(self) -> Phase:
        return self.phases[self.index]

    def advance(self) -> None:
        """The next step of the current phase, or the first step of the next phase."""
        position = STEPS.index(self.step)
        if position + 1 < len(STEPS):
            self.step = STEPS[position + 1]
        else:
            self.index += 1
            self.step = STEPS[0]

    def mark_interrupted(self) -> None:
        """After a stop mid-write or mid-restart, that owner's material is unknown."""
        if self.writing:
            self.disk[self.writing] = UNKNOWN
        if self.rolling:
            self.running[self.rolling] = UNKNOWN

    def start_abort(self, resume_hint: str) -> None:
        seen = [*self.disk.values(), *self.running.values()]
        if UNKNOWN in seen and not self.done:
            seen.append(self.phase.target)  # it may have got as far as the phase's target
        self.phases = abort_phases(seen, resume_hint)
        self.index, self.step, self.aborting, self.pause_after = 0, STEPS[0], True, None

    def to_json(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "kind": self.kind,
            "owners": self.owners,
            "generations": self.generations,
            "phases": [p.to_json() for p in self.phases],
            "index": self.index,
            "step": self.step,
            "disk": {k: v.to_json() for k, v in self.disk.items()},
            "running": {k: v.to_json() for k, v in self.running.items()},
            "rolling": self.rolling,
            "writing": self.writing,
            "aborting": self.aborting,
            "pause_after": self.pause_after,
            "started": self.started,
        }

    @classmethod
    def of(cls, data: dict) -> "State":
        if data.get("format") != STATE_FORMAT:
            raise ValueError("unknown format")
        return cls(
            kind=data["kind"],
            owners=dict(data["owners"]),
            generations={k: int(v) for k, v in data["generations"].items()},
            phases=[Phase.of(p) for p in data["phases"]],
            index=int(data["index"]),
            step=data["step"],
            disk={k: Material.of(v) for k, v in data["disk"].items()},
            running={k: Material.of(v) for k, v in data["running"].items()},
            rolling=data.get("rolling"),
            writing=data.get("writing"),
            aborting=bool(data.get("aborting")),
            pause_after=data.get("pause_after"),
            started=data.get("started", ""),
        )
