"""`guichet pay`, `guichet queue status|list|show`, `guichet sync`."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from agent import clock
from agent.ages import age_text
from agent.context import AgentContext
from agent.errors import AlreadyRunning, GuichetError
from agent.journal import Payment
from agent.limits import limit_state
from agent.locks import UploadLock
from agent.scheduler import JobParts, Scheduler
from agent.states import METHODS, State
from agent.sync import SyncReport, SyncWorker, sync_jobs
from config.money import MoneyError, format_amount, parse_amount
from drivers.pan import safe_text
from guichet.cli.common import fail, get_config, print_json
from guichet.cli.run import JOBS


def _open(ctx: click.Context, methods: list[str] | None = None, take_payments: bool = False) -> AgentContext:
    config = get_config(ctx)
    try:
        return AgentContext.open(config, methods, take_payments=take_payments)
    except GuichetError as e:
        fail(str(e))


@contextmanager
def _reading(ctx: click.Context) -> Iterator[AgentContext]:
    """The journal for a read-only command: a read it cannot do (a damaged page) is one line, exit 1."""
    with _open(ctx, []) as actx:
        try:
            yield actx
        except GuichetError as e:
            fail(str(e))


def _describe(p: Payment) -> str:
    return (
        f"{p.receipt_number}  {p.state:<11} {p.bill_reference:<14} "
        f"{format_amount(p.amount, p.currency, with_code=True):>16}  {p.method:<13} {clock.display(p.captured_at)}"
        + ("  offline" if p.captured_offline else "")
    )


@click.command()
@click.argument("references", nargs=-1, required=True)
@click.option("--amount", help="Amount to pay, e.g. 1234.50 (one bill only; default: the full amount due).")
@click.option("--method", type=click.Choice(METHODS), default=None, help="Default: payments.default_method.")
@click.option("--cashier", "cashier_id", default="cli", show_default=True, help="Cashier id recorded.")
@click.option("--json", "as_json", is_flag=True, help="Print the payment(s) as JSON.")
@click.option("--no-upload", is_flag=True, help="Leave the payment queued; do not try an upload round now.")
@click.pass_context
def pay(
    ctx: click.Context,
    references: tuple[str, ...],
    amount: str | None,
    method: str | None,
    cashier_id: str,
    as_json: bool,
    no_upload: bool,
) -> None:
    """One payment without the UI: look up REFERENCE(s), take the money, journal it, queue the upload."""
    from agent.cashiers import CashierError, check_id  # the accounts' id rule (one home); argon2 only here

    try:
        check_id(cashier_id)  # it goes into the journal and on every screen: never free text
    except CashierError as e:
        fail(f"--cashier: {str(e).removeprefix('cashier_id: ')}", usage=True)
    config = get_config(ctx)
    method = method or config.payments.default_method
    if amount is not None and len(references) != 1:
        fail("--amount: can only be given for one bill", usage=True)
    minor = None
    if amount is not None:
        try:
            minor = parse_amount(amount, config.terminal.currency)
        except MoneyError as e:
            fail(str(e), usage=True)
    actx = _open(ctx, [method], take_payments=True)
    cancel = threading.Event()
    # Ctrl-C while waiting for the card or terminal asks the authorizer to cancel instead of dying mid-step.
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    try:
        with actx:
            try:
                bills = [actx.flow.lookup(r) for r in references]
                result = actx.flow.pay(
                    bills,
                    method=method,
                    cashier_id=cashier_id,
                    amount=minor,
                    cancel=cancel,
                    on_status=lambda key: None if as_json else click.echo(f"... {key}", err=True),
                )
            except GuichetError as e:
                fail(str(e))
            payments = result.payments
            if not result.journaled:
                # The money was taken and the journal could not record it yet (it is parked): success for the
                # caller (a retry would charge twice), and loud.
                click.echo(f"guichet: {result.message}", err=True)
            elif result.status == "approved" and not no_upload and not result.captured_offline:
                payments = _try_upload(actx, payments)
            if as_json:
                out: Any = [_with_chip(actx, p) for p in payments]
                print_json(out[0] if len(out) == 1 else out)
            else:
                for p in payments:
                    click.echo(_describe(p))
            if result.status != "approved":
                msg = {
                    "declined": "declined",
                    "cancelled": "cancelled",
                    "unknown": "outcome UNKNOWN: do not pay again; settle it from the terminal's ticket",
                }[result.status]
                fail(f"payment {result.receipt_number} {msg}" + (f": {result.message}" if result.message else ""))
    finally:
        signal.signal(signal.SIGINT, previous)


def _with_chip(actx: AgentContext, p: Payment) -> dict[str, Any]:
    """The payment's summary; a card_reader payment adds what its EMV transaction did (entry mode, ODA, CVM,
    TVR, TSI, each cryptogram's type, response code, reversal sent), from its journal event: never a card number."""
    out = p.summary()
    if p.method == "card_reader":
        for event in reversed(actx.journal.audit(p.payment_id)):
            chip = (event.get("detail") or {}).get("emv")
            if isinstance(chip, dict):
                out["emv"] = chip
                break
    return out


