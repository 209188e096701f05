"""Ephemeral secure environments for tests: ours, and our users' CI pipelines.

``running_environment`` stands up a real environment in a project directory of its own and
purges it afterwards (containers, network, volumes, PKI), also when the body fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

from . import settings as sk_settings
from .environment import Environment
from .profiles import get_profile
from .settings import Project


def free_port_base() -> int:
    """A port base whose 100 ports are all free on 127.0.0.1 (environments publish there)."""
    for _ in range(200):
        base = random.randrange(20000, 60000, 100)
        try:
            for port in range(base, base + 100):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free block of 100 ports on 127.0.0.1")


@contextlib.contextmanager
def running_environment(root: Path, profile: str = "dev", **overrides) -> Iterator[Environment]:
    """A real environment in a fresh project dir, up and verified; purged afterwards, also on failure."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Pulumi.yaml").write_text("name: secure-kafka\nruntime: python\nmain: infra/\n")
    name = f"t{uuid.uuid4().hex[:6]}"
    settings = dataclasses.replace(
        sk_settings.defaults(name, get_profile(profile), port_base=free_port_base()), **overrides
    )
    project = Project(root)
    project.write(settings)
    env = Environment(project, name, progress=print)
    try:
        env.up()
        yield env
    finally:
        env.down(purge=True)
