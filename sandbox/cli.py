"""`guichet sandbox ...`: stand-ins for the outside world. Each subcommand lives with what it serves and is
imported only when used (the billing server pulls in FastAPI; a card or a TPE need not)."""

from __future__ import annotations

import click

from config.cli import LazyGroup

SUBCOMMANDS = {
    "serve": ("sandbox.billing.cli", "serve", "The sandbox billing server (the billing API contract)."),
    "card": ("sandbox.cards.cli", "card", "A virtual EMV card inserted into the vpcd reader."),
    "tpe": ("sandbox.tpe.cli", "tpe", "A Concert TPE simulator on a serial port or pty."),
    "printer": ("sandbox.printer.cli", "printer", "A virtual ESC/POS receipt printer; each job a PNG."),
    "smtp": ("sandbox.smtp_sink", "smtp", "A local SMTP sink; each message received a file."),
}


@click.group(cls=LazyGroup, lazy=SUBCOMMANDS)
def sandbox() -> None:
    """Simulated billing server, virtual cards and TPE, for the demo and the tests."""
