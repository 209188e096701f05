"""``secure-kafka verify``: live security probes against a running environment."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import verify as verify_lib
from .cluster import EnvArg, open_env
from .common import echo_json, reporting

app = typer.Typer()


@app.command()
def verify(
    env: EnvArg,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON: format, env, profile, set, passed, total, failed, probes[{probe, checks, expected, observed, passed}].")] = False,
    quick: Annotated[bool, typer.Option(help="Leave out the slow probes (ZooKeeper shells in one-off containers): the set `up` runs on dev and ci.")] = False,
) -> None:
    """Attack the running environment and print a scorecard; exit 1 if any probe fails.

    Plaintext and legacy TLS on every listener, weak ciphers, foreign/expired/not-yet-valid
    client certificates, bad SCRAM logins, a user without ACLs producing, consuming,
    creating topics and granting itself ACLs, anonymous ZooKeeper access, served
    certificates, container hardening, secrets in container config, encrypted volumes and
    published addresses. Test certificates and the throwaway user are removed afterwards.
    """
    with reporting():
        card = verify_lib.run(open_env(env, quiet=True), quick=quick)
    if json_output:
        echo_json(card.to_json())
    else:
        typer.echo(card.table(), nl=False)
        typer.echo(card.summary())
    if not card.passed:
        if json_output:
            typer.echo(f"error: {card.summary()}", err=True)
        raise typer.Exit(1)