def _try_upload(actx: AgentContext, payments: list[Payment]) -> list[Payment]:
    """One quick upload round when no other uploader holds the journal; the sync worker does it otherwise."""
    lock = UploadLock(actx.config.state.dir)
    try:
        lock.acquire()
    except AlreadyRunning:
        return payments
    try:
        actx.sync_worker().run_once(max_batches=1)
    finally:
        lock.release()
    return [actx.journal.get(p.payment_id) for p in payments]


@click.group()
def queue() -> None:
    """The payments journal and its upload queue."""


@queue.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def queue_status(ctx: click.Context, as_json: bool) -> None:
    """Unsent payments: count, total, age of the oldest; items needing attention."""
    with _reading(ctx) as actx:
        stats = actx.journal.queue_stats()
        cur = actx.config.terminal.currency
        state = limit_state(actx.config.offline, stats, cur)
        data = {
            "unsent": stats.count,
            "unsent_total": stats.total.get(cur, 0),
            "currency": cur,
            "oldest_captured_at": stats.oldest_captured_at.isoformat() if stats.oldest_captured_at else None,
            "oldest_age_seconds": int(state.oldest_age) if state.oldest_age is not None else None,
            "warn": state.warn,
            "unknown": stats.unknown,
            "needs_attention": stats.needs_attention,
            "bill_cache": {"bills": actx.bills.count(), "age_seconds": actx.bills.freshness()},
        }
    if as_json:
        print_json(data)
        return
    click.echo(f"unsent payments: {stats.count}, total {format_amount(stats.total.get(cur, 0), cur, with_code=True)}")
    click.echo(
        f"oldest unsent:   {age_text(state.oldest_age) if stats.count else '-'}"
        + ("  (WARNING: old)" if state.warn else "")
    )
    click.echo(f"unknown outcome: {stats.unknown}")
    click.echo(f"needs attention: {stats.needs_attention}")
    fresh = data["bill_cache"]["age_seconds"]  # type: ignore[index]
    click.echo(f"bill cache:      {data['bill_cache']['bills']} bills, refreshed {age_text(fresh)} ago")  # type: ignore[index]


@queue.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in State]),
    help="Only these states (repeatable). Default: unsent and needing attention.",
)
@click.option("--all", "show_all", is_flag=True, help="Every payment.")
@click.option("--limit", type=int, default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def queue_list(ctx: click.Context, states: tuple[str, ...], show_all: bool, limit: int | None, as_json: bool) -> None:
    """Payments, newest first."""
    wanted = None if show_all else list(states or ("approved", "unknown", "rejected"))
    with _reading(ctx) as actx:
        rows = actx.journal.list(states=wanted, limit=limit)
    if as_json:
        print_json([p.summary() for p in rows])
        return
    for p in rows:
        click.echo(_describe(p))


@queue.command("show")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True)
@click.option("--no-server", is_flag=True, help="Do not ask the billing server what it recorded.")
@click.pass_context
def queue_show(ctx: click.Context, key: str, as_json: bool, no_server: bool) -> None:
    """One payment (by id, id prefix or receipt number) with its history, and what the server recorded."""
    from agent.payments import server_view

    with _reading(ctx) as actx:
        try:
            p = actx.journal.find(key)
        except KeyError:
            fail(f"payment {key}: not in the journal")
        history = actx.journal.audit(p.payment_id)
        view = None if no_server else server_view(actx.client, p)
    server = None if view is None else {
        "status": view.status, "message": view.message, "differences": list(view.differences), "record": view.record,
    }
    if as_json:
        print_json(
            {
                **p.summary(),
                "transaction_id": p.transaction_id,
                "card": p.card,
                "authorization": p.authorization,
                "cashier_id": p.cashier_id,
                "captured_at": p.captured_at,
                "stamp_duty": p.stamp_duty,
                "notice": p.notice,
                "error": p.error,
                "settlement": p.settlement,
                "history": history,
                "server": server,
            }
        )
        return
    click.echo(_describe(p))
    if p.stamp_duty is not None:
        click.echo(f"  stamp duty: {format_amount(p.stamp_duty, p.currency, with_code=True)}")
    for label, value in (
        ("card", p.card),
        ("authorization", p.authorization),
        ("notice", p.notice),
        ("error", p.error),
    ):
        if value:
            click.echo(f"  {label}: {value}")
    if p.settlement:
        s = p.settlement
        source = "the terminal's ticket" if s.get("from") == "terminal_ticket" else "the server's record"
        at = s.get("at")
        click.echo(f"  settled by {s.get('by')} at {clock.display(at) if at else '?'}, from {source}")
    for h in history:
        click.echo(f"  {clock.display(h['at'])}  {h['from_state'] or '-':>11} -> {h['to_state']:<11} by {h['actor']}")
    if view is not None:
        click.echo(f"  billing server: {view.status}: {view.message}")
        for d in view.differences:
            click.echo(f"    differs: {d}")


