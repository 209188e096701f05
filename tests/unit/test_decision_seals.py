"""The decisions trail's seals (ops/decision_seals.py): an untouched trail verifies; a line
edited, deleted, reordered, a tail cut, a day removed are each named; what a killed collector
leaves is put right by the next collection, and what only tampering leaves stops it."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest
from audit_lines import lines, trail_key

from secure_kafka.errors import SecureKafkaError
from secure_kafka.ops.decision_seals import SEAL_BYTES
from secure_kafka.ops.decision_trail import DecisionTrail

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)



@pytest.fixture
def trail(tmp_path):
    """kafka-0 collected on three days (10, then 10, then 10 lines), kafka-1 on one."""
    trail = DecisionTrail(tmp_path / "decisions", trail_key)
    for day in range(3):
        trail.append("kafka-0", lines(0, 10 * (day + 1)), NOW + dt.timedelta(days=day))
    trail.append("kafka-1", lines(0, 5), NOW)
    return trail


def segment(trail: DecisionTrail, day: int, node: str = "kafka-0"):
    return trail.directory / node / f"2026-12-{6 + day:02d}.log"


def edit_lines(path, change) -> None:
    text = path.read_text().splitlines(keepends=True)
    path.write_text("".join(change(text)))


def test_an_untouched_trail_verifies_every_line(trail):
    verdict = trail.verify()
    assert verdict.ok and verdict.entries == 35, verdict.problem


def edited(text):
    text[3] = text[3].replace("Denied", "Allowed")
    return text


def deleted(text):
    return text[:3] + text[4:]


def reordered(text):
    return text[:3] + [text[4], text[3]] + text[5:]


@pytest.mark.parametrize("change, named", [
    (edited, "2026-12-07.log line 4: changed, removed or reordered"),
    (deleted, "2026-12-07.log line 4: changed, removed or reordered"),
    (reordered, "2026-12-07.log line 4: changed, removed or reordered"),
    (lambda text: text[:7], "2026-12-07.log: the lines after line 7 were removed"),
    (lambda text: text + ["[2026-12-07 00:00:00,000] INFO Principal = User:x is Allowed ...\n"],
     "2026-12-07.log line 11: not sealed"),
])
def test_a_changed_line_is_named(trail, change, named):
    edit_lines(segment(trail, 1), change)
    verdict = trail.verify()
    assert not verdict.ok and named in verdict.problem, verdict.problem


def test_a_tail_cut_with_its_seals_is_caught_by_the_head(trail):
    edit_lines(segment(trail, 2), lambda text: text[:6])
    seal = segment(trail, 2).with_suffix(".seal")
    seal.write_bytes(seal.read_bytes()[:6 * SEAL_BYTES])
    verdict = trail.verify()
    assert "ends at 2026-12-08 line 6, its head says 2026-12-08 line 10" in verdict.problem


def test_a_removed_day_is_named(trail):
    segment(trail, 1).unlink()
    segment(trail, 1).with_suffix(".seal").unlink()
    assert "2026-12-08.log line 1: changed, removed or reordered (or the segment before it was removed)" \
        in trail.verify().problem
    segment(trail, 0).unlink()
    assert "2026-12-06.log: removed (the chain starts there)" in trail.verify().problem


def test_a_day_moved_to_another_node_or_an_edited_head_is_caught(trail):
    shutil.copy(segment(trail, 0), segment(trail, 0, "kafka-1"))
    shutil.copy(segment(trail, 0).with_suffix(".seal"), segment(trail, 0, "kafka-1").with_suffix(".seal"))
    assert "kafka-1/2026-12-06.log line 1: changed" in trail.verify().problem
    head = trail.directory / "kafka-0" / "head.json"
    data = json.loads(head.read_text())
    head.write_text(json.dumps({**data, "lines": 9}))
    assert "head.json: changed after it was written" in DecisionTrail(trail.directory, trail_key).verify().problem


def test_another_key_verifies_nothing(trail):
    assert not DecisionTrail(trail.directory, lambda: b"another key").verify().ok


def test_lines_written_but_not_sealed_are_cut_and_collected_once_again(trail):
    with open(segment(trail, 2), "a") as f:  # the collector died after its lines, before their seals
        f.write("".join(f"{line}\n" for line in lines(30, 33)) + lines(33, 34)[0][:50])
    assert trail.append("kafka-0", lines(0, 35), NOW + dt.timedelta(days=2)).lines == tuple(lines(30, 35))
    assert segment(trail, 2).read_text().splitlines()[-5:] == lines(30, 35)
    assert trail.verify().ok


def test_seals_written_but_the_head_not_moved_are_taken_over(trail):
    head = trail.directory / "kafka-0" / "head.json"
    before = head.read_bytes()
    trail.append("kafka-0", lines(0, 34), NOW + dt.timedelta(days=3))  # a new day's lines and seals...
    head.write_bytes(before)  # ...and the head never moved
    assert trail.append("kafka-0", lines(0, 36), NOW + dt.timedelta(days=3)).lines == tuple(lines(34, 36))
    assert trail.verify().ok and trail.verify().entries == 41


def test_a_torn_seal_is_cut_with_its_line(trail):
    head = trail.directory / "kafka-0" / "head.json"
    before = head.read_bytes()
    trail.append("kafka-0", lines(0, 34), NOW + dt.timedelta(days=2))
    seal = segment(trail, 2).with_suffix(".seal")
    seal.write_bytes(seal.read_bytes()[:-5])  # the collector died in the seals' write...
    head.write_bytes(before)  # ...before the head moved
    assert trail.append("kafka-0", lines(0, 34), NOW + dt.timedelta(days=2)).lines == tuple(lines(33, 34))
    assert trail.verify().ok and trail.verify().entries == 39


@pytest.mark.parametrize("tamper, message", [
    (lambda seal: seal.write_bytes(seal.read_bytes() + bytes(SEAL_BYTES)), "seals without their lines"),
    (lambda seal: seal.with_suffix(".log").write_text(""), "shorter than its head says"),
    (lambda seal: (seal.parent / "head.json").unlink(), "head.json is missing but kafka-0's lines are sealed"),
    (lambda seal: seal.with_suffix(".log").unlink(), "2026-12-08.log: removed"),
])
def test_what_only_tampering_leaves_stops_that_nodes_collection(trail, tamper, message):
    tamper(segment(trail, 2).with_suffix(".seal"))
    with pytest.raises(SecureKafkaError, match=message):
        trail.append("kafka-0", lines(0, 40), NOW + dt.timedelta(days=2))
    assert trail.append("kafka-1", lines(0, 6), NOW).lines == tuple(lines(5, 6))  # the others go on


def test_a_trail_collected_before_seals_is_sealed_as_it_is(tmp_path):
    node = tmp_path / "decisions" / "kafka-0"
    node.mkdir(parents=True)
    (node / "2026-12-06.log").write_text("".join(f"{line}\n" for line in lines(0, 10)) + "torn")
    trail = DecisionTrail(tmp_path / "decisions", trail_key)
    assert trail.append("kafka-0", lines(0, 12), NOW).lines == tuple(lines(10, 12))
    assert trail.verify().ok and trail.verify().entries == 12


def test_retention_keeps_the_rest_verifiable_also_when_cut_short(trail, tmp_path):
    first, first_seal = segment(trail, 0), segment(trail, 0).with_suffix(".seal")
    kept = {path: path.read_bytes() for path in (first, first_seal)}
    assert [p.name for p in trail.prune(1, (NOW + dt.timedelta(days=2)).date())] == ["2026-12-06.log"]
    assert trail.verify().ok and trail.verify().entries == 25
    for path, data in kept.items():  # a prune cut short after the head moved: its day is still there
        path.write_bytes(data)
    assert trail.verify().ok and trail.verify().entries == 25
    assert [p.name for p in trail.prune(1, (NOW + dt.timedelta(days=2)).date())] == ["2026-12-06.log"]
    assert trail.verify().ok


@pytest.mark.parametrize("change", [edited, deleted, lambda text: [text[0].replace("Denied", "Allowed")] + text[1:]])
def test_a_line_changed_before_the_end_is_not_taken_for_a_crash(trail, change):
    """Lines that moved before the head's end would look like unsealed lines to cut: refused."""
    edit_lines(segment(trail, 2), change)
    with pytest.raises(SecureKafkaError, match="its last collected line is not where its head says|shorter than its head"):
        trail.append("kafka-0", lines(0, 40), NOW + dt.timedelta(days=2))
    assert not trail.verify().ok


def test_a_same_length_edit_leaves_collection_going_and_verify_names_it(trail):
    edit_lines(segment(trail, 1), lambda text: [text[0].replace("Denied", "DENIED")] + text[1:])
    assert trail.append("kafka-0", lines(0, 31), NOW + dt.timedelta(days=2)).lines == tuple(lines(30, 31))
    assert "2026-12-07.log line 1: changed, removed or reordered" in trail.verify().problem
