"""``secure-kafka image``: the runtime image for ZooKeeper and Kafka."""

from __future__ import annotations

from typing import Annotated

import typer

from ..build import image as runtime_image
from ..dockerclient import connect
from .common import progress, reporting

app = typer.Typer(no_args_is_help=True, help="Build and inspect the runtime image (Kafka 3.9 + ZooKeeper).")


@app.command()
def build(
    rebuild: Annotated[bool, typer.Option(help="Build even if an image with the current inputs' hash exists.")] = False,
) -> None:
    """Build the runtime image from docker/, or reuse it when its inputs have not changed.

    On a machine without Docker Hub the Debian base is made with debootstrap from the
    machine's apt mirror; Kafka's jars come from Maven Central.
    """
    with reporting():
        tag = runtime_image.ensure_image(connect(), progress, rebuild=rebuild)
    typer.echo(tag)


@app.command()
def info() -> None:
    """Print the runtime image's tag and the Kafka, ZooKeeper and Java versions inside it."""
    with reporting():
        client = connect()
        tag = runtime_image.ensure_image(client, progress)
        typer.echo(tag)
        typer.echo(runtime_image.run_in_image(client, tag, "kafka-version").rstrip())