@click.command()
@click.option("--once", is_flag=True, help="One upload round, then exit (exit 1 if anything is left).")
@click.option("--bills", is_flag=True, help="Only refresh the offline bill cache now, then exit.")
@click.pass_context
def sync(ctx: click.Context, once: bool, bills: bool) -> None:
    """Upload the queue to the billing server (one uploader per journal)."""
    if bills:
        _refresh_bills(ctx)
        return
    with _reading(ctx) as actx:
        lock = UploadLock(actx.config.state.dir)
        try:
            lock.acquire(wait=False)
        except AlreadyRunning as e:
            if once:
                fail(str(e))
            click.echo(f"{e}; waiting for it to finish", err=True)
            lock.acquire(wait=True)
        try:
            actx.recover_if_idle()
            # The agent's one scheduler with every job of the composition root (JOBS): the sync jobs report
            # the rounds printed here; the others run beside them, as in the service.
            scheduler = Scheduler()
            worker = SyncWorker(actx.config, actx.journal, actx.client, actx.bills, scheduler=scheduler)
            parts = JobParts(actx.config, actx.journal, actx.client, actx.bills)
            with parts.closing:  # what the registrations opened (the receipts' stores) is closed on the way out
                for register in JOBS:
                    if register is not sync_jobs:
                        register(scheduler, parts)
                if once:
                    report, _ = worker.step()  # upload, then bill cache and heartbeat when the link is up
                    _print_report(report)
                    # Exit 1 whenever money is left unsent: a failed step, a refusal, an outage.
                    if report.error:
                        fail(f"upload stopped: {report.error} ({report.remaining} left)")
                    if report.remaining:
                        fail(f"upload stopped: {report.remaining} left")
                    return
                stop = threading.Event()
                signal.signal(signal.SIGTERM, lambda *_: stop.set())
                signal.signal(signal.SIGINT, lambda *_: stop.set())
                worker.run_forever(stop, on_round=lambda r, d: _print_report(r, d))
        finally:
            lock.release()


def _refresh_bills(ctx: click.Context) -> None:
    """The bill cache, on demand: follow the delta feed until caught up."""
    with _reading(ctx) as actx:
        try:
            changed = actx.bills.refresh(actx.client, actx.config.terminal.agency_id)
        except GuichetError as e:
            age = actx.bills.freshness()
            fail(f"bill cache not refreshed: {e} (last refreshed {age_text(age)} ago)" if age is not None
                 else f"bill cache not refreshed: {e} (never refreshed)")
        click.echo(f"bill cache: {changed} bills changed, {actx.bills.count()} payable bills cached")


def _print_report(r: SyncReport, delay: float | None = None) -> None:
    line = f"uploaded {r.uploaded}, duplicates {r.duplicates}, rejected {r.rejected}, left {r.remaining}"
    if r.error:
        line += f"; error: {r.error}"
    if delay is not None and (r.error or r.uploaded or r.rejected):
        line += f"; next round in {delay:.1f} s"
    if r.error or r.uploaded or r.duplicates or r.rejected or delay is None:
        click.echo(line)
    for receipt, notice in r.notices:
        click.echo(f"  {receipt}: {notice}")


