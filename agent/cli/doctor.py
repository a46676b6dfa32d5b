"""`guichet doctor`."""

from __future__ import annotations

import click

from agent.cli.common import _stub


@click.command()
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json: bool) -> None:
    """Check the installation and explain what to fix."""
    _stub("doctor")
