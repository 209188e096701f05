"""Both suites: the Pulumi program's modules (``infra/``) importable the way Pulumi runs them
(``infra/__main__.py`` imports ``component`` as a top-level module)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra"))
