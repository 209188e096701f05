"""Benchmark: `secure-kafka audit ENV --since ... --principal ...` over 1 million decisions,
against the "answers in seconds" target of the audit-trail issue (taken as 10 s).

Writes the lines the authorizers write (ZooKeeper mode's and KRaft mode's forms, a tenth of
them denials, 100 principals, a failed login every 1,000 lines) into memory, then times what
the command does once it has the files: parse every line (``parse_log``,
``parse_failed_logins``) and filter (``select``). Reading the files out of the containers
(Docker's ``get_archive``) is not in it.

    .venv/bin/python benchmarks/audit_filter_bench.py [--entries 1000000]

Prints the time of each step, entries per second, and the total's ratio to the target (below
1.0 is within target).
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta, timezone

from secure_kafka.ops import audit

TARGET_SECONDS = 10.0
START = datetime(2026, 12, 1, tzinfo=timezone.utc)


def lines(entries: int) -> str:
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
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    text = lines(args.entries)
    started = time.perf_counter()
    decisions = audit.parse_log(text, "kafka-0")
    parsed = time.perf_counter()
    logins = audit.parse_failed_logins(text, "kafka-0", {19001: "SASL_SSL_EXT"})
    parsed_logins = time.perf_counter()
    since = START + timedelta(milliseconds=10 * args.entries // 2)
    chosen = audit.select(decisions, denied_only=True, since=since, principal="app-10")
    done = time.perf_counter()
    total = done - started
    print(f"{args.entries:,} lines: {len(decisions):,} decisions, {len(logins):,} failed logins")
    print(f"parse decisions      {parsed - started:6.2f} s")
    print(f"parse failed logins  {parsed_logins - parsed:6.2f} s")
    print(f"filter (--denied --since --principal) {done - parsed_logins:6.2f} s -> {len(chosen):,} decisions")
    print(f"total {total:.2f} s, {args.entries / total:,.0f} lines/s; ratio to the {TARGET_SECONDS:.0f} s target: "
          f"{total / TARGET_SECONDS:.2f}")


if __name__ == "__main__":
    main()
