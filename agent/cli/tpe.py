"""`guichet tpe check|pay`."""

from __future__ import annotations

import click

from agent.cli.common import _stub


@click.group()
def tpe() -> None:
    """The serial payment terminal (Concert)."""


@tpe.command("check")
@click.option("--port", required=True)
def tpe_check(port: str) -> None:
    """ENQ/ACK handshake only."""
    _stub("tpe check")
