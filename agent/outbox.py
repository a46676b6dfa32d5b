"""Receipts sent by e-mail or SMS: the request journaled here, sent to the billing server by a scheduler job.

    addr = parse_address("0550 12 34 56")          # Address(channel='sms', to='+213550123456')
    box = Outbox.open(config.state.dir)            # state_dir/outbox.db, 0600, versioned schema
    box.add("ORAN-07-G2-000042", addr, language="fr")
    send_pending(box, client, journal)             # the "receipt-send" job: one Outcome

The customer's address is personal data: it is stored only until the server has accepted the request
(202), then set to NULL (the row keeps a hint, `a***@example.dz` / `+213*******56`, for the screen); it
is never written to a log (log lines name the receipt and the channel). A final refusal drops it too.

What the job does with each waiting request, oldest first:
- 202: sent; the address is dropped.
- no answer (offline, 5xx, 429): it stays; the scheduler takes the link down and retries with the others.
- not asked at all while any payment of the receipt's transaction (a basket is one transaction, one payment
  per bill) is not uploaded yet (journal state created, authorizing, approved, unknown): the server builds the
  message from the payments it holds, so asking before the last one is there would send a partial receipt.
- 404 receipt_not_found while the transaction is not uploaded yet: it stays, sent once the journal says so.
- 401, 403 and any other answer that is not about this request (429, 5xx, an answer that does not parse):
  401/403 go up to the scheduler (every request stays waiting: a token problem is not the customer's);
  a malformed answer costs that request one attempt (`later`) and the others go on; after MAX_ATTEMPTS
  the request needs attention (its address dropped).
- 400 invalid_address / invalid_request, 409, 422 and a 404 once uploaded (or for a receipt this journal
  does not hold): "attention"; the address is dropped. The stored reason is the status and code only (a
  server that echoes the address in its message must not put it back on disk).

Dropping an address runs `PRAGMA wal_checkpoint(TRUNCATE)`; a reader holding the WAL makes it busy, so the
outbox keeps a "forget pending" mark (table `forget`) and retries at each job run and at open until the
checkpoint reports (0, 0, 0). A failure is logged without the address.

Address rules (`parse_address`, the one home): an e-mail address is `local@domain.tld` (local part 1-64
characters without spaces, dots not first, last or doubled; domain labels of letters, digits and inner
hyphens; 254 characters at most). A mobile number, spaces, dots, dashes and parentheses ignored: Algeria
`05`, `06` or `07` + 8 digits, or `+213`/`00213` + 5/6/7 + 8 digits; Tunisia 8 digits starting with 2, 4, 5
or 9, or `+216`/`00216` + those 8 digits. The short national form (05/06/07..., 8 digits) is read as the
counter's own country only (`country`: DZ or TN, from `[terminal] currency` DZD/TND in `request_send`); the
other country needs its prefix. Digits are ASCII after folding other scripts' decimal digits (Arabic-Indic,
full-width: unicodedata.decimal); the whole text must match (no trailing newline, no second address).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from agent import clock
from agent.errors import ApiError, BadAnswer, StorageError
from agent.scheduler import Outcome, step_over
from agent.states import State
from agent.storage import open_database, storage_errors

if TYPE_CHECKING:  # types only: the job is given its client and journal
    from agent.billing import BillingClient
    from agent.journal import Journal

log = logging.getLogger("guichet.outbox")

FILE = "outbox.db"
MAX_WAITING = 1000
SEND_BATCH = 20
SEND_INTERVAL = 30.0  # seconds between two runs while requests wait (the UI wakes the job on a new one)
MAX_REASON = 200
LANGUAGES = ("fr", "ar", "en")
UPLOAD_WAIT = "waits for the payments' upload"
# the receipt's payment is not on the server yet: a 404 then means "later", not "never"
NOT_UPLOADED = (State.APPROVED, State.UNKNOWN, State.AUTHORIZING, State.CREATED)

Channel = Literal["email", "sms"]

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE sends (
            id INTEGER PRIMARY KEY,
            receipt_number TEXT NOT NULL,
            channel TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
            address TEXT,                    -- the customer's; NULL once the server accepted (or refused for good)
            hint TEXT NOT NULL,              -- masked, for the screen
            language TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('waiting', 'sent', 'attention')),
            reason TEXT NOT NULL DEFAULT '',
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            CHECK (state = 'waiting' OR address IS NULL)
        );
        CREATE INDEX sends_waiting ON sends (state, id);
        """,
    ),
    (
        2,
        """
        CREATE TABLE forget (id INTEGER PRIMARY KEY CHECK (id = 1), since TEXT NOT NULL);
        """,
    ),
]
MAX_ATTEMPTS = 10  # runs a request whose answer cannot be read is retried before it needs a person
Country = Literal["DZ", "TN"]
COUNTRY_BY_CURRENCY: dict[str, Country] = {"DZD": "DZ", "TND": "TN"}


