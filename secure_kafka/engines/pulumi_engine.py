"""The Pulumi engine: `pulumi up`/`preview`/`destroy` of the project's program (``infra/``)
through the Automation API, one stack per environment.

State lives in the project (``file://<project>/.pulumi``, gitignored) and stack secrets use
the passphrase provider, so no Pulumi Cloud account is needed. The program itself builds
the plan, writes rendered files and runs the SCRAM bootstrap (see ``infra/component.py``);
this module only drives the CLI and reads the stack's outputs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import SecureKafkaError
from ..proc import Progress, quiet

INSTALL_HINT = (
    "install the Pulumi CLI (https://www.pulumi.com/docs/install/) and its docker provider "
    "(`pulumi plugin install resource docker`), or use --engine docker (same plan)"
)


def pulumi_home() -> Path:
    return Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")


def docker_plugin_installed(home: Path | None = None) -> bool:
    """Whether the pulumi-docker provider plugin is installed (plugin cache or PATH).

    Looks at the plugin directory rather than running `pulumi plugin ls`: same answer,
    no subprocess, and it works before any stack or backend is configured.
    """
    plugins = (home or pulumi_home()) / "plugins"
    return any(plugins.glob("resource-docker-v*")) or shutil.which("pulumi-resource-docker") is not None


def missing() -> str | None:
    """Why the Pulumi engine cannot run here, or None when it can."""
    if shutil.which("pulumi") is None:
        return "the Pulumi CLI is not installed"
    if not docker_plugin_installed():
        return "the Pulumi docker provider plugin is not installed"
    return None


def choose(requested: str) -> tuple[str, str]:
    """The engine to use for ``requested`` (auto, docker, pulumi) and why, as one line."""
    reason = missing() if requested != "docker" else None
    if requested == "pulumi":
        if reason:
            raise SecureKafkaError(f"{reason}: {INSTALL_HINT}")
        return "pulumi", "engine: pulumi"
    if requested == "auto":
        if reason is None:
            return "pulumi", "engine: pulumi (Pulumi CLI and docker plugin found)"
        return "docker", f"engine: docker ({reason}; the Docker SDK applies the same plan)"
    return "docker", "engine: docker"


class PulumiEngine:
    def __init__(self, project_root: Path, env: str, progress: Progress = quiet):
        self.root = project_root.resolve()
        self.env = env
        self.progress = progress

    @property
    def backend_url(self) -> str:
        return f"file://{self.root / '.pulumi'}"

    def _stack(self, passphrase: str):
        if reason := missing():
            raise SecureKafkaError(f"{reason}: {INSTALL_HINT}")
        from pulumi import automation as auto  # imported here: the Docker engine path never needs it

        (self.root / ".pulumi").mkdir(mode=0o700, exist_ok=True)
        env_vars = {
            "PULUMI_BACKEND_URL": self.backend_url,
            "PULUMI_CONFIG_PASSPHRASE": passphrase,
            "SECURE_KAFKA_PROJECT": str(self.root),
        }
        options = auto.LocalWorkspaceOptions(work_dir=str(self.root), env_vars=env_vars, secrets_provider="passphrase")
        try:
            return auto.create_or_select_stack(stack_name=self.env, work_dir=str(self.root), opts=options)
        except auto.CommandError as exc:
            raise SecureKafkaError(f"pulumi stack {self.env}: {_last_line(exc)}") from None

    def up(self, passphrase: str) -> dict[str, object]:
        """`pulumi up`; returns the stack's plain outputs (secret outputs are left out)."""
        from pulumi import automation as auto

        stack = self._stack(passphrase)
        self.progress(f"pulumi up: stack {self.env} (state in {self.backend_url})")
        try:
            result = stack.up(on_output=self._output, show_secrets=False, suppress_outputs=True)
        except auto.CommandError as exc:
            raise SecureKafkaError(f"pulumi up of {self.env} failed: {_last_line(exc)}") from None
        return {name: out.value for name, out in result.outputs.items() if not out.secret}

    def preview(self, passphrase: str) -> str:
        from pulumi import automation as auto

        stack = self._stack(passphrase)
        try:
            result = stack.preview(on_output=self._output, show_secrets=False)
        except auto.CommandError as exc:
            raise SecureKafkaError(f"pulumi preview of {self.env} failed: {_last_line(exc)}") from None
        return ", ".join(f"{op} {count}" for op, count in sorted(result.change_summary.items())) or "no changes"

    def destroy(self, passphrase: str) -> None:
        from pulumi import automation as auto

        stack = self._stack(passphrase)
        self.progress(f"pulumi destroy: stack {self.env} (data volumes are retained; --purge removes them)")
        try:
            stack.destroy(on_output=self._output, show_secrets=False)
        except auto.CommandError as exc:
            raise SecureKafkaError(f"pulumi destroy of {self.env} failed: {_last_line(exc)}") from None

    def _output(self, line: str) -> None:
        if line.strip():
            self.progress(f"  pulumi: {line.rstrip()}")


def _last_line(exc: Exception) -> str:
    """The last non-empty line of a failed pulumi command (its error), without a traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith(" ")]
    return lines[-1] if lines else exc.__class__.__name__
