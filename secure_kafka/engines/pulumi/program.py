"""The Pulumi program's body: one environment's plan declared as a ``SecureKafkaCluster``, and the stack's outputs.

It maps a plan it is given and does nothing else: the plan is built by
``Environment.prepare`` (policy, image, ACL file, PKI), the same call ``secure-kafka up``
makes for the Docker engine. ``infra/__main__.py`` (a bare ``pulumi up``) prepares and
calls ``declare``; ``secure-kafka up --engine pulumi`` hands the plan it already prepared to
``declare`` as an inline program, so nothing is checked or built twice.

Outputs: bootstrap servers, the CA certificate, where the admin's client files are; its
passwords only as secrets. See README "Pulumi".
"""

from __future__ import annotations

import pulumi

from ...build.plan import ClusterPlan
from ...model.settings import check_env_name
from ...model.topology import ADMIN
from ...ops.context import EnvironmentContext
from ...pki.secretstore import scram_password_name
from .component import SecureKafkaCluster, SecureKafkaClusterArgs

__all__ = ["declare", "stack_env"]


def stack_env(stack: str | None = None) -> str:
    """The environment a stack deploys: the stack's name (``Pulumi.<env>.yaml``)."""
    return check_env_name(stack or pulumi.get_stack())


def declare(ctx: EnvironmentContext, plan: ClusterPlan) -> SecureKafkaCluster:
    """Declares ``plan`` (built from ``ctx``'s settings) and exports the stack's outputs."""
    cluster = SecureKafkaCluster(f"sk-{ctx.env}", SecureKafkaClusterArgs(plan=plan, settings=ctx.settings,
                                                                        project_root=ctx.project.root))
    admin = ctx.certs.client_files(ADMIN)
    pulumi.export("bootstrapServers", cluster.bootstrap_servers)
    pulumi.export("caCertificate", ctx.certs.ca_cert_path.read_text())
    pulumi.export("clientConfig", {
        "admin": {"directory": str(admin.directory), "ca": str(admin.ca), "certificate": str(admin.cert),
                  "key": str(admin.key), "keystore": str(admin.stores.keystore), "truststore": str(admin.stores.truststore)},
        "write": f"secure-kafka client-config {ctx.env} admin --format librdkafka --out ./client",
    })
    pulumi.export("adminScramPassword", pulumi.Output.secret(ctx.secrets.get(scram_password_name(ADMIN))))
    pulumi.export("adminStorePassword", pulumi.Output.secret(admin.stores.password))
    pulumi.export("verification", cluster.verification)
    return cluster
