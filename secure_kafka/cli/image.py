"""``secure-kafka image``: the runtime images (Kafka 3.9 + ZooKeeper; Kafka 4.4 for KRaft)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..build import image as runtime_image
from ..dockerclient import connect
from .common import MetadataMode, progress, reporting

app = typer.Typer(no_args_is_help=True,
                  help="Build and inspect the runtime images (Kafka 3.9 + ZooKeeper; Kafka 4.4 for KRaft).")

ModeOption = Annotated[MetadataMode, typer.Option(
    "--mode", help="Whose image: zookeeper (Kafka 3.9 and ZooKeeper) or kraft (Kafka 4.4).")]


@app.command()
def build(
    mode: ModeOption = MetadataMode.zookeeper,
    rebuild: Annotated[bool, typer.Option(help="Build even if an image with the current inputs' hash exists.")] = False,
) -> None:
    """Build a mode's runtime image from docker/, or reuse it when its inputs have not changed.

    On a machine without Docker Hub the Debian base is made with debootstrap from the
    machine's apt mirror; Kafka's jars come from Maven Central.
    """
    with reporting():
        tag = runtime_image.ensure_image(connect(), progress, rebuild=rebuild, mode=mode.value)
    typer.echo(tag)


@app.command()
def info(mode: ModeOption = MetadataMode.zookeeper) -> None:
    """Print a mode's runtime image tag and the Kafka, ZooKeeper (3.9 only) and Java versions inside it."""
    with reporting():
        client = connect()
        tag = runtime_image.ensure_image(client, progress, mode=mode.value)
        typer.echo(tag)
        typer.echo(runtime_image.run_in_image(client, tag, "kafka-version").rstrip())
