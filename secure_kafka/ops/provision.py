"""After the containers are healthy: SCRAM users, the ACL file, then a verified round-trip.

The order is Strimzi's: brokers authenticate to each other and to ZooKeeper by certificate
and SASL/DIGEST, so they need no SCRAM credential to start. The admin authenticates by its
client certificate (mTLS, a super user) and creates the SCRAM users through the Admin API;
only then is the ACL file applied (its principals exist) and do SCRAM clients connect.
Both engines run this step: the Docker engine path after it applied the plan, the Pulumi
program as a dynamic resource after every broker is healthy.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model.topology import ADMIN
from ..pki.secretstore import scram_password_name
from . import acladmin, kafka_admin, users
from .context import EnvironmentContext

__all__ = ["Provisioned", "provision"]

# The first start of a prod-shape cluster on a loaded host registers its brokers slowly.
REGISTER_TIMEOUT_S = 120


@dataclass(frozen=True)
class Provisioned:
    scram_users_created: list[str]
    round_trip_s: float


def provision(ctx: EnvironmentContext) -> Provisioned:
    """SCRAM users, the ACL file's bindings and a verified round-trip over SCRAM and mTLS."""
    ctx.progress("cluster: waiting for every broker to register")
    admin = ctx.admin_client(REGISTER_TIMEOUT_S)
    # Every SCRAM user the environment has (admin and `users add`ed ones): re-created if the cluster lost them.
    scram = {user: ctx.secrets.get(scram_password_name(user)) for user in sorted({ADMIN, *users.scram_users(ctx)})}
    created = kafka_admin.ensure_scram_users(admin, scram, ctx.progress)
    acladmin.apply_file(ctx, admin)  # after the users it names exist
    kafka_admin.ensure_topic(admin, kafka_admin.VERIFY_TOPIC, ctx.settings.topic_replication_factor)
    ctx.progress("cluster: verifying a round-trip over SASL_SSL (SCRAM) and mTLS")
    round_trip_s = kafka_admin.round_trip(ctx.scram_config(ADMIN), ctx.admin_mtls_config(), kafka_admin.VERIFY_TOPIC)
    return Provisioned(created, round_trip_s)
