"""Provisioning's own decisions, with the cluster calls replaced."""

from __future__ import annotations

import dataclasses

from secure_kafka.model import settings as sk_settings
from secure_kafka.model.profiles import DEV
from secure_kafka.model.settings import Project
from secure_kafka.ops import acladmin, kafka_admin, provision, users
from secure_kafka.ops.context import EnvironmentContext


def test_the_verify_topic_takes_the_stack_files_replication_factor(tmp_path, monkeypatch):
    """Once drifted: `up` made its verify topic with the *profile's* replication factor (dev: 1),
    not the stack file's, while the brokers' default took the stack file's."""
    settings = dataclasses.replace(sk_settings.defaults("staging", DEV), brokers=3, replication_factor=3)
    assert DEV.replication_factor == 1
    made: dict[str, int] = {}
    monkeypatch.setattr(kafka_admin, "wait_for_admin", lambda *args, **kwargs: "admin client")
    monkeypatch.setattr(users, "scram_users", lambda env: [])
    monkeypatch.setattr(kafka_admin, "ensure_scram_users", lambda *args: [])
    monkeypatch.setattr(acladmin, "apply_file", lambda *args: None)
    monkeypatch.setattr(kafka_admin, "ensure_topic", lambda admin, topic, replication, *args: made.update({topic: replication}))
    monkeypatch.setattr(kafka_admin, "round_trip", lambda *args: 0.1)
    provision.provision(EnvironmentContext(Project(tmp_path), "staging", settings=settings))
    assert made == {kafka_admin.VERIFY_TOPIC: 3}
