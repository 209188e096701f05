"""Stack files: what `init` writes reads back to the same settings, with every key explained."""

from __future__ import annotations

import dataclasses
import json

import pytest

from secure_kafka.errors import SecureKafkaError
from secure_kafka.model import settings
from secure_kafka.model.profiles import PROFILES


def test_every_key_has_help():
    assert set(settings.KEY_HELP) == set(settings.KEYS)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_written_stack_file_reads_back_identically_with_comments(tmp_path, profile):
    project = settings.Project(tmp_path)
    written = settings.defaults("staging", PROFILES[profile], port_base=19300)
    path = project.write(written)
    assert project.load("staging") == dataclasses.replace(written, project_id=project.id)
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


def test_every_form_pulumi_hands_over_reads_as_the_stack_file():
    """`pulumi stack init`/`config set` write strings; a dynamic resource's inputs come back as
    a protobuf Struct, where every number is a float. All read as the native values do."""
    native = settings.to_values(settings.defaults("staging", PROFILES["prod"], port_base=19300))
    as_strings = {k: v if isinstance(v, str) else json.dumps(v) for k, v in native.items()}
    as_struct = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in native.items()}
    expected = settings.from_config("staging", native, "native")
    assert settings.from_config("staging", as_strings, "strings") == expected
    assert settings.from_config("staging", as_struct, "struct") == expected
    assert isinstance(settings.from_config("staging", as_struct, "struct").port_base, int)


@pytest.mark.parametrize("key, value, message", [
    ("brokers", "three", "brokers must be int, got str 'three'"),
    ("brokers", 3.5, "brokers must be int, got float 3.5"),
    ("brokers", True, "brokers must be int, got bool True"),
    ("brokers", "3.0", "brokers must be int"),
    ("allowPublicBind", "1", "allowPublicBind must be bool"),
    ("allowPublicBind", "True", "allowPublicBind must be bool"),
    ("allowPublicBind", 1, "allowPublicBind must be bool"),
    ("tlsVersions", "TLSv1.3", "tlsVersions must be list"),
    ("tlsVersions", '["TLSv1.3"', "tlsVersions must be list"),
    ("portBase", "", "portBase must be int"),
])
def test_nothing_else_is_guessed(key, value, message):
    with pytest.raises(SecureKafkaError, match=message):
        settings.from_config("staging", {"profile": "dev", key: value}, "Pulumi.staging.yaml")
