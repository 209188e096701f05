"""Authorizer lines for the decisions-trail tests, and the trail key they seal with."""

from __future__ import annotations


def trail_key() -> bytes:
    return b"the trail key of a test"


def lines(first: int, last: int) -> list[str]:
    """Authorizer lines numbered first..last-1, each unique as real ones are (time, principal, resource)."""
    return [f"[2026-12-06 12:00:{n // 1000:02d},{n % 1000:03d}] INFO Principal = User:u{n} is Denied Operation = Describe "
            f"from host = 172.18.0.1 on resource = Topic:LITERAL:t{n} for request = Metadata with resourceRefCount = 1"
            for n in range(first, last)]
