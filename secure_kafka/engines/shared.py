"""What both engines do the same way with a ``ClusterPlan``: one copy, so they cannot drift.

The direct Docker engine and the Pulumi program (``infra/``) both write a container's
rendered files before it starts, label it with its spec hash, give it the same tmpfs and
give it the same time to stop.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..build.plan import LABEL_SPEC_HASH, ContainerSpec, RenderedFile, spec_hash
from ..fsutil import write_atomic

__all__ = ["STOP_TIMEOUT_S", "TMPFS_OPTIONS", "LOG_DRIVER", "write_rendered_files", "container_labels"]

# How long a container gets to stop before SIGKILL: a broker's controlled shutdown (leadership
# handed over, ZooKeeper session closed). A killed broker's registration lingers in ZooKeeper
# and its replacement exits with NodeExists until the session expires.
STOP_TIMEOUT_S = 60

# /tmp of every container (the root filesystem may be read-only).
TMPFS_OPTIONS = "rw,nosuid,nodev,size=256m,mode=1777"

# Docker's own log driver, rolled by the plan's ``log_options`` (the only driver both engines
# can configure alike without a daemon setting).
LOG_DRIVER = "json-file"


def write_rendered_files(project_root: Path, files: Iterable[RenderedFile]) -> None:
    """Writes rendered files under the project root, leaving unchanged ones untouched.

    Unchanged files keep their mtime, so nothing that watches them (keystore reload) fires.
    As root, files and their directory go to the container user; content may be secret and
    is never logged.
    """
    as_root = os.geteuid() == 0
    for file in files:
        path = project_root / file.path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if as_root:
            os.chown(path.parent, file.uid, file.uid)
        if path.exists() and path.read_text() == file.content:
            continue
        write_atomic(path, file.content, mode=file.mode, uid=file.uid if as_root else None)


def container_labels(spec: ContainerSpec) -> dict[str, str]:
    """The labels a container is created with: the plan's, plus its spec hash.

    The hash covers the rendered files, so a changed file changes a label: the Docker engine
    replaces the container, and Pulumi sees a changed input and replaces it too.
    """
    return {**spec.labels, LABEL_SPEC_HASH: spec_hash(spec)}
