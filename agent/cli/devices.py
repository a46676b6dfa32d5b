"""`guichet devices` and `guichet card read`."""

from __future__ import annotations

import click

from agent.cli.common import _stub


@click.command()
@click.option("--json", "as_json", is_flag=True)
def devices(as_json: bool) -> None:
    """PC/SC readers and serial ports, with what is attached."""
    _stub("devices")


@click.group()
def card() -> None:
    """Cards on the PC/SC reader."""


@card.command("read")
@click.option("--reader", default=None)
@click.option("--timeout", type=float, default=None)
@click.option("--json", "as_json", is_flag=True)
def card_read(reader: str | None, timeout: float | None, as_json: bool) -> None:
    """Wait for a card and read it (masked PAN only)."""
    _stub("card read")
