"""The Pulumi program's PIDs limits: a dynamic resource per container that sets ``PidsLimit``.

Why: the docker provider's ``Container`` has no pids-limit input (neither pulumi-docker's
nor the Terraform provider it bridges), and a container without one lets a runaway JVM
fork the host out of PIDs (``verify``'s ``containers.limits`` fails it). Docker can change
the limit of a running container (``POST /containers/{id}/update``), so this resource sets
the plan's ``pids_limit`` right after the container is created, and again whenever the
container is replaced (its id is an input) or the limit on the host is not the plan's (the
diff asks Docker), so a second ``pulumi up`` changes nothing.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import (
    CreateResult,
    DiffResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

__all__ = ["PidsLimitProvider", "PidsLimit"]

INPUTS = ("container", "limit")


def _live_limit(container: str) -> int | None:
    import docker.errors  # imported here: the provider runs in Pulumi's provider process

    from ...dockerclient import connect

    try:
        return connect().api.inspect_container(container)["HostConfig"].get("PidsLimit")
    except docker.errors.NotFound:
        return None  # gone meanwhile: `pulumi up` re-creates it, and this resource with it


def _apply(props: dict[str, Any]) -> dict[str, Any]:
    from ...dockerclient import connect
    from ...errors import SecureKafkaError

    api = connect().api
    limit = int(props["limit"])  # a protobuf Struct hands numbers over as floats
    # docker-py's update_container has no PIDs argument; the endpoint (API 1.40+) has.
    response = api.post(f"{api.base_url}/v{api.api_version}/containers/{props['container']}/update",
                        json={"PidsLimit": limit})
    if response.status_code != 200:
        raise SecureKafkaError(f"container {props['container'][:12]}: setting its PIDs limit failed: {response.text.strip()}")
    return {"container": props["container"], "limit": limit}


class PidsLimitProvider(ResourceProvider):
    serialize_as_secret_always = False  # it captures nothing secret

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"{props['container'][:12]}-pids", outs=_apply(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # A replaced container (its id unknown in a preview) is a change without asking Docker.
        changed = any(olds.get(k) != news.get(k) for k in INPUTS) or _live_limit(news["container"]) != int(news["limit"])
        return DiffResult(changes=changed, replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=_apply(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        pass  # the limit goes with its container


class PidsLimit(Resource):
    """The plan's ``pids_limit`` on one container."""

    def __init__(self, name: str, container: pulumi.Input[str], limit: int, opts: pulumi.ResourceOptions | None = None):
        super().__init__(PidsLimitProvider(), name, {"container": container, "limit": limit}, opts)
