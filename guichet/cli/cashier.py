"""`guichet cashier`: the cashier accounts of this counter (cashiers.db in the state dir).

    guichet cashier list [--json]
    guichet cashier add c0042 --name "Amel B." [--supervisor]      asks the PIN twice, hidden
    echo 4826 | guichet cashier add c0042 --name "Amel B." --pin-stdin
    guichet cashier set-pin c0042 [--pin-stdin]                     a new PIN; lifts a lockout
    guichet cashier unlock c0042                                    after too many wrong PINs
    guichet cashier disable c0042                                   can no longer log in; history kept
    guichet cashier enable c0042

PINs are never command-line arguments (they would sit in the shell history and in `ps`): a hidden
prompt with confirmation on a terminal, or the first line of stdin with --pin-stdin. 4 to 8 digits.
Every change is recorded in the accounts' audit trail with who made it: `cli:<user>` (the sudo user
when run through sudo). Exit status: 0 done, 1 refused (unknown id, already exists, last supervisor),
2 bad usage (malformed id, name or PIN, no way to read the PIN).
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from guichet.cli.common import fail, get_config, print_json

# Errors about what the user typed (exit 2) name one of these fields first; the rest are refusals (exit 1).
_USAGE_FIELDS = ("pin:", "name:", "role:")


def actor() -> str:
    """Who is at the keyboard, as the audit trail records it."""
    user = os.environ.get("SUDO_USER") or ""
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
    return f"cli:{user}"


@contextmanager
def _store(ctx: click.Context, *, create: bool = True) -> Iterator[Any]:
    from agent.cashiers import CashierError, CashierStore
    from agent.errors import StorageError

    cfg = get_config(ctx)
    path = Path(cfg.state.dir) / "cashiers.db"
    if not create and not path.exists():
        yield None
        return
    try:
        store = CashierStore(path, max_attempts=cfg.ui.pin_attempts, lockout_seconds=cfg.ui.lockout_seconds)
    except StorageError as e:
        fail(str(e))  # names the file already
    except (CashierError, OSError) as e:
        fail(f"{path}: {e}")
    try:
        yield store
    finally:
        store.close()


def _refused(e: Exception, cashier_id: str) -> NoReturn:
    """A store error as one line with the right exit status."""
    if isinstance(e, KeyError):
        fail(f"cashier_id: {cashier_id!r} does not exist (guichet cashier list)")
    msg = str(e)
    usage = msg.startswith(_USAGE_FIELDS) or (msg.startswith("cashier_id:") and "must be" in msg)
    fail(msg, usage=usage)


def _read_pin(pin_stdin: bool) -> str:
    from agent.cashiers import PIN_MAX, PIN_MIN

    if pin_stdin:
        line = sys.stdin.readline()
        pin = line.rstrip("\r\n")
        if not pin:
            fail("pin: nothing on stdin (write the PIN on one line)", usage=True)
    elif sys.stdin.isatty():
        pin = click.prompt(
            f"PIN ({PIN_MIN}-{PIN_MAX} digits)", hide_input=True, confirmation_prompt="PIN again", err=True
        )
    else:
        fail("pin: no terminal to ask it on; write it on stdin and pass --pin-stdin", usage=True)
    if not (pin.isascii() and pin.isdigit() and PIN_MIN <= len(pin) <= PIN_MAX):
        fail(f"pin: must be {PIN_MIN} to {PIN_MAX} digits", usage=True)
    return pin


def _row(c: Any) -> dict[str, Any]:
    return {
        "cashier_id": c.cashier_id,
        "name": c.name,
        "role": c.role,
        "active": c.active,
        "locked_until": c.locked_until,
        "failed_attempts": c.failed_attempts,
    }


def _state(c: Any) -> str:
    from datetime import UTC, datetime

    if not c.active:
        return "disabled"
    if c.locked_until and datetime.fromisoformat(c.locked_until) > datetime.now(UTC):
        return f"locked until {c.locked_until[11:19]} UTC"
    return "active"


def _done(as_json: bool, c: Any, what: str) -> None:
    if as_json:
        print_json(_row(c))
    else:
        click.echo(f"{c.cashier_id} ({c.name}, {c.role}): {what}")


pin_stdin_option = click.option(
    "--pin-stdin", is_flag=True, help="Read the PIN from the first line of stdin (scripts); never an argument."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group()
def cashier() -> None:
    """Cashier accounts: add, list, unlock, change PIN, disable."""


@cashier.command("list")
@json_option
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """Every account with its role and state (active, locked, disabled)."""
    with _store(ctx, create=False) as store:
        rows = store.list() if store is not None else []
    if as_json:
        print_json([_row(c) for c in rows])
        return
    if not rows:
        click.echo("no cashier account yet: guichet cashier add ID --name NAME --supervisor")
        return
    width = max(len(c.cashier_id) for c in rows)
    for c in rows:
        click.echo(f"{c.cashier_id:<{width}}  {c.role:<10}  {_state(c):<26}  {c.name}")


@cashier.command()
@click.argument("cashier_id")
@click.option("--name", required=True, help="The name shown on screen and on receipts' Z reports.")
@click.option("--supervisor", is_flag=True, help="May close the day, unlock accounts, reset PINs.")
@pin_stdin_option
@json_option
@click.pass_context
def add(ctx: click.Context, cashier_id: str, name: str, supervisor: bool, pin_stdin: bool, as_json: bool) -> None:
    """Create an account; the PIN is asked twice (hidden)."""
    from agent.cashiers import CashierError, check_id

    try:
        check_id(cashier_id)
    except CashierError as e:
        fail(str(e), usage=True)
    if not name.strip():
        fail("--name: must not be empty", usage=True)
    with _store(ctx) as store:
        if any(c.cashier_id == cashier_id for c in store.list()):
            fail(f"cashier_id: {cashier_id!r} already exists")
        pin = _read_pin(pin_stdin)
        try:
            c = store.add(cashier_id, name, pin, role="supervisor" if supervisor else "cashier", actor=actor())
        except CashierError as e:
            _refused(e, cashier_id)
    _done(as_json, c, "created")


@cashier.command("set-pin")
@click.argument("cashier_id")
@pin_stdin_option
@json_option
@click.pass_context
def set_pin(ctx: click.Context, cashier_id: str, pin_stdin: bool, as_json: bool) -> None:
    """Give an account a new PIN (asked twice, hidden); lifts any lockout."""
    from agent.cashiers import CashierError

    with _store(ctx) as store:
        try:
            store.get(cashier_id)
            pin = _read_pin(pin_stdin)
            store.set_pin(cashier_id, pin, actor=actor())
            c = store.get(cashier_id)
        except (CashierError, KeyError) as e:
            _refused(e, cashier_id)
    _done(as_json, c, "new PIN set")


@cashier.command()
@click.argument("cashier_id")
@json_option
@click.pass_context
def unlock(ctx: click.Context, cashier_id: str, as_json: bool) -> None:
    """Lift a lockout after too many wrong PINs."""
    from agent.cashiers import CashierError

    with _store(ctx) as store:
        try:
            store.unlock(cashier_id, actor=actor())
            c = store.get(cashier_id)
        except (CashierError, KeyError) as e:
            _refused(e, cashier_id)
    _done(as_json, c, "unlocked")


@cashier.command()
@click.argument("cashier_id")
@json_option
@click.pass_context
def disable(ctx: click.Context, cashier_id: str, as_json: bool) -> None:
    """The account can no longer log in; its shifts and history stay. Not the last supervisor."""
    from agent.cashiers import CashierError

    with _store(ctx) as store:
        try:
            c = store.disable(cashier_id, actor=actor())
        except (CashierError, KeyError) as e:
            _refused(e, cashier_id)
    _done(as_json, c, "disabled")


@cashier.command()
@click.argument("cashier_id")
@json_option
@click.pass_context
def enable(ctx: click.Context, cashier_id: str, as_json: bool) -> None:
    """Let a disabled account log in again."""
    from agent.cashiers import CashierError

    with _store(ctx) as store:
        try:
            c = store.enable(cashier_id, actor=actor())
        except (CashierError, KeyError) as e:
            _refused(e, cashier_id)
    _done(as_json, c, "enabled")
