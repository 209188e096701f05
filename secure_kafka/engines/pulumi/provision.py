"""The Pulumi program's provisioning step: a dynamic resource that runs ``ops.provision``.

Why a dynamic resource and not a step after `pulumi up` in the Automation API path: the
program is the users' main path, so a bare ``pulumi up`` must end like ``secure-kafka up``,
with the admin's SCRAM user created and a round-trip verified; the Automation API path then
needs no second copy of the step. It runs the very code the Docker engine path runs.

Its inputs carry no secret: the project root, the environment's (non-secret) settings and
the broker containers' ids. Passwords and keys are read from ``certs/<env>/`` when it runs,
so they never enter Pulumi state through it. It runs again when a broker is replaced
(its id changes) or the settings change; otherwise a `pulumi up` leaves it alone.

This module lives in the installed package (not ``infra/``) because Pulumi serializes the
provider by reference and loads it in its own process, where ``secure_kafka`` is importable.
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

from ...model.settings import Project, Settings, from_config, to_values
from ...ops.context import EnvironmentContext
from ...ops.provision import provision

__all__ = ["context_of", "ProvisioningProvider", "ClusterProvisioning"]

INPUTS = ("project_root", "env", "settings", "containers")


def context_of(props: dict[str, Any], purpose: str) -> EnvironmentContext:
    """The environment a dynamic resource's inputs (project root, env, settings) name."""
    env = props["env"]
    settings = from_config(env, props["settings"], f"{purpose} of {env}")
    return EnvironmentContext(Project(Path(props["project_root"])), env, settings=settings)


def _run(props: dict[str, Any]) -> dict[str, Any]:
    provisioned = provision(context_of(props, "provisioning"))
    return {**{k: props[k] for k in INPUTS}, "scram_users_created": provisioned.scram_users_created,
            "round_trip_s": round(provisioned.round_trip_s, 3)}


class ProvisioningProvider(ResourceProvider):
    # It captures no secret, so its serialized form need not be one (the default marks it
    # secret always); the tests then prove no input of the bootstrap is secret.
    serialize_as_secret_always = False

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"{props['env']}-bootstrap", outs=_run(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in INPUTS if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=_run(news))


class ClusterProvisioning(Resource):
    """SCRAM users and a verified round-trip, after every broker is healthy."""

    scram_users_created: pulumi.Output[list]
    round_trip_s: pulumi.Output[float]

    def __init__(
        self,
        name: str,
        project_root: Path,
        settings: Settings,
        containers: pulumi.Input[list],
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "project_root": str(project_root.absolute()),
            "env": settings.env,
            "settings": to_values(settings),
            "containers": containers,
            "scram_users_created": None,
            "round_trip_s": None,
        }
        super().__init__(ProvisioningProvider(), name, props, opts)
