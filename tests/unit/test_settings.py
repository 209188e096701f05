"""Stack files: what `init` writes reads back to the same settings, with every key explained."""

from __future__ import annotations

import pytest

from secure_kafka import settings
from secure_kafka.errors import SecureKafkaError
from secure_kafka.profiles import PROFILES


def test_every_key_has_help():
    assert set(settings.KEY_HELP) == set(settings.KEYS)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_written_stack_file_reads_back_identically_with_comments(tmp_path, profile):
    project = settings.Project(tmp_path)
    written = settings.defaults("staging", PROFILES[profile], port_base=19300)
    path = project.write(written)
    assert project.load("staging") == written
    text = path.read_text()
    for key, help_text in settings.KEY_HELP.items():
        assert f"# {help_text}" in text, key


def test_init_refuses_to_overwrite(tmp_path):
    project = settings.Project(tmp_path)
    project.write(settings.defaults("staging", PROFILES["dev"]))
    before = project.stack_file("staging").read_text()
    with pytest.raises(SecureKafkaError, match="exists already"):
        project.write(settings.defaults("staging", PROFILES["prod"]))
    assert project.stack_file("staging").read_text() == before
