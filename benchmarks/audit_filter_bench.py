"""Benchmark: `secure-kafka audit ENV --since ... --principal ...` over 1 million decisions,
against the "answers in seconds" target of the audit-trail issue (taken as 10 s).

Writes the lines the authorizers write (ZooKeeper mode's and KRaft mode's forms, a tenth of
them denials, 100 principals, a failed login every 1,000 lines) into an environment's durable
trail (``DecisionTrail``, in a temporary directory), then times what the command does after
its collection: read the trail, then filter it (``decisions_in`` with the filters: only lines
whose text can pass are parsed) and, for comparison, parse every line and filter afterwards
(``select``), and parse the failed logins (``--failed-logins``); also the append itself (every
line sealed, ``ops/decision_seals.py``) and ``audit verify`` over the whole trail. The collection itself (new lines only, out of the containers) is
measured on a real cluster by ``audit_cost_bench.py``.

    .venv/bin/python benchmarks/audit_filter_bench.py [--entries 1000000]

Prints the time of each step, entries per second, and the total's ratio to the target (below
1.0 is within target).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from secure_kafka.ops import audit
from secure_kafka.ops.decision_trail import DecisionTrail

TARGET_SECONDS = 10.0
START = datetime(2026, 12, 1, tzinfo=timezone.utc)


def lines(entries: int) -> list[str]:
    out = []
    for i in range(entries):
        when = (START + timedelta(milliseconds=10 * i)).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
        if i % 1000 == 999:
            out.append(f"[{when}] INFO [SocketServer listenerType=BROKER, nodeId=0] Failed authentication with "
                       f"/172.21.0.1 (channelId=172.21.0.3:19001-172.21.0.1:{30000 + i % 30000}-3-14) "
                       f"(Authentication failed: invalid credentials for user app-{i % 100} with SASL mechanism SCRAM-SHA-512)")
            continue
        verdict = "Denied" if i % 10 == 0 else "Allowed"
        operation = "Write" if i % 2 else "DESCRIBE"  # AclAuthorizer's spelling and StandardAuthorizer's
        rule = " based on rule DefaultRule(DENIED)" if operation.isupper() else ""
        out.append(f"[{when}] INFO Principal = User:app-{i % 100} is {verdict} {'operation' if rule else 'Operation'} = "
                   f"{operation} from host = 172.21.0.1 on resource = Topic:LITERAL:orders-{i % 7} for request = "
                   f"Produce with resourceRefCount = 1{rule}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sk-bench-trail-") as directory:
        trail = DecisionTrail(Path(directory), lambda: b"a benchmark's trail key")
        written = lines(args.entries)
        appending = time.perf_counter()
        trail.append("kafka-0", written, START + timedelta(milliseconds=10 * args.entries))
        appended = time.perf_counter()
        since = START + timedelta(milliseconds=10 * args.entries // 2)
        started = time.perf_counter()
        texts = trail.texts(since)
        read = time.perf_counter()
        chosen = audit.decisions_in(texts, denied_only=True, since=since, principal="app-10")
        filtered = time.perf_counter()
        verdict = trail.verify()
        verified = time.perf_counter()
        assert verdict.ok and verdict.entries == args.entries, verdict
    everything = audit.decisions_in(texts)
    parsed = time.perf_counter()
    assert audit.select(everything, denied_only=True, since=since, principal="app-10") == chosen
    logins = [f for node, text in texts for f in audit.parse_failed_logins(text, node, {19001: "SASL_SSL_EXT"})]
    parsed_logins = time.perf_counter()
    total = filtered - started
    print(f"{args.entries:,} lines: {len(everything):,} decisions, {len(logins):,} failed logins")
    print(f"`audit --denied --since --principal`: read the trail {read - started:.2f} s, filter {filtered - read:.2f} s "
          f"-> {len(chosen):,} decisions")
    print(f"for comparison: parse every decision {parsed - verified:.2f} s, every failed login {parsed_logins - parsed:.2f} s")
    print(f"collecting them (one append, each line sealed): {appended - appending:.2f} s; "
          f"`audit verify` (every line against its seal): {verified - filtered:.2f} s")
    print(f"total {total:.2f} s, {args.entries / total:,.0f} lines/s; ratio to the {TARGET_SECONDS:.0f} s target: "
          f"{total / TARGET_SECONDS:.2f}")


if __name__ == "__main__":
    main()
