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
    to: Annotated[Target | None, typer.Option("--to", help="The metadata mode to move to: kraft (Kafka 4.x).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted migration (the same as --to kraft, but refused when none is in progress).")] = False,
    abort: Annotated[bool, typer.Option("--abort", help="Undo an unfinished migration, back to ZooKeeper mode (refused once it is finalized).")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON: env, outcome (done | nothing-to-do | aborted), phases, cluster_id, elapsed_s.")] = False,
) -> None:
    """Move a ZooKeeper environment (Kafka 3.9) to KRaft, then onto Kafka 4.x, one node at a time.

    Kafka's own ZooKeeper → KRaft migration (KIP-866): controllers start in migration mode and
    copy the metadata (topics, configs, SCRAM users, ACLs) once every broker has registered
    with them; the brokers restart into KRaft mode; the migration is finalized (the point of
    no return, named before it is crossed); ZooKeeper is retired; every node restarts on the
    4.x image; the stack file then says metadataMode: kraft. Clients keep producing and
    consuming throughout (on prod, where every partition has replicas on other brokers).

    Progress is kept in certs/ENV/migration/: run the same command again (or --resume) to
    continue an interrupted migration, or --abort it until it is finalized (brokers back to ZooKeeper
    mode, controllers removed). `up` and `certs rotate` refuse until it has finished.
    """
    from ..errors import SecureKafkaError
    from ..ops import migration

    with reporting():
        if [to is not None, resume, abort].count(True) != 1:
            raise SecureKafkaError("choose one: --to kraft to start (or continue) a migration, --resume to continue one, --abort to undo one")
        if abort:
            report = migration.abort(open_env(env), progress=progress)
        elif resume:
            report = migration.resume(open_env(env), progress=progress)
        else:
            report = migration.migrate(open_env(env), to.value, progress=progress)
    if json_output:
        echo_json(report.to_json())
        return
    if report.outcome == "nothing-to-do":
        typer.echo(f"{env} is in KRaft mode already (cluster id {report.cluster_id}): nothing to migrate")
        return
    if report.outcome == "aborted":
        typer.echo(f"migration of {env} aborted in {report.elapsed_s:.0f} s ({', '.join(report.phases)}): ZooKeeper mode, as before")
        return
    typer.echo(f"{env} migrated to KRaft in {report.elapsed_s:.0f} s ({', '.join(report.phases)}); cluster id {report.cluster_id}")
