"""``secure-kafka verify``: live security probes against a running environment, as a scorecard.

Each probe attacks one security claim of the running environment the way an outsider (or a
careless insider) would, and reports what it expected, what it observed and whether that
holds. Refusal probes are built so they *can* fail: legacy TLS is offered with the client's
own floor lowered (``probes.legacy_offer``), test certificates are issued by the
environment's real CA (expired, not yet valid) so only the validity check can refuse them,
and each refusal has a control probe (``mtls.admin``, ``scram.admin``) that must succeed.
``tests/integration/test_verify.py`` shows every probe failing against a deliberately
weakened environment or a weak server.

What verify expects is the secure posture, not merely what the profile permits: an opt-in
a profile allows (dev's PLAINTEXT loopback listener, plain Docker volumes, a writable root
filesystem, publishing on every interface) is reported as a failing probe. The static
``secure-kafka check`` says whether settings are allowed; verify says how exposed the
running environment is.

Nothing a probe creates stays behind: test certificates live in a temporary directory,
never under ``certs/<env>/``; the throwaway SCRAM user of the ``authz.*`` probes (random
name, random password, no ACLs) is deleted with any ACL or topic it managed to create.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

from ..dockerclient import connect
from ..errors import SecureKafkaError
from ..model.topology import Topology
from ..ops.context import EnvironmentContext
from .auth import probe_authorization, probe_mtls, probe_scram
from .host import probe_containers, probe_secrets_in_containers, probe_volumes
from .network import (
    probe_bind_address,
    probe_certificates,
    probe_legacy_tls,
    probe_plaintext,
    probe_renegotiation,
    probe_tls12,
)
from .scorecard import PROBES, ProbeResult, Scorecard, result
from .target import Target
from .trail import probe_trail_chains
from .zookeeper import probe_four_letter_words, probe_node_certificates_only, probe_zookeeper

# Left out of the quick set `up` runs on dev and ci: each starts a JVM in a one-off container.
SLOW_PROBES = frozenset({"zookeeper.anonymous-read", "zookeeper.anonymous-write", "zookeeper.plaintext"})

# (probe group, the ids it reports): a group shares its setup (a user, test certificates).
# A KRaft environment's controllers are probed with the brokers' listeners (ports.plaintext,
# tls.*, mtls.*: the CONTROLLER listener refuses plaintext, no certificate and a foreign CA).
GROUPS: tuple[tuple[Callable[[Target], list[ProbeResult]], tuple[str, ...]], ...] = (
    (probe_plaintext, ("ports.plaintext",)),
    (probe_bind_address, ("ports.bind-address",)),
    (probe_legacy_tls, ("tls.v1.0", "tls.v1.1", "tls.weak-cipher")),
    (probe_tls12, ("tls.v1.2",)),
    (probe_renegotiation, ("tls.renegotiation",)),
    (probe_certificates, ("tls.chain", "tls.sans", "tls.expiry")),
    (probe_mtls, ("mtls.admin", "mtls.no-cert", "mtls.foreign-ca", "mtls.expired", "mtls.not-yet-valid")),
    (probe_scram, ("scram.admin", "scram.wrong-password", "scram.unknown-user")),
    (probe_authorization, ("authz.produce", "authz.consume", "authz.create-topic", "authz.alter-acl",
                           "audit.denials-collected")),
    (probe_trail_chains, ("audit.operations-chain", "audit.decisions-chain")),
    (probe_zookeeper, ("zookeeper.anonymous-read", "zookeeper.anonymous-write", "zookeeper.plaintext")),
    (probe_four_letter_words, ("zookeeper.four-letter-words",)),
    (probe_node_certificates_only, ("zookeeper.node-certificates-only",)),
    (probe_containers, ("containers.user", "containers.read-only-rootfs", "containers.cap-drop",
                        "containers.no-new-privileges", "containers.limits")),
    (probe_secrets_in_containers, ("containers.secrets",)),
    (probe_volumes, ("volumes.encrypted", "volumes.mounts")),
)


# Where there is no ZooKeeper (KRaft mode) there is nothing for these to probe.
ZOOKEEPER_PROBES = frozenset(p for p in PROBES if p.startswith("zookeeper."))


def _run_group(group: Callable[[Target], list[ProbeResult]], ids: tuple[str, ...], target: Target) -> list[ProbeResult]:
    """A group's results; a group that breaks fails each of its probes, naming why."""
    try:
        return group(target)
    except Exception as exc:  # noqa: BLE001 - a broken probe is a failed probe, never a passed one
        reason = str(exc).splitlines()[0][:160] if str(exc) else exc.__class__.__name__
        return [result(probe, "probe runs", f"probe error: {reason}", False) for probe in ids]


def _groups(topology: Topology, quick: bool) -> list[tuple[Callable[[Target], list[ProbeResult]], tuple[str, ...]]]:
    return [(g, ids) for g, ids in GROUPS
            if (topology.zookeepers or not set(ids) <= ZOOKEEPER_PROBES) and not (quick and set(ids) <= SLOW_PROBES)]


def probe_ids(topology: Topology, quick: bool = False) -> list[str]:
    """The probes ``run`` reports for an environment of this shape, in scorecard order."""
    return [probe for probe in PROBES if any(probe in ids for _g, ids in _groups(topology, quick))]


def run(env: EnvironmentContext, quick: bool = False, client: docker.DockerClient | None = None) -> Scorecard:
    """Every probe (``quick``: all but SLOW_PROBES) against the running environment."""
    client = client or connect()
    work_dir = Path(tempfile.mkdtemp(prefix=f"secure-kafka-verify-{env.env}-"))
    try:
        target = Target(env, client, work_dir)
        if not any(target.running(node) for node in env.settings.topology.nodes):
            raise SecureKafkaError(f"{env.env} has no running container: run `secure-kafka up {env.env}` first")
        groups = _groups(env.settings.topology, quick)
        fast = [(g, ids) for g, ids in groups if not set(ids) <= SLOW_PROBES]
        slow = [(g, ids) for g, ids in groups if set(ids) <= SLOW_PROBES]
        # Probes wait on the network and the brokers, not on this process: fast groups side by
        # side; then the slow ones (JVMs of their own), so they do not starve the others' timeouts.
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(_run_group, group, ids, target) for group, ids in fast]
            found = {r.probe: r for future in futures for r in future.result()}
        for group, ids in slow:
            found.update({r.probe: r for r in _run_group(group, ids, target)})
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    order = list(PROBES)
    return Scorecard(env.env, env.settings.profile.name, quick, tuple(sorted(found.values(), key=lambda r: order.index(r.probe))))
