"""Where a broker's CPU goes: a Java Flight Recorder recording of a running broker container,
started and stopped from the host, and its CPU samples summed by what the code does.

The host's ``jcmd`` attaches to the container's JVM through /proc (the JDK knows container PID
namespaces); the recording is written inside the container's /tmp and read back the same way.
``jfr print`` turns it into JSON. Each CPU sample counts for the category of its innermost frame
(self time), so the shares add up to 100 % of the Java time sampled.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

# First match wins: (category, prefixes of the innermost frame's class name).
CATEGORIES = (
    ("TLS records (sun.security.ssl)", ("sun.security.ssl.",)),
    ("ciphers, MACs, hashes (JCE)", ("com.sun.crypto.provider.", "sun.security.provider.", "javax.crypto.",
                                     "sun.security.util.", "sun.security.ec.")),
    ("socket and buffer I/O (NIO)", ("sun.nio.", "java.nio.")),
    ("SASL/SCRAM", ("org.apache.kafka.common.security.", "javax.security.sasl.")),
    ("Kafka network layer", ("org.apache.kafka.common.network.", "kafka.network.")),
    ("records, CRC, compression", ("org.apache.kafka.common.record.", "org.apache.kafka.common.compress.",
                                   "org.apache.kafka.common.utils.Crc", "java.util.zip.", "net.jpountz.",
                                   "com.github.luben.")),
    ("log and replication", ("kafka.log.", "org.apache.kafka.storage.", "kafka.cluster.", "kafka.server.",
                             "org.apache.kafka.server.")),
    ("memory copies, collections, JDK", ("java.", "jdk.", "sun.")),
)
OTHER = "other (Kafka, Scala, logging)"


@contextlib.contextmanager
def recording(api, container: str, destination: Path) -> Iterator[None]:
    """Records the container's JVM (JFR's ``profile`` settings: a CPU sample every 10-20 ms per thread)."""
    pid = str(api.inspect_container(container)["State"]["Pid"])
    inside = "/tmp/secure-kafka-bench.jfr"
    _jcmd(pid, "JFR.start", "name=secure-kafka-bench", "settings=profile")
    try:
        yield
    finally:
        _jcmd(pid, "JFR.stop", "name=secure-kafka-bench", f"filename={inside}")
        source = Path(f"/proc/{pid}/root{inside}")
        destination.write_bytes(source.read_bytes())
        source.unlink()


def _jcmd(pid: str, *command: str) -> None:
    result = subprocess.run(["jcmd", pid, *command], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"jcmd {' '.join(command)} failed: {(result.stdout + result.stderr).strip()[-300:]}")


def category(class_name: str) -> str:
    for name, prefixes in CATEGORIES:
        if class_name.startswith(prefixes):
            return name
    return OTHER


def cpu_samples(path: Path) -> tuple[Counter, Counter]:
    """(samples per category, samples per innermost method) of a recording's CPU samples."""
    printed = subprocess.run(["jfr", "print", "--json", "--events", "jdk.ExecutionSample", str(path)],
                             capture_output=True, text=True, check=True, timeout=300).stdout
    by_category: Counter = Counter()
    by_method: Counter = Counter()
    for event in json.loads(printed)["recording"]["events"]:
        frames = (event["values"].get("stackTrace") or {}).get("frames") or []
        if not frames:
            continue
        method = frames[0]["method"]
        class_name = method["type"]["name"].replace("/", ".")
        by_category[category(class_name)] += 1
        by_method[f"{class_name}.{method['name']}"] += 1
    return by_category, by_method
