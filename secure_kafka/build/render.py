"""Rendering of ``templates/*.j2`` into the files each node and client reads.

Decisions (listeners, replication, who is a super user) are made here, in Python, from the
settings and the topology; the templates only lay them out and say why each setting is
there. Rendering is strict: a variable the template uses but the context lacks is an
error naming the template file and line, never an empty string in a security setting.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2

from ..errors import SecureKafkaError
from ..model.settings import Settings
from ..model.topology import (
    ADMIN,
    BROKER_INTERNAL_PORT,
    ZK_ELECTION_PORT,
    ZK_QUORUM_PORT,
    ZK_SECURE_CLIENT_PORT,
    Node,
)
from ..pki import secretstore
from ..pki.secretstore import SecretStore

__all__ = [
    "CONFIG_DIR",
    "TLS_DIR",
    "KEYSTORE",
    "TRUSTSTORE",
    "BROKER_VOLUME_DIR",
    "AUDIT_LOG",
    "ZOOKEEPER_DATA_DIR",
    "ZOOKEEPER_SASL_USER",
    "properties_value",
    "jaas_string",
    "conf_value",
    "Renderer",
    "default_renderer",
    "QuorumPeer",
    "render_zookeeper",
    "Listener",
    "plaintext_loopback_enabled",
    "broker_listeners",
    "kafka_node_context",
    "render_broker",
    "render_client_config",
]

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"

# Paths inside the containers (see docs/architecture.md, "Inside the containers").
CONFIG_DIR = "/etc/kafka/config"  # the rendered files of one node, mounted read-only
TLS_DIR = "/etc/kafka/tls"  # the node's keystore.p12 and truststore.p12, mounted read-only
KEYSTORE = f"{TLS_DIR}/keystore.p12"
TRUSTSTORE = f"{TLS_DIR}/truststore.p12"
BROKER_VOLUME_DIR = "/var/lib/kafka"  # a broker's volume: data/ and audit/
BROKER_DATA_DIR = f"{BROKER_VOLUME_DIR}/data"
AUDIT_LOG = f"{BROKER_VOLUME_DIR}/audit/kafka-authorizer.log"
ZOOKEEPER_DATA_DIR = "/var/lib/zookeeper"

# The one SASL user every broker logs in to ZooKeeper as (see broker-jaas.conf.j2).
ZOOKEEPER_SASL_USER = "kafka"
# The SASL user ZooKeeper peers authenticate each other with.
QUORUM_SASL_USER = "zkquorum"


# --- Escaping: secrets may be supplied by users, so no value may break out of its line ----


def properties_value(value: object) -> str:
    """A value for a Java properties file (server.properties, zoo.cfg, client.properties).

    ``java.util.Properties`` treats a backslash as an escape and a newline as the end of the
    value; escaping both keeps a supplied password from injecting settings.
    """
    text = str(value)
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    if text[:1] in (" ", "\t"):
        text = "\\" + text  # leading whitespace would be dropped by the loader
    return text


def jaas_string(value: object) -> str:
    """A double-quoted string for a JAAS configuration (file or ``sasl.jaas.config``)."""
    text = str(value)
    if "\n" in text or "\r" in text:
        raise SecureKafkaError("a SASL credential contains a line break: supply a single-line secret")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def conf_value(value: object) -> str:
    """A value for a librdkafka ``key=value`` file: the rest of the line, no escapes exist."""
    text = str(value)
    if "\n" in text or "\r" in text or text != text.strip():
        raise SecureKafkaError(
            "a librdkafka setting would contain a line break or surrounding blanks: use a path or secret without them"
        )
    return text


class Renderer:
    """A jinja2 environment over a templates directory (the repository's by default)."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR):
        self.templates_dir = templates_dir
        self.environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates_dir)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            # A line holding only a {% tag %} leaves no blank line or indentation behind.
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,  # config files, not HTML
        )
        self.environment.filters.update(
            properties_value=properties_value, jaas_string=jaas_string, conf_value=conf_value
        )

    def render(self, template: str, **context: object) -> str:
        try:
            return self.environment.get_template(template).render(**context)
        except jinja2.TemplateNotFound as exc:
            raise SecureKafkaError(f"template {exc.name} not found in {self.templates_dir}: restore it") from None
        except jinja2.TemplateSyntaxError as exc:
            where = f"{Path(exc.filename or exc.name or template).name}:{exc.lineno}"
            raise SecureKafkaError(f"template {where}: syntax error ({exc.message}): fix the template") from None
        except jinja2.UndefinedError as exc:
            raise SecureKafkaError(
                f"template {_failing_line(exc, template)}: {exc.message}: fix the template or its context"
            ) from None


