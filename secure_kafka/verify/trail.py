"""Probes of the audit trail: the authorization probe's own denials reach the durable decisions
trail (``ops/decision_trail.py``), and both trails' chains and MACs hold."""

from __future__ import annotations

import time

from ..ops import audit
from .scorecard import ProbeResult, result
from .target import Target

COLLECTED_WITHIN_S = 15  # the authorizer logs a decision before it answers; the file is on the volume at once
RECENT_BYTES = 8 * 1024 * 1024  # of each node's newest segment: what was collected a moment ago


def denials_in(texts: list[tuple[str, str]], principal: str) -> list[audit.Decision]:
    return audit.decisions_in(texts, denied_only=True, principal=principal)


def probe_denials_collected(t: Target, principal: str) -> ProbeResult:
    """Collects, then looks for ``principal``'s denials (the authorization probe's user) in the trail."""
    deadline = time.monotonic() + COLLECTED_WITHIN_S
    while True:
        t.env.collect_decisions()
        found = denials_in(t.env.decisions.recent(RECENT_BYTES), principal)
        if found or time.monotonic() > deadline:
            break
        time.sleep(1)
    observed = (f"{len(found)} denials of {principal} collected ({', '.join(sorted({d.operation for d in found}))})"
                if found else f"no denial of {principal} in {t.env.decisions.directory} after {COLLECTED_WITHIN_S} s")
    return result("audit.denials-collected", f"the denials of {principal} in the trail", observed, bool(found))


def probe_trail_chains(t: Target) -> list[ProbeResult]:
    operations, decisions = t.env.trail.verify(), t.env.decisions.verify()
    return [
        result("audit.operations-chain", "every entry as written",
               f"{operations.entries} entries, chain and MACs intact" if operations.ok else operations.problem, operations.ok),
        result("audit.decisions-chain", "every collected line as collected",
               f"{decisions.entries} lines, seals intact" if decisions.ok else decisions.problem, decisions.ok),
    ]
