"""``secure-kafka audit``: the authorization audit trail of every broker."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import typer

from ..dockerclient import connect
from ..ops import audit as audit_mod
from .cluster import EnvArg, open_env
from .common import echo_json, reporting

app = typer.Typer()


@app.command()
def audit(
    env: EnvArg,
    denied: Annotated[bool, typer.Option("--denied", help="Only denied decisions.")] = False,
    since: Annotated[str | None, typer.Option(help="Only decisions this recent: 30s, 15m, 2h, 1d, 1h30m.")] = None,
    json: Annotated[bool, typer.Option("--json", help='Print {"env", "decisions": [{"time", "broker", "principal", "allowed", "operation", "resource_type", "pattern", "resource", "host", "request"}]}.')] = False,
) -> None:
    """Read the authorizer's decisions (principal, operation, resource, client address, time) from every broker."""
    with reporting():
        cutoff = datetime.now(timezone.utc) - audit_mod.parse_duration(since) if since else None
        environment = open_env(env, quiet=True)
        decisions = audit_mod.select(audit_mod.read(connect(), environment.settings.topology), denied, cutoff)
    if json:
        echo_json({"env": env, "decisions": [d.to_json() for d in decisions]})
        return
    for decision in decisions:
        typer.echo(str(decision))
