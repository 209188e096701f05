"""The scorecard of ``verify``: the probe catalogue, one result per probe, and how it reads
(table, one-line summary, the stable JSON document). Pure: no network, no Docker."""

from __future__ import annotations

from dataclasses import asdict, dataclass

JSON_FORMAT = 1

# Every probe: id -> what it checks. The order is the scorecard's. Ids are stable (the JSON
# output and users' pipelines rely on them); the README lists them.
PROBES: dict[str, str] = {
    "ports.plaintext": "plaintext Kafka (ApiVersions) on every published port, INTERNAL and CONTROLLER listener",
    "ports.bind-address": "host address of every published port",
    "tls.v1.0": "TLS 1.0 offered (client floor lowered) on every TLS listener",
    "tls.v1.1": "TLS 1.1 offered (client floor lowered) on every TLS listener",
    "tls.v1.2": "TLS 1.2 offered on every TLS listener",
    "tls.weak-cipher": "TLS 1.2 offering only CBC and RSA-key-exchange suites",
    "tls.renegotiation": "a client-initiated renegotiation of a TLS 1.2 session on every TLS listener",
    "tls.chain": "served certificate verifies against the env's CA for the listener's host name",
    "tls.sans": "SANs and subject of every served certificate",
    "tls.expiry": "validity of every served certificate",
    "mtls.admin": "control: the admin's certificate on the mTLS listeners",
    "mtls.no-cert": "no client certificate on the mTLS listeners",
    "mtls.foreign-ca": "a client certificate (CN=admin) from a foreign CA",
    "mtls.expired": "an expired client certificate issued by the env's CA",
    "mtls.not-yet-valid": "a not-yet-valid client certificate issued by the env's CA",
    "scram.admin": "control: the admin's SCRAM login",
    "scram.wrong-password": "SCRAM login as admin with a wrong password",
    "scram.unknown-user": "SCRAM login as a user that does not exist",
    "authz.produce": "produce by a fresh SCRAM user without ACLs",
    "authz.consume": "consume by a fresh SCRAM user without ACLs",
    "authz.create-topic": "topic creation by a fresh SCRAM user without ACLs",
    "authz.alter-acl": "a fresh SCRAM user granting itself an ACL",
    "audit.denials-collected": "the authz probes' own denials, collected into the env's durable decisions trail",
    "audit.operations-chain": "the operations trail's hash chain and MACs (`audit verify`)",
    "audit.decisions-chain": "the decisions trail's sealed lines (`audit verify`)",
    "zookeeper.anonymous-read": "ZooKeeper read over TLS without SASL",
    "zookeeper.anonymous-write": "ZooKeeper write over TLS without SASL",
    "zookeeper.plaintext": "ZooKeeper over plaintext (ports 2181 and 2182), with valid SASL",
    "zookeeper.four-letter-words": "four-letter words (conf, envi, dump, stat, ...) over TLS with a broker's certificate",
    "zookeeper.node-certificates-only": "ZooKeeper's TLS port with the admin's certificate (valid, but not a node's)",
    "containers.user": "user every container runs as",
    "containers.read-only-rootfs": "root filesystem of every container",
    "containers.cap-drop": "Linux capabilities of every container",
    "containers.no-new-privileges": "no-new-privileges of every container",
    "containers.limits": "memory, CPU and pid limits of every container",
    "containers.secrets": "secrets (secret store, passphrase) in container env, args, labels",
    "volumes.encrypted": "every node's data on an unlocked encrypted volume",
    "volumes.mounts": "volume mounts: only for running nodes, nosuid and nodev",
}


@dataclass(frozen=True)
class ProbeResult:
    probe: str  # an id of PROBES
    checks: str
    expected: str
    observed: str
    passed: bool

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def result(probe: str, expected: str, observed: str, passed: bool) -> ProbeResult:
    return ProbeResult(probe, PROBES[probe], expected, observed, passed)


@dataclass(frozen=True)
class Scorecard:
    env: str
    profile: str
    quick: bool
    results: tuple[ProbeResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[ProbeResult]:
        return [r for r in self.results if not r.passed]

    def to_json(self) -> dict[str, object]:
        """The stable ``verify --json`` document (README, "Verify")."""
        return {
            "format": JSON_FORMAT,
            "env": self.env,
            "profile": self.profile,
            "set": "quick" if self.quick else "full",
            "passed": self.passed,
            "total": len(self.results),
            "failed": len(self.failed),
            "probes": [r.to_json() for r in self.results],
        }

    def summary(self) -> str:
        """One line: how many probes passed, and which failed."""
        which = "quick probes" if self.quick else "probes"
        line = f"verify {self.env}: {len(self.results) - len(self.failed)}/{len(self.results)} {which} passed"
        if self.failed:
            line += f"; FAILED: {', '.join(r.probe for r in self.failed)}"
        return line

    def table(self, width: int = 60) -> str:
        """The scorecard: probe, expected, observed, PASS/FAIL; cells longer than ``width`` wrap."""
        header = ("probe", "expected", "observed", "result")
        rows = [(r.probe, r.expected, r.observed, "PASS" if r.passed else "FAIL") for r in self.results]
        widths = [min(width, max(len(row[i]) for row in [header, *rows])) for i in range(4)]
        lines = [_table_line(header, widths), _table_line(tuple("-" * w for w in widths), widths)]
        for row in rows:
            lines.extend(_wrapped_lines(row, widths))
        return "\n".join(lines) + "\n"


def _table_line(cells: tuple[str, ...], widths: list[int]) -> str:
    return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()


def _wrapped_lines(row: tuple[str, ...], widths: list[int]) -> list[str]:
    chunks = [[cell[i:i + w] for i in range(0, len(cell), w)] or [""] for cell, w in zip(row, widths)]
    height = max(len(c) for c in chunks)
    return [_table_line(tuple(c[i] if i < len(c) else "" for c in chunks), widths) for i in range(height)]


def _where(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
