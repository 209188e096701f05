"""``secure-kafka acl``: the environment's declarative ACLs (``acls/<ENV>.yaml``)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import SecureKafkaError
from ..model.acl import AclPlan
from ..ops import acladmin
from .cluster import EnvArg, open_env
from .common import echo_json, reporting

app = typer.Typer(no_args_is_help=True, help="Declarative ACLs from acls/<ENV>.yaml: plan, apply, list (deny by default).")

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output (stable, documented).")]


def _desired(env):
    desired = acladmin.load_desired(env)
    if desired is None:
        raise SecureKafkaError(f"acls/{env.env}.yaml not found: create it (`secure-kafka init` writes a commented example)")
    return desired


def _echo_plan(plan: AclPlan, prune: bool) -> None:
    for binding in plan.add:
        typer.echo(f"+ {binding}")
    for binding in plan.extra:
        typer.echo(f"- {binding}" if prune else f"? {binding}  (not in the file: kept; --prune removes it)")


@app.command()
def plan(env: EnvArg, json: JsonOption = False) -> None:
    """Show what `acl apply` would do: ACLs to add (+), ACLs on the cluster not in the file (-).

    JSON: {"env", "add": [binding], "extra": [binding], "unchanged": n}; a binding is
    {"principal", "resource_type", "name", "pattern", "operation", "permission", "host"}.
    """
    with reporting():
        environment = open_env(env, quiet=True)
        desired = _desired(environment)
        result = acladmin.plan(environment.admin_client(), desired)
    if json:
        echo_json({"env": env, **result.to_json()})
        return
    if not result.add and not result.extra:
        typer.echo(f"no changes: the cluster has the {len(result.unchanged)} ACL(s) of acls/{env}.yaml")
        return
    _echo_plan(result, prune=True)
    typer.echo(f"{len(result.add)} to add, {len(result.extra)} on the cluster but not in the file, {len(result.unchanged)} unchanged")


@app.command()
def apply(
    env: EnvArg,
    prune: Annotated[bool, typer.Option(help="Also delete ACLs the cluster has and the file does not.")] = False,
    json: JsonOption = False,
) -> None:
    """Make the cluster's ACLs match acls/<ENV>.yaml (idempotent; validates the whole file first).

    Without --prune, ACLs on the cluster that the file lacks are reported and kept.
    JSON: {"env", "changed", "created": [binding], "deleted": [binding], "kept_extra": [binding], "unchanged": n}.
    """
    with reporting():
        environment = open_env(env)
        desired = _desired(environment)
        admin = environment.admin_client()
        with environment.trail.recorded("acl apply", prune=prune) as changes:
            result = acladmin.apply(admin, desired, prune=prune, progress=environment.progress)
            changes.update(created=[str(b) for b in result.created], deleted=[str(b) for b in result.deleted])
    if json:
        echo_json({"env": env, **result.to_json()})
        return
    for binding in result.kept_extra:
        typer.echo(f"kept (not in the file; --prune removes it): {binding}")
    if not result.changed:
        typer.echo(f"no changes: the cluster already has the {len(result.plan.unchanged)} ACL(s) of acls/{env}.yaml")
    else:
        typer.echo(f"applied acls/{env}.yaml: {len(result.created)} created, {len(result.deleted)} deleted")


@app.command("list")
def list_(env: EnvArg, json: JsonOption = False) -> None:
    """List the ACLs the running cluster holds. JSON: {"env", "acls": [binding]}."""
    with reporting():
        environment = open_env(env, quiet=True)
        bindings = sorted(acladmin.describe(environment.admin_client()))
    if json:
        echo_json({"env": env, "acls": [b.to_json() for b in bindings]})
        return
    if not bindings:
        typer.echo(f"{env} has no ACLs: only the super users (brokers, admin) may do anything")
    for binding in bindings:
        typer.echo(str(binding))
