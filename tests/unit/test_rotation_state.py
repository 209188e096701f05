"""rotation: the phase state machine, durations, manifest generations, resume and abort.

The cluster is a fake that records what a rotation asks of it; the files, stores and
manifest are real. tests/integration/test_rotation.py runs the same against a real cluster.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from interruption import Killed, kill_at

from secure_kafka import pki
from secure_kafka.build.plan import spec_hash
from secure_kafka.build.planner import build_plan
from secure_kafka.errors import SecureKafkaError
from secure_kafka.model import profiles, settings
from secure_kafka.ops import rotation
from secure_kafka.ops.rotation import (
    CA,
    INITIAL,
    LEAF,
    NEW,
    OLD,
    Material,
    Phase,
    Rotation,
    State,
)
from secure_kafka.pki import revocation
from secure_kafka.pki.certstore import CertStore


@pytest.fixture
def store(tmp_path, monkeypatch) -> CertStore:
    monkeypatch.delenv("SECURE_KAFKA_PASSPHRASE", raising=False)
    (tmp_path / "Pulumi.yaml").write_text("name: test\nruntime: python\n")
    project = settings.Project(tmp_path)
    # 3 ZooKeeper nodes + 3 brokers (the prod shape) with dev's fast keys.
    cert_store = CertStore(project, dataclasses.replace(settings.defaults("dev", profiles.DEV), zookeeper_nodes=3, brokers=3))
    cert_store.init()
    cert_store.add_client("app")
    return cert_store


class FakeCluster:
    """Records reloads and restarts; a broker 'serves' what its keystore on disk holds."""

    def __init__(self, store: CertStore):
        self.store = store
        self.events: list[str] = []
        self.down: list[str] = []
        self.fail_restart: str | None = None

    def unavailable(self, exempt=()):
        return [f"{n} is exited" for n in self.down if n not in exempt]

    def reload(self, broker):
        self.events.append(f"reload:{broker.name}")

    def served_serials(self, broker):
        return {"INTERNAL": keystore_cert(self.store, broker.name).serial_number}

    def roll_order(self, zookeepers):
        return list(reversed(zookeepers))  # "zk-0 leads"

    def restart(self, node):
        if node.name == self.fail_restart:
            raise SecureKafkaError(f"{node.name} exited with status 1")
        self.events.append(f"restart:{node.name}")


def keystore_cert(store: CertStore, owner: str) -> x509.Certificate:
    directory = store.client_dir(owner) if owner in ("admin", "app") else store.node_dir(owner)
    return pkcs12.load_pkcs12((directory / "keystore.p12").read_bytes(), store.store_password(owner).encode()).cert.certificate


def trusted(store: CertStore, owner: str) -> set[str]:
    directory = store.client_dir(owner) if owner in ("admin", "app") else store.node_dir(owner)
    stores = pkcs12.load_pkcs12((directory / "truststore.p12").read_bytes(), store.store_password(owner).encode())
    return {pki.fingerprint(c.certificate) for c in stores.additional_certs}


def owners(store):
    return [n.name for n in store.settings.topology.nodes] + ["admin", "app"]


def snapshot(store):
    return {o: (pki.fingerprint(keystore_cert(store, o)), frozenset(trusted(store, o))) for o in owners(store)}


def ca_fingerprint(store):
    return pki.fingerprint(x509.load_pem_x509_certificate(store.ca_cert_path.read_bytes()))


# --- pure parts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [("30d", dt.timedelta(days=30)), ("12h", dt.timedelta(hours=12)),
                                            ("2w", dt.timedelta(weeks=2)), (" 90m ", dt.timedelta(minutes=90))])
def test_parse_duration(text, expected):
    assert rotation.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "30 days", "-1d", "1.5d", "30y"])
def test_parse_duration_refuses_bad_input(text):
    with pytest.raises(SecureKafkaError, match="invalid duration .*: use a number and a unit"):
        rotation.parse_duration(text)


def test_ca_phases_keep_the_old_ca_trusted_until_every_leaf_is_new():
    phases = rotation.forward_phases(CA)
    assert [p.name for p in phases] == ["trust-both", "new-leaves", "drop-old-ca"]
    for before, after in zip([INITIAL] + [p.target for p in phases], [p.target for p in phases]):
        # Each step changes either the leaf or the trust, and no leaf is ever untrusted.
        assert (before.leaf != after.leaf) != (before.trust != after.trust)
        assert before.leaf in after.trust and after.leaf in before.trust
    assert rotation.forward_phases(LEAF) == [Phase("new-leaves", Material(NEW, (OLD,)))]


@pytest.mark.parametrize("materials, expected", [
    ([INITIAL], []),
    ([INITIAL, Material(OLD, (OLD, NEW))], ["drop-new-ca"]),
    ([Material(OLD, (OLD, NEW)), Material(NEW, (OLD, NEW))], ["restore-old-leaves", "drop-new-ca"]),
    ([INITIAL, Material(NEW, (OLD,))], ["restore-old-leaves"]),
])
def test_abort_walks_back(materials, expected):
    phases = rotation.abort_phases(materials, "--resume")
    assert [p.name for p in phases] == expected
    if phases:
        assert phases[-1].target == INITIAL


def test_abort_refuses_past_the_point_of_no_return():
    with pytest.raises(SecureKafkaError, match="past the point of no return.*finish it with --resume"):
        rotation.abort_phases([Material(NEW, (OLD, NEW)), Material(NEW, (NEW,))], "--resume")


def test_state_round_trips_and_advances():
    state = State(CA, {"kafka-0": "broker"}, {"ca": 1, "kafka-0": 1}, rotation.forward_phases(CA),
                  disk={"kafka-0": INITIAL}, running={"kafka-0": INITIAL})
    assert State.of(json.loads(json.dumps(state.to_json()))) == state
    steps = []
    while not state.done:
        steps.append((state.phase.name, state.step))
        state.advance()
    assert steps[:4] == [("trust-both", "files"), ("trust-both", "reload"), ("trust-both", "roll"), ("new-leaves", "files")]
    assert len(steps) == 9


# --- rotations against the fake cluster ----------------------------------------------------------


def test_leaf_rotation_reissues_every_leaf_and_records_generations(store):
    before = snapshot(store)
    cluster = FakeCluster(store)
    report = Rotation(store, cluster).start(LEAF)
    assert report.outcome == "done" and report.phases == ["new-leaves"]
    after = snapshot(store)
    for owner in owners(store):
        assert after[owner][0] != before[owner][0], owner  # a new leaf ...
        assert after[owner][1] == before[owner][1], owner  # ... the same trust
        assert keystore_cert(store, owner).subject == pki.subject_name(owner, store.settings.topology.node(owner).role
                                                                        if owner not in ("admin", "app") else "client", "dev")
    # Brokers reload, then ZooKeeper rolls (leader last), then brokers roll.
    assert cluster.events == ["reload:kafka-0", "reload:kafka-1", "reload:kafka-2", "restart:zk-2", "restart:zk-1",
                              "restart:zk-0", "restart:kafka-0", "restart:kafka-1", "restart:kafka-2"]
    manifest = json.loads(store.manifest_path.read_text())["certificates"]
    kafka0 = [r for r in manifest if r["name"] == "kafka-0"]
    assert [(r["generation"], r["active"]) for r in kafka0] == [(1, False), (2, True)]
    assert kafka0[1]["sha256"] == after["kafka-0"][0]
    assert (store.root / "archive" / "kafka-0" / "gen-1" / "keystore.p12").exists()
    assert not (store.root / "rotation").exists()
    assert store.verify() == []


def test_one_node_rotation_touches_that_node_only(store):
    before = snapshot(store)
    cluster = FakeCluster(store)
    Rotation(store, cluster).start(LEAF, nodes=["zk-1"])
    after = snapshot(store)
    assert [o for o in owners(store) if after[o] != before[o]] == ["zk-1"]
    assert cluster.events == ["restart:zk-1"]


def test_ca_rotation_ends_with_the_new_ca_only_and_the_plan_unchanged(store):
    old_ca = ca_fingerprint(store)
    plan_before = build_plan(store.project.root, store.settings, store.secrets, "image:1")
    report = Rotation(store, FakeCluster(store)).start(CA)
    assert report.phases == ["trust-both", "new-leaves", "drop-old-ca"]
    new_ca = x509.load_pem_x509_certificate(store.ca_cert_path.read_bytes())
    assert pki.fingerprint(new_ca) != old_ca
    for owner in owners(store):
        assert pki.issued_by(keystore_cert(store, owner), new_ca), owner
        assert trusted(store, owner) == {pki.fingerprint(new_ca)}, owner
    bundle = x509.load_pem_x509_certificates((store.client_dir("app") / "ca.crt").read_bytes())
    assert [pki.fingerprint(c) for c in bundle] == [pki.fingerprint(new_ca)]
    assert store.verify() == []
    assert [r.generation for r in store.list() if r.name == "ca"] == [2]
    # Certificate content is no input of the plan: no container needs replacing.
    plan_after = build_plan(store.project.root, store.settings, store.secrets, "image:1")
    assert [spec_hash(c) for c in plan_after.containers] == [spec_hash(c) for c in plan_before.containers]


def test_a_ca_rotation_gives_every_node_the_new_cas_crl_before_any_new_leaf(store):
    cluster = FakeCluster(store)
    new_crl_seen = {}

    def check(point: str) -> None:  # at the first write of new leaves, every node reads the new CA's CRL
        if point.startswith("new-leaves:files:") and not new_crl_seen:
            new_ca = x509.load_pem_x509_certificate((store.root / "rotation" / NEW / "ca" / "ca.crt").read_bytes())
            name = revocation.crl_filename(new_ca)
            new_crl_seen.update({n.name: (store.node_dir(n.name) / name).exists() for n in store.settings.topology.nodes})

    Rotation(store, cluster, hook=check).start(CA)
    assert new_crl_seen and all(new_crl_seen.values()), new_crl_seen
    new_ca = x509.load_pem_x509_certificate(store.ca_cert_path.read_bytes())
    for owner in owners(store):
        assert pki.crl_distribution_points(keystore_cert(store, owner)) == [revocation.crl_uri(new_ca)], owner


@pytest.mark.parametrize("full", [True, False], ids=["full-rotation", "one-node"])
def test_a_pki_that_predates_revocation_gets_it_from_a_full_rotation_only(store, full):
    shutil.rmtree(store.root / revocation.CRL_DIR)  # as `certs init` of an earlier version left it
    assert not store.revocation_enabled()
    Rotation(store, FakeCluster(store)).start(LEAF, nodes=[] if full else ["zk-1"])
    # A partial one leaves certificates without a distribution point: checking stays off.
    assert store.revocation_enabled() is full
    if full:
        ca = store.load()
        crl = x509.load_der_x509_crl((store.node_dir("kafka-0") / revocation.crl_filename(ca.cert)).read_bytes())
        assert crl.is_signature_valid(ca.cert.public_key())


def test_paused_ca_rotation_gives_clients_both_cas_then_resumes(store):
    old_ca = ca_fingerprint(store)
    report = Rotation(store, FakeCluster(store)).start(CA, pause_after_trust=True)
    assert report.outcome == "paused" and report.phases == ["trust-both"]
    bundle = {pki.fingerprint(c) for c in x509.load_pem_x509_certificates((store.client_dir("app") / "ca.crt").read_bytes())}
    assert len(bundle) == 2 and old_ca in bundle
    assert all(trusted(store, o) == bundle for o in owners(store))
    report = Rotation(store, FakeCluster(store)).resume()
    assert report.outcome == "done" and report.phases == ["new-leaves", "drop-old-ca"]
    assert store.verify() == []


def test_killed_mid_ca_rotation_resumes_to_the_end(store):
    cluster = FakeCluster(store)
    with pytest.raises(Killed):
        Rotation(store, cluster, hook=kill_at("trust-both:roll:kafka-1")).start(CA)
    state = json.loads((store.root / "rotation" / "state.json").read_text())
    assert (state["phases"][state["index"]]["name"], state["step"]) == ("trust-both", "roll")
    with pytest.raises(SecureKafkaError, match="a rotation of 'dev' is in progress: continue it with .* --resume"):
        Rotation(store, cluster).start(LEAF)
    cluster.events.clear()
    report = Rotation(store, cluster).resume()
    assert report.outcome == "done"
    # Nodes rolled before the kill are not restarted again for that phase.
    assert cluster.events[:2] == ["restart:kafka-1", "restart:kafka-2"]
    assert store.verify() == []


def test_abort_mid_new_leaves_returns_to_the_old_material(store):
    before, old_ca = snapshot(store), ca_fingerprint(store)
    manifest_before = store.manifest_path.read_text()
    cluster = FakeCluster(store)
    with pytest.raises(Killed):
        Rotation(store, cluster, hook=kill_at("new-leaves:files:kafka-1")).start(CA)
    state = json.loads((store.root / "rotation" / "state.json").read_text())
    assert state["phases"][state["index"]]["name"] == "new-leaves"
    cluster.events.clear()
    report = Rotation(store, cluster).abort()
    assert report.outcome == "aborted" and report.phases == ["restore-old-leaves", "drop-new-ca"]
    assert snapshot(store) == before and ca_fingerprint(store) == old_ca
    assert store.manifest_path.read_text() == manifest_before
    assert not (store.root / "rotation").exists() and not (store.root / "archive").exists()
    assert store.verify() == []
    # Only nodes that had loaded the new trust are restarted back (all of them, in trust-both).
    assert "restart:zk-0" in cluster.events and "reload:kafka-0" in cluster.events


def test_abort_refused_once_the_old_ca_is_dropped_somewhere(store):
    with pytest.raises(Killed):
        Rotation(store, FakeCluster(store), hook=kill_at("drop-old-ca:files:zk-1")).start(CA)
    with pytest.raises(SecureKafkaError, match="past the point of no return.*--resume"):
        Rotation(store, FakeCluster(store)).abort()
    assert Rotation(store, FakeCluster(store)).resume().outcome == "done"
    assert store.verify() == []


def test_abort_early_in_trust_both_restores_without_restarts(store):
    before = snapshot(store)
    cluster = FakeCluster(store)
    with pytest.raises(Killed):
        Rotation(store, cluster, hook=kill_at("trust-both:files:zk-0")).start(CA)
    cluster.events.clear()
    # zk-0's truststore may or may not have been rewritten when the process died: it is rewritten back.
    assert Rotation(store, cluster).abort().phases == ["drop-new-ca"]
    assert snapshot(store) == before
    assert not [e for e in cluster.events if e.startswith("restart:")]  # no process had loaded anything new


def test_refuses_while_a_node_is_down(store):
    before = snapshot(store)
    cluster = FakeCluster(store)
    cluster.down = ["kafka-1"]
    with pytest.raises(SecureKafkaError, match=r"refusing to rotate 'dev' while kafka-1 is exited: bring it back with `secure-kafka up dev` first"):
        Rotation(store, cluster).start(LEAF)
    assert snapshot(store) == before and not (store.root / "rotation").exists()


def test_a_node_that_does_not_come_back_stops_the_roll_recoverably(store):
    cluster = FakeCluster(store)
    cluster.fail_restart = "zk-1"
    with pytest.raises(SecureKafkaError, match=r"zk-1 exited with status 1; the rotation stopped at zk-1, the other nodes keep serving"):
        Rotation(store, cluster).start(LEAF)
    state = json.loads((store.root / "rotation" / "state.json").read_text())
    assert state["rolling"] == "zk-1"
    cluster.fail_restart = None
    cluster.down = ["zk-1"]  # still down: resume restarts it, it is not a reason to refuse
    assert Rotation(store, cluster).resume().outcome == "done"


def test_nothing_due_and_due(store):
    assert rotation.due_within(store, dt.timedelta(days=30)).nothing
    due = rotation.due_within(store, dt.timedelta(days=900))  # dev leaves: 825 days
    assert due.ca is None and set(due.nodes) == {n.name for n in store.settings.topology.nodes}
    assert set(due.clients) == {"admin", "app"}


# --- the command line: bad input is refused before anything is touched ---------------------------


@pytest.mark.parametrize("args, message", [
    (["--resume", "--abort"], "--resume and --abort exclude each other: choose one"),
    (["--resume", "--ca"], "--resume/--abort take no other option"),
    (["--ca", "--node", "kafka-0"], "--ca rotates every certificate: drop --node/--client"),
    (["--pause-after-trust"], "--pause-after-trust belongs to a CA rotation: add --ca"),
    (["--if-expiring-within", "soon"], "invalid duration 'soon': use a number and a unit"),
])
def test_cli_refuses_bad_options(tmp_path, monkeypatch, args, message):
    from typer.testing import CliRunner

    from secure_kafka.cli import app

    monkeypatch.setenv("SECURE_KAFKA_PROJECT", str(tmp_path))
    (tmp_path / "Pulumi.yaml").write_text("name: test\nruntime: python\n")
    settings.Project(tmp_path).write(settings.defaults("dev", profiles.DEV))
    result = CliRunner().invoke(app, ["certs", "rotate", "dev", *args])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {message}"), result.output
    assert not (tmp_path / "certs").exists()
