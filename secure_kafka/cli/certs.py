"""``secure-kafka certs``: an environment's PKI (CA, node and client certificates, stores)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import SecureKafkaError
from ..model.settings import Project
from ..ops.trail import Trail
from ..pki.certstore import CertStore
from . import common

app = typer.Typer(help="The environment's PKI: CA, node and client certificates, keystores.", no_args_is_help=True)

EnvArgument = Annotated[str, typer.Argument(help="Environment name (its settings are in Pulumi.<ENV>.yaml).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output (stable, documented).")]


def _store(env: str) -> CertStore:
    project = Project.find()
    return CertStore(project, project.load(env), prompt=common.prompt_passphrase)


@app.command("init")
def init(env: EnvArgument) -> None:
    """Create the CA, a certificate and keystore/truststore per node, and the admin client certificate."""
    with common.reporting():
        store = _store(env)
        records = store.init()
        Trail.of_environment(store.root).append(
            "certs init", {}, "ok", {"certificates": [record.name for record in records]})
        typer.echo(f"created the PKI of {env!r} in {store.relative(store.root)}: {len(records)} certificates")
        for record in records:
            typer.echo(f"  {record.kind:<9} {record.subject}  (until {record.not_after[:10]})")


@app.command("list")
def list_(env: EnvArgument, json: JsonOption = False) -> None:
    """Show every active certificate (subject, SANs, serial, not-after, days left), then the revoked ones.

    A revoked certificate belongs to a removed user or a replaced leaked key: brokers and
    ZooKeeper refuse it until it expires.
    """
    with common.reporting():
        store = _store(env)
        records = store.list()
        revoked = store.revoked()
    if json:
        common.echo_json({
            "env": env,
            "revocation_checked": store.revocation_enabled(),
            "certificates": [{**r.to_json(), "days_left": r.days_left} for r in records],
            "revoked": [r.to_json() for r in revoked],
        })
        return
    for record in records:
        sans = ", ".join(record.sans) or "-"
        typer.echo(f"{record.subject}\n  SANs: {sans}\n  serial: {record.serial}")
        typer.echo(f"  not after: {record.not_after}  ({record.days_left} days left)")
    for record in revoked:
        typer.echo(f"REVOKED {record.subject} (generation {record.generation})\n  serial: {record.serial}")
        typer.echo(f"  revoked: {record.revoked}  not after: {record.not_after}")
    if not store.revocation_enabled():
        typer.echo(f"note: the PKI of {env!r} predates revocation: `secure-kafka certs rotate {env}` enables it")


@app.command("revoke")
def revoke(
    env: EnvArgument,
    client: Annotated[str, typer.Option("--client", help="The client principal whose key leaked (admin included).")],
    json: JsonOption = False,
) -> None:
    """Revoke a client's certificate and issue it a new one beside it (same principal, same ACLs).

    For a leaked key: the user keeps its SCRAM password and its grants; only the old certificate
    is refused, by every broker and ZooKeeper node, once they re-read the CRL (within about
    30 s; the command waits and checks). Copies made with `secure-kafka client-config --out`
    still hold the old certificate: run it again.
    """
    from ..ops import revocation
    from .cluster import open_env

    with common.reporting():
        result = revocation.revoke_client(open_env(env), client)
    if json:
        common.echo_json({"env": env, **result.to_json()})
        return
    if result.revoked:
        typer.echo(f"revoked {client}'s certificate (serial {result.revoked.serial}): every broker refuses it")
    typer.echo(f"issued {client} a new certificate (serial {result.issued.serial if result.issued else '-'}) in "
               f"certs/{env}/clients/{client}/: run `secure-kafka client-config {env} {client} --out DIR` again")


@app.command("verify")
def verify(env: EnvArgument, json: JsonOption = False) -> None:
    """Check chain, SANs, key/cert match, store passwords and expiry; exit 1 on any problem."""
    with common.reporting():
        problems = _store(env).verify()
    if json:
        common.echo_json({"env": env, "ok": not problems, "problems": problems})
    elif problems:
        for problem in problems:
            typer.echo(f"problem: {problem}", err=True)
    else:
        typer.echo(f"the PKI of {env!r} is sound")
    if problems:
        raise typer.Exit(1)


@app.command("rotate")
def rotate(
    env: EnvArgument,
    node: Annotated[str | None, typer.Option("--node", help="Rotate this node's leaf certificate only.")] = None,
    client: Annotated[str | None, typer.Option("--client", help="Rotate this client principal's certificate only.")] = None,
    ca: Annotated[bool, typer.Option("--ca", help="Replace the CA: trust both, reissue every leaf, drop the old CA.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted or paused rotation.")] = False,
    abort: Annotated[bool, typer.Option("--abort", help="Undo an interrupted rotation, back to the old material.")] = False,
    if_expiring_within: Annotated[
        str | None, typer.Option("--if-expiring-within", help="Only rotate what expires within this (30d, 12h); else do nothing, exit 0.")
    ] = None,
    pause_after_trust: Annotated[
        bool, typer.Option("--pause-after-trust", help="--ca: stop once both CAs are trusted, so clients can be restarted; then --resume.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Rotate leaf certificates (or the CA with --ca) on the running cluster without downtime.

    Brokers reload their listener keystores in place; ZooKeeper nodes and then brokers are
    restarted one at a time, each waiting for the cluster to be fully in sync. Progress is
    kept in certs/ENV/rotation/: an interrupted rotation is continued with --resume or undone
    with --abort.
    """
    from ..environment import Environment
    from ..ops import rotation

    with common.reporting():
        if resume and abort:
            raise SecureKafkaError("--resume and --abort exclude each other: choose one")
        if (resume or abort) and (node or client or ca or if_expiring_within or pause_after_trust):
            raise SecureKafkaError("--resume/--abort take no other option: the rotation in progress knows what it does")
        if ca and (node or client):
            raise SecureKafkaError("--ca rotates every certificate: drop --node/--client")
        if pause_after_trust and not ca:
            raise SecureKafkaError("--pause-after-trust belongs to a CA rotation: add --ca")
        window = rotation.parse_duration(if_expiring_within) if if_expiring_within is not None else None
        environment = Environment(Project.find(), env, prompt=common.prompt_passphrase, progress=common.progress)
        if resume:
            report = rotation.resume(environment, progress=common.progress)
        elif abort:
            report = rotation.abort(environment, progress=common.progress)
        elif window is not None:
            report = rotation.rotate_if_due(environment, window, ca=ca, node=node, client=client, progress=common.progress)
        elif ca:
            report = rotation.rotate_ca(environment, pause_after_trust=pause_after_trust, progress=common.progress)
        else:
            report = rotation.rotate_leaves(environment, node=node, client=client, progress=common.progress)
    if json:
        common.echo_json(report.to_json())
        return
    if report.outcome == "nothing-due":
        typer.echo(f"nothing in {env!r} expires within {if_expiring_within}: no rotation")
        return
    typer.echo(f"{report.kind} rotation of {env!r}: {report.outcome} ({', '.join(report.phases) or 'no phase'}) in {report.elapsed_s:.0f} s")
    for owner, serial in sorted(report.serials.items()):
        typer.echo(f"  {owner:<12} serial {serial}")
    for note in report.notes:
        typer.echo(f"note: {note}")
