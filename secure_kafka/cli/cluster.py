"""Environment lifecycle: ``init``, ``up``, ``down``, ``status``, ``client-config``."""

from __future__ import annotations

import dataclasses
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..engines.pulumi import engine as pulumi_engine
from ..environment import Environment
from ..errors import SecureKafkaError
from ..model import acl, policy
from ..model import settings as settings_mod
from ..model.profiles import get_profile
from ..model.settings import Project
from ..ops.trail import Trail
from .common import MetadataMode, echo_json, progress, prompt_passphrase, reporting

app = typer.Typer()

EnvArg = Annotated[str, typer.Argument(help="Environment name, e.g. dev, ci, prod (its settings: Pulumi.<ENV>.yaml).")]


class EngineName(str, Enum):
    auto = "auto"
    docker = "docker"
    pulumi = "pulumi"


def open_env(env: str, quiet: bool = False) -> Environment:
    return Environment(Project.find(), env, prompt=prompt_passphrase, progress=(lambda _m: None) if quiet else progress)


@app.command()
def init(
    env: EnvArg,
    profile: Annotated[str, typer.Option(help="dev, ci or prod: how strict the environment is.")] = "dev",
    port_base: Annotated[int, typer.Option(help="First host port; broker i publishes SASL_SSL on base+10i+1, SSL on +2.")] = 19000,
    metadata_mode: Annotated[MetadataMode, typer.Option(
        help="zookeeper: Kafka 3.9 with a ZooKeeper ensemble; kraft: Kafka 4.4 with a KRaft controller quorum.")
    ] = MetadataMode.zookeeper,
) -> None:
    """Write Pulumi.<ENV>.yaml with the profile's defaults (refuses to overwrite)."""
    with reporting():
        project = Project.find()
        settings = dataclasses.replace(settings_mod.defaults(env, get_profile(profile), port_base=port_base),
                                       metadata_mode=metadata_mode.value)
        if violations := policy.check(settings):  # only --port-base can leave the profile's bounds
            raise SecureKafkaError(f"--port-base {port_base}: {violations[0].reason}: pass a value in range, e.g. 19000")
        path = project.write(settings)
        acls = acl.write_example(project.root, env)  # commented, grants nothing; kept if present
        Trail.of_environment(project.certs_dir(env)).append(
            "init", {"profile": profile, "port_base": port_base, "metadata_mode": metadata_mode.value}, "ok",
            {"files": [path.name] + ([f"acls/{env}.yaml"] if acls else [])})
    typer.echo(f"wrote {path.name} (profile {profile}, {metadata_mode.value} mode){f' and acls/{env}.yaml' if acls else ''}; next: secure-kafka up {env}")