def _failing_line(exc: Exception, template: str) -> str:
    """``file:line`` of the innermost template frame of a render error.

    jinja2 rewrites tracebacks so that template code appears as frames of the ``.j2`` file.
    """
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):
            return f"{Path(frame.filename).name}:{frame.lineno}"
    return template


@cache
def default_renderer() -> Renderer:
    return Renderer()


# --- Shared pieces ---------------------------------------------------------------------


def _tls(settings: Settings) -> dict[str, str]:
    """The templates' names for the environment's ``TlsPolicy``."""
    tls = settings.tls
    return {"tls_enabled_protocols": tls.enabled_protocols, "tls_protocol": tls.protocol, "cipher_suites": tls.cipher_suites}


def _node_stores(node: Node, secrets: SecretStore) -> dict[str, str]:
    # One password for keystore, key and truststore: ZooKeeper requires key == store password.
    return {
        "keystore": KEYSTORE,
        "truststore": TRUSTSTORE,
        "store_password": secrets.get(secretstore.store_password_name(node.name)),
    }


# --- ZooKeeper ---------------------------------------------------------------------------


@dataclass(frozen=True)
class QuorumPeer:
    myid: int
    host: str


ZOOKEEPER_HEALTH_PASS = "store.pass"


def zookeeper_healthcheck(port: int) -> tuple[str, ...]:
    """Healthy = ZooKeeper completes TLS with the node's own certificate and answers ``srvr``
    as a serving member (``Mode: standalone|leader|follower``), not just an open port: a
    bare TCP connect logged a failed handshake with a stack trace every time."""
    ask = (f"echo srvr | timeout 5 openssl s_client -quiet -connect 127.0.0.1:{port} -cert {KEYSTORE} -key {KEYSTORE} "
           f"-pass file:{CONFIG_DIR}/{ZOOKEEPER_HEALTH_PASS} 2>/dev/null | grep -q '^Mode: '")
    return ("CMD", "bash", "-c", ask)


def render_zookeeper(
    settings: Settings, node: Node, secrets: SecretStore, renderer: Renderer | None = None
) -> dict[str, str]:
    """``{filename: content}`` of a ZooKeeper node: zoo.cfg, jaas.conf, log4j.properties, myid, store.pass."""
    renderer = renderer or default_renderer()
    topology = settings.topology
    ensemble = len(topology.zookeepers) > 1
    context = {
        "env": settings.env,
        "node": node,
        "myid": topology.zookeeper_myid(node),
        "data_dir": ZOOKEEPER_DATA_DIR,
        "secure_client_port": ZK_SECURE_CLIENT_PORT,
        "ensemble": ensemble,
        "peers": [QuorumPeer(topology.zookeeper_myid(z), z.name) for z in topology.zookeepers],
        "quorum_port": ZK_QUORUM_PORT,
        "election_port": ZK_ELECTION_PORT,
        "zookeeper_sasl_user": ZOOKEEPER_SASL_USER,
        "zookeeper_sasl_password": secrets.get(secretstore.ZOOKEEPER_SASL),
        "quorum_sasl_user": QUORUM_SASL_USER,
        # Only an ensemble has peers to authenticate; a standalone node needs no such secret.
        "quorum_sasl_password": secrets.get(secretstore.QUORUM_SASL) if ensemble else None,
        **_node_stores(node, secrets),
        **_tls(settings),
    }
    return {
        "zoo.cfg": renderer.render("zoo.cfg.j2", **context),
        "jaas.conf": renderer.render("zookeeper-jaas.conf.j2", **context),
        "log4j.properties": renderer.render("log4j-zookeeper.properties.j2", **context),
        # ZooKeeper reads its id from <dataDir>/myid; zookeeper-server-start copies it there.
        "myid": f"{context['myid']}\n",
        # The healthcheck's `openssl -pass file:`: the node's keystore, as the node's own client.
        ZOOKEEPER_HEALTH_PASS: f"{context['store_password']}\n",
    }


