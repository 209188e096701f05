"""``secure-kafka migrate``: a ZooKeeper environment onto KRaft and Kafka 4.x, without downtime."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from .cluster import EnvArg, open_env
from .common import echo_json, progress, reporting

app = typer.Typer()


class Target(str, Enum):
    kraft = "kraft"


@app.command()
def migrate(
    env: EnvArg,
    to: Annotated[Target, typer.Option("--to", help="The metadata mode to move to: kraft (Kafka 4.x).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON: env, outcome (done | nothing-to-do), phases, cluster_id, elapsed_s.")] = False,
) -> None:
    """Move a ZooKeeper environment (Kafka 3.9) to KRaft, then onto Kafka 4.x, one node at a time.

    Kafka's own ZooKeeper → KRaft migration (KIP-866): controllers start in migration mode and
    copy the metadata (topics, configs, SCRAM users, ACLs) once every broker has registered
    with them; the brokers restart into KRaft mode; the migration is finalized (the point of
    no return, named before it is crossed); ZooKeeper is retired; every node restarts on the
    4.x image; the stack file then says metadataMode: kraft. Clients keep producing and
    consuming throughout (on prod, where every partition has replicas on other brokers).

    Progress is kept in certs/ENV/migration/: run the same command again to continue an
    interrupted migration. `up` and `certs rotate` refuse until it has finished.
    """
    from ..ops import migration

    with reporting():
        report = migration.migrate(open_env(env), to.value, progress=progress)
    if json_output:
        echo_json(report.to_json())
        return
    if report.outcome == "nothing-to-do":
        typer.echo(f"{env} is in KRaft mode already (cluster id {report.cluster_id}): nothing to migrate")
        return
    typer.echo(f"{env} migrated to KRaft in {report.elapsed_s:.0f} s ({', '.join(report.phases)}); cluster id {report.cluster_id}")
