"""`guichet journal`: the journal's health, and a supervisor's acceptance of a loss it found.

    guichet journal check [--json]                         integrity, high-water mark, losses; exit 1 if damaged
    guichet journal accept-loss --supervisor s0001 [--pin-stdin]

A journal that lost committed payments (its high-water mark file `journal.hwm`, or the billing server, had
seen a later receipt number) takes no new payment until a supervisor accepts the loss, after checking the
lost receipts with the server. The acceptance is recorded (who, when) and receipt numbers go on after every
number ever issued. A journal that fails SQLite's integrity check is not accepted this way: restore it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agent import clock
from agent.errors import GuichetError
from guichet.cli.common import fail, get_config, print_json

if TYPE_CHECKING:
    from agent.journal import Journal


@click.group()
def journal() -> None:
    """The payments journal's health: check it, accept a loss."""


def _open(ctx: click.Context) -> Journal:
    from agent.journal import Journal

    cfg = get_config(ctx)
    try:
        return Journal.open(cfg.state.dir, terminal_id=cfg.terminal.id, agency_id=cfg.terminal.agency_id)
    except GuichetError as e:
        fail(str(e))


@journal.command("check")
@click.option("--json", "as_json", is_flag=True, help="The result as JSON.")
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    """SQLite's quick check, the high-water mark, recorded losses and parked outcomes; exit 1 when no payment
    may be taken or a part of the journal cannot be read."""
    unreadable: list[str] = []

    def read(what: str, default: Any, reader: Callable[[], Any]) -> Any:
        # A damaged page can fail any one read: say which, keep the others (one line each, no traceback).
        try:
            return reader()
        except GuichetError as e:
            unreadable.append(f"{what}: {e}")
            return default

    with _open(ctx) as j:
        out: dict[str, Any] = {
            "path": str(j.path),
            "damage": j.damage,
            "last_receipt_number": read("last receipt number", None, j.high_water),
            "parked_outcomes": j.parked,
            "parked": read("parked outcomes", [], j.parked_outcomes),
            "incidents": read("losses", [], j.incidents),
        }
    out["unreadable"] = unreadable
    out["ok"] = out["damage"] is None and not unreadable
    if as_json:
        print_json(out)
    else:
        click.echo(f"journal {out['path']}: {'ok' if out['ok'] else 'DAMAGED'}")
        click.echo(f"last receipt number: {out['last_receipt_number'] or '-'}")
        for i in out["incidents"]:
            who = (f"accepted by {i['accepted_by']} at {clock.display(i['accepted_at'])}" if i["accepted_at"]
                   else "NOT ACCEPTED")
            click.echo(f"loss found {clock.display(i['detected_at'])} ({i['kind']}): receipts {i['journal_seq'] + 1}"
                       f" to {i['expected_seq']}; {who}")
        for p in out["parked"]:
            where = (f"NOT IN THE JOURNAL: {', '.join(p['missing'])}" if p["missing"]
                     else "written to the journal at the next payment or start")
            click.echo(f"parked outcome {p['to']} at {p['at']} for {', '.join(p['payment_ids'])}: {where}")
    for line in unreadable:
        click.echo(line, err=True)
    if not out["ok"]:
        fail(str(out["damage"] or unreadable[0]))


@journal.command("accept-loss")
@click.option("--supervisor", "supervisor_id", required=True, help="The supervisor's cashier id.")
@click.option("--pin-stdin", is_flag=True, help="Read the supervisor's PIN from the first line of stdin.")
@click.pass_context
def accept_loss(ctx: click.Context, supervisor_id: str, pin_stdin: bool) -> None:
    """A supervisor accepts the payments the journal lost (check them with the server first)."""
    from agent.cashiers import CashierError, CashierStore

    cfg = get_config(ctx)
    if pin_stdin:
        pin = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        pin = click.prompt(f"PIN of {supervisor_id}", hide_input=True, err=True)
    else:
        fail("pin: no terminal to ask it on; write it on stdin and pass --pin-stdin", usage=True)
    path = Path(cfg.state.dir) / "cashiers.db"
    if not path.exists():
        fail(f"{path}: no cashier accounts; add a supervisor first (guichet cashier add ID --supervisor)")
    try:
        store = CashierStore(path, max_attempts=cfg.ui.pin_attempts, lockout_seconds=cfg.ui.lockout_seconds)
        try:
            who = store.verify_supervisor(supervisor_id, pin)
        finally:
            store.close()
    except (CashierError, OSError) as e:
        fail(f"supervisor: {e}")
    with _open(ctx) as j:
        try:
            n = j.accept_loss(who.cashier_id)
        except GuichetError as e:
            fail(str(e))
        click.echo(f"{n} loss(es) accepted by {who.cashier_id}; next receipt after {j.high_water() or '-'}")
        if j.damage is not None:
            fail(j.damage)