# --- Brokers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    name: str  # listener name, also the prefix of its listener.name.<name>.* settings
    protocol: str  # security protocol
    port: int  # container port; the host publishes the same number
    advertised_host: str

    @property
    def bind(self) -> str:
        return f"{self.name}://0.0.0.0:{self.port}"

    @property
    def advertised(self) -> str:
        return f"{self.name}://{self.advertised_host}:{self.port}"

    @property
    def protocol_mapping(self) -> str:
        return f"{self.name}:{self.protocol}"


def plaintext_loopback_enabled(settings: Settings) -> bool:
    """Whether brokers get the PLAINTEXT loopback listener; an opt-in the profile forbids is an error."""
    if settings.plaintext_loopback and not settings.profile.allow_plaintext_loopback:
        raise SecureKafkaError(
            f"secure-kafka:plaintextLoopback is true, but profile {settings.profile.name} allows no "
            "PLAINTEXT listener: set it to false"
        )
    return settings.plaintext_loopback


def broker_listeners(settings: Settings, broker: Node) -> list[Listener]:
    topology = settings.topology
    listeners = [
        # Broker to broker (replication, controller): TLS with client certificates.
        Listener("INTERNAL", "SSL", BROKER_INTERNAL_PORT, broker.name),
        # Clients on the host: SCRAM over TLS, and certificates over TLS.
        Listener("SASL_SSL_EXT", "SASL_SSL", topology.listener_port(broker, "sasl_ssl"), "localhost"),
        Listener("SSL_EXT", "SSL", topology.listener_port(broker, "ssl"), "localhost"),
    ]
    if plaintext_loopback_enabled(settings):
        listeners.append(
            Listener("PLAINTEXT_LOOPBACK", "PLAINTEXT", topology.listener_port(broker, "plaintext"), "localhost")
        )
    return listeners


def kafka_node_context(settings: Settings, node: Node, secrets: SecretStore) -> dict[str, object]:
    """What every Kafka node's config (broker of either mode, KRaft controller) is rendered
    from: TLS, stores, super users, the authorizer's audit log, the durability rules."""
    topology = settings.topology
    return {
        "env": settings.env,
        "node": node,
        "data_dir": BROKER_DATA_DIR,
        "audit_log": AUDIT_LOG,
        # Every node is a super user (replication, controller traffic), and the admin.
        "super_users": [f"User:{n.name}" for n in topology.controllers + topology.brokers] + [f"User:{ADMIN}"],
        "replication_factor": settings.topic_replication_factor,
        "min_insync_replicas": settings.topic_min_insync_replicas,
        "unclean_leader_election": str(settings.unclean_leader_election).lower(),
        "ssl_client_auth": settings.profile.ssl_client_auth,
        "audit_log_backups": settings.profile.audit_log_backups,
        "audit_log_file_mb": settings.audit_log_file_mb,
        # The authorizers log allowed decisions at DEBUG, denied ones at INFO.
        "audit_level": "DEBUG" if settings.audit_allowed else "INFO",
        **_node_stores(node, secrets),
        **_tls(settings),
    }


def render_broker(
    settings: Settings, node: Node, secrets: SecretStore, renderer: Renderer | None = None
) -> dict[str, str]:
    """``{filename: content}`` of a ZooKeeper-mode broker: server.properties, jaas.conf, log4j.properties."""
    renderer = renderer or default_renderer()
    context = zookeeper_broker_context(settings, node, secrets)
    return {
        "server.properties": renderer.render("server.properties.j2", **context),
        "jaas.conf": renderer.render("broker-jaas.conf.j2", **context),
        "log4j.properties": renderer.render("log4j-broker.properties.j2", **context),
    }


def zookeeper_client_context(settings: Settings, secrets: SecretStore) -> dict[str, object]:
    """What a Kafka node logging in to ZooKeeper (a broker, a migrating controller) renders
    its ZooKeeper client settings and JAAS file from, beside its own stores."""
    return {
        "zookeeper_connect": settings.topology.zookeeper_connect,
        "zookeeper_sasl_user": ZOOKEEPER_SASL_USER,
        "zookeeper_sasl_password": secrets.get(secretstore.ZOOKEEPER_SASL),
    }


