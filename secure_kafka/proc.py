"""Running external steps (debootstrap, Maven, tar) with progress and useful failures."""

from __future__ import annotations

import collections
import subprocess
from collections.abc import Callable, Sequence

from .errors import SecureKafkaError

__all__ = ["Progress", "quiet", "run_step"]

Progress = Callable[[str], None]


def quiet(_message: str) -> None:
    """A progress sink that drops messages."""


def run_step(step: str, argv: Sequence[str], progress: Progress = quiet, tail: int = 15, **kwargs) -> None:
    """Runs ``argv``, passing each output line to ``progress``.

    On failure the error names the step and carries the last ``tail`` lines of output,
    which is what one needs to see to fix it.
    """
    last = collections.deque(maxlen=tail)
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", **kwargs
        )
    except FileNotFoundError:
        raise SecureKafkaError(f"{step}: {argv[0]} is not installed: install it (see README, setup)") from None
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            last.append(line)
            progress(f"  {step}: {line}")
    if proc.wait() != 0:
        shown = " | ".join(last)
        raise SecureKafkaError(f"{step} failed (exit {proc.returncode}); last output: {shown}")
