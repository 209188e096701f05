"""The Pulumi engine: `pulumi up`/`preview`/`destroy` of the project's program (``infra/``)
through the Automation API, one stack per environment.

State lives in the project (``file://<project>/.pulumi``, gitignored) and stack secrets use
the passphrase provider, so no Pulumi Cloud account is needed. The program maps a plan,
unlocks the volumes, writes rendered files and provisions the cluster (see
``engines/pulumi/program.py`` and ``component.py``); this module only drives the CLI and
reads the stack's outputs.

The program runs *inline*: the Automation API serves it from this process and the CLI
connects to it (``--client``), so no Python language plugin is needed, which is what a CLI
built from source lacks (tools/pulumi/README.md). ``secure-kafka up`` hands over the plan it
prepared (``program.declare``); without one, the project's ``infra/__main__.py`` runs, as a
bare ``pulumi up -s ENV`` of a normal Pulumi install runs it through its language plugin.

Which CLI: the checkout's own build (``.tools/pulumi``, made by ``./run setup``) when it
exists, with its project-local ``PULUMI_HOME`` holding the docker provider; else
``pulumi`` on the PATH with the user's ``PULUMI_HOME``. Plugins are never downloaded.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ...errors import SecureKafkaError
from ...proc import Progress, quiet

__all__ = ["PulumiTools", "tools", "missing", "choose", "StackUpdate", "PulumiEngine"]

INSTALL_HINT = (
    "run `./run setup` in the secure-kafka checkout (it builds the Pulumi CLI and its docker provider), "
    "or install the Pulumi CLI and `pulumi plugin install resource docker`, or use --engine docker (same plan)"
)
# Where `tools/pulumi/build` puts the CLI (bin/) and PULUMI_HOME (home/), in a checkout.
CHECKOUT_TOOLS = Path(__file__).resolve().parents[3] / ".tools" / "pulumi"
PROJECT_NAME = "secure-kafka"


@dataclass(frozen=True)
class PulumiTools:
    cli: Path | None  # the pulumi binary, None when there is none
    home: Path  # PULUMI_HOME: plugins, credentials

    @property
    def docker_plugin_installed(self) -> bool:
        """Whether the docker provider plugin is installed (plugin cache or PATH).

        Looks at the plugin directory rather than running `pulumi plugin ls`: same answer,
        no subprocess, and it works before any stack or backend is configured.
        """
        plugins = self.home / "plugins"
        return any(plugins.glob("resource-docker-v*")) or shutil.which("pulumi-resource-docker") is not None

    def env_vars(self) -> dict[str, str]:
        """What every CLI run gets besides the stack's own variables."""
        # Dynamic providers run `python3 -m pulumi.dynamic`: this interpreter, which has secure_kafka.
        path = [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
        return {
            "PULUMI_HOME": str(self.home),
            "PATH": os.pathsep.join(path),
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
        }


def tools() -> PulumiTools:
    """The checkout's own Pulumi build if there is one, else the user's install."""
    local = CHECKOUT_TOOLS / "bin" / "pulumi"
    if local.is_file():
        return PulumiTools(local, CHECKOUT_TOOLS / "home")
    found = shutil.which("pulumi")
    home = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
    return PulumiTools(Path(found) if found else None, home)


def missing() -> str | None:
    """Why the Pulumi engine cannot run here, or None when it can."""
    found = tools()
    if found.cli is None:
        return "the Pulumi CLI is not installed"
    if not found.docker_plugin_installed:
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


@dataclass(frozen=True)
class StackUpdate:
    outputs: dict[str, object]
    ops: dict[str, str]  # resource name -> create | same | update | replace | delete | ... (Pulumi's step ops)

    @property
    def summary(self) -> str:
        """``create 3, same 5``: the ops counted, as `pulumi` prints them."""
        return ", ".join(f"{op} {n}" for op, n in sorted(Counter(self.ops.values()).items())) or "no resources"

    def changed(self) -> dict[str, str]:
        """The resources whose op is not ``same``."""
        return {name: op for name, op in self.ops.items() if op != "same"}


# The steps of one replacement, in either order (delete-before-replace or not): "replace".
REPLACEMENT_STEPS = {"replace", "create-replacement", "delete-replaced"}


class _Steps:
    """Collects each resource's step ops from the engine's events (``on_event``)."""

    def __init__(self) -> None:
        self._steps: dict[str, list[str]] = {}

    def __call__(self, event) -> None:
        if event.resource_pre_event is not None:
            metadata = event.resource_pre_event.metadata
            if "::pulumi:providers:" in metadata.urn:
                return  # the engine's provider instances: not resources of the program
            op = metadata.op.value if hasattr(metadata.op, "value") else str(metadata.op)
            self._steps.setdefault(metadata.urn.rsplit("::", 1)[-1], []).append(op)

    @property
    def ops(self) -> dict[str, str]:
        return {name: "replace" if REPLACEMENT_STEPS & set(steps) else steps[0] for name, steps in self._steps.items()}


@contextlib.contextmanager
def _project_found_at(root: Path) -> Iterator[None]:
    """The inline program finds its project (``Project.find``) as a CLI-run one would."""
    before = os.environ.get("SECURE_KAFKA_PROJECT")
    os.environ["SECURE_KAFKA_PROJECT"] = str(root)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SECURE_KAFKA_PROJECT", None)
        else:
            os.environ["SECURE_KAFKA_PROJECT"] = before


# The inline program of an update: a function that declares the stack's resources.
Program = Callable[[], None]


def _project_program(program_dir: Path, root: Path) -> Program:
    """The project's ``infra/__main__.py`` as an inline program, run as the CLI would run it."""
    def program() -> None:
        with _project_found_at(root):
            runpy.run_path(str(program_dir), run_name="__main__")
    return program


def _no_program() -> None:
    """What `pulumi destroy` is given: it works from the state alone, but the Automation API asks for a program."""


class PulumiEngine:
    def __init__(self, project_root: Path, env: str, progress: Progress = quiet):
        self.root = project_root.resolve()
        self.env = env
        self.progress = progress

    @property
    def backend_url(self) -> str:
        return f"file://{self.root / '.pulumi'}"

    def _stack(self, passphrase: str, program: Program | None):
        if reason := missing():
            raise SecureKafkaError(f"{reason}: {INSTALL_HINT}")
        from pulumi import (
            automation as auto,  # imported here: the Docker engine path never needs it
        )

        if program is None:
            program_dir = self.root / "infra"
            if not (program_dir / "__main__.py").is_file():
                raise SecureKafkaError(f"{program_dir}/__main__.py not found: copy infra/ from secure-kafka into the project")
            program = _project_program(program_dir, self.root)
        found = tools()
        (self.root / ".pulumi").mkdir(mode=0o700, exist_ok=True)
        env_vars = {
            **found.env_vars(),
            "PULUMI_BACKEND_URL": self.backend_url,
            "PULUMI_CONFIG_PASSPHRASE": passphrase,
            "SECURE_KAFKA_PROJECT": str(self.root),
        }
        options = auto.LocalWorkspaceOptions(
            work_dir=str(self.root), env_vars=env_vars, secrets_provider="passphrase",
            pulumi_command=auto.PulumiCommand(root=str(found.cli.parent.parent)),  # type: ignore[union-attr]
        )

        try:
            return auto.create_or_select_stack(stack_name=self.env, project_name=PROJECT_NAME, program=program, opts=options)
        except auto.CommandError as exc:
            raise SecureKafkaError(f"pulumi stack {self.env}: {_last_line(exc)}") from None

    def up(self, passphrase: str, program: Program | None = None) -> StackUpdate:
        """`pulumi up` of ``program`` (default: the project's ``infra/``, as a bare `pulumi up` runs it):
        the stack's plain outputs (secret outputs are left out) and what it changed."""
        from pulumi import automation as auto

        stack = self._stack(passphrase, program)
        self.progress(f"pulumi up: stack {self.env} (state in {self.backend_url})")
        steps = _Steps()
        try:
            result = stack.up(on_output=self._output, on_event=steps, show_secrets=False, suppress_outputs=True)
        except auto.CommandError as exc:
            raise SecureKafkaError(f"pulumi up of {self.env} failed: {_last_line(exc)}") from None
        return StackUpdate({name: out.value for name, out in result.outputs.items() if not out.secret}, steps.ops)

    def preview(self, passphrase: str, program: Program | None = None) -> StackUpdate:
        """`pulumi preview` of ``program`` (default: ``infra/``): what an update would do (no outputs)."""
        from pulumi import automation as auto

        stack = self._stack(passphrase, program)
        steps = _Steps()
        try:
            stack.preview(on_output=self._output, on_event=steps)
        except auto.CommandError as exc:
            raise SecureKafkaError(f"pulumi preview of {self.env} failed: {_last_line(exc)}") from None
        return StackUpdate({}, steps.ops)

    def destroy(self, passphrase: str) -> StackUpdate:
        """`pulumi destroy`; nothing at all when the stack was never made (an environment the
        Docker engine made): selecting it would create it, and Pulumi rewrites the stack file."""
        from pulumi import automation as auto

        if not self.state_file().exists():
            self.progress(f"pulumi destroy: no stack {self.env} in {self.backend_url}: nothing to destroy")
            return StackUpdate({}, {})
        stack = self._stack(passphrase, _no_program)
        self.progress(f"pulumi destroy: stack {self.env} (data volumes are retained; --purge removes them)")
        steps = _Steps()
        try:
            stack.destroy(on_output=self._output, on_event=steps, show_secrets=False)
        except auto.CommandError as exc:
            raise SecureKafkaError(f"pulumi destroy of {self.env} failed: {_last_line(exc)}") from None
        return StackUpdate({}, steps.ops)

    def state_file(self) -> Path:
        """The stack's state in the local backend (what `pulumi stack export` prints)."""
        return self.root / ".pulumi" / ".pulumi" / "stacks" / PROJECT_NAME / f"{self.env}.json"

    def _output(self, line: str) -> None:
        if line.strip():
            self.progress(f"  pulumi: {line.rstrip()}")


def _last_line(exc: Exception) -> str:
    """The error of a failed pulumi command in one line: its last ``error:`` line, else its last line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:") and "update failed" not in line]
    if errors:
        return errors[-1]
    lines = [line for line in lines if not line.startswith(("File ", "Traceback"))]
    return lines[-1] if lines else exc.__class__.__name__
