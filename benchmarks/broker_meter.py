"""What a broker's container has used so far: CPU (all, user, kernel) from its cgroup, and its
JVM's read and write system calls from /proc. The files are found once, from one Docker API
call; each reading is then a few file reads, nothing that waits on Docker inside a timed
window (the stats API samples for about a second)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Usage:
    cpu_s: float
    user_s: float
    kernel_s: float
    reads: int
    writes: int


class BrokerMeter:
    def __init__(self, api, container: str):
        info = api.inspect_container(container)
        # cgroup v1 with the cgroupfs driver (this machine), else v2 with systemd's.
        v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{info['Id']}")
        self.cgroup_v1 = v1.exists()
        self.cgroup = v1 if self.cgroup_v1 else Path(f"/sys/fs/cgroup/system.slice/docker-{info['Id']}.scope")
        self.io = Path(f"/proc/{info['State']['Pid']}/io")  # the JVM is the container's first process

    def read(self) -> Usage:
        io = dict(line.split(": ") for line in self.io.read_text().splitlines())
        if self.cgroup_v1:
            ticks = dict(line.split() for line in (self.cgroup / "cpuacct.stat").read_text().splitlines())
            cpu_s = int((self.cgroup / "cpuacct.usage").read_text()) / 1e9
            user_s, kernel_s = int(ticks["user"]) / 100, int(ticks["system"]) / 100  # USER_HZ ticks
        else:
            usec = dict(line.split() for line in (self.cgroup / "cpu.stat").read_text().splitlines())
            cpu_s, user_s, kernel_s = (int(usec[key]) / 1e6 for key in ("usage_usec", "user_usec", "system_usec"))
        return Usage(cpu_s, user_s, kernel_s, int(io["syscr"]), int(io["syscw"]))
