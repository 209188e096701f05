"""The verify scorecard: table, one-line summary and the stable JSON document."""

from __future__ import annotations

import json
import re

from secure_kafka import verify


def card(*passed: bool, quick: bool = False) -> verify.Scorecard:
    ids = list(verify.PROBES)
    results = tuple(verify.result(ids[i], "refused", "refused by 2 listeners" if ok else "accepted by kafka-0/ssl", ok)
                    for i, ok in enumerate(passed))
    return verify.Scorecard("dev", "dev", quick, results)


def test_probe_catalogue_has_at_least_twenty_probes_with_stable_ids():
    assert len(verify.PROBES) >= 20
    assert all(re.fullmatch(r"[a-z]+\.[a-z0-9.-]+", p) for p in verify.PROBES)
    assert verify.SLOW_PROBES < set(verify.PROBES)
    covered = [probe for _group, ids in verify.GROUPS for probe in ids]
    assert sorted(covered) == sorted(verify.PROBES)  # every probe run by exactly one group


def test_json_document_is_stable():
    document = card(True, False).to_json()
    assert json.loads(json.dumps(document)) == document
    assert document == {
        "format": 1, "env": "dev", "profile": "dev", "set": "full", "passed": False, "total": 2, "failed": 1,
        "probes": [
            {"probe": "ports.plaintext", "checks": verify.PROBES["ports.plaintext"], "expected": "refused",
             "observed": "refused by 2 listeners", "passed": True},
            {"probe": "ports.bind-address", "checks": verify.PROBES["ports.bind-address"], "expected": "refused",
             "observed": "accepted by kafka-0/ssl", "passed": False},
        ],
    }
    assert card(True, quick=True).to_json()["set"] == "quick"


def test_summary_names_the_failures():
    assert card(True, True).summary() == "verify dev: 2/2 probes passed"
    assert card(True, False, False, quick=True).summary() == \
        "verify dev: 1/3 quick probes passed; FAILED: ports.bind-address, tls.v1.0"


def test_table_has_a_row_per_probe_and_wraps_long_cells():
    lines = card(True, False).table().splitlines()
    assert lines[0].split() == ["probe", "expected", "observed", "result"]
    assert lines[2].startswith("ports.plaintext") and lines[2].endswith("PASS")
    assert lines[3].startswith("ports.bind-address") and lines[3].endswith("FAIL")
    long = verify.Scorecard("dev", "dev", False, (verify.result("tls.sans", "x" * 70, "ok", True),))
    rows = long.table(width=60).splitlines()[2:]
    assert len(rows) == 2 and rows[0].endswith("PASS") and rows[1].strip() == "x" * 10


def test_a_broken_probe_fails_every_probe_of_its_group():
    def broken(_target):
        raise RuntimeError("docker went away")

    results = verify._run_group(broken, ("tls.v1.0", "tls.v1.1"), target=None)
    assert [(r.probe, r.passed, r.observed) for r in results] == [
        ("tls.v1.0", False, "probe error: docker went away"), ("tls.v1.1", False, "probe error: docker went away")]
