"""Where a broker's CPU goes: async-profiler in the broker's JVM, started and stopped from the
host, and its CPU samples summed by what the code does and by which threads ran it.

async-profiler (Maven Central, ``tools.profiler:async-profiler``, the ``linux-x64`` jar) sees
Java, JIT-compiled, JVM and native frames: JFR, tried first (session 13), saw Java frames only
and too few samples. The runtime image has a read-only root and ``noexec`` mounts, so the
library is baked into an image of its own, ``<runtime tag>-async-profiler``, made only here; the
benchmark moves its broker onto that image (``broker_variant``). The host's ``jcmd`` loads the
agent through /proc (the JDK knows container PID namespaces) with a command, the same way as
async-profiler's own launcher; the collapsed stacks are written to the container's /tmp and
read back the same way.

CPU sampling falls back from perf events (refused in a container) to a per-thread CPU timer,
so kernel frames are not seen: ``broker_meter`` reads the kernel's part from the cgroup.
Each sample counts for the category of its innermost frame (self time), and for its thread's
group; the shares add up to 100 % of the user-space time sampled.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import broker_variant

PROFILER_VERSION = "4.2"
PROFILER_ARTIFACT = f"tools.profiler:async-profiler:{PROFILER_VERSION}:jar:linux-x64"
LIBRARY = "/opt/async-profiler/libasyncProfiler.so"  # in the profiling image
OUTPUT = "/tmp/secure-kafka-bench.collapsed"  # in the container
CACHE = Path.home() / ".cache" / "secure-kafka" / f"async-profiler-{PROFILER_VERSION}"

# First match wins: (category, prefixes of the innermost frame's name; Java frames as a.b.C.m).
CATEGORIES = (
    ("TLS records (sun.security.ssl)", ("sun.security.ssl.",)),
    ("ciphers, MACs, hashes (JCE)", ("com.sun.crypto.provider.", "sun.security.provider.", "javax.crypto.",
                                     "sun.security.util.", "sun.security.ec.",
                                     # the JIT's AES-NI and carry-less multiply stubs for AES-GCM
                                     "ghash_", "counterMode_", "aescrypt_", "galoisCounterMode_", "sha256_")),
    ("socket and buffer I/O (NIO)", ("sun.nio.", "java.nio.", "Java_sun_nio_", "Java_java_nio_")),
    ("SASL/SCRAM", ("org.apache.kafka.common.security.", "javax.security.sasl.")),
    ("Kafka network layer", ("org.apache.kafka.common.network.", "kafka.network.")),
    ("records, CRC, compression", ("org.apache.kafka.common.record.", "org.apache.kafka.common.compress.",
                                   "org.apache.kafka.common.utils.Crc", "java.util.zip.", "net.jpountz.",
                                   "com.github.luben.")),
    ("log and replication", ("kafka.log.", "org.apache.kafka.storage.", "kafka.cluster.", "kafka.server.",
                             "org.apache.kafka.server.")),
    ("memory copies, collections, JDK (Java)", ("java.", "jdk.", "sun.")),
    ("memory copies (native)", ("__memmove", "__memcpy", "__memset", "memcpy", "memmove", "jbyte_", "jint_",
                                "jlong_", "arrayof_", "_Copy_")),
    ("system call wrappers (libc)", ("__libc_", "__GI_", "read", "write", "epoll_", "syscall", "__poll",
                                     "pthread_", "futex", "__lll_", "___pthread")),
    ("JIT stubs, interpreter", ("Interpreter", "StubRoutines", "vtable", "itable", "I2C", "C2I")),
    ("libc, no symbol (copies, system calls)", ("libc.so",)),
)
OTHER = "other (Kafka, Scala, logging, JVM)"
LIBRARY_NAME = re.compile(r"\.so(\.\d+)*$")
# Whose work it is: (group, substrings of the thread's name).
JIT, GC = "JIT compilers", "garbage collector"
THREAD_GROUPS = (
    ("network threads (TLS, socket I/O)", ("kafka-network-thread",)),
    ("request handlers (log appends)", ("kafka-request-handler",)),
    (JIT, ("CompilerThre",)),  # the kernel's 15-character thread names
    (GC, ("GC Thread", "G1 ")),
)
OTHER_THREADS = "other threads"


def library() -> Path:
    """async-profiler's Linux x64 library."""
    return broker_variant.from_maven(PROFILER_ARTIFACT, CACHE, "linux-x64/libasyncProfiler.so")


def profiling_image(api, runtime_tag: str) -> str:
    """``runtime_tag`` with async-profiler's library at ``LIBRARY``, built once."""
    return broker_variant.variant_image(api, f"{runtime_tag}-async-profiler-{PROFILER_VERSION}",
                                        f"FROM {runtime_tag}\nCOPY libasyncProfiler.so {LIBRARY}\n",
                                        {"libasyncProfiler.so": library()})


@contextlib.contextmanager
def recording(api, container: str, destination: Path) -> Iterator[None]:
    """Samples the container's JVM (every thread's CPU time, every 1 ms of it) into
    ``destination``, as collapsed stacks with the thread's name at their root."""
    pid = str(api.inspect_container(container)["State"]["Pid"])
    _agent(pid, "start,event=cpu,interval=1ms,threads")
    try:
        yield
    finally:
        _agent(pid, f"stop,file={OUTPUT},collapsed")
        source = Path(f"/proc/{pid}/root{OUTPUT}")
        destination.write_bytes(source.read_bytes())
        source.unlink()


def _agent(pid: str, command: str) -> None:
    # Quoted: jcmd would read the '=' in the command as one of its own name=value arguments.
    result = subprocess.run(["jcmd", pid, "JVMTI.agent_load", LIBRARY, f'"{command}"'],
                            capture_output=True, text=True, timeout=60)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or "return code: 0" not in output:
        raise RuntimeError(f"async-profiler {command!r} in JVM {pid}: {output[-300:]}")


def frame_name(frame: str) -> str:
    """A collapsed frame as the categories name it: Java's ``a/b/C.m`` as ``a.b.C.m``; code of a
    library without symbols (``/usr/lib/.../libc.so.6``) by the library's name."""
    if frame.startswith("/"):
        return Path(frame).name
    return frame.replace("/", ".")


def short_name(name: str) -> str:
    """``Class.method`` of a Java frame's name, any other frame's as it is."""
    return ".".join(name.rsplit(".", 2)[-2:]) if name.count(".") >= 2 and not LIBRARY_NAME.search(name) else name


def category(name: str) -> str:
    for label, prefixes in CATEGORIES:
        if name.startswith(prefixes):
            return label
    return OTHER


def thread_group(thread: str) -> str:
    for label, parts in THREAD_GROUPS:
        if any(part in thread for part in parts):
            return label
    return OTHER_THREADS


def cpu_samples(path: Path) -> tuple[Counter, Counter, Counter]:
    """(samples per category, per innermost frame, per thread group) of a collapsed profile."""
    by_category: Counter = Counter()
    by_frame: Counter = Counter()
    by_thread: Counter = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not stack or len(frames) < 2:
            continue
        group, innermost = thread_group(frames[0]), frame_name(frames[-1])
        # The JIT's and the collector's own threads are their work, whatever frame they are in.
        by_category[group if group in (JIT, GC) else category(innermost)] += int(count)
        by_frame[innermost] += int(count)
        by_thread[group] += int(count)
    return by_category, by_frame, by_thread
