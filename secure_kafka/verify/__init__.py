"""``secure-kafka verify``: security probes against a running environment and their scorecard.

``probes`` holds the low-level probes (raw Kafka requests, TLS handshakes with a chosen
offer, ZooKeeper's shell); ``checks`` the catalogue, the probe groups and ``run``.
"""

from .checks import (
    GROUPS,
    PROBES,
    SLOW_PROBES,
    ProbeResult,
    Scorecard,
    result,
    run,
    zookeeper_verdict,
)

__all__ = ["GROUPS", "PROBES", "SLOW_PROBES", "ProbeResult", "Scorecard", "result", "run", "zookeeper_verdict"]
