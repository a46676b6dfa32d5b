"""`guichet run` and `guichet demo`."""

from __future__ import annotations

import click

from agent.cli.common import _stub


@click.command()
@click.option("--headless", is_flag=True, help="No UI: the agent only (sync, devices, service).")
def run(headless: bool) -> None:
    """The agent (systemd runs this); the cashier UI on the terminal unless --headless."""
    _stub("run")
