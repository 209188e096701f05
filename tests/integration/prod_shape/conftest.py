"""The prod shape (3 ZooKeeper nodes or KRaft controllers + 3 brokers, RF 3, min ISR 2): one
environment per metadata mode for this whole package, up only while its tests run.

A prod start and stop cost one to two minutes here, so the hardening checks, the faults and the
rotations share it instead of each module paying for its own. What makes that safe: every test
leaves the cluster healthy (the faults through their ``healed`` fixture, the rotations by
finishing or aborting), each traffic test works on a topic of its own, and no test depends on
what another did. This directory is a package (``__init__.py``) so that ``scope="package"``
ends here and not with the session.
"""

from __future__ import annotations

import pytest

from secure_kafka.testing import running_environment


@pytest.fixture(scope="package")
def prod_env(metadata_mode, mode_image, tmp_path_factory):
    with running_environment(tmp_path_factory.mktemp(f"prod-{metadata_mode}-project"), profile="prod",
                             metadata_mode=metadata_mode) as env:
        yield env
