"""The `guichet` command: the composition root. Each area registers its commands from its own module here.

    guichet [--config FILE] COMMAND ...
    guichet run --headless          the service; `guichet run` the cashier UI (guichet/cli/run.py)
    guichet demo                    the sandbox wired to the UI (guichet/cli/demo.py)

Only this package may import every layer (docs/layers.md); the sandbox's commands need the `sandbox` extra,
and without it they say how to install it instead of a traceback.
"""

from __future__ import annotations

import os
from typing import Any

import click

from agent import __version__
from config.cli import LazyGroup
from guichet.cli.common import fail

# name -> (module, attribute, help): one click command or group each. Imported by name on first use for
# start-up time only: `guichet pay` must not load Textual or FastAPI. tests/test_layers.py reads these names
# as imports too, so the arrows stay checked. Kept in one place: the CLI of DESIGN.md.
COMMANDS = {
    "run": ("guichet.cli.run", "run", "The agent (systemd runs this); the cashier UI unless --headless."),
    "demo": ("guichet.cli.demo", "demo", "Everything simulated: sandbox server, virtual cards, TPE, cashier UI."),
    "config": ("config.cli", "config_group", "Write, show, check and change the configuration."),
    "devices": ("guichet.cli.devices", "devices", "PC/SC readers and serial ports, with what is attached."),
    "card": ("guichet.cli.devices", "card", "Cards on the PC/SC reader."),
    "tpe": ("guichet.cli.tpe", "tpe", "The serial payment terminal (Concert)."),
    "pay": ("guichet.cli.pay", "pay", "One payment without the UI."),
    "queue": ("guichet.cli.pay", "queue", "The payments journal and its upload queue."),
    "journal": ("guichet.cli.journal", "journal", "The journal's health: check it, accept a loss it found."),
    "sync": ("guichet.cli.pay", "sync", "Upload the queue to the billing server."),
    "doctor": ("guichet.cli.doctor", "doctor", "Check the installation and explain what to fix."),
    "cashier": ("guichet.cli.cashier", "cashier", "Cashiers: add, list, unlock, change PIN."),
    "day": ("guichet.cli.day", "day", "The day's close: journal, billing server and TPE totals side by side."),
    "receipt": ("guichet.cli.receipt", "receipt", "Receipts: verify a QR seal, test print, reprint, printer status."),
    "sandbox": ("sandbox.cli", "sandbox", "Simulated billing server, virtual cards and TPE."),
}

# What only the sandbox imports: pyproject.toml's `sandbox` extra. A counter install has none of them.
SANDBOX_EXTRA = frozenset({"fastapi", "starlette", "uvicorn"})
SANDBOX_MISSING = (
    "the sandbox is not installed here (a counter install leaves it out): "
    "pip install 'guichet[sandbox]', or ./dev setup in a checkout"
)


class RootGroup(LazyGroup):
    """The top group: a command that reaches for the missing sandbox extra fails with how to get it (exit 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as e:
            if (e.name or "").partition(".")[0] in SANDBOX_EXTRA:
                fail(SANDBOX_MISSING, usage=True)
            raise


@click.group(cls=RootGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
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
