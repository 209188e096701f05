"""Kafka's own command-line tools (the Java ones in the runtime image), run by secure-kafka.

Some operations have no librdkafka API: finalizing feature levels after an upgrade
(UpdateFeatures, ``kafka-features``) is one. Such a tool runs in a one-off container of the
environment's image, as the image's unprivileged user with no capabilities, on the host's
network (it reaches the environment through its published listeners on 127.0.0.1, as any
outside client does), reading a client configuration written by ``client_config`` from a
private directory mounted read-only. Passwords stay in that file, never on a command line.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ..errors import SecureKafkaError
from ..verify.probes import ONE_OFF_HARDENING, hand_to_container_user

FEATURE_COMMAND = "org.apache.kafka.tools.FeatureCommand"
_MAPPING_LINE = re.compile(r"^(?P<name>[a-z.]+)=(?P<level>\d+)", re.MULTILINE)
_FEATURE_LINE = re.compile(r"Feature: (?P<name>\S+)\s+SupportedMinVersion: (?P<min>\S+)\s+"
                           r"SupportedMaxVersion: (?P<max>\S+)\s+FinalizedVersionLevel: (?P<finalized>\S+)")


def run_tool(image: str, config_dir: Path | None, *argv: str, stdin: str | None = None,
             timeout_s: int = 120) -> subprocess.CompletedProcess:
    """``argv`` in a one-off container of ``image``; ``config_dir`` (if any) is handed to the
    image's user and mounted read-only at the same path."""
    mount = []
    if config_dir is not None:
        hand_to_container_user(config_dir)
        mount = ["-v", f"{config_dir}:{config_dir}:ro"]
    return subprocess.run(
        ["docker", "run", "--rm", "-i", "--network", "host", *ONE_OFF_HARDENING, *mount, image, *argv],
        input=stdin, capture_output=True, text=True, timeout=timeout_s,
    )


def release_levels(image: str, release: str) -> dict[str, int]:
    """The feature levels Kafka gives a cluster of ``release`` (``kafka-storage version-mapping``)."""
    result = run_tool(image, None, "kafka-storage", "version-mapping", "--release-version", release)
    levels = {m["name"]: int(m["level"]) for m in _MAPPING_LINE.finditer(result.stdout)}
    if result.returncode != 0 or "metadata.version" not in levels:
        raise SecureKafkaError(f"kafka-storage version-mapping --release-version {release} failed: "
                               f"{(result.stdout + result.stderr).strip()[-300:]}")
    return levels


def features(image: str, config: Path, bootstrap: str, *command: str) -> str:
    """``kafka-features`` (4.x) with the client configuration ``config``: what it printed;
    a named error when it failed."""
    result = run_tool(image, config.parent, "kafka-run-class", FEATURE_COMMAND, "--bootstrap-server", bootstrap,
                      "--command-config", str(config), *command)
    if result.returncode != 0:
        last = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise SecureKafkaError(f"kafka-features {' '.join(command)} failed: {' / '.join(last) or f'exit {result.returncode}'}")
    return result.stdout


def finalized_levels(describe_output: str) -> dict[str, tuple[str, str]]:
    """Each feature of ``kafka-features describe``: (finalized level, highest supported level)."""
    return {m["name"]: (m["finalized"], m["max"]) for m in _FEATURE_LINE.finditer(describe_output)}
