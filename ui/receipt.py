"""The payment receipt as text, ready for a printer: masked card number, authorisation code, receipt number.

    text = receipt_text(payments, terminal_id="ORAN-07-G2", agency_id="ORAN-07")

`payments` are the journal rows of one transaction (one per bill). Never shows more of the card than
the journal holds (pan_masked: first 6 and last 4).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from agent.errors import GuichetError
from agent.outbox import (
    COUNTRY_BY_CURRENCY,
    SEND_INTERVAL,
    Address,
    Outbox,
    OutboxError,
    SendRequest,
    parse_address,
    send_pending,
)
from agent.printing import PRINT_INTERVAL, PrintQueue, QueuedPrint, UnprintableRow, drain
from agent.scheduler import JobParts, Scheduler
from config import Config
from drivers.printer import Job, Printer, PrinterError, PrintResult, open_printer
from ui.formatting import date_text
from ui.i18n import _
from ui.receipts import BillLine, Receipt, ReceiptOptions, Row, print_receipt, print_rows, safe_pan
from ui.receipts.model import MAX_BILLS
from ui.text import local_hm, method_label, money, parse_time, state_label, value

WIDTH = 42
log = logging.getLogger("guichet.receipts")


def receipt_text(payments: list[Any], *, reprint: bool = False) -> str:
    """The receipt in the current language, logical order (shape() it for the screen)."""
    if not payments:
        return ""
    first = payments[0]
    cur = first.currency
    when = parse_time(first.captured_at)
    lines = [
        _("PAYMENT RECEIPT"),
        "=" * WIDTH,
        f"{_('Receipt')}: {first.receipt_number}",
        f"{_('Agency')}: {first.agency_id}   {_('Counter')}: {first.terminal_id}",
        f"{_('Date')}: {date_text(when) if when else '-'} {local_hm(first.captured_at)}",
        f"{_('Cashier')}: {first.cashier_id}",
        "-" * WIDTH,
    ]
    for p in payments:
        bill = p.bill or {}
        lines.append(f"{_('Bill')} {p.bill_reference}  {bill.get('period', '')}")
        if bill.get("customer_name"):
            lines.append(f"  {bill['customer_name']}  {bill.get('contract', '')}")
        lines.append(f"  {_('Paid')}: {money(p.amount, p.currency)}")
    lines += [
        "-" * WIDTH,
        f"{_('Total')}: {money(sum(p.amount for p in payments), cur)}",
        f"{_('Method')}: {method_label(first.method)}",
    ]
    card = first.card or {}
    if card:
        lines.append(f"{_('Card')}: {card.get('scheme', '')} {card.get('pan_masked', '')}")
    auth = first.authorization or {}
    if auth.get("code"):
        lines.append(f"{_('Authorisation code')}: {auth['code']}")
    state = value(first.state)
    lines.append(f"{_('Status')}: {state_label(state)}")
    if first.captured_offline:
        lines.append(_("Taken offline: will be sent to the billing server"))
    if reprint:
        lines.append(_("DUPLICATE"))
    lines.append("=" * WIDTH)
    return "\n".join(lines)


# -- printing, the print queue and the e-mail/SMS requests (issue 15) -----------------------------------------
#
#     outcome = print_payment(config, payments)        # in a worker: prints, or queues the receipt
#     outcome.state, outcome.message                   # "printed" | "queued" | "off" | "failed", one line
#     request_send(config, receipt_number, "0661 23 45 67", language="ar")   # journaled; the job sends it
#
# `receipt_jobs` is the scheduler registration (guichet/cli/run.py JOBS): "print-queue" (no link needed,
# every PRINT_INTERVAL s while receipts wait) and "receipt-send" (the billing server's link).


@dataclass(frozen=True)
class PrintOutcome:
    state: str  # printed | queued | off (no printer configured) | failed (not even queued)
    message: str = ""  # the printer's problem in its words ("paper out"), one line
    notes: tuple[str, ...] = ()


def printer_configured(cfg: Config) -> bool:
    return bool(cfg.printer.url) and cfg.printer.url != "none"


def receipt_payload(receipt: Receipt) -> dict[str, Any]:
    """What the print queue stores: the receipt's fields (the card as pan_masked, already cut by safe_pan)."""
    data = asdict(receipt)
    data["when"] = receipt.when.isoformat()
    data.pop("duplicate", None)
    return data


