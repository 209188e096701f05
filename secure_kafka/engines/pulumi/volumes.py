"""The Pulumi program's encrypted volumes: a dynamic resource that stands for "unlocked on this host".

Why a resource: a bare ``pulumi up`` must unlock the volumes before any container binds
their plaintext directories (else Docker refuses: "bind source path does not exist"), and
``pulumi destroy`` must lock them again once the containers are gone. As a resource the
containers depend on, the engine orders both for us, in ``up`` and in ``destroy``.

Its diff asks the host, not only the inputs: volumes locked since the last run (a reboot,
``secure-kafka down``) are a change to apply, and a second ``pulumi up`` with the volumes
unlocked changes nothing. Its inputs hold no secret: the volume keys are unwrapped with
the environment's passphrase (``SECURE_KAFKA_PASSPHRASE``, or the one a dev/ci environment
keeps) when it runs, and never enter Pulumi state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import (
    CreateResult,
    DiffResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from ...model.settings import Settings, to_values
from .provision import context_of

__all__ = ["UnlockedVolumesProvider", "UnlockedVolumes"]

INPUTS = ("project_root", "env", "settings")
# The settings that make or find volumes; a change of any other (a port, a TLS version) leaves them be.
VOLUME_KEYS = ("brokers", "zookeeperNodes", "encryptedVolumes", "volumeBackend", "volumeSizeGib")


def _identity(props: dict[str, Any]) -> tuple:
    settings = props.get("settings") or {}
    return props.get("project_root"), props.get("env"), tuple(settings.get(k) for k in VOLUME_KEYS)


def _volumes(props: dict[str, Any]):
    return context_of(props, "encrypted volumes").volumes


def _unlock(props: dict[str, Any]) -> dict[str, Any]:
    outcome = _volumes(props).open()
    return {**{k: props[k] for k in INPUTS}, "nodes": sorted(outcome)}


class UnlockedVolumesProvider(ResourceProvider):
    serialize_as_secret_always = False  # it captures nothing secret (see ClusterProvisioning's provider)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"{props['env']}-volumes", outs=_unlock(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = _identity(olds) != _identity(news) or any(s != "unlocked" for s in _volumes(news).states().values())
        return DiffResult(changes=changed, replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=_unlock(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        _volumes(props).close()  # the data stays: only `secure-kafka down --purge` destroys it


class UnlockedVolumes(Resource):
    """Every node's encrypted volume, unlocked (created on first use) before its container starts."""

    nodes: pulumi.Output[list]

    def __init__(self, name: str, project_root: Path, settings: Settings, opts: pulumi.ResourceOptions | None = None):
        props = {
            "project_root": str(project_root.absolute()),
            "env": settings.env,
            "settings": to_values(settings),
            "nodes": None,
        }
        super().__init__(UnlockedVolumesProvider(), name, props, opts)
