"""``secure-kafka audit``: the authorization decisions of every broker, and the operations trail."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import typer

from ..dockerclient import connect
from ..errors import SecureKafkaError
from ..ops import audit as audit_mod
from .cluster import open_env
from .common import echo_json, reporting

app = typer.Typer()


@app.command()
def audit(
    words: Annotated[list[str], typer.Argument(
        metavar="ENV | verify ENV",
        help="An environment name: its decisions (or --operations); `verify ENV`: check its operations trail.")],
    denied: Annotated[bool, typer.Option("--denied", help="Only denied decisions.")] = False,
    since: Annotated[str | None, typer.Option(help="Only entries this recent: 30s, 15m, 2h, 1d, 1h30m.")] = None,
    principal: Annotated[str | None, typer.Option(help="Only decisions or failed logins of this principal: alice or User:alice.")] = None,
    operations: Annotated[bool, typer.Option("--operations", help="The operations trail (who changed the security, how) instead of the decisions.")] = False,
    failed_logins: Annotated[bool, typer.Option("--failed-logins", help="Failed logins (user claimed, listener, client address) instead of the decisions.")] = False,
    json: Annotated[bool, typer.Option("--json", help='Print {"env", "decisions": [{"time", "node", "principal", "allowed", "operation", "resource_type", "pattern", "resource", "host", "request"}]}, {"env", "failed_logins": [{"time", "node", "principal", "listener", "host", "reason"}]}, {"env", "operations": [...]} or {"env", "entries", "ok", "problem"}.')] = False,
) -> None:
    """Read the authorizer's decisions (principal, operation, resource, client address, time) from every broker.

    `--failed-logins` reads the refused logins instead: the user a SCRAM client claimed (a TLS
    handshake that failed has no principal), the listener, and the client's address as the
    broker saw it (clients on this host show as the Docker network's gateway).

    `--operations` reads the operations trail instead: every `up`, `down`, `users add/remove`,
    `acl apply`, `certs init/rotate` with its operator, arguments, outcome and what changed.
    `audit verify ENV` checks the trail's hash chain and MACs and names the first entry that
    was changed, removed, reordered or cut off (exit 1).
    """
    with reporting():
        if words[0] == "verify" and len(words) == 2:
            _verify(words[1], json)
            return
        if len(words) != 1:
            raise SecureKafkaError(f"unexpected {' '.join(words[1:])!r}: use `audit ENV [options]` or `audit verify ENV`")
        if operations and failed_logins:
            raise SecureKafkaError("--operations and --failed-logins read different trails: choose one")
        if operations and principal:
            raise SecureKafkaError("--principal filters decisions and failed logins; the operations trail is by operator")
        env = words[0]
        cutoff = datetime.now(timezone.utc) - audit_mod.parse_duration(since) if since else None
        environment = open_env(env, quiet=True)
        if operations:
            entries = [e for e in environment.trail.entries()
                       if cutoff is None or datetime.fromisoformat(e["time"]) >= cutoff]
        elif failed_logins:
            refused = audit_mod.read_failed_logins(connect(), environment.settings, cutoff, principal)
        else:
            decisions = audit_mod.select(audit_mod.read(connect(), environment.settings.topology), denied, cutoff, principal)
    if operations:
        if json:
            echo_json({"env": env, "operations": entries})
        for entry in [] if json else entries:
            typer.echo(f"{entry['time']} #{entry['seq']} {entry['operator']}: {entry['command']} {entry['args']} "
                       f"-> {entry['outcome']} {entry['changes']}")
        return
    if failed_logins:
        if json:
            echo_json({"env": env, "failed_logins": [f.to_json() for f in refused]})
        for login in [] if json else refused:
            typer.echo(str(login))
        return
    if json:
        echo_json({"env": env, "decisions": [d.to_json() for d in decisions]})
        return
    for decision in decisions:
        typer.echo(str(decision))


def _verify(env: str, json: bool) -> None:
    verdict = open_env(env, quiet=True).trail.verify()
    if json:
        echo_json({"env": env, "entries": verdict.entries, "ok": verdict.ok, "problem": verdict.problem})
    if not verdict.ok:
        raise SecureKafkaError(f"the operations trail of {env} is not as written: {verdict.problem}")
    if not json:
        typer.echo(f"the operations trail of {env}: {verdict.entries} entries, chain and MACs intact")