def receipt_from_payload(data: dict[str, Any], *, duplicate: bool) -> Receipt:
    """The stored receipt back, checked field by field (the file is outside this process): ValueError naming
    the field."""
    try:
        bills = tuple(BillLine(str(b["reference"]), _int(b["amount"]), str(b.get("period", "")),
                               str(b.get("customer", "")), str(b.get("contract", "")))
                      for b in list(data["bills"])[:MAX_BILLS])
        when = datetime.fromisoformat(str(data["when"]))
        text = {k: str(data.get(k, "") or "")[:200] for k in
                ("number", "agency_id", "terminal_id", "cashier_id", "currency", "method", "scheme", "auth_code",
                 "state")}
        return Receipt(
            number=text["number"], agency_id=text["agency_id"], terminal_id=text["terminal_id"],
            cashier_id=text["cashier_id"], when=when, currency=text["currency"], bills=bills,
            method=text["method"], stamp_duty=_int(data.get("stamp_duty", 0)), scheme=text["scheme"],
            pan_masked=safe_pan(str(data.get("pan_masked", "") or "")), auth_code=text["auth_code"],
            state=text["state"] or "approved", offline=bool(data.get("offline")), duplicate=duplicate,
        )
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        raise ValueError(f"queued receipt: {type(e).__name__}: {' '.join(str(e).split())[:200]}") from None


def _int(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"amount {v!r} is not an integer")
    return v


def _printer(cfg: Config) -> Printer:
    return open_printer(cfg.printer.url, cfg.printer.timeout)


def print_queued(options: ReceiptOptions) -> Callable[[Printer, QueuedPrint], PrintResult]:
    """The print queue's renderer: a queued receipt or printout, rendered and sent; never raises."""

    def print_one(printer: Printer, item: QueuedPrint) -> PrintResult:
        try:
            if item.kind == "lines":
                return _print_lines(printer, [str(line)[:200] for line in list(item.payload["lines"])[:MAX_LINES]])
            if item.kind == "rows":
                blocks = [(str(lang), [Row(kind, str(left), str(right)) for kind, left, right in rows])
                          for lang, rows in item.payload["blocks"]]
                return print_rows(printer, blocks, options)
            receipt = receipt_from_payload(item.payload, duplicate=item.duplicate)
        except (KeyError, TypeError, ValueError) as e:
            return PrintResult(False, error=UnprintableRow(f"receipt {item.receipt_number}: {e}"))
        return print_receipt(printer, receipt, options)

    return print_one


def _queue(cfg: Config, number: str, payload: dict[str, Any], reason: str, kind: str = "receipt") -> PrintOutcome:
    try:
        queue = PrintQueue.open(cfg.state.dir)
        try:
            queue.add(number, payload, kind=kind, reason=reason)
        finally:
            queue.close()
    except GuichetError as e:
        return PrintOutcome("failed", f"{reason}; {e}")
    return PrintOutcome("queued", reason)


def _unqueue(cfg: Config, number: str) -> None:
    try:
        queue = PrintQueue.open(cfg.state.dir)
        try:
            queue.remove_receipt(number)
        finally:
            queue.close()
    except GuichetError as e:  # the queued copy prints later: one receipt too many, never one too few
        log.warning("receipt %s reprinted; its queued copy stays: %s", number, e)


def print_payment(cfg: Config, payments: list[Any], *, duplicate: bool = False,
                  stamp_duty: int | None = None) -> PrintOutcome:
    """Print one transaction's receipt now (blocking: call it from a worker). A printer fault queues it for
    the print-queue job, as DUPLICATA; the payment is never touched. A cash receipt opens the drawer
    (`[printer] drawer`); when the job could not even start, the drawer is kicked alone so the cashier can
    give change."""
    if not printer_configured(cfg):
        return PrintOutcome("off")
    try:
        receipt = Receipt.from_payments(payments, stamp_duty=stamp_duty, duplicate=duplicate)
    except (ValueError, TypeError, AttributeError) as e:
        return PrintOutcome("failed", f"receipt: {e}")
    options = ReceiptOptions.from_config(cfg)
    try:
        printer = _printer(cfg)
    except PrinterError as e:
        return _queue(cfg, receipt.number, receipt_payload(receipt), str(e))
    result = print_receipt(printer, receipt, options)
    if result.ok:  # a late status after every byte was taken is "printed" too, with a note (never queued again)
        if duplicate:  # a DUPLICATA on paper: a copy still waiting in the queue would be one too many
            _unqueue(cfg, receipt.number)
        return PrintOutcome("printed", notes=tuple(result.notes))
    if options.drawer and receipt.method == "cash" and not duplicate and result.bytes_sent == 0:
        printer.kick_drawer()  # never raises; a printer that is away cannot open it either
    problem = getattr(getattr(result.error, "status", None), "problem", None) or result.message
    return _queue(cfg, receipt.number, receipt_payload(receipt), problem)


