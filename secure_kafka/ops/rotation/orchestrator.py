"""Runs a rotation: stages the new material, walks the phases' steps against a ``Cluster``,
saves the ``State`` after every action, and archives or discards the material at the end.

Also what is due for rotation, and the library entry points the CLI calls.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography import x509

from ... import pki
from ...errors import SecureKafkaError
from ...fsutil import archive_dir, read_json, write_atomic
from ...model.topology import Node
from ...pki.certstore import CertStore, _mkdir
from ...pki import revocation
from ...pki.manifest import CertRecord, Manifest
from ...proc import Progress, quiet
from ..context import EnvironmentContext
from .. import migration
from .docker_cluster import DockerCluster
from .state import (
    CA,
    INITIAL,
    LEAF,
    NEW,
    OLD,
    STEPS,
    Material,
    Phase,
    State,
    forward_phases,
)

STARTING_GRACE_S = 180  # how long a resumed rotation waits for a node whose healthcheck is pending
RELOAD_VISIBLE_S = 30  # how long a reloaded broker may take to present its new certificate
NOTHING_IN_PROGRESS = "no rotation of {env!r} is in progress: nothing to resume or abort"


# --- what a rotation needs from the running cluster -----------------------------------------


class Cluster(Protocol):
    def unavailable(self, exempt: Sequence[str] = ()) -> list[str]:
        """One line per node that is not running and healthy (``exempt`` nodes aside), or why the
        cluster is not fully in sync."""

    def reload(self, broker: Node) -> None:
        """Makes the broker re-read its keystore and truststore on every TLS listener."""

    def served_serials(self, broker: Node) -> dict[str, int | None]:
        """Listener name -> serial of the certificate it presents (real handshakes)."""

    def roll_order(self, quorum: Sequence[Node]) -> list[Node]:
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


def _interrupted_state(document: dict) -> State:
    """A saved state as the next process sees it: what was being written or restarted is unknown."""
    state = State.of(document)
    state.mark_interrupted()
    return state


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
        # state.STEPS names the steps (as saved in state.json); this is what each one does.
        self._steps: dict[str, Callable[[State, Phase], None]] = {
            "files": self._step_files, "reload": self._step_reload, "roll": self._step_roll,
        }

    # -- state -------------------------------------------------------------------------------

    def in_progress(self) -> bool:
        return self.state_path.exists()

    def require_in_progress(self) -> None:
        """Refuses --resume/--abort before anything is written (a lock file, a trail entry)."""
        if not self.in_progress():
            raise SecureKafkaError(NOTHING_IN_PROGRESS.format(env=self.env))

    def load_state(self) -> State:
        return read_json(self.state_path, _interrupted_state,
                         missing=NOTHING_IN_PROGRESS.format(env=self.env),
                         unreadable=f"{self.store.relative(self.state_path)}: unreadable rotation state")

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
            if store.revocation_enabled():
                # Before any node presents a leaf of the new CA, its peers can read that CA's CRL.
                revocation.publish(store.root, issuer, manifest, self._node_dirs(), store.container_uid())
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
            self._steps[state.step](state, phase)
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
            # A KRaft broker applies the change once the controllers committed it: a moment later.
            deadline = time.monotonic() + RELOAD_VISIBLE_S
            while True:
                served = self.cluster.served_serials(broker)
                wrong = {name: serial for name, serial in served.items() if serial != expected}
                if not wrong or time.monotonic() > deadline:
                    break
                time.sleep(1)
            if wrong:
                shown = ", ".join(f"{n} serial {format(s or 0, 'x')}" for n, s in wrong.items())
                raise SecureKafkaError(
                    f"{broker.name} presents {shown} after the reload, expected {expected:x}: "
                    f"check its log, then run `secure-kafka certs rotate {self.env} --resume`"
                )

    def _step_roll(self, state: State, phase: Phase) -> None:
        # The metadata quorum first (ZooKeeper nodes or KRaft controllers), one at a time.
        quorum = [n for n in self.topology.quorum if n.name in state.running]
        order = self.cluster.roll_order(quorum) + [n for n in self.topology.brokers if n.name in state.running]
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
            archive_dir(self.dir / OLD / "ca", archive / "ca" / f"gen-{state.generations['ca']}")
        for owner, owner_kind in state.owners.items():
            leaf = self._leaf(owner, NEW, owner_kind).cert
            path = f"clients/{owner}" if owner_kind == "client" else f"nodes/{owner}"
            manifest.add(CertRecord.of(owner, owner_kind, leaf, path))
            archive_dir(self.dir / OLD / owner, archive / owner / f"gen-{state.generations[owner]}")
        manifest.save(store.manifest_path)
        if not store.revocation_enabled() and self._covers_everything(state):
            # Every certificate now names a CRL distribution point: the next `up` turns checking on.
            revocation.publish(store.root, store.load(), manifest, self._node_dirs(), store.container_uid())
        report = self._report(state, "done", names, started)
        shutil.rmtree(self.dir)
        return report

    def _node_dirs(self) -> list[Path]:
        return [self.store.node_dir(n.name) for n in self.topology.nodes]

    def _covers_everything(self, state: State) -> bool:
        return set(state.owners) >= {n.name for n in self.topology.nodes} | set(self.client_principals())

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


# --- the library entry points -------------------------------------------------------------------


def _rotation(env: EnvironmentContext, progress: Progress, hook: Hook) -> Rotation:
    if migration.in_progress(env):  # its nodes are between two shapes the rotation knows neither of
        raise SecureKafkaError(f"a migration of {env.env} to KRaft has not finished: continue it with "
                               f"`secure-kafka migrate {env.env} --to kraft` before rotating")
    return Rotation(env.certs, DockerCluster(env, progress), progress, hook)


def _recorded(env: EnvironmentContext, command: str, rotate: Callable[[], Report], **args: object) -> Report:
    """Runs ``rotate`` as one entry of the operations trail: its outcome and the new serials."""
    with env.trail.recorded(command, **args) as changes:
        report = rotate()
        changes.update(kind=report.kind, outcome=report.outcome, serials=report.serials)
    return report


def rotate_leaves(env: EnvironmentContext, node: str | None = None, client: str | None = None,
                  progress: Progress = quiet, hook: Hook = _no_hook) -> Report:
    """New leaf certificates (new keys) for every node and client, or for ``node``/``client`` only."""
    return _recorded(env, "certs rotate", lambda: _rotation(env, progress, hook).start(
        LEAF, [node] if node else [], [client] if client else []), node=node, client=client)


def rotate_ca(env: EnvironmentContext, pause_after_trust: bool = False, progress: Progress = quiet, hook: Hook = _no_hook) -> Report:
    """A new CA, trusted beside the old one, then every leaf reissued under it, then the old CA dropped."""
    return _recorded(env, "certs rotate --ca", lambda: _rotation(env, progress, hook).start(
        CA, pause_after_trust=pause_after_trust), pause_after_trust=pause_after_trust)


def resume(env: EnvironmentContext, progress: Progress = quiet, hook: Hook = _no_hook) -> Report:
    rotation = _rotation(env, progress, hook)
    rotation.require_in_progress()
    return _recorded(env, "certs rotate --resume", rotation.resume)


def abort(env: EnvironmentContext, progress: Progress = quiet, hook: Hook = _no_hook) -> Report:
    rotation = _rotation(env, progress, hook)
    rotation.require_in_progress()
    return _recorded(env, "certs rotate --abort", rotation.abort)


def rotate_if_due(env: EnvironmentContext, window: dt.timedelta, ca: bool = False, node: str | None = None,
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
    return _recorded(env, "certs rotate --if-expiring-within", lambda: _rotation(env, progress, _no_hook).start(
        LEAF, nodes, clients), window_days=window.days, nodes=nodes, clients=clients)
