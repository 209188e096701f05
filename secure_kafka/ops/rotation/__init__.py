"""``certs rotate``: zero-downtime rotation of leaf certificates and of the CA.

A rotation moves every *owner* (a node or a client principal) from one *material* to
another. A material says which leaf an owner's keystore holds (``old`` or ``new``) and which
CAs its truststore (and a client's ``ca.crt``) trusts. Leaf rotation is one phase::

    new-leaves      leaf new, trust {current CA}

CA rotation is three, so that at every moment every peer trusts every certificate it can
be shown (on the inter-broker listener Kafka even checks that before a reload)::

    trust-both      leaf old, trust {old CA, new CA}
    new-leaves      leaf new (issued by the new CA), trust {old, new}
    drop-old-ca     leaf new, trust {new CA}; the new CA becomes certs/<env>/ca/

Each phase has three steps: **files** (rewrite the owners' stores by rename; node
directories are bind-mounted as directories, so containers see the new files), **reload**
(brokers: a per-broker AlterConfigs of every TLS listener's keystore/truststore location to
the same path re-reads the changed files, KIP-226; then a real TLS handshake per listener
checks the served serial), **roll** (ZooKeeper nodes, leader last, then brokers, one at a
time, each waiting until the ensemble has the node back and every partition is fully in
sync: ZooKeeper never reloads, and brokers never reload their ZooKeeper client identity).

Progress is kept in ``certs/<env>/rotation/state.json`` (written atomically after every
action), beside the staged material (``new/<owner>/``, the new CA) and a copy of the old
(``old/<owner>/``). An interrupted rotation is continued with ``resume`` or undone with
``abort``, which walks the phases back (restore the old leaves while both CAs are trusted,
then trust the old CA alone). Once ``drop-old-ca`` has started there is no way back: the
old CA is no longer trusted somewhere, so abort refuses and names ``--resume``.

On completion the manifest gets the new generations and the superseded material moves to
``certs/<env>/archive/<owner>/gen-<N>/``; an aborted rotation leaves nothing behind.

Decisions:

- A node that is down when a rotation starts makes it refuse (it would miss the new trust,
  and in CA rotation be locked out at ``drop-old-ca``). A node that does not come back during
  a roll stops the rotation with the reason; the other nodes keep serving.
- Clients that read their CA bundle only at start (librdkafka, Java) must be restarted after
  ``trust-both`` and before ``new-leaves`` of a CA rotation: ``pause_after_trust`` stops
  there until ``resume``. Copies made by ``client-config --out`` are not updated: re-run it.

Layout: ``state`` is the pure state machine (the phases, the steps, ``state.json``),
``orchestrator`` runs it (``Rotation`` and the entry points below), ``docker_cluster`` is the
real cluster it runs against.
"""

from .docker_cluster import DockerCluster
from .orchestrator import (
    Cluster,
    Due,
    Hook,
    Report,
    Rotation,
    abort,
    due_within,
    resume,
    rotate_ca,
    rotate_if_due,
    rotate_leaves,
)
from .state import (
    CA,
    INITIAL,
    LEAF,
    NEW,
    OLD,
    STEPS,
    UNKNOWN,
    Material,
    Phase,
    State,
    abort_phases,
    forward_phases,
    parse_duration,
)

__all__ = [
    "CA", "INITIAL", "LEAF", "NEW", "OLD", "STEPS", "UNKNOWN",
    "Cluster", "DockerCluster", "Due", "Hook", "Material", "Phase", "Report", "Rotation", "State",
    "abort", "abort_phases", "due_within", "forward_phases", "parse_duration",
    "resume", "rotate_ca", "rotate_if_due", "rotate_leaves",
]
