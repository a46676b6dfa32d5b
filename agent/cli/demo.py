"""`guichet demo`: the whole counter, simulated."""

from __future__ import annotations

import click

from agent.cli.common import _stub


@click.command()
@click.option("--headless", is_flag=True)
@click.option("--script", type=click.Path(exists=True, dir_okay=False))
def demo(headless: bool, script: str | None) -> None:
    """Everything simulated: sandbox server, virtual reader and cards, TPE simulator, cashier UI."""
    _stub("demo")
