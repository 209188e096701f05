"""``secure-kafka check``: the static policy check of an environment's settings."""

from __future__ import annotations

from typing import Annotated

import typer

from ..model import policy
from ..model.settings import Project
from .common import echo_json, reporting

app = typer.Typer()


@app.command()
def check(
    env: Annotated[str, typer.Argument(help="Environment name (its settings: Pulumi.<ENV>.yaml).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON: env, profile, ok, violations[{setting, value, rule, reason, fix}].")] = False,
) -> None:
    """Check the environment's settings against its profile; list every violation, exit 1 if any.

    Each line names the setting, its value, the rule it breaks and the fix. `up` refuses an
    environment that fails this check, before anything is applied.
    """
    with reporting():
        settings = Project.find().load(env)
    violations = policy.check(settings)
    if json_output:
        echo_json({"env": env, "profile": settings.profile.name, "ok": not violations,
                   "violations": [v.as_dict() for v in violations]})
    else:
        for violation in violations:
            typer.echo(violation.line())
    if violations:
        typer.echo(f"error: {env} breaks profile {settings.profile.name} in {len(violations)} setting(s): apply the fixes above",
                   err=True)
        raise typer.Exit(1)
    if not json_output:
        typer.echo(f"{env} passes profile {settings.profile.name}")
