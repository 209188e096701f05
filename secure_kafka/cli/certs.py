"""``secure-kafka certs``: an environment's PKI (CA, node and client certificates, stores)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..certstore import CertStore
from ..settings import Project
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
        typer.echo(f"created the PKI of {env!r} in {store.relative(store.root)}: {len(records)} certificates")
        for record in records:
            typer.echo(f"  {record.kind:<9} {record.subject}  (until {record.not_after[:10]})")


@app.command("list")
def list_(env: EnvArgument, json: JsonOption = False) -> None:
    """Show every active certificate: subject, SANs, serial, not-after and days left."""
    with common.reporting():
        records = _store(env).list()
    if json:
        common.echo_json(
            {"env": env, "certificates": [{**r.to_json(), "days_left": r.days_left} for r in records]}
        )
        return
    for record in records:
        sans = ", ".join(record.sans) or "-"
        typer.echo(f"{record.subject}\n  SANs: {sans}\n  serial: {record.serial}")
        typer.echo(f"  not after: {record.not_after}  ({record.days_left} days left)")


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
