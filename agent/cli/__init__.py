"""The `guichet` command. Each area registers its commands from its own module.

guichet [--config FILE] COMMAND ...
"""

from __future__ import annotations

import importlib

import click

from agent import __version__

# (module, attribute): one click command or group each; kept in one place so the CLI of DESIGN.md is visible.
COMMANDS = [
    ("agent.cli.run", "run"),
    ("agent.cli.demo", "demo"),
    ("config.cli", "config_group"),
    ("agent.cli.devices", "devices"),
    ("agent.cli.devices", "card"),
    ("agent.cli.tpe", "tpe"),
    ("agent.cli.pay", "pay"),
    ("agent.cli.pay", "queue"),
    ("agent.cli.pay", "sync"),
    ("agent.cli.doctor", "doctor"),
    ("sandbox.cli", "sandbox"),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


for _module, _attr in COMMANDS:
    main.add_command(getattr(importlib.import_module(_module), _attr))
