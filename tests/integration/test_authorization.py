"""Authorization on the shared dev cluster: deny by default, declarative ACLs, SCRAM users, audit.

A user added with `users add` may do nothing until the ACL file grants it something; every
refusal here has a control beside it (the same client succeeding where a rule allows it),
and every refusal must show up in the audit trail under the right principal. The same
journey runs for the user's SCRAM login (SASL_SSL) and its certificate (mTLS).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from secure_kafka.errors import SecureKafkaError
from secure_kafka.model import acl, policy
from secure_kafka.model.topology import ADMIN
from secure_kafka.ops import acladmin, audit, clients, kafka_admin, rotation, users
from secure_kafka.pki import CA
from secure_kafka.pki.secretstore import scram_password_name
from secure_kafka.verify import probes

CLI = Path(sys.executable).parent / "secure-kafka"
# Rules an environment's ACL file had before a test rewrote it: kept, so --prune spares them.
ORIGINAL_RULES: dict[str, list] = {}


def client_config(env, name: str, auth: str) -> dict[str, str]:
    if auth == "scram":
        return env.scram_config(name)
    return clients.mtls_config(env.settings, env.certs.client_dir(name))


def produce(conf: dict, topic: str, value: bytes) -> str | None:
    """None when the record was written, else the error's name."""
    outcome: list = []
    producer = Producer({**conf, "message.timeout.ms": 15000, "acks": "all"})
    producer.produce(topic, value, on_delivery=lambda err, _msg: outcome.append(err))
    producer.flush(30)
    assert outcome, "no delivery report within 30 s"
    return outcome[0].name() if outcome[0] else None


def read(conf: dict, topic: str, group: str, timeout_s: float = 20) -> tuple[list[bytes], str | None]:
    """Records read from the start of the topic, and the first error's name (None when none)."""
    consumer = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    values: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                if values:
                    return values, None
                continue
            if msg.error():
                if msg.error().name() == "_PARTITION_EOF":
                    continue
                return values, msg.error().name()
            values.append(msg.value())
        return values, None
    finally:
        consumer.close()


def write_acls(env, rules: str) -> None:
    """The environment's ACL file: the rules it had before the test, then ``rules``."""
    path = acl.acl_file(env.project.root, env.env)
    path.parent.mkdir(exist_ok=True)
    kept = yaml.safe_dump(ORIGINAL_RULES[env.env], sort_keys=False) if ORIGINAL_RULES.get(env.env) else ""
    path.write_text("acls:\n" + textwrap.indent(kept, "  ") + rules)


def apply(env, prune: bool = False) -> acladmin.ApplyResult:
    return acladmin.apply(env.admin_client(), acladmin.load_desired(env), prune=prune)


def collected_decisions(env) -> list[audit.Decision]:
    """Every decision in the environment's trail, after collecting what the nodes logged since the last time."""
    env.collect_decisions()
    return audit.decisions_in(env.decisions.texts())


def denied_in_audit(env, principal: str, since) -> set[tuple[str, str, str]]:
    """(operation, resource type, resource) of every denial of ``principal`` since ``since``."""
    decisions = audit.select(collected_decisions(env), denied_only=True, since=since)
    return {(d.operation, d.resource_type, d.resource) for d in decisions if d.principal == principal}


@pytest.fixture
def authz(dev_env):
    """A fresh user with two topics (A, B); all removed and the ACL file restored afterwards."""
    tag = uuid.uuid4().hex[:8]
    name, topic_a, topic_b = f"authz-{tag}", f"authz-{tag}-a", f"authz-{tag}-b"
    admin = dev_env.admin_client()
    for topic in (topic_a, topic_b):
        kafka_admin.ensure_topic(admin, topic, 1)
    users.add(dev_env, name)
    acl_path = acl.acl_file(dev_env.project.root, dev_env.env)
    original = acl_path.read_text() if acl_path.exists() else None
    ORIGINAL_RULES[dev_env.env] = ((yaml.safe_load(original) or {}).get("acls") or []) if original else []
    try:
        yield dev_env, name, topic_a, topic_b
    finally:
        ours = [b for b in acladmin.describe(admin) if b.principal == f"User:{name}"]
        acladmin.delete(admin, ours)
        if original is None:
            acl_path.unlink(missing_ok=True)
        else:
            acl_path.write_text(original)
        users.remove(dev_env, name, prove_revoked=False)
        for future in admin.delete_topics([topic_a, topic_b]).values():
            future.result(timeout=30)


