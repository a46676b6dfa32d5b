"""`guichet sandbox ...`: stand-ins for the outside world. Each subcommand lives with what it serves."""

from __future__ import annotations

import importlib

import click

SUBCOMMANDS = [
    ("sandbox.billing.cli", "serve"),
    ("sandbox.cards.cli", "card"),
    ("sandbox.tpe.cli", "tpe"),
]


@click.group()
def sandbox() -> None:
    """Simulated billing server, virtual cards and TPE, for the demo and the tests."""


for _module, _attr in SUBCOMMANDS:
    try:
        sandbox.add_command(getattr(importlib.import_module(_module), _attr))
    except ModuleNotFoundError as e:
        if not e.name or not e.name.startswith("sandbox."):
            raise
