"""Benchmark: the candidate at-rest mechanisms, measured in one run (root, Linux).

Sequential write (1 MiB blocks, fsync at the end) and cold sequential read of one file
through each of:

- ``plain-loop``: an unencrypted ext4 image, loop-mounted (the baseline of the layout we use);
- ``fscrypt-loop``: the same with ext4 native encryption, through ``secure_kafka.storage.volumes``
  (what ``up`` does: AES-256-XTS contents, AES-256-CTS names, v2 policy);
- ``gocryptfs``: a gocryptfs (FUSE) view of a directory on the host filesystem (skipped with
  a note when ``gocryptfs`` is not installed).

    .venv/bin/python benchmarks/at_rest_mechanisms.py [--mib 512] [--runs 3]

Prints MiB/s and host CPU seconds (all processes, from /proc/stat: kernel crypto and the
FUSE daemon alike) per mechanism, the medians, and each mechanism's ratio to ``plain-loop``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from secure_kafka.model.settings import Project
from secure_kafka.storage import volumes

BLOCK = 2**20


def cpu_seconds() -> float:
    """Busy CPU time of the whole host (user + nice + system + irq + softirq), in seconds."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    return busy / os.sysconf("SC_CLK_TCK")


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def measure(directory: Path, mib: int) -> tuple[float, float, float, float]:
    """(write MiB/s, write CPU s, read MiB/s, read CPU s) of one ``mib``-sized file in ``directory``."""
    block = os.urandom(BLOCK)
    path = directory / "bench.bin"
    drop_caches()
    cpu, start = cpu_seconds(), time.monotonic()
    with open(path, "wb", buffering=0) as f:
        for _ in range(mib):
            f.write(block)
        os.fsync(f.fileno())
    write_s, write_cpu = time.monotonic() - start, cpu_seconds() - cpu
    drop_caches()
    cpu, start = cpu_seconds(), time.monotonic()
    with open(path, "rb", buffering=0) as f:
        while f.read(BLOCK):
            pass
    read_s, read_cpu = time.monotonic() - start, cpu_seconds() - cpu
    path.unlink()
    return mib / write_s, write_cpu, mib / read_s, read_cpu


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def plain_loop(work: Path, mib: int) -> tuple[float, float, float, float]:
    image, mnt = work / "plain.img", work / "plain-mnt"
    with open(image, "wb") as f:
        f.truncate(2 * mib * BLOCK)
    run(["mkfs.ext4", "-q", "-m", "0", str(image)])
    mnt.mkdir()
    run(["mount", "-o", "loop", str(image), str(mnt)])
    try:
        return measure(mnt, mib)
    finally:
        run(["umount", str(mnt)])


def fscrypt_loop(work: Path, mib: int) -> tuple[float, float, float, float]:
    env_volumes = volumes.EncryptedVolumes(work, work / "certs", "atrestbench", volumes.run_dir(Project(work).id, "atrestbench"),
                                           ("bench",), 2 * mib // 1024 + 1,
                                           lambda: "benchmark-passphrase", backend=volumes.FscryptLoopBackend())
    env_volumes.open()
    try:
        return measure(env_volumes.volume("bench").plaintext, mib)
    finally:
        env_volumes.destroy()


def gocryptfs(work: Path, mib: int) -> tuple[float, float, float, float]:
    cipher, plain, passfile = work / "gocrypt-cipher", work / "gocrypt-plain", work / "gocrypt-pass"
    cipher.mkdir()
    plain.mkdir()
    passfile.write_text("benchmark-passphrase\n")
    run(["gocryptfs", "-init", "-q", "-passfile", str(passfile), str(cipher)])
    # allow_other: what a Docker bind mount of the FUSE view would need.
    run(["gocryptfs", "-q", "-allow_other", "-passfile", str(passfile), str(cipher), str(plain)])
    try:
        return measure(plain, mib)
    finally:
        run(["fusermount3", "-u", str(plain)])


MECHANISMS = {"plain-loop": plain_loop, "fscrypt-loop": fscrypt_loop, "gocryptfs": gocryptfs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=512, help="file size per run (MiB)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, float, float]]] = {}
    for name, mechanism in MECHANISMS.items():
        if name == "gocryptfs" and not shutil.which("gocryptfs"):
            print(f"{name}: skipped (gocryptfs not installed: apt-get install gocryptfs fuse3)")
            continue
        for i in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="sk-atrest-", dir="/var/tmp") as work:
                figures = mechanism(Path(work), args.mib)
            results.setdefault(name, []).append(figures)
            print(f"{name:13} run {i + 1}: write {figures[0]:7.1f} MiB/s ({figures[1]:5.2f} CPU s)  "
                  f"read {figures[2]:7.1f} MiB/s ({figures[3]:5.2f} CPU s)")
    print(f"\nmedians over {args.runs} runs of {args.mib} MiB (ratio to plain-loop):")
    medians = {name: [statistics.median(r[k] for r in runs) for k in range(4)] for name, runs in results.items()}
    base = medians["plain-loop"]
    for name, m in medians.items():
        print(f"{name:13} write {m[0]:7.1f} MiB/s x{m[0] / base[0]:.2f}, CPU {m[1]:5.2f} s x{m[1] / base[1]:.2f}   "
              f"read {m[2]:7.1f} MiB/s x{m[2] / base[2]:.2f}, CPU {m[3]:5.2f} s x{m[3] / base[3]:.2f}")


if __name__ == "__main__":
    main()
