"""Enrolment: the questions `guichet config init` asks a technician on a terminal.

    $ sudo guichet --config /etc/guichet/guichet.toml config init
    Agency id (e.g. ORAN-07): ORAN-07
    Counter number (e.g. 2): 2
    Billing server URL [http://127.0.0.1:8765/]: https://billing.seor.dz/
    Terminal token (from the head office; not shown):
    Card reader: 1) Virtual PCD 00 00  2) Virtual PCD 00 01   number, part of a name, or empty for any [any]: 1
    TPE serial port: 1) /dev/ttyACM0   number, path, or empty for none [none]: 1
    wrote /etc/guichet/guichet.toml (mode 0600; token and PAN key not shown)

Every answer is checked against the schema at once and asked again when wrong (bounded). Values given
as options are not asked. Plain English here: config must not import the agent's gettext layer.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import click
from pydantic import ValidationError

from config.schema import ServerConfig, TerminalConfig

MAX_TRIES = 5


def _list_readers() -> list[str]:
    try:
        from smartcard.System import readers

        return [str(r) for r in readers()]
    except Exception:  # noqa: BLE001 - no pcscd, no pyscard: the technician types a name or leaves it empty
        return []


def _list_ports() -> list[str]:
    try:
        from serial.tools import list_ports

        return sorted(p.device for p in list_ports.comports())
    except Exception:  # noqa: BLE001
        return []


def _ask(question: str, check: Callable[[str], str], *, default: str | None = None, hide: bool = False) -> str:
    """Prompt until `check` accepts the answer (it returns the value to store or raises ValueError)."""
    for _ in range(MAX_TRIES):
        raw = click.prompt(question, default=default, hide_input=hide, show_default=not hide and bool(default))
        try:
            return check(str(raw).strip())
        except ValueError as e:
            click.echo(f"  {e}", err=True)
    raise click.ClickException(f"{question}: no valid answer after {MAX_TRIES} tries")


def _schema_error(e: ValidationError) -> str:
    return "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in e.errors())


def check_agency(value: str) -> str:
    try:
        TerminalConfig(agency_id=value)
    except ValidationError as e:
        raise ValueError(f"agency id {value!r}: {_schema_error(e)}") from None
    return value


def terminal_id(agency: str, counter: str) -> str:
    """``ORAN-07`` + ``2`` (or ``G2``) -> ``ORAN-07-G2``: the id printed in receipt numbers."""
    counter = counter.strip().upper()
    if not re.fullmatch(r"G?\d{1,3}", counter):
        raise ValueError(f"counter number {counter!r}: expected a number such as 2 (or G2)")
    tid = f"{agency}-G{int(counter.lstrip('G'))}"
    try:
        TerminalConfig(id=tid)
    except ValidationError as e:
        raise ValueError(f"terminal id {tid!r}: {_schema_error(e)}") from None
    return tid


def check_url(value: str) -> str:
    try:
        return ServerConfig(url=value).url
    except ValidationError as e:
        raise ValueError(f"server URL {value!r}: {_schema_error(e)}") from None


def check_token(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError("the token is one word with no spaces (copy it from the enrolment sheet)")
    return value


def _choose(found: list[str], value: str, what: str, *, must_exist: bool = False) -> str:
    if not value:
        return ""
    if value.isdigit() and found:
        n = int(value)
        if not 1 <= n <= len(found):
            raise ValueError(f"{what}: pick a number from 1 to {len(found)}")
        return found[n - 1]
    if must_exist and "://" not in value and not value.startswith("/dev/"):
        raise ValueError(f"{what} {value!r}: a device path like /dev/ttyACM0, or a URL like socket://host:port")
    return value


def ask(answers: dict[str, str | None]) -> dict[str, str]:
    """Ask for what `answers` lacks; returns dotted config keys -> values for init_config()."""
    out: dict[str, str] = {}
    agency = answers.get("terminal.agency_id") or _ask("Agency id (e.g. ORAN-07)", check_agency)
    out["terminal.agency_id"] = agency
    if answers.get("terminal.id"):
        out["terminal.id"] = str(answers["terminal.id"])
    else:
        out["terminal.id"] = _ask("Counter number (e.g. 2)", lambda v: terminal_id(agency, v))
    out["server.url"] = answers.get("server.url") or _ask(
        "Billing server URL", check_url, default=ServerConfig().url)
    out["server.token"] = answers.get("server.token") or _ask(
        "Terminal token (from the head office; not shown)", check_token, hide=True)
    if answers.get("cards.reader") is None:
        readers = _list_readers()
        menu = "  ".join(f"{i}) {r}" for i, r in enumerate(readers, 1)) or "(none found now)"
        out["cards.reader"] = _ask(f"Card reader: {menu}\n  number, part of a name, or empty for any",
                                   lambda v: _choose(readers, v, "card reader"), default="")
    else:
        out["cards.reader"] = str(answers["cards.reader"])
    if answers.get("tpe.port") is None:
        ports = _list_ports()
        menu = "  ".join(f"{i}) {p}" for i, p in enumerate(ports, 1)) or "(none found now)"
        out["tpe.port"] = _ask(f"TPE serial port: {menu}\n  number, path, or empty for none",
                               lambda v: _choose(ports, v, "TPE port", must_exist=True), default="")
    else:
        out["tpe.port"] = str(answers["tpe.port"])
    return out