def print_blocks(cfg: Config, name: str, blocks: list[tuple[str, list[Row]]]) -> PrintOutcome:
    """A printout laid out in rows (the Z report, a shift close): printed now or queued under `name`."""
    if not printer_configured(cfg):
        return PrintOutcome("off")
    payload = {"blocks": [[lang, [[r.kind, r.left, r.right] for r in rows]] for lang, rows in blocks]}
    try:
        printer = _printer(cfg)
    except PrinterError as e:  # a URL that does not parse: queued (fixed config prints it), never raised
        return _queue(cfg, name, payload, str(e), kind="rows")
    result = print_rows(printer, blocks, ReceiptOptions.from_config(cfg))
    if result.ok:
        return PrintOutcome("printed", notes=tuple(result.notes))
    problem = getattr(getattr(result.error, "status", None), "problem", None) or result.message
    return _queue(cfg, name, payload, problem, kind="rows")


def _print_lines(printer: Printer, lines: list[str]) -> PrintResult:
    try:
        job = Job()
        for line in lines:
            job.text_line(line)
        job.feed(120)
        job.cut()
    except Exception as e:  # noqa: BLE001 - a line the printer's code page cannot take: named, never raised
        return PrintResult(False, error=UnprintableRow(f"printout: {type(e).__name__}: {e}"))
    return printer.print_job(job.bytes())


MAX_LINES = 2000  # a day close of many payments; a stored row is bounded by the queue's MAX_PAYLOAD too


def print_lines(cfg: Config, name: str, lines: list[str]) -> PrintOutcome:
    """Text already cut to the paper in the printer's font (the day close: agent.dayclose.export.paper_lines),
    printed now or queued under `name` for the print-queue job, like a receipt. Never raises.

        print_lines(config, f"Z {day}", paper_lines(data, config.printer.paper))
    """
    if not printer_configured(cfg):
        return PrintOutcome("off")
    payload = {"lines": [str(line) for line in lines[:MAX_LINES]]}
    try:
        printer = _printer(cfg)
    except PrinterError as e:
        return _queue(cfg, name, payload, str(e), kind="lines")
    result = _print_lines(printer, payload["lines"])
    if result.ok:
        return PrintOutcome("printed", notes=tuple(result.notes))
    problem = getattr(getattr(result.error, "status", None), "problem", None) or result.message
    return _queue(cfg, name, payload, problem, kind="lines")


def request_send(cfg: Config, receipt_number: str, text: str, *, language: str = "fr") -> Address:
    """Journal an e-mail/SMS request; the receipt-send job sends it. AddressError (the rule broken) or
    StorageError (one line)."""
    address = parse_address(text, COUNTRY_BY_CURRENCY.get(cfg.terminal.currency, "DZ"))
    for attempt in range(OPEN_TRIES):
        try:
            box = Outbox.open(cfg.state.dir)
            break
        except OutboxError as e:  # a new file being created by a second Enter's worker: busy for a moment
            if "locked" not in str(e) or attempt == OPEN_TRIES - 1:
                raise
            time.sleep(0.2)
    try:
        box.add(receipt_number, address, language=language)
    finally:
        box.close()
    return address


OPEN_TRIES = 5


def send_requests(cfg: Config, receipt_number: str) -> list[SendRequest]:
    """This receipt's e-mail/SMS requests, for the screen (no address in them once sent)."""
    box = Outbox.open(cfg.state.dir)
    try:
        return box.requests(receipt_number)
    finally:
        box.close()


def receipt_jobs(scheduler: Scheduler, parts: JobParts) -> None:
    """Registration (guichet/cli/run.py JOBS): the e-mail/SMS requests and the print queue (when a printer is
    configured), in the thread that runs the scheduler. A store that cannot open costs its job, not the agent:
    logged, and the payments and uploads run on."""
    cfg = parts.config
    try:
        box = Outbox.open(cfg.state.dir)
        parts.closing.callback(box.close)
        scheduler.add("receipt-send", lambda: send_pending(box, parts.client, parts.journal), SEND_INTERVAL)
    except GuichetError as e:
        log.error("receipts by e-mail/SMS not sent in this run: %s", e)
    if printer_configured(cfg):
        try:
            queue = PrintQueue.open(cfg.state.dir)
            parts.closing.callback(queue.close)
            printer = _printer(cfg)
        except (GuichetError, PrinterError) as e:
            log.error("print queue not run: %s", e)
            return
        print_one = print_queued(ReceiptOptions.from_config(cfg))
        scheduler.add("print-queue", lambda: drain(queue, printer, print_one), PRINT_INTERVAL, needs_link=False)
