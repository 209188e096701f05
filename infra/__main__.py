"""The Pulumi program: one stack per environment (``pulumi up -s dev`` reads ``Pulumi.dev.yaml``).

Prepares the environment exactly as ``secure-kafka up`` does (policy, image, ACL file, PKI,
plan; the settings read by the CLI's own reader, where ``pulumi config set`` writes too) and
declares the plan (``secure_kafka.engines.pulumi.program``). See README "Pulumi".
"""

import pulumi

from secure_kafka.engines.pulumi.program import declare, stack_env
from secure_kafka.environment import Environment
from secure_kafka.model.settings import Project

environment = Environment(Project.find(), stack_env(), progress=pulumi.log.info)
# A preview needs only the image's tag (a content hash of docker/); an update builds the image if missing.
declare(environment, environment.prepare(build_image=not pulumi.runtime.is_dry_run()))
