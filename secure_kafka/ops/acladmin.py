"""ACLs on a running cluster: read, create, delete, and converge to the ACL file.

Talks to the brokers through confluent-kafka's Admin API as the admin (mTLS, a super user).
``apply`` is idempotent and converges: it computes the plan from what the cluster holds
*now*, so after a failure half-way the next ``apply`` picks up where this one stopped.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from ..errors import SecureKafkaError
from ..model.acl import AclPlan, Binding, acl_file, diff, load
from ..proc import Progress, quiet
from . import users
from .context import EnvironmentContext

__all__ = [
    "to_kafka",
    "from_kafka",
    "describe",
    "create",
    "delete",
    "ApplyResult",
    "plan",
    "apply",
    "load_desired",
    "apply_file",
]

TIMEOUT_S = 30
# Brokers learn about ACL changes through ZooKeeper change notifications: a describe right
# after a create can still miss it on another broker.
PROPAGATION_S = 15

RESOURCE_TYPES = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "cluster": ResourceType.BROKER,
    "transactional-id": ResourceType.TRANSACTIONAL_ID,
}
RESOURCE_NAMES = {v: k for k, v in RESOURCE_TYPES.items()}
PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
PERMISSIONS = {"allow": AclPermissionType.ALLOW, "deny": AclPermissionType.DENY}

EVERYTHING = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                              AclPermissionType.ANY)


def _operation_enum(operation: str) -> AclOperation:
    return AclOperation[re.sub(r"(?<!^)(?=[A-Z])", "_", operation).upper()]  # ClusterAction -> CLUSTER_ACTION


def _operation_name(operation: AclOperation) -> str:
    return "".join(part.capitalize() for part in operation.name.split("_"))


def to_kafka(binding: Binding) -> AclBinding:
    return AclBinding(RESOURCE_TYPES[binding.resource_type], binding.name, PATTERNS[binding.pattern],
                      binding.principal, binding.host, _operation_enum(binding.operation),
                      PERMISSIONS[binding.permission])


def from_kafka(binding: AclBinding) -> Binding:
    """Any binding the cluster holds, also kinds the file cannot express (kept by name)."""
    return Binding(
        principal=binding.principal,
        resource_type=RESOURCE_NAMES.get(binding.restype, binding.restype.name.lower()),
        name=binding.name,
        pattern=binding.resource_pattern_type.name.lower(),
        operation=_operation_name(binding.operation),
        permission=binding.permission_type.name.lower(),
        host=binding.host,
    )


def _exact_filter(binding: Binding) -> AclBindingFilter:
    if binding.resource_type not in RESOURCE_TYPES or binding.pattern not in PATTERNS:
        raise SecureKafkaError(f"cannot delete {binding}: remove it with kafka-acls")
    return AclBindingFilter(RESOURCE_TYPES[binding.resource_type], binding.name, PATTERNS[binding.pattern],
                            binding.principal, binding.host, _operation_enum(binding.operation),
                            PERMISSIONS[binding.permission])


def _error(exc: KafkaException) -> str:
    error = exc.args[0]
    return error.str() if hasattr(error, "str") else str(error)


def describe(admin: AdminClient) -> frozenset[Binding]:
    """Every ACL binding the cluster holds."""
    try:
        found = admin.describe_acls(EVERYTHING, request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S + 5)
    except KafkaException as exc:
        raise SecureKafkaError(f"reading the cluster's ACLs failed: {_error(exc)}") from None
    return frozenset(from_kafka(b) for b in found)


def create(admin: AdminClient, bindings: list[Binding], progress: Progress = quiet) -> None:
    """Creates ``bindings`` and returns once the brokers show them."""
    if bindings:
        ours = {to_kafka(b): b for b in bindings}
        futures = admin.create_acls(list(ours), request_timeout=TIMEOUT_S)
        _await_each(futures, ours, "created", "creating", "acl apply", progress)
        _wait_visible(admin, set(bindings), set())


def delete(admin: AdminClient, bindings: list[Binding], progress: Progress = quiet) -> None:
    """Deletes ``bindings`` and returns once the brokers no longer show them."""
    if bindings:
        ours = {_exact_filter(b): b for b in bindings}
        futures = admin.delete_acls(list(ours), request_timeout=TIMEOUT_S)
        _await_each(futures, ours, "deleted", "deleting", "acl apply --prune", progress)
        _wait_visible(admin, set(), set(bindings))


def _await_each(futures: dict, binding_of: dict, done: str, doing: str, rerun: str, progress: Progress) -> None:
    """Waits for every request's future (``binding_of`` maps a request to its binding) and
    reports each success; the failures are raised together afterwards, so one refused binding
    does not hide which of the others went through."""
    failed = []
    for request, future in futures.items():
        binding = binding_of[request]
        try:
            future.result(timeout=TIMEOUT_S + 5)
            progress(f"acl: {done} {binding}")
        except KafkaException as exc:
            failed.append(f"{binding} ({_error(exc)})")
    if failed:
        raise SecureKafkaError(f"{doing} {len(failed)} ACL(s) failed, first: {failed[0]}: re-run `{rerun}` once the cause is fixed")


@dataclass(frozen=True)
class ApplyResult:
    plan: AclPlan
    created: tuple[Binding, ...]
    deleted: tuple[Binding, ...]
    kept_extra: tuple[Binding, ...]  # on the cluster, not in the file, kept (no --prune)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.deleted)

    def to_json(self) -> dict[str, object]:
        return {"changed": self.changed, "created": [b.to_json() for b in self.created],
                "deleted": [b.to_json() for b in self.deleted],
                "kept_extra": [b.to_json() for b in self.kept_extra], "unchanged": len(self.plan.unchanged)}


def plan(admin: AdminClient, desired: frozenset[Binding]) -> AclPlan:
    return diff(desired, describe(admin))


def apply(admin: AdminClient, desired: frozenset[Binding], prune: bool, progress: Progress = quiet) -> ApplyResult:
    """Creates what the file adds, deletes extras only when ``prune``; the brokers show it on return."""
    todo = plan(admin, desired)
    # Create before delete: a rule being replaced never leaves a gap in access.
    create(admin, list(todo.add), progress)
    deleted = todo.extra if prune else ()
    delete(admin, list(deleted), progress)
    return ApplyResult(todo, todo.add, tuple(deleted), () if prune else todo.extra)


def _wait_visible(admin: AdminClient, added: set[Binding], deleted: set[Binding]) -> None:
    """Until a describe shows the change: an ACL the controller committed reaches the broker
    that answers a moment later (KRaft's metadata log, ZooKeeper's change notifications)."""
    deadline = time.monotonic() + PROPAGATION_S
    while True:
        actual = describe(admin)
        if added <= actual and not (deleted & actual):
            return
        if time.monotonic() > deadline:
            raise SecureKafkaError(f"the cluster does not show the ACL changes after {PROPAGATION_S} s: "
                                   "check broker health, then re-run `acl apply`")
        time.sleep(0.5)


def load_desired(env: EnvironmentContext) -> frozenset[Binding] | None:
    """The environment's ACL file, validated against its users; None when it has none."""
    path = acl_file(env.project.root, env.env)
    if not path.exists():
        return None
    return load(path, users.known_users(env), display=str(path.relative_to(env.project.root)))


def apply_file(env: EnvironmentContext, admin: AdminClient) -> ApplyResult | None:
    """Provisioning's step: adds what the ACL file grants; extras are reported, never pruned here."""
    desired = load_desired(env)
    if desired is None:
        return None
    result = apply(admin, desired, prune=False, progress=env.progress)
    if result.kept_extra:
        env.progress(f"acl: {len(result.kept_extra)} ACL(s) on the cluster are not in the ACL file "
                     f"(kept): `secure-kafka acl plan {env.env}` lists them, `acl apply --prune` removes them")
    return result
