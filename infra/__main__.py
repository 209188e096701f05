"""The Pulumi program: one stack per environment (``pulumi up -s dev`` reads ``Pulumi.dev.yaml``).

Builds the environment's plan exactly as ``secure-kafka up`` does and declares it as a
``SecureKafkaCluster``. Outputs: bootstrap servers, the CA certificate, where the admin's
client files are; its passwords only as secrets. See README "Pulumi".
"""

from __future__ import annotations

import pulumi

from secure_kafka.build import image
from secure_kafka.dockerclient import connect
from secure_kafka.engines.pulumi.component import (
    SecureKafkaCluster,
    SecureKafkaClusterArgs,
    stack_env,
)
from secure_kafka.model import policy
from secure_kafka.model.settings import Project
from secure_kafka.ops import acladmin
from secure_kafka.ops.environment import ADMIN, Environment
from secure_kafka.pki.secretstore import scram_password_name

env = stack_env()
project = Project.find()
# The CLI's own reader of Pulumi.<env>.yaml, where `pulumi config set` writes too: a bad key
# fails before any resource is declared.
settings = project.load(env)
policy.enforce(settings)  # a profile violation: nothing is declared, as with `secure-kafka up`
environment = Environment(project, env, progress=pulumi.log.info, settings=settings)
acladmin.load_desired(environment)  # a bad ACL file fails before anything is applied
# A preview only needs the tag (a content hash of docker/); an update builds the image if missing.
tag = image.image_tag() if pulumi.runtime.is_dry_run() else image.ensure_image(connect(), pulumi.log.info)
plan = environment.plan(tag)  # creates the PKI on the first run, like `secure-kafka up`

cluster = SecureKafkaCluster(f"sk-{env}", SecureKafkaClusterArgs(plan=plan, settings=settings, project_root=project.root))

admin = environment.certs.client_files(ADMIN)
pulumi.export("bootstrapServers", cluster.bootstrap_servers)
pulumi.export("caCertificate", environment.certs.ca_cert_path.read_text())
pulumi.export("clientConfig", {
    "admin": {"directory": str(admin.directory), "ca": str(admin.ca), "certificate": str(admin.cert),
              "key": str(admin.key), "keystore": str(admin.stores.keystore), "truststore": str(admin.stores.truststore)},
    "write": f"secure-kafka client-config {env} admin --format librdkafka --out ./client",
})
pulumi.export("adminScramPassword", pulumi.Output.secret(environment.secrets.get(scram_password_name(ADMIN))))
pulumi.export("adminStorePassword", pulumi.Output.secret(admin.stores.password))
pulumi.export("verification", cluster.verification)
