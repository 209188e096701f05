"""The ``secure-kafka`` command line: parses arguments, calls the library, reports.

Each command group lives in its own module and registers itself here. Library code raises
``SecureKafkaError``; ``common.reporting`` turns it into one line on stderr and exit 1.
"""

from __future__ import annotations

import typer

from . import acl, audit, certs, check, cluster, image, users, verify

app = typer.Typer(
    name="secure-kafka",
    help="Stand up and run a secure Kafka cluster (ZooKeeper mode) on Docker, per environment.",
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


def main() -> None:
    """Console-script entry point."""
    app()
