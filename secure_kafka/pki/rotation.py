"""``certs rotate``: zero-downtime rotation of leaf certificates and of the CA.

A rotation moves every *owner* (a node or a client principal) from one *material* to
another. A material says which leaf an owner's keystore holds (``old`` or ``new``) and which
CAs its truststore (and a client's ``ca.crt``) trusts. Leaf rotation is one phase::

    new-leaves      leaf new, trust {current CA}

CA rotation is three, so that at every moment every peer trusts every certificate it can
be shown (on the inter-broker listener Kafka even checks that before a reload)::

    trust-both      leaf old, trust {old CA, new CA}
    new-leaves      leaf new (issued by the new CA), trust {old, new}
    drop-old-ca     leaf new, trust {new CA}; the new CA becomes certs/<env>/ca/

Each phase has three steps: **files** (rewrite the owners' stores by rename; node
directories are bind-mounted as directories, so containers see the new files), **reload**
(brokers: a per-broker AlterConfigs of every TLS listener's keystore/truststore location to
the same path re-reads the changed files, KIP-226; then a real TLS handshake per listener
checks the served serial), **roll** (ZooKeeper nodes, leader last, then brokers, one at a
time, each waiting until the ensemble has the node back and every partition is fully in
sync: ZooKeeper never reloads, and brokers never reload their ZooKeeper client identity).

Progress is kept in ``certs/<env>/rotation/state.json`` (written atomically after every
action), beside the staged material (``new/<owner>/``, the new CA) and a copy of the old
(``old/<owner>/``). An interrupted rotation is continued with ``resume`` or undone with
``abort``, which walks the phases back (restore the old leaves while both CAs are trusted,
then trust the old CA alone). Once ``drop-old-ca`` has started there is no way back: the
old CA is no longer trusted somewhere, so abort refuses and names ``--resume``.

On completion the manifest gets the new generations and the superseded material moves to
``certs/<env>/archive/<owner>/gen-<N>/``; an aborted rotation leaves nothing behind.

Decisions:

- A node that is down when a rotation starts makes it refuse (it would miss the new trust,
  and in CA rotation be locked out at ``drop-old-ca``). A node that does not come back during
  a roll stops the rotation with the reason; the other nodes keep serving.
- Clients that read their CA bundle only at start (librdkafka, Java) must be restarted after
  ``trust-both`` and before ``new-leaves`` of a CA rotation: ``pause_after_trust`` stops
  there until ``resume``. Copies made by ``client-config --out`` are not updated: re-run it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography import x509

from .. import pki
from ..errors import SecureKafkaError
from ..fsutil import write_atomic
from ..model.topology import ADMIN, Node
from ..proc import Progress, quiet
from .certstore import CertRecord, CertStore, Manifest, _mkdir

STATE_FORMAT = 1
STARTING_GRACE_S = 180  # how long a resumed rotation waits for a node whose healthcheck is pending
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


# --- what a rotation needs from the running cluster -----------------------------------------


class Cluster(Protocol):
    def unavailable(self, exempt: Sequence[str] = ()) -> list[str]:
        """One line per node that is not running and healthy (``exempt`` nodes aside), or why the
        cluster is not fully in sync."""

    def reload(self, broker: Node) -> None:
        """Makes the broker re-read its keystore and truststore on every TLS listener."""

    def served_serials(self, broker: Node) -> dict[str, int | None]:
        """Listener name -> serial of the certificate it presents (real handshakes)."""

    def roll_order(self, zookeepers: Sequence[Node]) -> list[Node]:
        """ZooKeeper nodes in restart order: the leader last."""

    def restart(self, node: Node) -> None:
        """Restarts the node and waits until it is back and the cluster is fully in sync."""


Hook = Callable[[str], None]


def _no_hook(_event: str) -> None:
    pass


@dataclass
class Report:
    env: str
    kind: str
    outcome: str  # done, paused, aborted, nothing-due
    phases: list[str]
    serials: dict[str, str]  # owner -> serial (hex) of the leaf it holds now
    elapsed_s: float
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"env": self.env, "kind": self.kind, "outcome": self.outcome, "phases": self.phases,
                "serials": self.serials, "elapsed_s": round(self.elapsed_s, 1), "notes": self.notes}


class Rotation:
    """Runs the phases of one environment's rotation against a ``Cluster``."""

    def __init__(self, store: CertStore, cluster: Cluster, progress: Progress = quiet, hook: Hook = _no_hook):
        self.store = store
        self.cluster = cluster
        self.progress = progress
        self.hook = hook
        self.env = store.env
        self.topology = store.settings.topology
        self.dir = store.root / "rotation"
        self.state_path = self.dir / "state.json"
        self._leaves: dict[tuple[str, str], pki.IssuedCert] = {}

    # -- state -------------------------------------------------------------------------------

    def in_progress(self) -> bool:
        return self.state_path.exists()

    def load_state(self) -> State:
        try:
            state = State.of(json.loads(self.state_path.read_text()))
            state.mark_interrupted()
            return state
        except FileNotFoundError:
            raise SecureKafkaError(f"no rotation of {self.env!r} is in progress: nothing to resume or abort") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SecureKafkaError(
                f"{self.store.relative(self.state_path)}: unreadable rotation state ({exc.__class__.__name__}): restore it from backup"
            ) from None

    def save(self, state: State) -> None:
        write_atomic(self.state_path, json.dumps(state.to_json(), indent=1) + "\n", mode=0o600)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One rotation process per environment at a time."""
        _mkdir(self.store.root)
        with open(self.store.root / "rotation.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SecureKafkaError(f"another rotation of {self.env!r} is running: wait for it to finish") from None
            yield

    # -- starting --------------------------------------------------------------------------------

    def start(self, kind: str, nodes: Sequence[str] = (), clients: Sequence[str] = (),
              pause_after_trust: bool = False) -> Report:
        """Stages new material and runs every phase; ``nodes``/``clients`` limit a leaf rotation."""
        started = time.monotonic()
        with self.locked():
            if self.in_progress():
                raise SecureKafkaError(
                    f"a rotation of {self.env!r} is in progress: continue it with `secure-kafka certs rotate {self.env} --resume` or undo it with --abort"
                )
            self.store.load()  # the passphrase and the CA, before anything changes
            if down := self.cluster.unavailable():
                raise SecureKafkaError(
                    f"refusing to rotate {self.env!r} while {'; '.join(down)}: bring it back with `secure-kafka up {self.env}` first"
                )
            owners = self._owners(kind, nodes, clients)
            state = self._stage(kind, owners, pause_after_trust)
            return self._run(state, started)

    def _owners(self, kind: str, nodes: Sequence[str], clients: Sequence[str]) -> dict[str, str]:
        every_client = self.client_principals()
        if kind == CA or not (nodes or clients):
            chosen_nodes = list(self.topology.nodes)
            chosen_clients = every_client
        else:
            chosen_nodes = [self.topology.node(n) for n in nodes]
            for principal in clients:
                if principal not in every_client:
                    raise SecureKafkaError(
                        f"no client certificate for {principal!r} in {self.env!r}: use one of {', '.join(every_client)}"
                    )
            chosen_clients = list(clients)
        return {**{n.name: n.role for n in chosen_nodes}, **{c: "client" for c in chosen_clients}}

    def client_principals(self) -> list[str]:
        clients = self.store.root / "clients"
        return sorted(p.name for p in clients.iterdir() if p.is_dir() and not p.name.startswith(".")) if clients.is_dir() else []

    def _stage(self, kind: str, owners: dict[str, str], pause_after_trust: bool) -> State:
        """Copies the old material aside and issues the new; no file in service changes."""
        store = self.store
        shutil.rmtree(self.dir, ignore_errors=True)  # a staging that died before its state was saved
        manifest = Manifest.load(store.manifest_path)
        current_ca = store.load()
        generations = {"ca": self._generation(manifest, "ca")}
        _mkdir(self.dir / OLD / "ca")
        for name in ("ca.crt", "ca.key"):
            shutil.copy2(store.ca_cert_path.parent / name, self.dir / OLD / "ca" / name)
        if kind == CA:
            self.progress(f"rotation of {self.env}: creating the new CA")
            issuer = pki.CA.create(
                f"secure-kafka-{self.env}-ca-g{generations['ca'] + 1}", store.settings.key_algorithm,
                store.settings.profile.ca_validity_days, self.env,
            )
            issuer.write(_mkdir(self.dir / NEW / "ca"), store.passphrase())
        else:
            issuer = current_ca
        self.progress(f"rotation of {self.env}: issuing {len(owners)} new leaf certificates")
        for owner, owner_kind in owners.items():
            source = self._owner_dir(owner, owner_kind)
            generations[owner] = self._generation(manifest, owner)
            shutil.copytree(source, self.dir / OLD / owner)
            old = self._leaf(owner, OLD, owner_kind)
            issued = store.issue_client(issuer, owner) if owner_kind == "client" else store.issue_node(issuer, self.topology.node(owner))
            _check_compatible(owner, old.cert, issued.cert)
            write_atomic(_mkdir(self.dir / NEW / owner) / "keystore.p12",
                         issued.pkcs12_keystore(store.store_password(owner)), mode=0o600)
        nodes = [n for n in self.topology.nodes if n.name in owners]
        state = State(
            kind=kind, owners=owners, generations=generations, phases=forward_phases(kind),
            disk={o: INITIAL for o in owners}, running={n.name: INITIAL for n in nodes},
            pause_after="trust-both" if (kind == CA and pause_after_trust) else None,
            started=pki.now().isoformat(),
        )
        self.save(state)
        self.hook("staged")
        return state

    @staticmethod
    def _generation(manifest: Manifest, name: str) -> int:
        record = manifest.current(name)
        return record.generation if record else 0

    def _owner_dir(self, owner: str, owner_kind: str) -> Path:
        return self.store.client_dir(owner) if owner_kind == "client" else self.store.node_dir(owner)

    # -- resuming, aborting -----------------------------------------------------------------------

    def resume(self) -> Report:
        started = time.monotonic()
        with self.locked():
            state = self.load_state()
            state.pause_after = None  # a paused rotation goes on; an interrupted one too
            self._check_available(state)
            return self._run(state, started)

    def abort(self) -> Report:
        started = time.monotonic()
        with self.locked():
            state = self.load_state()
            if not state.aborting:
                state.start_abort(f"`secure-kafka certs rotate {self.env} --resume`")
                self.save(state)
            self._check_available(state)
            return self._run(state, started)

    def _check_available(self, state: State) -> None:
        """Refuses while a node is down; a node still starting (healthcheck pending, e.g. just
        restarted by an interrupted roll) gets ``STARTING_GRACE_S`` to come up first."""
        exempt = [state.rolling] if state.rolling else []
        deadline = time.monotonic() + STARTING_GRACE_S
        while (down := self.cluster.unavailable(exempt)) and time.monotonic() < deadline:
            if not all(line.endswith("(starting)") for line in down):
                break
            self.progress(f"waiting for {'; '.join(down)}")
            time.sleep(2)
        if down:
            raise SecureKafkaError(
                f"cannot continue the rotation of {self.env!r} while {'; '.join(down)}: "
                f"bring it back with `secure-kafka up {self.env}`, then run the command again"
            )

    # -- running ------------------------------------------------------------------------------

    def _run(self, state: State, started: float) -> Report:
        names = []
        while not state.done:
            phase = state.phase
            self.progress(f"rotation of {self.env}: phase {phase.name} ({state.step})")
            getattr(self, f"_step_{state.step}")(state, phase)
            state.advance()
            self.save(state)
            if state.step == STEPS[0]:
                names.append(phase.name)
                if phase.name == state.pause_after and not state.done:
                    self.progress(
                        f"rotation of {self.env}: paused after {phase.name}: restart clients so they load the new "
                        f"ca.crt/truststore.p12, then run `secure-kafka certs rotate {self.env} --resume`"
                    )
                    return self._report(state, "paused", names, started)
        return self._finish(state, names, started)

    def _step_files(self, state: State, phase: Phase) -> None:
        if state.kind == CA and not state.aborting and phase.target.trust == (NEW,):
            self._promote_new_ca()
        for owner, owner_kind in state.owners.items():
            if state.disk[owner] == phase.target:
                continue
            state.writing = owner
            self.save(state)
            self.hook(f"{phase.name}:files:{owner}")
            self._write_owner(owner, owner_kind, phase.target)
            state.disk[owner] = phase.target
            state.writing = None
            self.save(state)

    def _step_reload(self, state: State, phase: Phase) -> None:
        for broker in self.topology.brokers:
            if broker.name not in state.owners:
                continue
            self.hook(f"{phase.name}:reload:{broker.name}")
            self.progress(f"{broker.name}: reloading listener keystores and truststores")
            self.cluster.reload(broker)
            expected = self._leaf(broker.name, phase.target.leaf, "broker").cert.serial_number
            served = self.cluster.served_serials(broker)
            wrong = {name: serial for name, serial in served.items() if serial != expected}
            if wrong:
                shown = ", ".join(f"{n} serial {format(s or 0, 'x')}" for n, s in wrong.items())
                raise SecureKafkaError(
                    f"{broker.name} presents {shown} after the reload, expected {expected:x}: "
                    f"check its log, then run `secure-kafka certs rotate {self.env} --resume`"
                )

    def _step_roll(self, state: State, phase: Phase) -> None:
        zookeepers = [n for n in self.topology.zookeepers if n.name in state.running]
        order = self.cluster.roll_order(zookeepers) + [n for n in self.topology.brokers if n.name in state.running]
        for node in order:
            if state.running[node.name] == phase.target:
                continue
            self.progress(f"{node.name}: restarting to load its new TLS material")
            state.rolling = node.name
            self.save(state)
            self.hook(f"{phase.name}:roll:{node.name}")
            try:
                self.cluster.restart(node)
            except SecureKafkaError as exc:
                raise SecureKafkaError(
                    f"{exc}; the rotation stopped at {node.name}, the other nodes keep serving: fix it, then "
                    f"`secure-kafka certs rotate {self.env} --resume` (or --abort)"
                ) from None
            state.running[node.name] = phase.target
            state.rolling = None
            self.save(state)

    # -- material ------------------------------------------------------------------------------

    def _ca_cert(self, which: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.dir / which / "ca" / "ca.crt").read_bytes())

    def _leaf(self, owner: str, which: str, owner_kind: str) -> pki.IssuedCert:
        key = (owner, which)
        if key not in self._leaves:
            path = self.dir / which / owner / "keystore.p12"
            try:
                self._leaves[key] = pki.IssuedCert.from_pkcs12(path.read_bytes(), self.store.store_password(owner), owner_kind)
            except (OSError, ValueError) as exc:
                raise SecureKafkaError(
                    f"{self.store.relative(path)}: staged material unreadable ({exc.__class__.__name__}): "
                    f"abort with `secure-kafka certs rotate {self.env} --abort`"
                ) from None
        return self._leaves[key]

    def _write_owner(self, owner: str, owner_kind: str, material: Material) -> None:
        leaf = self._leaf(owner, material.leaf, owner_kind)
        trusted = [self._ca_cert(which) for which in material.trust]
        password = self.store.store_password(owner)
        if owner_kind == "client":
            self.store.write_client_files(self.store.client_dir(owner), leaf, trusted, password)
        else:
            self.store.write_node_files(self.store.node_dir(owner), leaf, trusted, password)

    def _promote_new_ca(self) -> None:
        """``ca/`` becomes the new CA (the key re-encrypted as ``certs init`` writes it)."""
        store = self.store
        new_ca = pki.CA.load(self.dir / NEW / "ca" / "ca.crt", self.dir / NEW / "ca" / "ca.key", store.passphrase())
        if pki.fingerprint(pki.CA.load(store.ca_cert_path, store.ca_key_path, store.passphrase()).cert) != pki.fingerprint(new_ca.cert):
            new_ca.write(store.ca_cert_path.parent, store.passphrase())

    # -- finishing -----------------------------------------------------------------------------

    def _finish(self, state: State, names: list[str], started: float) -> Report:
        store = self.store
        if state.aborting:
            report = self._report(state, "aborted", names, started)
            shutil.rmtree(self.dir)
            return report
        manifest = Manifest.load(store.manifest_path)
        archive = store.root / "archive"
        if state.kind == CA:
            new_ca = self._ca_cert(NEW)
            manifest.add(CertRecord.of("ca", "ca", new_ca, "ca"))
            self._archive(self.dir / OLD / "ca", archive / "ca" / f"gen-{state.generations['ca']}")
        for owner, owner_kind in state.owners.items():
            leaf = self._leaf(owner, NEW, owner_kind).cert
            path = f"clients/{owner}" if owner_kind == "client" else f"nodes/{owner}"
            manifest.add(CertRecord.of(owner, owner_kind, leaf, path))
            self._archive(self.dir / OLD / owner, archive / owner / f"gen-{state.generations[owner]}")
        manifest.save(store.manifest_path)
        report = self._report(state, "done", names, started)
        shutil.rmtree(self.dir)
        return report

    @staticmethod
    def _archive(source: Path, target: Path) -> None:
        if target.exists():
            shutil.rmtree(target)
        _mkdir(target.parent)
        shutil.move(str(source), str(target))

    def _report(self, state: State, outcome: str, names: list[str], started: float) -> Report:
        serials = {}
        for owner, owner_kind in state.owners.items():
            which = state.disk[owner].leaf
            serials[owner] = format(self._leaf(owner, which, owner_kind).cert.serial_number, "x")
        notes = []
        if outcome in ("done", "paused") and state.kind == CA:
            notes.append("copies made with `secure-kafka client-config --out` are not updated: run it again")
        return Report(self.env, state.kind, outcome, names, serials, time.monotonic() - started, notes)


def _check_compatible(owner: str, old: x509.Certificate, new: x509.Certificate) -> None:
    """KIP-226 refuses a reloaded keystore whose subject changed or whose SANs shrank."""
    if old.subject != new.subject:
        raise SecureKafkaError(
            f"{owner}: the new certificate's subject {new.subject.rfc4514_string()!r} differs from "
            f"{old.subject.rfc4514_string()!r}: brokers refuse such a reload; restore the environment's settings"
        )
    if missing := sorted(set(pki.sans_of(old)) - set(pki.sans_of(new))):
        raise SecureKafkaError(
            f"{owner}: the new certificate lacks SANs {', '.join(missing)} of the current one: "
            "brokers refuse such a reload; restore the environment's topology settings"
        )


# --- what is due ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    ca: CertRecord | None
    nodes: list[str]
    clients: list[str]

    @property
    def nothing(self) -> bool:
        return self.ca is None and not self.nodes and not self.clients


def due_within(store: CertStore, window: dt.timedelta, at: dt.datetime | None = None) -> Due:
    """Active certificates whose not-after falls inside ``window`` from now."""
    limit = (at or pki.now()) + window
    ca, nodes, clients = None, [], []
    for record in store.list():
        if dt.datetime.fromisoformat(record.not_after) > limit:
            continue
        if record.kind == "ca":
            ca = record
        elif record.kind == "client":
            clients.append(record.name)
        else:
            nodes.append(record.name)
    return Due(ca, nodes, clients)


# --- the real cluster: Docker containers, the Admin API, TLS handshakes ------------------------

ZOOKEEPER_SERVING = re.compile(r"Peer state changed: (following|leading) - broadcast")
ZOOKEEPER_STATE = re.compile(r"Peer state changed: (\w+)")
RELOADED_FILES = (
    ("ssl.keystore.type", "PKCS12"),
    ("ssl.keystore.location", "keystore"),
    ("ssl.keystore.password", "password"),
    ("ssl.key.password", "password"),
    ("ssl.truststore.type", "PKCS12"),
    ("ssl.truststore.location", "truststore"),
    ("ssl.truststore.password", "password"),
)


class DockerCluster:
    """An environment's running containers, as a rotation sees them (either engine made them)."""

    def __init__(self, env, progress: Progress = quiet, timeout_s: float = 240):
        from ..dockerclient import connect
        from ..engines.docker_engine import DockerEngine

        self.env = env
        self.settings = env.settings
        self.topology = env.settings.topology
        self.client = connect()
        self.engine = DockerEngine(self.client, env.project.root, progress)
        self.progress = progress
        self.timeout_s = timeout_s

    def _admin(self):
        from confluent_kafka.admin import AdminClient

        # A new client each time: it reads the admin's files as they are now (they rotate too).
        return AdminClient({**self.env.admin_mtls_config(), "socket.timeout.ms": 10000})

    # -- health --------------------------------------------------------------------------------

    def unavailable(self, exempt: Sequence[str] = ()) -> list[str]:
        statuses = {s.name: s for s in self.engine.status(self.env.labels)}
        problems = []
        for node in self.topology.nodes:
            status = statuses.get(node.name)
            if node.name in exempt:
                continue
            if status is None:
                problems.append(f"{node.name} has no container")
            elif not status.healthy:
                problems.append(f"{node.name} is {status.state} ({status.health})")
        if not problems and not exempt:
            lag = self._wait_in_sync(timeout_s=60, quiet_fail=True)
            if lag:
                problems.append(lag)
        return problems

    def _out_of_sync(self) -> str | None:
        from confluent_kafka import KafkaException

        try:
            metadata = self._admin().list_topics(timeout=10)
        except KafkaException as exc:
            return f"the cluster does not answer the admin ({exc.args[0].str()})"
        expected = len(self.topology.brokers)
        if len(metadata.brokers) < expected:
            return f"only {len(metadata.brokers)} of {expected} brokers are registered"
        lagging = [f"{t.topic}-{p.id}" for t in metadata.topics.values() for p in t.partitions.values()
                   if set(p.isrs) != set(p.replicas) or p.leader < 0]
        if lagging:
            return f"{len(lagging)} partitions are not fully in sync (e.g. {lagging[0]})"
        return None

    def _wait_in_sync(self, timeout_s: float, quiet_fail: bool = False) -> str | None:
        deadline = time.monotonic() + timeout_s
        good = 0
        while True:
            lag = self._out_of_sync()
            good = good + 1 if lag is None else 0
            if good >= 2:  # twice in a row: a broker just restarted may not be in the ISR yet
                return None
            if time.monotonic() > deadline:
                if quiet_fail:
                    return lag
                raise SecureKafkaError(f"the cluster is not back in sync after {timeout_s:.0f} s: {lag}")
            time.sleep(1)

    # -- reload and serials --------------------------------------------------------------------

    def reload(self, broker: Node) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import (
            AlterConfigOpType,
            ConfigEntry,
            ConfigResource,
            ResourceType,
        )

        from ..build import render

        password = self.env.certs.store_password(broker.name)
        values = {"keystore": render.KEYSTORE, "truststore": render.TRUSTSTORE, "password": password}
        entries = []
        for listener in render.broker_listeners(self.settings, broker):
            if listener.protocol not in ("SSL", "SASL_SSL"):
                continue
            prefix = f"listener.name.{listener.name.lower()}."
            for key, value in RELOADED_FILES:
                entries.append(ConfigEntry(prefix + key, values.get(value, value),
                                           incremental_operation=AlterConfigOpType.SET))
        # Per broker (entity name = its id): only then does Kafka reload files whose path is unchanged.
        resource = ConfigResource(ResourceType.BROKER, str(self.topology.broker_id(broker)), incremental_configs=entries)
        admin = self._admin()  # referenced until the futures resolve: a collected client cancels them
        try:
            for future in admin.incremental_alter_configs([resource]).values():
                future.result(timeout=60)
        except KafkaException as exc:
            reason = exc.args[0].str()
            fix = ("re-apply the environment with `secure-kafka up` (its brokers lack password.encoder.secret)"
                   if "encoder" in reason.lower() else "check the broker's log")
            raise SecureKafkaError(f"{broker.name}: reloading its TLS stores failed ({reason}): {fix}, then --resume") from None

    def _container_ip(self, node: Node) -> str:
        networks = self.client.api.inspect_container(node.container)["NetworkSettings"]["Networks"]
        return networks[self.topology.network]["IPAddress"]

    def served_serials(self, broker: Node) -> dict[str, int | None]:
        from ..build import render
        from ..verify import probes

        admin_dir = self.env.certs.client_dir(ADMIN)
        client_cert = (admin_dir / "client.crt", admin_dir / "client.key")
        served = {}
        for listener in render.broker_listeners(self.settings, broker):
            if listener.protocol not in ("SSL", "SASL_SSL"):
                continue
            # INTERNAL is on the environment network only: the host reaches the container's address.
            host = self._container_ip(broker) if listener.advertised_host == broker.name else "127.0.0.1"
            result = probes.tls_handshake(host, listener.port, None, server_hostname=listener.advertised_host,
                                          client_cert=client_cert, timeout=10)
            served[listener.name] = result.peer_serial
        return served

    # -- restarts ------------------------------------------------------------------------------

    def _log_since(self, node: Node, since: int) -> str:
        return self.client.api.logs(node.container, since=since, stdout=True, stderr=True).decode(errors="replace")

    def roll_order(self, zookeepers: Sequence[Node]) -> list[Node]:
        if len(self.topology.zookeepers) < 2:
            return list(zookeepers)

        def is_leader(node: Node) -> bool:
            states = ZOOKEEPER_STATE.findall(self.engine.logs_tail(node.container, 5000))
            return bool(states) and states[-1] == "leading"

        return sorted(zookeepers, key=is_leader)  # followers first: one election, at the end

    def restart(self, node: Node) -> None:
        since = int(time.time()) - 1
        started = time.monotonic()
        self.engine.stop(node.container)
        self.client.api.start(node.container)
        self.engine.wait_healthy([node.container], self.timeout_s)
        if node.role == "zookeeper" and len(self.topology.zookeepers) > 1:
            deadline = time.monotonic() + self.timeout_s
            while not ZOOKEEPER_SERVING.search(self._log_since(node, since)):
                if time.monotonic() > deadline:
                    raise SecureKafkaError(f"{node.name} did not rejoin the ZooKeeper ensemble within {self.timeout_s:.0f} s")
                time.sleep(1)
        self._wait_in_sync(self.timeout_s)
        self.progress(f"{node.name}: back, cluster in sync ({time.monotonic() - started:.0f} s)")


