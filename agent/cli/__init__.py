"""The `guichet` command. Each area registers its commands from its own module.

guichet [--config FILE] COMMAND ...
"""

from __future__ import annotations

import os

import click

from agent import __version__
from config.cli import LazyGroup

# name -> (module, attribute, help): one click command or group each, imported on first use so that
# `guichet pay` does not load the UI or the sandbox server. Kept in one place: the CLI of DESIGN.md.
COMMANDS = {
    "run": ("agent.cli.run", "run", "The agent (systemd runs this); the cashier UI unless --headless."),
    "demo": ("agent.cli.demo", "demo", "Everything simulated: sandbox server, virtual cards, TPE, cashier UI."),
    "config": ("config.cli", "config_group", "Write, show, check and change the configuration."),
    "devices": ("agent.cli.devices", "devices", "PC/SC readers and serial ports, with what is attached."),
    "card": ("agent.cli.devices", "card", "Cards on the PC/SC reader."),
    "tpe": ("agent.cli.tpe", "tpe", "The serial payment terminal (Concert)."),
    "pay": ("agent.cli.pay", "pay", "One payment without the UI."),
    "queue": ("agent.cli.pay", "queue", "The payments journal and its upload queue."),
    "journal": ("agent.cli.journal", "journal", "The journal's health: check it, accept a loss it found."),
    "sync": ("agent.cli.pay", "sync", "Upload the queue to the billing server."),
    "doctor": ("agent.cli.doctor", "doctor", "Check the installation and explain what to fix."),
    "cashier": ("agent.cli.cashier", "cashier", "Cashiers: add, list, unlock, change PIN."),
    "sandbox": ("sandbox.cli", "sandbox", "Simulated billing server, virtual cards and TPE."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="GUICHET_CONFIG",
    help="Config file (default: $GUICHET_CONFIG, /etc/guichet/guichet.toml, then the user config dir).",
)
@click.version_option(__version__, prog_name="guichet")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """guichet: the counter-side payment agent."""
    ctx.ensure_object(dict)["config_path"] = config_path
    # Every command logs through the PAN scrubber; `guichet run` sets its own level and format later.
    from agent.logs import setup_logging

    level = os.environ.get("GUICHET_LOG_LEVEL", "WARNING").upper()
    setup_logging(level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "WARNING")
