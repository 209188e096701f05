"""The durable decisions trail (ops/decision_trail.py): what is new in a node's rolled audit
log is found by content, appended exactly once, and survives a collector killed mid-write."""

from __future__ import annotations

import datetime as dt
import io
import tarfile

import docker.errors
import pytest
from audit_lines import lines, trail_key

from secure_kafka.build.render import AUDIT_LOG
from secure_kafka.model.topology import Node
from secure_kafka.ops import audit
from secure_kafka.ops.decision_trail import FINGERPRINT_LINES, GAP_PREFIX, DecisionTrail, complete_lines, new_lines

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)



@pytest.mark.parametrize("held, tail, expected, found", [
    (lines(0, 5), [], lines(0, 5), True),  # nothing collected yet: all of it
    (lines(0, 40), lines(4, 20), lines(20, 40), True),  # the block found: what follows it
    (lines(0, 20), lines(4, 20), [], True),  # nothing new
    (lines(15, 40), lines(4, 20), lines(20, 40), True),  # the roll deleted the block's start: its end opens held
    (lines(30, 40), lines(4, 20), lines(30, 40), False),  # rolled past it: all of held, and a gap
    ([], lines(4, 20), [], True),  # a log not written yet: nothing to judge by
    (lines(0, 3) + lines(0, 3) + lines(3, 5), lines(0, 3), lines(3, 5), True),  # after its last occurrence
])
def test_new_lines(held, tail, expected, found):
    assert new_lines(held, tail) == (expected, found)


def test_complete_lines_leave_a_line_being_written():
    assert complete_lines("a\nb\nhalf") == ["a", "b"]
    assert complete_lines("a\n") == ["a"]
    assert complete_lines("") == []


def test_each_line_is_appended_once_as_the_log_grows_and_rolls(tmp_path):
    trail = DecisionTrail(tmp_path / "decisions", trail_key)
    log = lines(0, 100)
    assert len(trail.append("kafka-0", log[:30], NOW).lines) == 30
    assert trail.append("kafka-0", log[:30], NOW).lines == ()  # collected again: nothing new
    assert len(trail.append("kafka-0", log[:70], NOW).lines) == 40
    # The node rolled: the current file starts at line 60; its backup (oldest first) holds 0..60.
    rolled = log[:60] + log[60:100]
    assert len(trail.append("kafka-0", rolled, NOW).lines) == 30
    assert audit.decisions_in(trail.texts()) == audit.parse_log("\n".join(log), "kafka-0")
    assert trail.gaps() == []


def test_a_log_rolled_past_the_last_collection_is_taken_whole_with_a_gap_line(tmp_path):
    trail = DecisionTrail(tmp_path / "decisions", trail_key)
    trail.append("kafka-0", lines(0, 30), NOW)
    collected = trail.append("kafka-0", lines(50, 60), NOW)
    assert collected.gap and len(collected.lines) == 10
    assert len(trail.gaps()) == 1 and "kafka-0's audit log no longer holds the last line" in trail.gaps()[0]
    assert [d.principal for d in audit.decisions_in(trail.texts())] == [f"User:u{n}" for n in [*range(30), *range(50, 60)]]
    # The gap line is the trail's own: the next collection finds its place past it.
    assert trail.append("kafka-0", lines(50, 70), NOW).lines == tuple(lines(60, 70))


def test_a_collector_killed_mid_write_leaves_a_torn_line_that_is_cut_and_collected_again(tmp_path):
    trail = DecisionTrail(tmp_path / "decisions", trail_key)
    trail.append("kafka-0", lines(0, 10), NOW)
    segment = tmp_path / "decisions" / "kafka-0" / "2026-12-06.log"
    with open(segment, "a") as f:
        f.write(lines(10, 11)[0][:40])  # the write that died
    assert trail.append("kafka-0", lines(0, 12), NOW).lines == tuple(lines(10, 12))
    assert segment.read_text() == "".join(f"{line}\n" for line in lines(0, 12))


