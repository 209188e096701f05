"""What every command shares: error reporting, passphrase prompting, JSON output, option types."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum

import typer

from ..errors import SecureKafkaError
from ..model.topology import KRAFT, ZOOKEEPER


@contextmanager
def reporting() -> Iterator[None]:
    """Maps ``SecureKafkaError`` to its one-line message on stderr and exit status 1."""
    try:
        yield
    except SecureKafkaError as exc:
        typer.echo(f"error: {one_line(str(exc))}", err=True)
        raise typer.Exit(1) from None


def one_line(text: str) -> str:
    """``text`` with control characters escaped: a hostile name (a stack key with a CR in it)
    must not break the one-line error, nor forge lines in a log."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def prompt_passphrase(env: str) -> str | None:
    """Asks on a terminal; returns None when there is none (non-interactive runs)."""
    if not sys.stdin.isatty():
        return None
    return typer.prompt(f"Passphrase of environment {env!r}", hide_input=True)


def echo_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


def progress(message: str) -> None:
    """Progress of long operations goes to stderr, so stdout stays parseable."""
    typer.echo(message, err=True)


class MetadataMode(str, Enum):
    """``--metadata-mode`` / ``--mode``: where a cluster keeps its metadata."""

    zookeeper = ZOOKEEPER
    kraft = KRAFT
