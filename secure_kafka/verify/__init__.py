"""``secure-kafka verify``: security probes against a running environment and their scorecard.

``probes`` holds the low-level probes (raw Kafka requests, TLS handshakes with a chosen
offer, ZooKeeper's shell); ``scorecard`` the probe ids, results and their scorecard;
``target`` what the probes look at; ``network``, ``auth``, ``zookeeper`` and ``host`` the
probe groups; ``checks`` the groups' catalogue and ``run``.
"""

from .checks import GROUPS, SLOW_PROBES, probe_ids, run
from .scorecard import PROBES, ProbeResult, Scorecard, result
from .zookeeper import zookeeper_verdict

__all__ = ["GROUPS", "PROBES", "SLOW_PROBES", "ProbeResult", "probe_ids", "Scorecard", "result", "run", "zookeeper_verdict"]