class AddressError(ValueError):
    """Not an e-mail address nor a mobile number we know; the message says which rule."""


class OutboxError(StorageError):
    """The outbox cannot take a request (full) or its store failed: one line."""


@dataclass(frozen=True)
class Address:
    channel: Channel
    to: str  # normalised: the e-mail as typed (trimmed), a phone in +213/+216 form

    @property
    def hint(self) -> str:
        return mask_address(self.to)


_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}", re.ASCII)
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)
_DZ_INTL = re.compile(r"(?:\+213|00213)([567][0-9]{8})")
_DZ_NATIONAL = re.compile(r"0([567][0-9]{8})")
_TN_INTL = re.compile(r"(?:\+216|00216)([2459][0-9]{7})")
_TN_NATIONAL = re.compile(r"([2459][0-9]{7})")
_PHONE_JUNK = str.maketrans("", "", " .-()\u00a0\u202f")
_PHONE_RULE = ("not a mobile number: Algeria 05/06/07 + 8 digits or +213, "
               "Tunisia 8 digits (2, 4, 5, 9) or +216")


def _ascii_digits(text: str) -> str:
    """Any script's decimal digit as its ASCII digit (٠٥٥٠ -> 0550, full-width too); the rest unchanged."""
    return "".join(str(unicodedata.decimal(c)) if not c.isascii() and unicodedata.decimal(c, None) is not None
                   else c for c in text)


def parse_address(text: str, country: Country = "DZ") -> Address:
    """An e-mail address or an Algerian/Tunisian mobile number, normalised; AddressError otherwise. `country`
    is the counter's: its numbers may be typed without the prefix.

    >>> parse_address(" client@example.dz ")
    Address(channel='email', to='client@example.dz')
    >>> parse_address("0661 23 45 67").to, parse_address("+216 98 123 456").to, parse_address("22123456", "TN").to
    ('+213661234567', '+21698123456', '+21622123456')
    >>> parse_address("0550\u0661\u0662\u0663\u0664\u0665\u0666").to
    '+213550123456'
    >>> try:
    ...     parse_address("22123456")
    ... except AddressError as e:
    ...     print(e)
    not a mobile number: a Tunisian number needs +216 at this counter
    >>> try:
    ...     parse_address("0861234567")
    ... except AddressError as e:
    ...     print(e)
    not a mobile number: Algeria 05/06/07 + 8 digits or +213, Tunisia 8 digits (2, 4, 5, 9) or +216
    """
    text = str(text).strip()
    if len(text) > 254:
        raise AddressError("too long: 254 characters at most")
    if "@" in text:
        local, _, domain = text.rpartition("@")
        labels = domain.split(".")
        if (not _LOCAL.fullmatch(local) or local.startswith(".") or local.endswith(".") or ".." in local
                or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels)
                or not labels[-1].isalpha() or len(labels[-1]) < 2):
            raise AddressError("not an e-mail address: name@domain.tld")
        return Address("email", text)
    number = _ascii_digits(text.translate(_PHONE_JUNK))
    if m := _DZ_INTL.fullmatch(number):
        return Address("sms", "+213" + m.group(1))
    if m := _TN_INTL.fullmatch(number):
        return Address("sms", "+216" + m.group(1))
    if m := _DZ_NATIONAL.fullmatch(number):
        if country == "DZ":
            return Address("sms", "+213" + m.group(1))
        raise AddressError("not a mobile number: an Algerian number needs +213 at this counter")
    if m := _TN_NATIONAL.fullmatch(number):
        if country == "TN":
            return Address("sms", "+216" + m.group(1))
        raise AddressError("not a mobile number: a Tunisian number needs +216 at this counter")
    raise AddressError(_PHONE_RULE)


def mask_address(to: str) -> str:
    """What the screen may show once the address is gone.

    >>> mask_address("client@example.dz"), mask_address("+213661234567")
    ('c***@example.dz', '+213*******67')
    """
    if "@" in to:
        local, _, domain = to.rpartition("@")
        return f"{local[:1]}***@{domain}"
    return to[:4] + "*" * max(0, len(to) - 6) + to[-2:]


@dataclass(frozen=True)
class SendRequest:
    id: int
    receipt_number: str
    channel: str
    address: str | None
    hint: str
    language: str
    state: str  # waiting | sent | attention
    reason: str
    attempts: int
    created_at: str