def test_nodes_are_kept_apart_and_days_are_segments(tmp_path):
    trail = DecisionTrail(tmp_path / "decisions", trail_key)
    trail.append("kafka-0", lines(0, 5), NOW)
    trail.append("controller-0", lines(0, 5), NOW)  # the same lines on another node are its own
    trail.append("kafka-0", lines(0, 8), NOW + dt.timedelta(days=1))
    assert trail.nodes() == ["controller-0", "kafka-0"]
    assert sorted(p.name for p in (tmp_path / "decisions" / "kafka-0").glob("*.log")) == ["2026-12-06.log", "2026-12-07.log"]
    assert len(audit.decisions_in(trail.texts())) == 13
    # `--since` a day reads that day's segments and later ones only.
    assert [node for node, _ in trail.texts(NOW + dt.timedelta(days=1, hours=1))] == ["kafka-0"]


def test_the_fingerprint_spans_segments(tmp_path):
    trail = DecisionTrail(tmp_path / "decisions", trail_key)
    trail.append("kafka-0", lines(0, 10), NOW)
    trail.append("kafka-0", lines(0, 12), NOW + dt.timedelta(days=1))  # 2 lines on the second day
    assert trail.tail("kafka-0") == lines(0, 12)[-FINGERPRINT_LINES:]
    assert trail.append("kafka-0", lines(0, 13), NOW + dt.timedelta(days=1)).lines == tuple(lines(12, 13))


def test_retention_drops_old_days_but_never_a_nodes_newest_segment(tmp_path):
    trail = DecisionTrail(tmp_path / "decisions", trail_key)
    for day in range(5):
        trail.append("kafka-0", lines(0, 10 * (day + 1)), NOW + dt.timedelta(days=day))
    trail.append("kafka-1", lines(0, 3), NOW)
    removed = trail.prune(2, (NOW + dt.timedelta(days=4)).date())
    assert sorted(p.name for p in removed) == ["2026-12-06.log", "2026-12-07.log"]
    assert sorted(p.name for p in (tmp_path / "decisions" / "kafka-0").glob("*.log")) == \
        ["2026-12-08.log", "2026-12-09.log", "2026-12-10.log"]
    assert [p.name for p in (tmp_path / "decisions" / "kafka-1").glob("*.log")] == ["2026-12-06.log"]
    # What stays still says where collection stopped: nothing is collected twice.
    assert trail.append("kafka-0", lines(0, 50), NOW + dt.timedelta(days=4)).lines == ()


def test_gap_lines_are_not_decisions():
    assert audit.parse_line(f"{GAP_PREFIX}2026-12-06T12:00:00+00:00 kafka-0's audit log ...", "kafka-0") is None


def test_the_tail_and_recent_lines_are_read_from_the_end_of_a_large_segment(tmp_path):
    trail = DecisionTrail(tmp_path / "decisions", trail_key)
    log = lines(0, 3000)  # about 600 KiB: many chunks
    trail.append("kafka-0", log, NOW)
    assert trail.tail("kafka-0") == log[-FINGERPRINT_LINES:]
    recent = trail.recent(max_bytes=100_000)
    assert [node for node, _ in recent] == ["kafka-0"]
    recent_lines = recent[0][1].splitlines()
    assert recent_lines == log[-len(recent_lines):] and 100_000 <= sum(len(x) + 1 for x in recent_lines) < 100_000 + 64 * 1024


class FakeContainer:
    """``get_archive`` over a dict of files, as Docker answers it (a tar of the one file); a
    ``roll`` callback may change the files after a given read, as a broker rolling would."""

    def __init__(self, files: dict[str, list[str]], roll=None):
        self.files, self.reads, self.roll = files, [], roll

    def get_archive(self, path: str):
        self.reads.append(path.rpartition("/")[2])
        if self.roll:
            self.roll(self)
        if path not in self.files:
            raise docker.errors.NotFound(path)
        data = "".join(f"{line}\n" for line in self.files[path]).encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(path.rpartition("/")[2])
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        return iter([buffer.getvalue()]), {}


