"""``secure-kafka users``: SCRAM users (each also gets a client certificate for mTLS)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..ops import users as users_mod
from .cluster import EnvArg, open_env
from .common import echo_json, reporting

app = typer.Typer(no_args_is_help=True, help="Application users: SCRAM credential + client certificate, no permissions until an ACL grants them.")

NameArg = Annotated[str, typer.Argument(help="User name: 1-64 letters, digits, '.', '_' or '-'; its principal is User:<NAME>.")]


@app.command()
def add(env: EnvArg, name: NameArg) -> None:
    """Create a user on the running cluster: generated SCRAM-SHA-512 password, client certificate.

    The user may do nothing until acls/<ENV>.yaml grants it something. The password is never
    printed: `secure-kafka client-config ENV NAME` writes a config that carries it.
    Re-running it completes a user whose earlier `add` stopped half-way.
    """
    with reporting():
        result = users_mod.add(open_env(env), name)
    if result.changed:
        typer.echo(f"user {name} created in {env} (principal User:{name}, SCRAM and mTLS; no permissions yet)")
    else:
        typer.echo(f"user {name} exists in {env}: nothing to do")
    typer.echo(f"next: grant it in acls/{env}.yaml, `secure-kafka acl apply {env}`, then `secure-kafka client-config {env} {name} --out DIR`")


@app.command()
def remove(
    env: EnvArg,
    name: NameArg,
    delete_files: Annotated[bool, typer.Option("--delete-files", help="Delete the revoked certificate's files instead of keeping them in certs/ENV/archive/.")] = False,
) -> None:
    """Delete a user's SCRAM credential and revoke its client certificate; new logins of either kind fail.

    Returns once every broker refuses both (a revocation reaches a broker within about 30 s).
    Refused while acls/<ENV>.yaml still grants the user anything. A later `users add` of the
    same name issues a new certificate; the old one stays refused.
    """
    with reporting():
        result = users_mod.remove(open_env(env), name, delete_files=delete_files)
    typer.echo(f"user {name} removed from {env}: SCRAM credential deleted, client certificate {result.certificate}")
    if result.files:
        typer.echo(f"its files are kept in {result.files} (delete them with --delete-files next time, or by hand)")


@app.command("list")
def list_(
    env: EnvArg,
    json: Annotated[bool, typer.Option("--json", help='Print {"env", "users": [name, ...]}.')] = False,
) -> None:
    """List the environment's SCRAM users by name (never passwords)."""
    with reporting():
        names = users_mod.scram_users(open_env(env, quiet=True))
    if json:
        echo_json({"env": env, "users": names})
        return
    for name in names:
        typer.echo(name)
