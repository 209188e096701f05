"""A process killed at a given point of a rotation, for the unit and the integration tests."""

from __future__ import annotations


class Killed(Exception):
    """Stands for the rotating process being killed: not a SecureKafkaError, nothing catches it."""


def kill_at(event_name: str):
    """A rotation hook that raises ``Killed`` at ``event_name`` (e.g. ``new-leaves:roll:kafka-1``)."""

    def hook(event: str) -> None:
        if event == event_name:
            raise Killed(event)

    return hook
