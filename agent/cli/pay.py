"""`guichet pay`, `guichet queue`, `guichet sync`."""

from __future__ import annotations

import click

from agent.cli.common import _stub


@click.command()
@click.argument("references", nargs=-1, required=True)
def pay(references: tuple[str, ...]) -> None:
    """One payment without the UI."""
    _stub("pay")


@click.group()
def queue() -> None:
    """The payments journal and its upload queue."""


@click.command()
@click.option("--once", is_flag=True)
def sync(once: bool) -> None:
    """Upload the queue to the billing server."""
    _stub("sync")