_COLUMNS = "id, receipt_number, channel, address, hint, language, state, reason, attempts, created_at"


class Outbox:
    """The e-mail/SMS requests. One transaction per change; safe to share between threads."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn, self.path = conn, path
        self._lock = threading.Lock()

    @classmethod
    def open(cls, state_dir: str | Path) -> Outbox:
        path = Path(state_dir) / FILE
        conn = open_database(path, MIGRATIONS, error=OutboxError, timeout=5)
        # A dropped address must be gone from the file, not only from the table: freed cells are zeroed,
        # and the WAL (which holds the old page images) is emptied after each drop (_forget).
        conn.execute("PRAGMA secure_delete=ON")
        box = cls(conn, path)
        box.forget_pending()  # a drop whose checkpoint was busy last time (a reader, a crash)
        return box

    def close(self) -> None:
        self.conn.close()

    def add(self, receipt_number: str, address: Address, *, language: str = "fr") -> int:
        """Journal one request (the same receipt and address again is the same request); its id."""
        number = str(receipt_number)[:64]
        lang = language if language in LANGUAGES else "fr"
        now = clock.now_stamp()
        with self._lock, storage_errors(self.path, "outbox"):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                row = self.conn.execute(
                    "SELECT id FROM sends WHERE receipt_number = ? AND channel = ? AND address = ?"
                    " AND state = 'waiting'", (number, address.channel, address.to)).fetchone()
                if row is not None:
                    self.conn.execute("COMMIT")
                    return int(row[0])
                (count,) = self.conn.execute("SELECT count(*) FROM sends WHERE state = 'waiting'").fetchone()
                if count >= MAX_WAITING:
                    raise OutboxError(f"outbox: {count} requests waiting already")
                cur = self.conn.execute(
                    "INSERT INTO sends (receipt_number, channel, address, hint, language, state, created_at,"
                    " updated_at) VALUES (?,?,?,?,?, 'waiting', ?, ?)",
                    (number, address.channel, address.to, address.hint, lang, now, now))
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        log.info("receipt %s: %s requested", number, address.channel)
        return int(cur.lastrowid or 0)

    def _select(self, where: str, params: tuple[object, ...], limit: int) -> list[SendRequest]:
        # `where` is one of this module's constants, never input
        with self._lock, storage_errors(self.path, "outbox"):
            sql = f"SELECT {_COLUMNS} FROM sends WHERE {where} ORDER BY id LIMIT ?"  # noqa: S608
            rows = self.conn.execute(sql, (*params, int(limit))).fetchall()
        return [SendRequest(*r) for r in rows]

    def waiting(self, limit: int = SEND_BATCH) -> list[SendRequest]:
        return self._select("state = 'waiting'", (), limit)

    def requests(self, receipt_number: str) -> list[SendRequest]:
        """Every request of one receipt (the receipt screen shows their states)."""
        return self._select("receipt_number = ?", (str(receipt_number)[:64],), 50)

    def attention(self, limit: int = 100) -> list[SendRequest]:
        return self._select("state = 'attention'", (), limit)

    def _update(self, req_id: int, sql: str, params: tuple[object, ...]) -> None:
        with self._lock, storage_errors(self.path, "outbox"):
            self.conn.execute(f"UPDATE sends SET {sql}, updated_at = ? WHERE id = ?",  # noqa: S608 - constant sql
                              (*params, clock.now_stamp(), int(req_id)))

    def _drop(self, req_id: int, sql: str, params: tuple[object, ...]) -> None:
        """One transaction: the row's address is NULLed and the "forget pending" mark set; then the WAL."""
        with self._lock, storage_errors(self.path, "outbox"):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.execute(f"UPDATE sends SET {sql}, updated_at = ? WHERE id = ?",  # noqa: S608 - constant
                                  (*params, clock.now_stamp(), int(req_id)))
                self.conn.execute("INSERT OR IGNORE INTO forget (id, since) VALUES (1, ?)", (clock.now_stamp(),))
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        self.forget_pending()

    def sent(self, req_id: int) -> None:
        """Accepted by the server: the customer's address is dropped in the same statement."""
        self._drop(req_id, "state = 'sent', address = NULL, reason = '', attempts = attempts + 1", ())

    def forget_pending(self) -> bool:
        """The WAL still holds the page images with a dropped address: checkpoint them into the (zeroed) file and
        truncate it. True when done (or nothing to do); False when a reader kept the WAL busy (the mark stays,
        the next job run or open tries again; logged without any address)."""
        with self._lock, storage_errors(self.path, "outbox"):
            if self.conn.execute("SELECT 1 FROM forget").fetchone() is None:
                return True
            busy, frames, done = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if (busy, frames, done) != (0, 0, 0):
                log.warning("outbox: a dropped address is still in %s-wal (checkpoint busy=%s, %s/%s frames);"
                            " retried at the next run", self.path.name, busy, done, frames)
                return False
            self.conn.execute("DELETE FROM forget")
            # the DELETE went to the WAL again: fold it back in (no address in it, a busy answer is harmless)
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return True

    def later(self, req_id: int, reason: str, *, count: bool = True) -> None:
        """Still waiting, with why; `count`: one more attempt at the server (a wait for the upload is none)."""
        self._update(req_id, f"reason = ?, attempts = attempts + {int(count)}", (_line(reason),))

    def refused(self, req_id: int, reason: str) -> None:
        """Refused for good: a person must look; the address is of no more use and is dropped."""
        self._drop(req_id, "state = 'attention', address = NULL, reason = ?, attempts = attempts + 1",
                   (_line(reason),))


