"""What a leftover's path says of its environment, and when an environment counts as orphaned."""

from __future__ import annotations

from pathlib import Path

import pytest

from secure_kafka.errors import SecureKafkaError
from secure_kafka.model.settings import Project
from secure_kafka.ops import orphans


@pytest.mark.parametrize("target, expected", [
    ("/run/secure-kafka/0123abcd/dev/kafka-0", ("0123abcd", "dev", "kafka-0")),
    ("/run/secure-kafka/0123abcd/ci-7/controller-2", ("0123abcd", "ci-7", "controller-2")),
    ("/run/secure-kafka/0123abcd/dev", None),                    # the environment's directory, not a volume
    ("/run/secure-kafka/0123abcd/dev/kafka-0/data", None),       # below a volume
    ("/run/secure-kafka/not-an-id/dev/kafka-0", None),
    ("/run/secure-kafka/0123abcd/Dev/kafka-0", None),            # no environment has that name
    ("/run/secure-kafka-other/0123abcd/dev/kafka-0", None),
    ("/mnt/0123abcd/dev/kafka-0", None),
])
def test_environment_of_mountpoint(target, expected):
    assert orphans.environment_of_mountpoint(target) == expected


@pytest.mark.parametrize("path, expected", [
    ("/srv/app/.volumes/dev/kafka-0.img", (Path("/srv/app"), "dev")),
    ("/srv/app/.volumes/prod/zk-2.gocryptfs", (Path("/srv/app"), "prod")),
    ("/tmp/x/.volumes/dev/kafka-0.img (deleted)", (Path("/tmp/x"), "dev")),  # losetup's word for a removed image
    ("/srv/app/.volumes/dev/kafka-0.gocryptfs/6smdJZxbcy", None),           # a file inside the storage
    ("/srv/app/.volumes/dev/kafka-0.raw", None),
    ("/srv/app/.volumes/DEV/kafka-0.img", None),
    ("/srv/app/volumes/dev/kafka-0.img", None),
    ("/dev/fuse", None),
])
def test_environment_of_storage(path, expected):
    assert orphans.environment_of_storage(path) == expected


def test_project_root_is_the_ancestor_whose_id_matches(tmp_path):
    root = tmp_path / "checkout"
    project_id = Project(root).id
    paths = [f"/run/secure-kafka/{project_id}/dev/kafka-0/data", str(root / "certs" / "dev" / "runtime" / "kafka-0")]
    assert orphans.project_root(project_id, paths) == root
    # A path of another checkout, or none at all, names no root: the id is the proof.
    assert orphans.project_root(project_id, [str(tmp_path / "other" / "certs" / "dev")]) is None
    assert orphans.project_root(project_id, ["", "/proc/self/fd/21"]) is None


@pytest.mark.parametrize("has_root, stack_file, state", [
    (True, True, orphans.LIVE),
    (True, False, orphans.ORPHANED),       # the stack file was removed: the environment is gone
    (False, False, orphans.UNKNOWN),       # nothing names the checkout: never removed
])
def test_state(tmp_path, has_root, stack_file, state):
    if stack_file:
        (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    found = orphans.HostEnvironment("0123abcd", "dev", tmp_path if has_root else None)
    assert found.state == state


def test_a_deleted_checkout_is_orphaned(tmp_path):
    assert orphans.HostEnvironment("0123abcd", "dev", tmp_path / "gone").state == orphans.ORPHANED


@pytest.mark.parametrize("state_root", ["live", "unknown"])
def test_remove_refuses_what_is_not_orphaned(tmp_path, state_root):
    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    found = orphans.HostEnvironment("0123abcd", "dev", tmp_path if state_root == "live" else None)
    with pytest.raises(SecureKafkaError, match=f"is {state_root}, not orphaned: refusing"):
        orphans.remove(None, found)  # refused before it touches the engine