# --- the library entry points -------------------------------------------------------------------


def _rotation(env, progress: Progress, hook: Hook) -> Rotation:
    return Rotation(env.certs, DockerCluster(env, progress), progress, hook)


def rotate_leaves(env, node: str | None = None, client: str | None = None,
                  progress: Progress = quiet, hook: Hook = _no_hook) -> Report:
    """New leaf certificates (new keys) for every node and client, or for ``node``/``client`` only."""
    return _rotation(env, progress, hook).start(LEAF, [node] if node else [], [client] if client else [])


def rotate_ca(env, pause_after_trust: bool = False, progress: Progress = quiet, hook: Hook = _no_hook) -> Report:
    """A new CA, trusted beside the old one, then every leaf reissued under it, then the old CA dropped."""
    return _rotation(env, progress, hook).start(CA, pause_after_trust=pause_after_trust)


def resume(env, progress: Progress = quiet, hook: Hook = _no_hook) -> Report:
    return _rotation(env, progress, hook).resume()


def abort(env, progress: Progress = quiet, hook: Hook = _no_hook) -> Report:
    return _rotation(env, progress, hook).abort()


def rotate_if_due(env, window: dt.timedelta, ca: bool = False, node: str | None = None,
                  client: str | None = None, progress: Progress = quiet) -> Report:
    """What ``--if-expiring-within`` does: nothing when nothing expires inside ``window``."""
    due = due_within(env.certs, window)
    if due.ca is not None:
        if not ca:
            raise SecureKafkaError(
                f"the CA of {env.env!r} expires in {due.ca.days_left} days, inside {window.days} days: "
                f"rotate it with `secure-kafka certs rotate {env.env} --ca`"
            )
        return rotate_ca(env, progress=progress)
    nodes = [n for n in due.nodes if node in (None, n)] if client is None else []
    clients = [c for c in due.clients if client in (None, c)] if node is None else []
    if not nodes and not clients:
        return Report(env.env, LEAF, "nothing-due", [], {}, 0.0)
    return _rotation(env, progress, _no_hook).start(LEAF, nodes, clients)