@app.command()
def up(
    env: EnvArg,
    engine: Annotated[EngineName, typer.Option(help="docker: the Docker SDK; pulumi: `pulumi up` via the Automation API; auto: pulumi when its CLI and docker plugin exist, else docker.")] = EngineName.auto,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Provision the environment, wait until every node is healthy and a round-trip is verified.

    Creates the PKI on first use, builds or reuses the runtime image, starts ZooKeeper then
    the brokers, creates the SCRAM users (admin and those added with `users add`), applies
    acls/<ENV>.yaml (validated before anything starts; extras are kept, see `acl apply --prune`),
    and proves a produce/consume round-trip over SASL_SSL and mTLS. Re-running it on an
    unchanged environment restarts nothing.
    """
    with reporting():
        result = open_env(env).up(engine=chosen_engine(engine))
    if json_output:
        echo_json(dataclasses.asdict(result))
        return
    typer.echo(f"{env} is up and verified in {result.elapsed_s:.1f} s ({', '.join(f'{n} {s}' for n, s in result.nodes.items())})")
    typer.echo(f"  SASL_SSL (SCRAM-SHA-512): {','.join(result.bootstrap['sasl_ssl'])}")
    typer.echo(f"  SSL (mTLS):               {','.join(result.bootstrap['ssl'])}")
    typer.echo(f"connect: secure-kafka client-config {env} admin --format librdkafka --out ./client && kcat -F ./client/librdkafka.conf -L")


@app.command()
def preview(env: EnvArg) -> None:
    """Show what `pulumi up` would change for the environment (needs the Pulumi CLI and docker plugin)."""
    with reporting():
        chosen_engine(EngineName.pulumi)
        summary = open_env(env).preview()
    typer.echo(f"{env}: {summary}")


def chosen_engine(requested: EngineName) -> str:
    """The engine to use; says which on stderr. Pulumi without its CLI: an error saying how to install it."""
    name, reason = pulumi_engine.choose(requested.value)
    progress(reason)
    return name


@app.command()
def down(
    env: EnvArg,
    purge: Annotated[bool, typer.Option(help="Also delete data volumes, PKI and secrets. Irreversible.")] = False,
    engine: Annotated[EngineName, typer.Option(help="pulumi: `pulumi destroy` first; either way, whatever is left of the environment is removed.")] = EngineName.auto,
) -> None:
    """Remove the environment's containers and network; volumes and PKI stay unless --purge."""
    with reporting():
        open_env(env).down(purge=purge, engine=chosen_engine(engine))
    typer.echo(f"{env} is down" + (" and purged" if purge else " (volumes and PKI kept)"))


@app.command()
def status(
    env: EnvArg,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON: env, healthy, nodes[{name, role, healthy, ...}], quorum{NODE: leader|follower|down|...}, cluster{answered, registered_brokers, under_replicated, offline} (null when no broker runs), bootstrap{sasl_ssl, ssl}, encrypted_volumes{enabled, backend, nodes{NODE: unlocked|locked|unserved|absent}}, warnings.")] = False,
) -> None:
    """Show nodes, the quorum's leader, the cluster's own view (registered brokers, under-replicated and
    leaderless partitions), bootstrap servers, volumes and warnings. Exit 1 when unhealthy."""
    with reporting():
        report = open_env(env, quiet=True).status()
    if json_output:
        echo_json(report)
    else:
        typer.echo(f"{report['env']} ({report['profile']}, {report['metadata_mode']}, Kafka {report['kafka_version']}): "
                   f"{'healthy' if report['healthy'] else 'NOT healthy'}")
        for node in report["nodes"]:
            role = report["quorum"].get(node["name"])
            typer.echo(f"  {node['name']:<12} {node['role']:<10} {node['state']:<10} {node['health']:<9}"
                       f" {f'quorum {role}' if role else ''}".rstrip())
        if cluster := report["cluster"]:
            typer.echo("  cluster: " + (f"brokers {cluster['registered_brokers']} registered, "
                                        f"{cluster['under_replicated']} partitions under-replicated, {cluster['offline']} offline"
                                        if cluster["answered"] else f"no answer ({cluster['error']})"))
        typer.echo(f"  SASL_SSL: {','.join(report['bootstrap']['sasl_ssl'])}")
        typer.echo(f"  SSL:      {','.join(report['bootstrap']['ssl'])}")
        volumes = report["encrypted_volumes"]
        states = ", ".join(f"{node} {state}" for node, state in volumes["nodes"].items())
        typer.echo(f"  encrypted volumes: {'on' if volumes['enabled'] else 'off'} ({volumes['backend']}: {states})")
        for warning in report["warnings"]:
            typer.echo(f"  warning: {warning}", err=True)
    if not report["healthy"]:
        raise typer.Exit(1)


class ConfigFormat(str, Enum):
    java = "java"
    librdkafka = "librdkafka"
    kafka_python = "kafka-python"
    aiokafka = "aiokafka"


class AuthMethod(str, Enum):
    scram = "scram"
    mtls = "mtls"


@app.command("client-config")
def client_config(
    env: EnvArg,
    principal: Annotated[str, typer.Argument(help="The principal, e.g. admin or a user added with `users add`.")],
    out: Annotated[Path, typer.Option(help="Directory to write the config, the CA and (mTLS) the client key and certificate into.")],
    fmt: Annotated[ConfigFormat, typer.Option("--format", help="librdkafka: DIR/librdkafka.conf for kcat -F and confluent-kafka; java: DIR/client.properties for Kafka's tools; "
                                                                                "kafka-python / aiokafka: DIR/<format>.json, keyword arguments of their clients (README).")] = ConfigFormat.librdkafka,
    auth: Annotated[AuthMethod | None, typer.Option(help="scram (SASL_SSL) or mtls (SSL + client certificate); default scram where the principal has a SCRAM user.")] = None,
    producer_tuning: Annotated[bool, typer.Option(help="java and librdkafka: add producer settings that keep TLS cheap (compression.type=lz4, linger.ms=20, "
                                                       "larger batches; README, \"Security tax\"). --no-producer-tuning leaves the clients' own defaults.")] = True,
) -> None:
    """Write a ready-to-use client configuration (with absolute file paths) for a principal."""
    with reporting():
        path = open_env(env, quiet=True).client_config(principal, fmt.value, auth.value if auth else None, out, producer_tuning)
    typer.echo(str(path))
    if sys.stdout.isatty():
        typer.echo("(contains credentials: keep it private)", err=True)
