"""``secure-kafka orphans``: leftovers of environments that no longer exist, on this host."""

from __future__ import annotations

from typing import Annotated

import typer

from ..dockerclient import connect
from ..ops import orphans as orphans_mod
from .common import echo_json, progress, reporting

app = typer.Typer()


@app.command()
def orphans(
    remove: Annotated[bool, typer.Option("--remove", help="Remove every orphaned environment's leftovers (live and unknown ones are kept).")] = False,
    json_output: Annotated[bool, typer.Option("--json", help='Print {"format": 1, "environments": [{"project_id", "env", "root", "state", "leftovers": [{"kind", "name"}], "removed"}]}.')] = False,
) -> None:
    """List what this host holds of secure-kafka environments, of every checkout, and which are orphaned.

    A killed run or a deleted checkout leaves containers, networks, Docker volumes, unlocked
    volume mounts (plaintext views of a node's data) and loop devices that no `down` can
    reach. An environment is live while its checkout has Pulumi.<ENV>.yaml (never touched:
    `down` it from there), orphaned once the checkout or the stack file is gone, unknown when
    nothing left names its checkout (listed, never removed). With --remove, each orphaned
    environment's containers, network, volumes, mounts and loop devices are removed.
    """
    with reporting():
        client = connect()
        found = orphans_mod.find(client)
        removed = []
        if remove:
            for environment in found:
                if environment.state == orphans_mod.ORPHANED:
                    orphans_mod.remove(client, environment, progress)
                    removed.append(environment)
    if json_output:
        echo_json({"format": 1, "environments": [
            {**e.to_json(), "removed": e in removed} for e in found]})
        return
    if not found:
        typer.echo("no secure-kafka environment on this host")
        return
    for environment in found:
        counts: dict[str, int] = {}
        for leftover in environment.leftovers:
            counts[leftover.kind] = counts.get(leftover.kind, 0) + 1
        what = ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in counts.items())
        where = str(environment.root) if environment.root else "checkout not named by anything left"
        verdict = "removed" if environment in removed else environment.state
        typer.echo(f"{environment.project_id}/{environment.env:<20} {verdict:<9} {what}  ({where})")
    if not remove and any(e.state == orphans_mod.ORPHANED for e in found):
        typer.echo("next: `secure-kafka orphans --remove` removes the orphaned ones", err=True)
