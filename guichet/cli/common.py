"""What every `guichet` command shares: the config in force, errors as one line, exit codes.

Exit status: 0 ok, 1 failure (one clear line on stderr), 2 usage or config error.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

import click

from agent import clock
from config import Config, ConfigError, load_config


class Failure(click.ClickException):
    """An operation that failed: one line on stderr, exit 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"guichet: {self.format_message()}", err=True)


class UsageFailure(Failure):
    """Bad usage or configuration: exit 2."""

    exit_code = 2


def fail(message: str, *, usage: bool = False) -> NoReturn:
    raise (UsageFailure if usage else Failure)(message)


def get_config(ctx: click.Context) -> Config:
    """Load the config once per invocation; a bad config is a usage error naming the key."""
    root = ctx.find_root()
    obj = root.ensure_object(dict)
    if "config" not in obj:
        try:
            obj["config"] = load_config(obj.get("config_path"))
        except ConfigError as e:
            fail(str(e), usage=True)
        clock.set_zone(clock.agency_zone(obj["config"]))  # times shown are the agency's, not the machine's
    cfg: Config = obj["config"]
    return cfg


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