@pytest.mark.parametrize("auth", ["scram", "mtls"])
def test_deny_by_default_and_declared_grants(authz, auth):
    env, name, topic_a, topic_b = authz
    principal = f"User:{name}"
    group = f"{name}-group"
    conf = client_config(env, name, auth)
    started = audit.datetime.now(audit.timezone.utc).replace(microsecond=0)

    # A new user may do nothing: not even write A.
    assert produce(conf, topic_a, b"before") == "TOPIC_AUTHORIZATION_FAILED"

    write_acls(env, f"  - principal: {principal}\n    topic: {topic_a}\n    allow: [Write]\n")
    first = apply(env)
    assert [str(b) for b in first.created] == [f"allow {principal} Write on topic {topic_a}"]
    assert not apply(env).changed  # idempotent: the second run changes nothing

    # Writes A (control), not B.
    assert produce(conf, topic_a, b"record-1") is None
    assert produce(conf, topic_b, b"record-1") == "TOPIC_AUTHORIZATION_FAILED"

    # Cannot create topics or alter ACLs (control: the admin just did both in the fixture).
    user_admin = AdminClient(conf)
    created = user_admin.create_topics([NewTopic(f"{topic_a}-new", 1, 1)])[f"{topic_a}-new"]
    with pytest.raises(KafkaException) as refused:
        created.result(timeout=30)
    assert refused.value.args[0].name() in ("TOPIC_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED")
    grant_self = AclBinding(ResourceType.TOPIC, topic_b, ResourcePatternType.LITERAL, principal, "*",
                            AclOperation.ALL, AclPermissionType.ALLOW)
    with pytest.raises(KafkaException) as refused:
        next(iter(user_admin.create_acls([grant_self]).values())).result(timeout=30)
    assert refused.value.args[0].name() == "CLUSTER_AUTHORIZATION_FAILED"

    # With Read on its group but not on A, it cannot read A (control: the admin reads it).
    write_rule = f"  - principal: {principal}\n    topic: {topic_a}\n    allow: [Write]\n"
    group_rule = f"  - principal: {principal}\n    group: {group}\n    allow: [Read]\n"
    write_acls(env, write_rule + group_rule)
    assert len(apply(env).created) == 1
    assert read(conf, topic_a, group) == ([], "TOPIC_AUTHORIZATION_FAILED")
    assert read(env.admin_mtls_config(), topic_a, f"{group}-admin") == ([b"record-1"], None)

    # With Read on A and on its group, it consumes.
    read_rule = f"  - principal: {principal}\n    topic: {topic_a}\n    allow: [Write, Read]\n"
    write_acls(env, read_rule + group_rule)
    assert len(apply(env).created) == 1
    assert read(conf, topic_a, group) == ([b"record-1"], None)

    # Each denial is in the audit trail under this principal.
    denied = denied_in_audit(env, principal, started)
    assert ("Describe", "Topic", topic_b) in denied or ("Write", "Topic", topic_b) in denied, denied
    assert ("Read", "Topic", topic_a) in denied, denied
    assert ("Create", "Cluster", "kafka-cluster") in denied or ("Create", "Topic", f"{topic_a}-new") in denied, denied
    assert ("Alter", "Cluster", "kafka-cluster") in denied, denied
    # ... and the allowed write of A is there too, not as a denial.
    allowed = [d for d in audit.select(collected_decisions(env), since=started)
               if d.principal == principal and d.allowed]
    assert any(d.operation == "Write" and d.resource == topic_a for d in allowed), allowed

    # The file drops the group rule: `acl apply` keeps it (reported), `--prune` removes it, and a
    # consumer without a group ACL is refused.
    write_acls(env, read_rule)
    kept = apply(env)
    assert not kept.changed and [b.resource_type for b in kept.kept_extra if b.principal == principal] == ["group"]
    pruned = apply(env, prune=True)
    assert [(b.principal, b.resource_type) for b in pruned.deleted] == [(principal, "group")]
    assert not apply(env, prune=True).changed
    assert read(conf, topic_a, f"{group}")[1] == "GROUP_AUTHORIZATION_FAILED"
    denied = denied_in_audit(env, principal, started)
    assert ("Describe", "Group", group) in denied or ("Read", "Group", group) in denied, denied


def test_bad_acl_file_applies_nothing(authz):
    env, name, topic_a, _ = authz
    admin = env.admin_client()
    before = acladmin.describe(admin)
    write_acls(env, f"  - principal: User:{name}\n    topic: {topic_a}\n    allow: [Write]\n"
                    f"  - principal: User:nobody-{name}\n    topic: {topic_a}\n    allow: [Read]\n")
    path = acl.acl_file(env.project.root, env.env)
    line = path.read_text().splitlines().index(f"  - principal: User:nobody-{name}") + 1
    with pytest.raises(SecureKafkaError, match=rf"acls/.*\.yaml:{line}: principal User:nobody-.* is not a user"):
        apply(env)
    assert acladmin.describe(admin) == before  # the valid first rule was not applied either


