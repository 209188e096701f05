"""``Environment``'s own decisions, with the cluster calls replaced."""

from __future__ import annotations

import dataclasses

from secure_kafka import acladmin, bootstrap, users
from secure_kafka import settings as sk_settings
from secure_kafka.environment import Environment
from secure_kafka.profiles import DEV
from secure_kafka.settings import Project


def test_the_verify_topic_takes_the_stack_files_replication_factor(tmp_path, monkeypatch):
    """Once drifted: `up` made its verify topic with the *profile's* replication factor (dev: 1),
    not the stack file's, while the brokers' default took the stack file's."""
    settings = dataclasses.replace(sk_settings.defaults("staging", DEV), brokers=3, replication_factor=3)
    assert DEV.replication_factor == 1
    made: dict[str, int] = {}
    monkeypatch.setattr(bootstrap, "wait_for_admin", lambda *args, **kwargs: "admin client")
    monkeypatch.setattr(users, "scram_users", lambda env: [])
    monkeypatch.setattr(bootstrap, "ensure_scram_users", lambda *args: [])
    monkeypatch.setattr(acladmin, "bootstrap_acls", lambda *args: None)
    monkeypatch.setattr(bootstrap, "ensure_topic", lambda admin, topic, replication, *args: made.update({topic: replication}))
    monkeypatch.setattr(bootstrap, "round_trip", lambda *args: 0.1)
    Environment(Project(tmp_path), "staging", settings=settings).bootstrap()
    assert made == {bootstrap.VERIFY_TOPIC: 3}