def uploaded(journal: Journal, receipt_number: str) -> bool | None:
    """Whether every payment of the receipt's transaction (all the bills of a basket) has reached the server as
    the journal knows it (None: the receipt is not in it)."""
    try:
        payment = journal.find(receipt_number)
    except KeyError:
        return None
    payments = journal.transaction(payment.transaction_id) if payment.transaction_id else [payment]
    waiting = {s.value for s in NOT_UPLOADED}
    return all(str(p.state) not in waiting for p in payments or [payment])


# Refusals about the request itself: the address is of no more use. Anything else (401/403: the terminal's
# token; 429/5xx: the server's state) is not the customer's and leaves every request waiting.
FINAL = frozenset({400, 404, 409, 410, 413, 422})


def send_pending(box: Outbox, client: BillingClient, journal: Journal, *, limit: int = SEND_BATCH) -> Outcome:
    """One run of the "receipt-send" job: at most `limit` requests to the server, oldest first. A request
    whose transaction the journal has not uploaded completely is not asked (and does not hold the newer ones
    back). A ServerUnreachable, a 401/403, 429 or 5xx goes up: the scheduler treats it as an outage or a
    server problem (every request stays waiting). A malformed answer costs its request one attempt."""
    box.forget_pending()
    asked = 0
    for req in box.waiting(MAX_WAITING):
        if uploaded(journal, req.receipt_number) is False:
            if req.reason != UPLOAD_WAIT:
                box.later(req.id, UPLOAD_WAIT, count=False)
            continue
        if asked >= limit or (asked and step_over()):  # step_over: the step's slice is spent (the watchdog)
            return Outcome(more=True)
        asked += 1
        if req.address is None:  # cannot happen (CHECK constraint); a damaged row is not the loop's end
            box.refused(req.id, "no address stored")
            continue
        try:
            client.send_receipt(req.receipt_number, req.channel, req.address, req.language)
        except ApiError as e:
            if e.status not in FINAL:
                box.later(req.id, f"{e.status} {_code(e.code)}")
                # up to the scheduler (it logs it): status and code, not a message that may echo the address
                raise ApiError(e.status, _code(e.code), "receipt send refused; every request waits") from None
            known = uploaded(journal, req.receipt_number)
            if e.status == 404 and e.code == "receipt_not_found" and known is False:
                box.later(req.id, UPLOAD_WAIT)
                continue
            # status and code only: the server's message may echo the customer's address
            reason = f"{e.status} {_code(e.code)}"
            if e.status == 404:
                reason = (f"{reason}: receipt {req.receipt_number} is uploaded, the server does not know it"
                          if known else f"{reason}: receipt {req.receipt_number} is not in this journal")
            box.refused(req.id, reason)
            log.warning("receipt %s: %s refused: %s %s", req.receipt_number, req.channel, e.status, _code(e.code))
            continue
        except BadAnswer as e:
            if req.attempts + 1 >= MAX_ATTEMPTS:
                box.refused(req.id, f"the server's answer could not be read {MAX_ATTEMPTS} times")
                log.error("receipt %s: %s needs attention: %s", req.receipt_number, req.channel, e)
            else:
                box.later(req.id, "the server's answer could not be read")
                log.warning("receipt %s: %s: %s", req.receipt_number, req.channel, e)
            continue
        box.sent(req.id)
        log.info("receipt %s: %s accepted by the server", req.receipt_number, req.channel)
    return Outcome()


def _code(code: object) -> str:
    """The server's error code as we store it: a short token, nothing else (it is the server's text)."""
    text = str(code)
    return text if re.fullmatch(r"[a-z0-9_]{1,40}", text) else "error"


def _line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."
