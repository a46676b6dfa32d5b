"""`guichet config init|show|check|set`."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import click

from config.loader import (
    ConfigError,
    find_config_path,
    init_config,
    load_config,
    loose_permissions,
    redacted,
    set_value,
)
from config.schema import SECRET_KEYS


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args: object, lazy: dict[str, tuple[str, str, str]], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr, _ = self.lazy[name]
            cmd: click.Command = getattr(importlib.import_module(module), attr)
            return cmd
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, _, help_) in sorted(self.lazy.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _path(ctx: click.Context) -> Path:
    return find_config_path(ctx.find_root().ensure_object(dict).get("config_path"))


def _fail(msg: str, code: int = 2) -> None:
    click.echo(f"guichet: {msg}", err=True)
    raise SystemExit(code)


@click.group("config")
def config_group() -> None:
    """Write, show, check and change the configuration."""


@config_group.command("init")
@click.option("--force", is_flag=True, help="Replace an existing file.")
@click.option("--terminal-id", help="Agency id + counter, e.g. ORAN-07-G2.")
@click.option("--agency-id", help="Agency id, e.g. ORAN-07.")
@click.option("--server-url", help="Billing server URL.")
@click.option("--state-dir", help="Journal directory.")
@click.option("--token", help="This terminal's server token (prefer the prompt: not kept in shell history).")
@click.option("--reader", help="PC/SC reader name (substring); empty = first with a card.")
@click.option("--tpe-port", help="TPE serial port or pyserial URL; empty = none.")
@click.option(
    "--interactive/--no-interactive",
    default=None,
    help="Ask for what the options do not give (default: when stdin is a terminal).",
)
@click.pass_context
def init(
    ctx: click.Context,
    force: bool,
    terminal_id: str | None,
    agency_id: str | None,
    server_url: str | None,
    state_dir: str | None,
    token: str | None = None,
    reader: str | None = None,
    tpe_port: str | None = None,
    interactive: bool | None = None,
) -> None:
    """Write a commented config (mode 0600) with a fresh PAN key; on a terminal, ask the technician."""
    given = {
        "terminal.id": terminal_id,
        "terminal.agency_id": agency_id,
        "server.url": server_url,
        "state.dir": state_dir,
        "server.token": token,
        "cards.reader": reader,
        "tpe.port": tpe_port,
    }
    path = _path(ctx)
    if path.exists() and not force:
        _fail(f"{path}: already exists (use --force to replace it)")
    if interactive if interactive is not None else sys.stdin.isatty():
        from config.enrol import ask

        given.update(ask(given))
    overrides = {k: v for k, v in given.items() if v}
    try:
        init_config(path, force=force, **overrides)
    except ConfigError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"{path}: cannot write: {e.strerror}", 1)
    click.echo(f"wrote {path} (mode 0600; secrets not shown)")


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, as_json: bool) -> None:
    """The config in force, secrets hidden."""
    path = _path(ctx)
    try:
        data = redacted(load_config(path))
    except ConfigError as e:
        _fail(str(e))
        return
    if as_json:
        click.echo(json.dumps({"path": str(path), "config": data}, indent=2))
        return
    click.echo(f"# {path}")
    for section, values in data.items():
        click.echo(f"[{section}]")
        for key, value in values.items():
            click.echo(f"{key} = {json.dumps(value, ensure_ascii=False)}")
        click.echo()


@config_group.command("check")
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate the config; exit 2 naming the key at fault."""
    path = _path(ctx)
    try:
        cfg = load_config(path)
    except ConfigError as e:
        _fail(str(e))
        return
    problems = []
    if loose_permissions(path):
        problems.append(f"{path}: readable by others; it holds secrets: run chmod 600 {path}")
    if not cfg.cards.hmac_key.get_secret_value():
        problems.append("cards.hmac_key: not set; card tokens cannot be made")
    if problems:
        for p in problems:
            click.echo(f"guichet: {p}", err=True)
        raise SystemExit(2)
    click.echo(f"{path}: ok")


@config_group.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.argument("value")
@click.pass_context
def set_cmd(ctx: click.Context, key: str, value: str) -> None:
    """Set KEY (section.name) to VALUE; the file is only written if the result is valid."""
    path = _path(ctx)
    try:
        set_value(path, key, value)
    except ConfigError as e:
        _fail(str(e))
    shown = "(hidden)" if key in SECRET_KEYS else value
    click.echo(f"{key} = {shown}")