@queue.command("settle")
@click.argument("key")
@click.option("--approved", "outcome", flag_value="approved", help="The terminal's ticket shows it approved.")
@click.option(
    "--declined", "outcome", flag_value="declined",
    help="The terminal's ticket shows it refused or cancelled: the customer was NOT charged (asks to confirm).",
)
@click.option("--code", help="Authorisation code printed on the terminal's ticket (with --approved).")
@click.option("--scheme", help="Card scheme printed on the ticket (CIB, EDAHABIA, ...); optional when known.")
@click.option("--last4", help="The last 4 digits of the card number printed on the ticket (4 digits, nothing else).")
@click.option(
    "--pan-masked", "pan_prompt", is_flag=True,
    help="Ask for the masked card number as printed (628058******1234): typed at a prompt, never an argument.",
)
@click.option("--pan-masked-stdin", is_flag=True, help="Read the masked card number from the first line of stdin.")
@click.option("--no-card-digits", is_flag=True, help="The ticket prints no card digits at all (approved card).")
@click.option("--cashier", "actor", required=True, help="Who settles it: a cashier id of this counter (recorded).")
@click.option("--yes", is_flag=True, help="With --declined: confirmed, the customer was NOT charged (scripts).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def queue_settle(
    ctx: click.Context,
    key: str,
    outcome: str | None,
    code: str | None,
    scheme: str | None,
    last4: str | None,
    pan_prompt: bool,
    pan_masked_stdin: bool,
    no_card_digits: bool,
    actor: str,
    yes: bool,
    as_json: bool,
) -> None:
    """Settle a payment whose outcome is unknown, from the terminal's own ticket (or the server, for readers).

    \b
    guichet queue settle ID --approved --code 123456 --scheme CIB --last4 1234 --cashier s0001
    echo '628058******1234' | guichet queue settle ID --approved --code 123456 --pan-masked-stdin --cashier s0001
    guichet queue settle ID --declined --cashier s0001            asks: the customer was NOT charged?
    guichet queue settle ID --cashier s0001      card reader payments: as the server's record says

    Card digits are never a full argument (shell history, `ps`): --last4 takes 4 digits only; the masked
    number is typed at a prompt (--pan-masked) or read from stdin (--pan-masked-stdin).
    """
    pan_masked = _ticket_digits(last4, pan_prompt, pan_masked_stdin)
    _check_cashier(ctx, actor)
    if outcome == "declined" and not yes:
        _confirm_declined()
    with _open(ctx, [], take_payments=True) as actx:
        try:
            p = actx.journal.find(key)
        except KeyError:
            fail(f"payment {key}: not in the journal")
        try:
            if p.method == "card_reader" and outcome is None:
                done = actx.flow.resolve_unknown_online(p.payment_id, actor=actor)
            elif outcome is None:
                fail("give --approved --code CODE or --declined, from the terminal's ticket", usage=True)
            else:
                done = actx.flow.settle_unknown(
                    p.payment_id, approved=outcome == "approved", actor=actor, code=code, scheme=scheme,
                    pan_masked=pan_masked, no_card_digits=no_card_digits,
                )
        except GuichetError as e:
            fail(str(e))
    if as_json:
        print_json([q.summary() for q in done])
    else:
        for q in done:
            click.echo(_describe(q))


def _ticket_digits(last4: str | None, prompt: bool, from_stdin: bool) -> str | None:
    """The card digits read off the ticket: --last4 (4 digits: nothing that can be a card number sits in
    argv), or the masked number typed at a prompt or given on stdin. Never echoed back."""
    if sum((last4 is not None, prompt, from_stdin)) > 1:
        fail("give one of --last4, --pan-masked, --pan-masked-stdin", usage=True)
    if last4 is not None:
        if not (last4.isascii() and last4.isdigit() and len(last4) == 4):
            # Not echoed: it may be a full card number typed by mistake (now in the shell history: clear it).
            fail("--last4: exactly the 4 last digits of the card number; for the masked number use --pan-masked",
                 usage=True)
        return last4
    if from_stdin:
        line = sys.stdin.readline(256).rstrip("\r\n")
        if not line.strip():
            fail("--pan-masked-stdin: nothing on stdin (write the masked number on one line)", usage=True)
        return line
    if prompt:
        if not sys.stdin.isatty():
            fail("--pan-masked: no terminal to ask it on; write it on stdin and pass --pan-masked-stdin", usage=True)
        return str(click.prompt("Card number as printed on the ticket (628058******1234)", err=True))
    return None


def _check_cashier(ctx: click.Context, cashier_id: str) -> None:
    """`--cashier` must be an active account of this counter: it goes up as `settlement.by`."""
    from guichet.cli.cashier import _store

    with _store(ctx, create=False) as store:
        if store is None:
            fail("--cashier: this counter has no cashier accounts yet; create one first (guichet cashier add)")
        try:
            cashier = store.get(cashier_id)
        except KeyError:
            fail(f"--cashier: {safe_text(cashier_id, 40)!r} is not a cashier of this counter (guichet cashier list)")
    if not cashier.active:
        fail(f"--cashier: {cashier_id} is disabled")


def _confirm_declined() -> None:
    """Declined is final and frees the bills to be paid again: asked once more, or --yes."""
    question = "The customer was NOT charged: the terminal's ticket says refused/cancelled?"
    if not sys.stdin.isatty():
        fail(f"--declined: {question} Add --yes to confirm (no terminal to ask on)", usage=True)
    if not click.confirm(question, default=False, err=True):
        fail("not settled: nothing changed")