def test_users_remove_revokes_at_once(dev_env):
    name = f"gone-{uuid.uuid4().hex[:8]}"
    users.add(dev_env, name)
    assert name in users.scram_users(dev_env)
    conf = dev_env.scram_config(name)
    existing = AdminClient(conf)
    existing.list_topics(timeout=15)  # control: authenticated, and requests work
    users.remove(dev_env, name, prove_revoked=False)
    assert name not in users.scram_users(dev_env)
    with pytest.raises(KafkaException):
        AdminClient(conf).list_topics(timeout=15)  # a new login is refused at once
    # The open connection is closed at its next re-authentication (connections.max.reauth.ms).
    deadline = time.monotonic() + 60
    while True:
        try:
            existing.list_topics(timeout=5)
        except KafkaException:
            break
        assert time.monotonic() < deadline, "the removed user's open connection still works after 60 s"
        time.sleep(2)


def test_scram_users_survive_a_broker_restart_after_a_removal(dev_env, docker_client):
    """A broker that restarts rebuilds its credentials from the metadata: after a removal
    beside other users, every remaining user still logs in (KRaft: Kafka 4.x loses them when
    a node replays such changes from an empty image; the KRaft templates' snapshots keep it
    from ever doing so)."""
    tag = uuid.uuid4().hex[:8]
    kept, gone = f"kept-{tag}", f"gone-{tag}"
    users.add(dev_env, kept)
    users.add(dev_env, gone)
    users.remove(dev_env, gone, prove_revoked=False)
    try:
        broker = dev_env.settings.topology.brokers[0]
        docker_client.containers.get(broker.container).restart(timeout=60)
        dev_env.admin_client(120)  # registered again
        for name in (ADMIN, kept):
            assert _logs_in(dev_env.scram_config(name)), f"{name} cannot log in after the broker restarted"
        assert gone not in users.scram_users(dev_env)
    finally:
        users.remove(dev_env, kept, prove_revoked=False)


