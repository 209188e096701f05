"""The ``secure-kafka`` command line: parses arguments, calls the library, reports.

Each command group lives in its own module and registers itself here. Library code raises
``SecureKafkaError``; ``common.reporting`` turns it into one line on stderr and exit 1.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer import _click
from typer.core import TyperGroup
from typer.exceptions import Abort

from . import acl, audit, certs, check, cluster, image, migrate, orphans, users, verify
from .common import one_line


class OneLineUsageErrors(TyperGroup):
    """Usage errors reported like every other error: one line on stderr naming the fix, exit 1.

    Click's own form is a usage box and exit 2; scripts and CI logs then need a second rule.
    A bare command group prints its help, and the missing command as that one line.
    """

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except _click.exceptions.NoArgsIsHelpError as exc:
            where = exc.ctx.command_path if exc.ctx else self.name
            typer.echo(exc.format_message())  # the help
            typer.echo(f"error: missing command: see `{where} --help`", err=True)
            sys.exit(1)
        except _click.exceptions.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else self.name
            typer.echo(f"error: {one_line(exc.format_message())}: see `{where} --help`", err=True)
            sys.exit(1)
        except _click.exceptions.ClickException as exc:
            typer.echo(f"error: {one_line(exc.format_message())}", err=True)
            sys.exit(1)
        except Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineUsageErrors,
    name="secure-kafka",
    help="Stand up and run a secure Kafka cluster (ZooKeeper or KRaft mode) on Docker, per environment.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(cluster.app)
app.add_typer(check.app)
app.add_typer(certs.app, name="certs")
app.add_typer(image.app, name="image")
app.add_typer(users.app, name="users")
app.add_typer(acl.app, name="acl")
app.add_typer(audit.app)
app.add_typer(verify.app)
app.add_typer(orphans.app)
app.add_typer(migrate.app)


def main() -> None:
    """Console-script entry point."""
    app()