NODE = Node("kafka-0", "broker", 0, "sk-dev-x-kafka-0", "sk-dev-x")
LOG = AUDIT_LOG


def rolled_log() -> dict[str, list[str]]:
    """A log rolled three times: .3 oldest, then .2, .1, and the current file."""
    return {f"{LOG}.3": lines(0, 10), f"{LOG}.2": lines(10, 20), f"{LOG}.1": lines(20, 30), LOG: lines(30, 35)}


def test_the_current_file_alone_is_read_when_it_holds_the_tail():
    container = FakeContainer(rolled_log())
    assert audit.held_lines(container, NODE, lines(25, 32)) == lines(30, 35)  # the block ends in the current file
    assert container.reads == ["kafka-authorizer.log"]


def test_rolled_files_are_read_newest_first_until_one_holds_the_tail():
    container = FakeContainer(rolled_log())
    held = audit.held_lines(container, NODE, lines(12, 18))
    assert held == lines(10, 35)  # .2, .1 and the current file; not .3
    assert "kafka-authorizer.log.3" not in container.reads
    assert container.reads[-1] == "kafka-authorizer.log.1"  # read again: no roll in between


def test_without_a_tail_every_file_is_read_oldest_first():
    assert audit.held_lines(FakeContainer(rolled_log()), NODE) == lines(0, 35)


def test_a_roll_during_the_walk_is_seen_and_the_walk_repeated():
    def roll_once(container):
        if len(container.reads) == 3 and not getattr(container, "rolled", False):
            files = container.files  # .2 just read; now everything moves down one
            files[f"{LOG}.4"], files[f"{LOG}.3"], files[f"{LOG}.2"], files[f"{LOG}.1"] = \
                files[f"{LOG}.3"], files[f"{LOG}.2"], files[f"{LOG}.1"], files[LOG]
            files[LOG] = lines(35, 37)
            container.rolled = True

    container = FakeContainer(rolled_log(), roll=roll_once)
    assert audit.held_lines(container, NODE, lines(2, 8)) == lines(0, 37)


MIXED = [f"[2026-12-06 12:00:0{second},500] INFO Principal = User:{who} is {verdict} Operation = Write from host = "
         "172.18.0.1 on resource = Topic:LITERAL:t for request = Produce with resourceRefCount = 1"
         for second, who, verdict in [(1, "alice", "Denied"), (2, "bob", "Allowed"), (3, "alice", "Allowed"),
                                      (3, "alice", "Denied"), (4, "bob", "Denied")]]


@pytest.mark.parametrize("filters, count", [
    ({}, 6),
    ({"denied_only": True}, 4),
    ({"principal": "alice"}, 4),
    ({"principal": "User:bob", "denied_only": True}, 1),
    ({"since": NOW + dt.timedelta(seconds=3, milliseconds=200)}, 3),  # the lines of 12:00:03 pass
    ({"since": NOW + dt.timedelta(seconds=3, milliseconds=600)}, 1),  # same second, later: they do not
    ({"since": (NOW + dt.timedelta(seconds=2)).astimezone(dt.timezone(dt.timedelta(hours=2)))}, 4),  # any time zone
], ids=repr)
def test_filtered_reading_parses_only_lines_that_can_pass_and_agrees_with_select(filters, count):
    texts = [("kafka-0", "\n".join(MIXED) + "\n"), ("kafka-1", "a line of no decision\n" + MIXED[0] + "\n")]
    everything = audit.parse_log(texts[0][1], "kafka-0") + audit.parse_log(texts[1][1], "kafka-1")
    found = audit.decisions_in(texts, **filters)
    assert found == audit.select(everything, **filters) and len(found) == count
