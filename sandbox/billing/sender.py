"""The sandbox server really sends the receipts it is asked to send: e-mail through SMTP, SMS to an HTTP
gateway or a file.

    sender = ReceiptSender(smtp="127.0.0.1:2525", sms_file=Path("/tmp/sms.jsonl"))
    sender.submit(message)      # from the request handler: returns at once; a thread sends
    sender.wait_idle(10)        # tests: until every submitted message went out (or failed)
    sender.sent, sender.failed  # what went out (channel, to, receipt number), what did not and why

The content is built by the server from the payments it recorded (`message_for`), in the language asked:
the receipt number, the date, each bill (reference, amount), the total and the method. Amounts through
Babel (CLDR) in the language's locale; never a card number (the server's records hold none beyond
pan_masked, and the text shows none).

A send that fails (relay down, gateway error) is tried again 3 times, 1 s apart, then recorded in `failed`;
the API has already answered 202 "queued", as the contract says. One SMTP session (connect to QUIT) gets
`deadline` seconds in all (DEADLINE), besides TIMEOUT per operation: a relay that trickles its answers a byte
at a time holds the next messages back at most that long. An e-mail goes to its one address only (the SMTP
envelope is `[to]`, whatever the header could be read as). The error kept in `failed` and logged is the
exception's type and the SMTP code, never the relay's text (which names the address). The same (receipt,
channel, to) is sent once per server run (the contract's idempotency).

SMS gateway: `POST URL` with JSON `{"to": "+213...", "text": "...", "receipt_number": "..."}`; a 2xx is
accepted. SMS file: one JSON object a line, the same fields plus `at`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import smtplib
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from babel.numbers import format_currency

from config.money import MoneyError, currency

log = logging.getLogger("sandbox.sender")

FROM = "recus@seor.sandbox.dz"
LOCALES = {"fr": "fr_DZ", "ar": "ar_DZ", "en": "en"}
RETRIES = 3
TIMEOUT = 10.0  # seconds per socket operation
DEADLINE = 30.0  # seconds for a whole SMTP session
MAX_BILLS = 50

# The server's own wording (it is the billing office's text, not the counter's catalogue).
LABELS: dict[str, dict[str, str]] = {
    "fr": {"subject": "Votre reçu {n}", "title": "Reçu de paiement", "receipt": "Reçu", "date": "Date",
           "bill": "Facture", "total": "Total", "method": "Mode de paiement", "thanks": "Merci.",
           "cash": "espèces", "card_terminal": "carte (TPE)", "card_reader": "carte"},
    "ar": {"subject": "وصلكم {n}", "title": "وصل الدفع", "receipt": "الوصل", "date": "التاريخ",
           "bill": "الفاتورة", "total": "المجموع", "method": "طريقة الدفع", "thanks": "شكرا.",
           "cash": "نقدا", "card_terminal": "بطاقة (جهاز الدفع)", "card_reader": "بطاقة"},
    "en": {"subject": "Your receipt {n}", "title": "Payment receipt", "receipt": "Receipt", "date": "Date",
           "bill": "Bill", "total": "Total", "method": "Payment method", "thanks": "Thank you.",
           "cash": "cash", "card_terminal": "card (terminal)", "card_reader": "card"},
}


@dataclass(frozen=True)
class ReceiptMessage:
    receipt_number: str
    channel: str  # email | sms
    to: str
    language: str
    subject: str
    text: str


@dataclass
class Outcome:
    receipt_number: str
    channel: str
    to: str
    error: str = ""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


def _money(minor: int, code: str, language: str) -> str:
    try:
        exp = currency(code).exponent
    except MoneyError:
        return f"{minor} {code}"
    return format_currency(Decimal(minor).scaleb(-exp), code, locale=LOCALES.get(language, "fr_DZ"))


def message_for(receipt_number: str, channel: str, to: str, language: str | None,
                payments: list[dict[str, Any]]) -> ReceiptMessage:
    """The receipt's text from the recorded payments (the contract's Payment objects) of its transaction."""
    lang = language if language in LABELS else "fr"
    words = LABELS[lang]
    first = payments[0] if payments else {}
    code = str(first.get("currency", "DZD"))
    lines = [words["title"], f"{words['receipt']}: {receipt_number}"]
    if first.get("captured_at"):
        lines.append(f"{words['date']}: {str(first['captured_at'])[:16].replace('T', ' ')} UTC")
    total = 0
    for p in payments[:MAX_BILLS]:
        amount = int(p.get("amount", 0)) + int(p.get("stamp_duty") or 0)
        total += amount
        lines.append(f"{words['bill']} {p.get('bill_reference', '')}: {_money(amount, code, lang)}")
    lines.append(f"{words['total']}: {_money(total, code, lang)}")
    method = str(first.get("method", ""))
    lines.append(f"{words['method']}: {words.get(method, method)}")
    lines.append(words["thanks"])
    return ReceiptMessage(receipt_number, channel, to, lang, words["subject"].format(n=receipt_number),
                          "\n".join(lines))


class ReceiptSender:
    """Sends receipts from one thread; see the module docstring. Without a relay (no `smtp`) e-mails are
    recorded as failed ("no SMTP relay configured"); likewise SMS without a gateway or a file."""

    def __init__(self, *, smtp: str | None = None, sms_url: str | None = None, sms_file: Path | None = None,
                 retry_wait: float = 1.0, deadline: float = DEADLINE) -> None:
        self.smtp = _host_port(smtp) if smtp else None
        self.deadline = deadline
        self.sms_url = sms_url
        self.sms_file = sms_file
        self.retry_wait = retry_wait
        self.sent: list[Outcome] = []
        self.failed: list[Outcome] = []
        self._done: set[tuple[str, str, str]] = set()
        self._queue: queue.Queue[ReceiptMessage] = queue.Queue(maxsize=1000)
        self._lock = threading.Lock()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="sandbox-receipt-sender", daemon=True)
        self._thread.start()

    def submit(self, message: ReceiptMessage) -> bool:
        """Queue one message; False when it was sent already (same receipt, channel, to) or the queue is full."""
        key = (message.receipt_number, message.channel, message.to)
        with self._lock:
            if key in self._done:
                return False
            self._done.add(key)
            self._pending += 1
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            with self._lock:
                self._pending -= 1
                self._done.discard(key)
            return False
        return True

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._pending == 0:
                    return True
            time.sleep(0.02)
        return False

    def _run(self) -> None:
        while True:
            msg = self._queue.get()
            error = ""
            for attempt in range(RETRIES):
                try:
                    self._send(msg)
                    error = ""
                    break
                except Exception as e:  # noqa: BLE001 - a relay's failure is recorded; the loop goes on
                    error = _error_text(e, msg.to)
                    if attempt + 1 < RETRIES:
                        time.sleep(self.retry_wait)
            result = Outcome(msg.receipt_number, msg.channel, msg.to, error)
            with self._lock:
                (self.failed if error else self.sent).append(result)
                if error:  # a later request may try again
                    self._done.discard((msg.receipt_number, msg.channel, msg.to))
                self._pending -= 1
            if error:
                log.warning("receipt %s by %s not sent: %s", msg.receipt_number, msg.channel, error)

    def _send(self, msg: ReceiptMessage) -> None:
        if msg.channel == "email":
            if self.smtp is None:
                raise RuntimeError("no SMTP relay configured (--smtp HOST:PORT)")
            mail = EmailMessage()
            mail["From"] = FROM
            mail["To"] = msg.to
            mail["Subject"] = msg.subject
            mail["Content-Language"] = msg.language
            mail["X-Receipt-Number"] = msg.receipt_number
            mail.set_content(msg.text)
            smtp = _BoundedSMTP(timeout=TIMEOUT)
            timer = threading.Timer(self.deadline, smtp.abort)
            timer.daemon = True
            timer.start()
            try:
                smtp.connect(*self.smtp)
                smtp.send_message(mail, from_addr=FROM, to_addrs=[msg.to])
                smtp.quit()
            except OSError:
                if smtp.aborted:
                    raise TimeoutError(f"SMTP session over {self.deadline:g} s") from None
                raise
            finally:
                timer.cancel()
                smtp.close()
            return
        record = {"to": msg.to, "text": msg.text, "receipt_number": msg.receipt_number}
        if self.sms_url:
            req = urllib.request.Request(self.sms_url, data=json.dumps(record).encode(), method="POST",  # noqa: S310
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=TIMEOUT) as answer:  # noqa: S310 - the configured gateway
                if not 200 <= answer.status < 300:
                    raise RuntimeError(f"SMS gateway answered {answer.status}")
            return
        if self.sms_file is None:
            raise RuntimeError("no SMS gateway configured (--sms-url URL or --sms-file PATH)")
        record["at"] = datetime.now(UTC).isoformat(timespec="seconds")
        fd = os.open(self.sms_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


class _BoundedSMTP(smtplib.SMTP):
    """smtplib.SMTP whose socket another thread can shut down (the session's deadline): a blocked read ends."""

    aborted = False

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        if self.aborted:
            sock.close()
            raise TimeoutError("SMTP session over its deadline")
        return sock

    def abort(self) -> None:
        self.aborted = True
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _error_text(e: Exception, to: str) -> str:
    """What `failed` and the log keep of a failed send: the type and the SMTP code(s), and otherwise the text
    with the address taken out (a relay's or a gateway's text usually names it)."""
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        return f"{type(e).__name__}: " + ", ".join(str(code) for code, _ in e.recipients.values())
    if isinstance(e, smtplib.SMTPResponseException):
        return f"{type(e).__name__}: {e.smtp_code}"
    text = " ".join(str(e).split()).replace(to, "<address>")
    return f"{type(e).__name__}: {text[:200]}"


def _host_port(text: str) -> tuple[str, int]:
    """'127.0.0.1:2525' -> ('127.0.0.1', 2525); ValueError naming the option otherwise."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--smtp: {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def transaction_payments(store: Any, receipt_number: str, terminal_id: str) -> list[dict[str, Any]]:
    """The recorded payments of the transaction that holds this receipt number (a basket: every bill)."""
    with store.lock:
        row = store.db.execute(
            "SELECT json_extract(canonical, '$.transaction_id') FROM payments"
            " WHERE receipt_number = ? AND terminal_id = ? LIMIT 1", (receipt_number, terminal_id)).fetchone()
        if row is None:
            return []
        rows = store.db.execute(
            "SELECT canonical FROM payments WHERE terminal_id = ? AND json_extract(canonical, '$.transaction_id') = ?"
            " ORDER BY receipt_number LIMIT ?", (terminal_id, row[0], MAX_BILLS)).fetchall()
    return [json.loads(r[0]) for r in rows]
