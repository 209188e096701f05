"""``secure-kafka audit``: the authorization decisions of every broker, and the operations trail."""

from __future__ import annotations

import json as json_mod
import time
from datetime import datetime, timezone
from typing import Annotated

import typer

from ..environment import Environment
from ..errors import SecureKafkaError
from ..ops import audit as audit_mod
from ..ops.decision_trail import Collected
from .cluster import open_env
from .common import echo_json, reporting

app = typer.Typer()

FOLLOW_EVERY_S = 2.0


@app.command()
def audit(
    words: Annotated[list[str], typer.Argument(
        metavar="ENV | verify ENV | collect ENV",
        help="An environment name: its decisions (or --operations); `verify ENV`: check both trails' chains and MACs; "
             "`collect ENV`: collect the nodes' new decisions into the trail (with --follow: continuously).")],
    denied: Annotated[bool, typer.Option("--denied", help="Only denied decisions.")] = False,
    since: Annotated[str | None, typer.Option(help="Only entries this recent: 30s, 15m, 2h, 1d, 1h30m.")] = None,
    principal: Annotated[str | None, typer.Option(help="Only decisions or failed logins of this principal: alice or User:alice.")] = None,
    operations: Annotated[bool, typer.Option("--operations", help="The operations trail (who changed the security, how) instead of the decisions.")] = False,
    failed_logins: Annotated[bool, typer.Option("--failed-logins", help="Failed logins (user claimed, listener, client address) instead of the decisions.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help=f"Keep collecting every {FOLLOW_EVERY_S:g} s and print what is new (decisions or failed logins; with --json one object per line) until Ctrl-C.")] = False,
    json: Annotated[bool, typer.Option("--json", help='Print {"env", "decisions": [{"time", "node", "principal", "allowed", "operation", "resource_type", "pattern", "resource", "host", "request"}]}, {"env", "failed_logins": [{"time", "node", "principal", "listener", "host", "reason"}]}, {"env", "operations": [...]} or, for `verify`, {"env", "ok", "operations": {"entries", "ok", "problem"}, "decisions": {"lines", "ok", "problem"}}.')] = False,
) -> None:
    """Read the authorizer's decisions (principal, operation, resource, client address, time) from every broker.

    Each read first collects what the brokers (and KRaft controllers) logged since the last
    collection into the environment's durable trail, `certs/ENV/audit/decisions/`, and reads
    that: it outlives the nodes' own rolled logs and their volumes, and only `down --purge` or
    the profile's retention (prod: 90 days) removes it. `audit collect ENV --follow` collects
    continuously (run it as a service where the nodes' logs roll faster than you read them).

    `--failed-logins` reads the refused logins instead: the user a SCRAM client claimed (a TLS
    handshake that failed has no principal), the listener, and the client's address as the
    broker saw it (clients on this host show as the Docker network's gateway).

    `--operations` reads the operations trail instead: every `up`, `down`, `users add/remove`,
    `acl apply`, `certs init/rotate` with its operator, arguments, outcome and what changed.
    `audit verify ENV` checks both trails: the operations trail's hash chain and MACs, and the
    seal of every collected decision line; it names the first entry or line that was changed,
    removed, reordered or cut off (exit 1).
    """
    with reporting():
        if len(words) == 2 and words[0] in ("verify", "collect"):
            (_verify if words[0] == "verify" else _collect)(words[1], json, follow)
            return
        if len(words) != 1:
            raise SecureKafkaError(f"unexpected {' '.join(words[1:])!r}: use `audit ENV [options]`, `audit verify ENV` "
                                   "or `audit collect ENV`")
        if operations and failed_logins:
            raise SecureKafkaError("--operations and --failed-logins read different trails: choose one")
        if operations and principal:
            raise SecureKafkaError("--principal filters decisions and failed logins; the operations trail is by operator")
        if operations and follow:
            raise SecureKafkaError("--follow follows decisions or failed logins; the operations trail grows only by commands")
        env = words[0]
        cutoff = datetime.now(timezone.utc) - audit_mod.parse_duration(since) if since else None
        environment = open_env(env)
        if operations:
            entries = [e for e in environment.trail.entries()
                       if cutoff is None or datetime.fromisoformat(e["time"]) >= cutoff]
        else:
            environment.collect_decisions()
            if failed_logins:
                refused = audit_mod.failed_logins_in(environment.decisions.texts(cutoff), environment.settings, cutoff, principal)
            else:
                decisions = audit_mod.decisions_in(environment.decisions.texts(cutoff), denied, cutoff, principal)
    if operations:
        if json:
            echo_json({"env": env, "operations": entries})
        for entry in [] if json else entries:
            typer.echo(f"{entry['time']} #{entry['seq']} {entry['operator']}: {entry['command']} {entry['args']} "
                       f"-> {entry['outcome']} {entry['changes']}")
        return
    found = refused if failed_logins else decisions
    if json and not follow:
        echo_json({"env": env, "failed_logins" if failed_logins else "decisions": [f.to_json() for f in found]})
        return
    _print(found, json)
    if follow:
        with reporting():
            _follow(environment, lambda fresh: _print(_select(environment, fresh, failed_logins, denied, principal), json))


def _select(environment: Environment, fresh: list[Collected], failed_logins: bool, denied: bool,
            principal: str | None) -> list:
    """What the filters let through of newly collected lines (``--since`` held for the first read)."""
    texts = [(c.node, c.text) for c in fresh]
    if failed_logins:
        return audit_mod.failed_logins_in(texts, environment.settings, None, principal)
    return audit_mod.decisions_in(texts, denied, None, principal)


def _print(entries: list, json: bool) -> None:
    for entry in entries:
        typer.echo(json_mod.dumps(entry.to_json(), sort_keys=True) if json else str(entry))


def _follow(environment: Environment, show) -> None:
    """Collects every FOLLOW_EVERY_S and hands each round's new lines to ``show``, until Ctrl-C."""
    try:
        while True:
            time.sleep(FOLLOW_EVERY_S)
            show(environment.collect_decisions())
    except KeyboardInterrupt:
        return


def _collect(env: str, json: bool, follow: bool) -> None:
    environment = open_env(env)

    def report(collected: list[Collected]) -> None:
        if json:
            typer.echo(json_mod.dumps({"env": env, "collected": {c.node: len(c.lines) for c in collected},
                                       "gaps": [c.node for c in collected if c.gap]}, sort_keys=True))
        elif not follow or any(c.lines for c in collected):
            typer.echo(f"{env}: collected " + ", ".join(f"{c.node} {len(c.lines)}" for c in collected)
                       + f" lines into {environment.decisions.directory}")

    report(environment.collect_decisions())
    if follow:
        _follow(environment, report)


def _verify(env: str, json: bool, follow: bool) -> None:
    if follow:
        raise SecureKafkaError("--follow goes with `audit ENV` or `audit collect ENV`, not with `audit verify`")
    environment = open_env(env, quiet=True)
    operations, decisions = environment.trail.verify(), environment.decisions.verify()
    if json:
        echo_json({"env": env, "ok": operations.ok and decisions.ok,
                   "operations": {"entries": operations.entries, "ok": operations.ok, "problem": operations.problem},
                   "decisions": {"lines": decisions.entries, "ok": decisions.ok, "problem": decisions.problem}})
    if not operations.ok:
        raise SecureKafkaError(f"the operations trail of {env} is not as written: {operations.problem}")
    if not decisions.ok:
        raise SecureKafkaError(f"the decisions trail of {env} is not as collected: {decisions.problem}")
    if not json:
        typer.echo(f"the operations trail of {env}: {operations.entries} entries, chain and MACs intact")
        typer.echo(f"the decisions trail of {env}: {decisions.entries} lines, seals intact")