def _logs_in(conf: dict, timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            AdminClient(conf).list_topics(timeout=10)
            return True
        except KafkaException:
            time.sleep(2)
    return False


def test_apply_converges_from_a_half_done_apply(authz):
    env, name, topic_a, topic_b = authz
    principal = f"User:{name}"
    write_acls(env, f"  - principal: {principal}\n    topic: {topic_a}\n    allow: [Write, Read, Describe]\n"
                    f"  - principal: {principal}\n    topic: {topic_b}\n    deny: [Read]\n")
    desired = acladmin.load_desired(env)
    admin = env.admin_client()
    half = sorted(desired)[:2]
    acladmin.create(admin, half)  # as if an earlier apply stopped after two creations
    missing = desired - acladmin.describe(admin)
    assert len(missing) == 2
    result = apply(env)
    assert set(result.created) == missing
    assert desired <= acladmin.describe(admin)
    assert not apply(env).changed


def test_operations_are_in_the_trail_with_their_outcome_and_no_secret(dev_env):
    """users add, `acl apply --prune` (the CLI), a leaf rotation and users remove: each one entry
    of the operations trail, chained and intact, and no password, key or passphrase in it, nor in
    the decisions trail."""
    name, topic = f"trail-{uuid.uuid4().hex[:8]}", f"trail-{uuid.uuid4().hex[:8]}"
    trail, before = dev_env.trail, len(dev_env.trail.entries())
    acl_path = acl.acl_file(dev_env.project.root, dev_env.env)
    original = acl_path.read_text() if acl_path.exists() else None

    def cli_apply() -> None:
        done = subprocess.run([str(CLI), "acl", "apply", dev_env.env, "--prune"], capture_output=True, text=True,
                              env={**os.environ, "SECURE_KAFKA_PROJECT": str(dev_env.project.root)}, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]

    users.add(dev_env, name)
    password = dev_env.secrets.get(scram_password_name(name))
    try:
        ORIGINAL_RULES[dev_env.env] = ((yaml.safe_load(original) or {}).get("acls") or []) if original else []
        write_acls(dev_env, f"  - principal: User:{name}\n    topic: {topic}\n    allow: [Write]\n")
        cli_apply()
        rotation.rotate_leaves(dev_env, client=name)
    finally:
        acl_path.write_text(original if original is not None else "acls: []\n")
        cli_apply()  # the user's rule pruned again
        if original is None:
            acl_path.unlink()
    users.remove(dev_env, name, prove_revoked=False)

    ours = trail.entries()[before:]
    assert [(e["command"], e["outcome"]) for e in ours] == [
        ("users add", "ok"), ("acl apply", "ok"), ("certs rotate", "ok"), ("acl apply", "ok"), ("users remove", "ok")]
    assert ours[0]["args"] == {"name": name} and ours[0]["changes"]["certificate_issued"] is True
    grant = f"allow User:{name} Write on topic {topic}"
    assert ours[1]["args"] == {"prune": True} and grant in ours[1]["changes"]["created"], ours[1]
    assert ours[2]["changes"]["outcome"] == "done" and name in ours[2]["changes"]["serials"], ours[2]
    assert grant in ours[3]["changes"]["deleted"], ours[3]
    assert trail.verify().ok, trail.verify().problem
    up = next(e for e in trail.entries() if e["command"] == "up")  # the shared env's own
    assert up["args"]["overrides"] == policy.overrides(dev_env.settings), up
    assert set(up["changes"].get("volumes", {})) == ({n.name for n in dev_env.settings.topology.nodes}
                                                     if dev_env.settings.encrypted_volumes else set()), up
    dev_env.collect_decisions()
    assert dev_env.decisions.verify().ok, dev_env.decisions.verify().problem
    text = trail.path.read_text() + trail.head_path.read_text() + "".join(t for _, t in dev_env.decisions.texts())
    secrets = [password, dev_env.certs.passphrase(), *(dev_env.secrets.get(n) for n in dev_env.secrets.names())]
    assert not [s for s in secrets if s in text], "a secret in the operations or decisions trail"
    assert "PRIVATE KEY" not in text


def test_failed_logins_are_in_the_audit_trail(dev_env, docker_client, tmp_path):
    """A wrong password, an unknown user, a name built to forge an audit line, a foreign-CA
    certificate and no certificate: each refused, and each in the audit trail with the user it
    claimed (SCRAM), the listener, and the client's address as the broker saw it, which for a
    client on this host is the environment network's gateway (Docker's port publishing)."""
    tag = uuid.uuid4().hex[:8]
    unknown, forged = f"nobody-{tag}", f"f{tag}\nINFO User:{ADMIN}"
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    good = dev_env.scram_config(ADMIN)
    for user, password in ((ADMIN, "wrong-password"), (unknown, "whatever"), (forged, "whatever")):
        with pytest.raises(KafkaException):
            AdminClient({**good, "sasl.username": user, "sasl.password": password}).list_topics(timeout=3)
    foreign = CA.create("foreign-ca", "ec-p256", 30, env="foreign")
    impostor = foreign.issue_cert(ADMIN, kind="client", validity_days=7).write_pem(tmp_path)
    ca = dev_env.certs.client_dir(ADMIN) / "ca.crt"
    mtls_port = dev_env.settings.topology.listener_port(dev_env.settings.topology.brokers[0], "ssl")
    for client_cert in ((impostor.cert, impostor.key), None):
        refused = probes.tls_handshake("127.0.0.1", mtls_port, ca, "localhost", client_cert=client_cert, speak_kafka=True)
        assert not refused.ok and refused.answered, refused.detail

    network = docker_client.networks.get(dev_env.settings.topology.network)
    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    deadline = time.monotonic() + 20
    while True:
        dev_env.collect_decisions()
        logins = audit.failed_logins_in(dev_env.decisions.texts(), dev_env.settings, since)
        by_principal = {login.principal: login for login in logins}
        tls = [login for login in logins if login.principal is None and login.listener == "SSL_EXT"]
        # The forged name arrives escaped, whole, on one line (the parser needs the line's end).
        escaped = f"User:f{tag}\\x0aINFO\\x20User\\x3a{ADMIN}"
        if {f"User:{ADMIN}", f"User:{unknown}", escaped} <= set(by_principal) and len(tls) >= 2:
            break
        assert time.monotonic() < deadline, [str(login) for login in logins]
        time.sleep(1)
    for principal in (f"User:{ADMIN}", f"User:{unknown}", escaped):
        login = by_principal[principal]
        assert (login.listener, login.host) == ("SASL_SSL_EXT", gateway), str(login)
        assert login.node == dev_env.settings.topology.brokers[0].name
    assert {login.host for login in tls} == {gateway} and {login.reason for login in tls} == {"SSL handshake failed"}