def zookeeper_broker_context(settings: Settings, node: Node, secrets: SecretStore) -> dict[str, object]:
    """What a ZooKeeper-mode broker's files are rendered from."""
    return {
        **kafka_node_context(settings, node, secrets),
        **zookeeper_client_context(settings, secrets),
        "broker_id": settings.topology.broker_id(node),
        "listeners": broker_listeners(settings, node),
        "authorizer_class": "kafka.security.authorizer.AclAuthorizer",
        "password_encoder_secret": secrets.get(secretstore.PASSWORD_ENCODER),
    }


# --- Clients -----------------------------------------------------------------------------

# A client directory (``certs/<env>/clients/<p>/`` or a ``client-config --out`` copy of it):
# Java clients read the PKCS12 stores, librdkafka the PEM files.
CLIENT_CA_CERT = "ca.crt"
CLIENT_CERT = "client.crt"
CLIENT_KEY = "client.key"
CLIENT_KEYSTORE = "keystore.p12"
CLIENT_TRUSTSTORE = "truststore.p12"

# format → (file written, its template). The Python clients' files are JSON keyword
# arguments: kafka-python takes them as they are (``KafkaProducer(**conf)``); aiokafka takes
# an SSL context, so its "ssl_context" holds the arguments of ``aiokafka.helpers.create_ssl_context``.
CLIENT_CONFIG_FORMATS = {
    "java": ("client.properties", "client-java.properties.j2"),
    "librdkafka": ("librdkafka.conf", "client-librdkafka.conf.j2"),
    "kafka-python": ("kafka-python.json", "client-kafka-python.json.j2"),
    "aiokafka": ("aiokafka.json", "client-aiokafka.json.j2"),
}


def render_client_config(
    settings: Settings,
    fmt: str,
    auth: str,
    directory: Path,
    principal: str,
    store_password: str,
    scram_password: str | None = None,
    renderer: Renderer | None = None,
    producer_tuning: bool = True,
) -> tuple[str, str]:
    """``(filename, content)`` of a ready-to-use client configuration for ``principal``.

    ``fmt`` "java" gives ``client.properties`` (Kafka's own tools), "librdkafka" gives
    ``librdkafka.conf`` (kcat -F, confluent-kafka), "kafka-python" and "aiokafka" JSON keyword
    arguments (``CLIENT_CONFIG_FORMATS``). ``auth`` "scram" connects to the
    SASL_SSL listeners with ``scram_password``; "mtls" to the SSL listeners with the
    principal's certificate. File paths point into ``directory`` (absolute), which holds
    the files named by the ``CLIENT_*`` constants. ``producer_tuning`` adds the producer
    settings that keep TLS cheap (compression, batch size, linger; the templates say why) to
    the formats whose clients accept keys they do not use: java and librdkafka. kafka-python's
    and aiokafka's consumers refuse producer keyword arguments, so their files have none.
    """
    renderer = renderer or default_renderer()
    if fmt not in CLIENT_CONFIG_FORMATS:
        raise SecureKafkaError(f"unknown client config format {fmt!r}: use {', '.join(CLIENT_CONFIG_FORMATS)}")
    if auth not in ("scram", "mtls"):
        raise SecureKafkaError(f"unknown client auth {auth!r}: use scram or mtls")
    if auth == "scram" and scram_password is None:
        raise SecureKafkaError(f"principal {principal!r} has no SCRAM password: use --auth mtls or add the user")
    if not directory.is_absolute():
        raise SecureKafkaError(f"client directory {directory} is relative: pass an absolute path")

    context = {
        "env": settings.env,
        "principal": principal,
        "auth": auth,
        "bootstrap": ",".join(settings.topology.bootstrap("sasl_ssl" if auth == "scram" else "ssl")),
        "ca_cert": directory / CLIENT_CA_CERT,
        "cert": directory / CLIENT_CERT,
        "key": directory / CLIENT_KEY,
        "keystore": directory / CLIENT_KEYSTORE,
        "truststore": directory / CLIENT_TRUSTSTORE,
        "store_password": store_password,
        "scram_password": scram_password,
        "producer_tuning": producer_tuning,
        **_tls(settings),
    }
    filename, template = CLIENT_CONFIG_FORMATS[fmt]
    return filename, renderer.render(template, **context)
