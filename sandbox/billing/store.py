"""The sandbox billing server's own SQLite database: bills, recorded payments, authorizations.

One connection shared by the server's event loop and in-process callers (tests), serialised by a lock.
WAL with ``synchronous=NORMAL``: a commit costs no fsync, which keeps a 500-payment batch in one cheap
transaction (this is a test double; durability across power cuts is the agent's journal's job).

>>> store = Store(":memory:")
>>> store.add_bills(generate_bills(10, "ORAN-07"))
10
>>> ref = first_reference("ORAN-07")
>>> store.get_bill(ref)["amount_due"] > 0
True
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeGuard

import orjson

from config.money import CURRENCIES
from drivers.pan import masked_pan_fault
from sandbox.billing.acquirer import cardholder_tag
from sandbox.billing.seed import first_reference, generate_bills  # noqa: F401  (doctest)

BILL_FIELDS = (
    "reference", "contract", "customer_name", "service", "period", "issued_on", "due_on",
    "amount_due", "currency", "status", "agency_id", "customer_id", "version",
)  # fmt: skip
BILL_STATUSES = ("unpaid", "partially_paid", "paid", "cancelled")
SERVICES = ("water", "electricity", "gas", "sanitation")
METHODS = ("card_terminal", "card_reader", "cash")
PAYMENT_FIELDS = frozenset(
    {
        "payment_id", "transaction_id", "bill_reference", "amount", "currency", "method", "card",
        "authorization", "agency_id", "terminal_id", "cashier_id", "receipt_number", "captured_at",
        "captured_offline", "emv", "stamp_duty", "settlement",
    }
)  # fmt: skip
CARD_FIELDS = frozenset({"scheme", "pan_masked", "pan_token", "expiry", "aid", "entry_mode"})
SETTLED_CARD_FIELDS = frozenset({"scheme", "pan_masked", "pan_token"})
AUTHORIZATION_FIELDS = frozenset({"code", "reference", "approved_at"})
SETTLEMENT_FIELDS = frozenset({"by", "from", "at"})
ENTRY_MODES = ("chip", "contactless", "terminal")
SETTLED_FROM = ("terminal_ticket", "server")
CREDITED = "credited_to_account"
MAX_MONEY = 2**63 - 1  # what SQLite's INTEGER holds, here and on the agent
# Agencies are in Algeria and Tunisia: both UTC+01:00 all year, no daylight saving time.
AGENCY_TZ = timezone(timedelta(hours=1))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bills (
    reference TEXT PRIMARY KEY,
    contract TEXT NOT NULL,
    customer_name TEXT NOT NULL,
    service TEXT NOT NULL,
    period TEXT NOT NULL,
    issued_on TEXT NOT NULL,
    due_on TEXT NOT NULL,
    amount_due INTEGER NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    agency_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    seq INTEGER NOT NULL UNIQUE          -- global change counter: the delta feed's cursor
);
CREATE INDEX IF NOT EXISTS bills_feed ON bills (agency_id, seq);
CREATE INDEX IF NOT EXISTS bills_customer ON bills (customer_id);
CREATE TABLE IF NOT EXISTS payments (
    payment_id TEXT PRIMARY KEY,
    canonical TEXT NOT NULL,             -- canonical JSON of the payment as first accepted
    bill_reference TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    notice TEXT,
    recorded_at TEXT NOT NULL,
    submissions INTEGER NOT NULL DEFAULT 1,
    duplicates INTEGER NOT NULL DEFAULT 0,
    conflicts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY,
    payment_id TEXT,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS authorizations (
    payment_id TEXT PRIMARY KEY,
    response TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    pan_masked TEXT NOT NULL,            -- never the full PAN
    created_at TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS receipt_sends (
    receipt_number TEXT NOT NULL,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    language TEXT,
    terminal_id TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (receipt_number, channel, address)
);
CREATE TABLE IF NOT EXISTS terminal_marks (
    terminal_id TEXT PRIMARY KEY,
    last_receipt_number TEXT NOT NULL     -- the highest receipt number seen from this terminal
);
"""
# Columns added after version 1 of this database (a sandbox DB from an older checkout keeps working):
# (table, column, declaration, backfill from the payment's canonical JSON or None).
_ADDED_COLUMNS = (
    ("payments", "terminal_id", "TEXT", "json_extract(canonical, '$.terminal_id')"),
    ("payments", "receipt_number", "TEXT", "json_extract(canonical, '$.receipt_number')"),
    ("payments", "business_day", "TEXT", None),
    ("authorizations", "terminal_id", "TEXT", None),
    ("authorizations", "reversed_at", "TEXT", None),
    ("authorizations", "reversal_reason", "TEXT", None),
    ("authorizations", "chip", "TEXT", None),  # JSON: the issuer's check of the ARQC (CVN, verified, why not)
    ("authorizations", "card_id", "TEXT", None),  # the acquirer's HMAC of PAN and PSN (the replay check)
    ("authorizations", "emv_hash", "TEXT", None),  # SHA-256 of the request's emv (the replay check)
    ("payments", "transaction_id", "TEXT", "json_extract(canonical, '$.transaction_id')"),
)

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
_EXPIRY = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# Contract PanMasked: at most the first 6 and the last 4 digits, at least 3 masked characters.
# The acquirer's check of one uploaded payment: (error code, message) to reject it, or None.
PaymentCheck = Callable[[Mapping[str, Any]], "tuple[str, str] | None"]


def now_rfc3339() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


def canonical_json(value: Any) -> str:
    """The comparison form for idempotency: sorted keys, no spaces, UTF-8 kept.

    orjson writes exactly what `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
    writes, seven times faster (a share of every batch); what it refuses (an integer beyond 64 bits, which
    payment_problem lets through as an amount) goes to the stdlib.

    >>> canonical_json({"b": 1, "a": "é"})
    '{"a":"é","b":1}'
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def is_rfc3339(value: Any) -> bool:
    if not isinstance(value, str) or not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def is_masked_pan(value: str) -> bool:
    """Digits only in the first 6 and last 4 positions; the rest masked (PCI DSS 3.4.1): the agent's own rule.

    >>> is_masked_pan("628058******1234"), is_masked_pan("************1234"), is_masked_pan("6280580000001234")
    (True, True, False)
    """
    return masked_pan_fault(value) is None


def receipt_key(receipt_number: str) -> tuple[int, str]:
    """Order of receipt numbers: by their trailing counter, then as text.

    >>> receipt_key("ORAN-07-G2-000123") > receipt_key("ORAN-07-G2-000099")
    True
    """
    m = re.search(r"(\d+)$", receipt_number)
    return (int(m.group(1)[-18:]) if m else -1, receipt_number)


def business_day_of(captured_at: str) -> str:
    """The agency-local date (UTC+01:00) of an RFC 3339 time."""
    return datetime.fromisoformat(captured_at).astimezone(AGENCY_TZ).date().isoformat()


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


# JSON Schema patterns are ECMA-262 regexes: the contract's non-blank (`\S`) is "holds a character outside
# ECMA-262's white space", which is narrower than str.isspace() (that also counts \x1c-\x1f and \x85).
_ECMA_SPACE = frozenset("\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)


def _is_text(v: Any, max_len: int = 200) -> bool:
    """A non-blank string of at most ``max_len`` characters (the contract's Text).

    >>> _is_text("c0042"), _is_text(" \u3000 "), _is_text("\x1f")
    (True, False, True)
    """
    return isinstance(v, str) and len(v) <= max_len and any(c not in _ECMA_SPACE for c in v)


def _is_hex(v: Any, max_len: int) -> bool:
    return isinstance(v, str) and len(v) <= max_len and _HEX.match(v) is not None


def unknown_payment_field(payment: dict[str, Any], where: str) -> str | None:
    """The first unknown field of a submitted payment (dotted path), or None."""
    for key in payment:
        if key not in PAYMENT_FIELDS:
            return f"{where}.{key}"
    subs = (("card", CARD_FIELDS), ("authorization", AUTHORIZATION_FIELDS), ("settlement", SETTLEMENT_FIELDS))
    for sub, allowed in subs:
        obj = payment.get(sub)
        if isinstance(obj, dict):
            for key in obj:
                if key not in allowed:
                    return f"{where}.{sub}.{key}"
    return None


def payment_problem(p: dict[str, Any]) -> str | None:
    """Why a submitted payment is invalid (one line naming the field), or None when it is well formed."""
    for key in ("payment_id", "transaction_id"):
        v = p.get(key)
        if not isinstance(v, str) or not _UUID.match(v):
            return f"{key}: must be a UUID string"
    for key in ("bill_reference", "agency_id", "terminal_id", "cashier_id", "receipt_number"):
        if not _is_text(p.get(key)):
            return f"{key}: must be a non-empty string"
    amount = p.get("amount")
    if not _is_int(amount):
        return "amount: must be an integer in minor units"
    if amount <= 0:
        return "amount: must be greater than 0"
    if amount > MAX_MONEY:
        return "amount: too large"
    if not isinstance(p.get("currency"), str) or not _CURRENCY.match(p["currency"]):
        # The contract's shape (an ISO 4217 code); another code than the bill's is currency_mismatch.
        return "currency: must be an ISO 4217 code (3 capital letters)"
    method = p.get("method")
    if method not in METHODS:
        return f"method: must be one of {', '.join(METHODS)}"
    if not is_rfc3339(p.get("captured_at")):
        return "captured_at: must be an RFC 3339 time with an offset"
    if not isinstance(p.get("captured_offline"), bool):
        return "captured_offline: must be true or false"
    card, auth, settlement = p.get("card"), p.get("authorization"), p.get("settlement")
    stamp_duty, emv = p.get("stamp_duty"), p.get("emv")
    if method == "cash":
        if card is not None:
            return "card: must be null for cash"
        if auth is not None:
            return "authorization: must be null for cash"
        if emv is not None:
            return "emv: must be null for cash"
        if settlement is not None:
            return "settlement: only for a card payment"
        if stamp_duty is not None and (not _is_int(stamp_duty) or not 0 <= stamp_duty <= MAX_MONEY):
            return "stamp_duty: must be an integer >= 0 in minor units, or null"
        return None
    if stamp_duty is not None and stamp_duty != 0 or isinstance(stamp_duty, bool | float):
        return "stamp_duty: cash only (0 or null for a card payment)"
    if emv is not None and not _is_hex(emv, 4096):
        return "emv: must be hex TLV (at most 2048 bytes) or null"
    if settlement is not None:
        problem = _settlement_problem(settlement)
        if problem:
            return problem
    if not isinstance(card, dict):
        return f"card: required for {method}"
    if settlement is not None:
        for key in card:
            if key not in SETTLED_CARD_FIELDS:
                return f"card.{key}: a settled payment's card holds only scheme, pan_masked and pan_token"
    if not _is_text(card.get("scheme"), 40):
        return "card.scheme: must be a non-empty string"
    masked = card.get("pan_masked")
    if masked is not None and (not isinstance(masked, str) or not is_masked_pan(masked)):
        return "card.pan_masked: must show at most the first 6 and last 4 digits"
    token = card.get("pan_token")
    if token is not None and not _is_hex(token, 128):
        return "card.pan_token: must be hex"
    expiry = card.get("expiry")
    if expiry is not None and (not isinstance(expiry, str) or not _EXPIRY.match(expiry)):
        return "card.expiry: must be YYYY-MM"
    aid = card.get("aid")
    if aid is not None and (not _is_hex(aid, 32) or len(aid) < 10):
        return "card.aid: must be 5 to 16 bytes of hex"
    entry_mode = card.get("entry_mode")
    if entry_mode is not None and entry_mode not in ENTRY_MODES:
        return f"card.entry_mode: must be one of {', '.join(ENTRY_MODES)} or null"
    if not isinstance(auth, dict):
        return f"authorization: required for {method}"
    code = auth.get("code")
    if not isinstance(code, str) or len(code) > 200:
        return "authorization.code: must be a string"
    ref = auth.get("reference")
    if ref is not None and (not isinstance(ref, str) or len(ref) > 200):
        return "authorization.reference: must be a string or null"
    approved_at = auth.get("approved_at")
    if approved_at is not None and not is_rfc3339(approved_at):
        return "authorization.approved_at: must be an RFC 3339 time with an offset"
    return None


def _settlement_problem(settlement: Any) -> str | None:
    if not isinstance(settlement, dict):
        return "settlement: must be an object or null"
    if not _is_text(settlement.get("by")):
        return "settlement.by: must be a non-empty string (who settled it)"
    if settlement.get("from") not in SETTLED_FROM:
        return f"settlement.from: must be one of {', '.join(SETTLED_FROM)}"
    if not is_rfc3339(settlement.get("at")):
        return "settlement.at: must be an RFC 3339 time with an offset"
    return None


def _result_rejected(payment_id: Any, code: str, message: str) -> dict[str, Any]:
    return {
        "payment_id": payment_id if isinstance(payment_id, str) else None,
        "status": "rejected",
        "error": {"code": code, "message": message},
    }


class Store:
    """Bills, payments and authorizations of one sandbox server.

    >>> s = Store(":memory:")
    >>> _ = s.add_bills(generate_bills(3, "ORAN-07"))
    >>> items, cursor = s.feed("ORAN-07", after=0, limit=2)
    >>> [b["version"] for b in items], cursor
    ([1, 1], 2)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(_SCHEMA)
        self._add_columns()
        self._seq: int = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM bills").fetchone()[0]

    def _add_columns(self) -> None:
        for table, column, decl, backfill in _ADDED_COLUMNS:
            have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
                if backfill:
                    self.db.execute(f"UPDATE {table} SET {column} = {backfill}")  # noqa: S608
        rows = self.db.execute("SELECT payment_id, canonical FROM payments WHERE business_day IS NULL").fetchall()
        for row in rows:
            day = business_day_of(json.loads(row[1])["captured_at"])
            self.db.execute("UPDATE payments SET business_day = ? WHERE payment_id = ?", (day, row[0]))
        if self.db.execute("SELECT 1 FROM terminal_marks LIMIT 1").fetchone() is None:
            # A database from before the marks existed: its recorded payments set them.
            for tid, receipt in self.db.execute("SELECT terminal_id, receipt_number FROM payments").fetchall():
                if tid and receipt:
                    self._raise_mark(tid, receipt)
        self.db.execute("CREATE INDEX IF NOT EXISTS payments_day ON payments (terminal_id, business_day)")
        self.db.execute("CREATE INDEX IF NOT EXISTS payments_receipt ON payments (receipt_number)")
        self.db.execute("CREATE INDEX IF NOT EXISTS payments_transaction ON payments (transaction_id)")

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # -- bills ---------------------------------------------------------------------------------------

    def add_bills(self, bills: Iterable[dict[str, Any]]) -> int:
        """Insert bills that are not there yet (same reference = skipped, so re-seeding is a no-op)."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                added = 0
                for b in bills:
                    cur = self.db.execute(
                        "INSERT OR IGNORE INTO bills VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (*(b[f] for f in BILL_FIELDS), self._seq + 1),
                    )
                    if cur.rowcount:
                        self._seq += 1
                        added += 1
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                self._seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM bills").fetchone()[0]
                raise
            return added

    def put_bill(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Create a bill or change some fields of an existing one; bumps ``version`` (feed shows it).

        Raises ValueError naming the field at fault.
        """
        ref = fields.get("reference")
        if not isinstance(ref, str) or not ref.strip():
            raise ValueError("reference: required string")
        for key in fields:
            if key not in BILL_FIELDS:
                raise ValueError(f"{key}: unknown field")
        if "version" in fields:
            raise ValueError("version: set by the server")
        with self.lock:
            current = self.get_bill(ref)
            bill = dict(current) if current else {}
            bill.update(fields)
            if current is None:
                missing = [f for f in BILL_FIELDS if f not in bill and f != "version"]
                if missing:
                    raise ValueError(f"{missing[0]}: required for a new bill")
                bill["version"] = 1
            else:
                bill["version"] = current["version"] + 1
            _check_bill(bill)
            self.db.execute("BEGIN IMMEDIATE")
            try:
                values = (*(bill[f] for f in BILL_FIELDS), self._seq + 1)
                if current is None:
                    self.db.execute("INSERT INTO bills VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", values)
                else:  # UPDATE keeps the row (and the seed order of references())
                    sets = ", ".join(f"{f} = ?" for f in (*BILL_FIELDS, "seq"))
                    self.db.execute(f"UPDATE bills SET {sets} WHERE reference = ?", (*values, ref))  # noqa: S608
                self.db.execute("COMMIT")
                self._seq += 1
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            return bill

    def get_bill(self, reference: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.db.execute("SELECT * FROM bills WHERE reference = ?", (reference,)).fetchone()
        return _bill(row) if row else None

    def customer_bills(self, customer_id: str, agency: str | None = None) -> list[dict[str, Any]] | None:
        """Unpaid and partially paid bills of the customer (in ``agency`` when given); None when the customer
        has no bill at all (there)."""
        with self.lock:
            rows = self.db.execute("SELECT * FROM bills WHERE customer_id = ? ORDER BY seq", (customer_id,)).fetchall()
        if agency is not None:
            rows = [r for r in rows if r["agency_id"] == agency]
        if not rows:
            return None
        return [_bill(r) for r in rows if r["status"] in ("unpaid", "partially_paid")]

    def feed(self, agency: str, *, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Bills of ``agency`` changed after change number ``after``; returns (items, new position)."""
        with self.lock:
            rows = self.db.execute(
                "SELECT * FROM bills WHERE agency_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (agency, after, limit),
            ).fetchall()
        position = rows[-1]["seq"] if rows else after
        return [_bill(r) for r in rows], position

    def references(
        self, *, agency: str | None = None, status: str | None = None, limit: int | None = None
    ) -> list[str]:
        """References in insertion (seed) order, optionally filtered; for tests and the demo."""
        sql, args = "SELECT reference FROM bills WHERE 1=1", list[Any]()
        if agency is not None:
            sql += " AND agency_id = ?"
            args.append(agency)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        sql += " ORDER BY rowid"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self.lock:
            return [r[0] for r in self.db.execute(sql, args)]

    # -- payments ------------------------------------------------------------------------------------

    def record_batch(self, payments: Sequence[Any], check: PaymentCheck | None = None) -> list[dict[str, Any]]:
        """Decide each payment on its own, in order, in ONE transaction; returns the contract's results.

        Payments must already be checked for unknown fields (a whole-request 400). ``check`` (the acquirer's
        chip data and offline TC check) may reject a new, well-formed payment: ``(code, message)`` or None;
        a replay of a recorded payment stays a duplicate.
        """
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                at = now_rfc3339()
                results = [self._record_one(p, at, check) for p in payments]
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                self._seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM bills").fetchone()[0]
                raise
        return results

    def _reject(self, payment_id: Any, code: str, message: str, at: str) -> dict[str, Any]:
        result = _result_rejected(payment_id, code, message)
        self.db.execute(
            "INSERT INTO rejections (payment_id, code, message, at) VALUES (?,?,?,?)",
            (result["payment_id"], code, message, at),
        )
        return result

    def _record_one(self, p: Any, at: str, check: PaymentCheck | None = None) -> dict[str, Any]:
        if not isinstance(p, dict):
            return self._reject(None, "invalid_payment", "payment: must be a JSON object", at)
        pid = p.get("payment_id")
        problem = payment_problem(p)
        if problem:
            return self._reject(pid, "invalid_payment", problem, at)
        tag = cardholder_tag(p["emv"]) if isinstance(p.get("emv"), str) else None
        if tag is not None:  # stored and served back: never the PAN or track data, whatever the method
            return self._reject(pid, "cardholder_data", f"emv: tag {tag} is cardholder data and must never be sent", at)
        canonical = canonical_json(p)
        row = self.db.execute("SELECT canonical FROM payments WHERE payment_id = ?", (pid,)).fetchone()
        if row is not None:
            if row[0] == canonical:
                self.db.execute(
                    "UPDATE payments SET submissions = submissions + 1, duplicates = duplicates + 1 "
                    "WHERE payment_id = ?",
                    (pid,),
                )
                return {"payment_id": pid, "status": "duplicate"}
            self.db.execute(
                "UPDATE payments SET submissions = submissions + 1, conflicts = conflicts + 1 WHERE payment_id = ?",
                (pid,),
            )
            return self._reject(
                pid,
                "idempotency_conflict",
                f"payment_id {pid} was already recorded with different content",
                at,
            )
        ref = p["bill_reference"]
        bill = self.db.execute("SELECT amount_due, currency, status FROM bills WHERE reference = ?", (ref,)).fetchone()
        if bill is None:
            return self._reject(pid, "bill_not_found", f"bill_reference: no bill {ref}", at)
        if bill["currency"] != p["currency"]:
            return self._reject(
                pid,
                "currency_mismatch",
                f"currency: bill {ref} is in {bill['currency']}, payment is in {p['currency']}",
                at,
            )
        # Last, once nothing else refuses it: the acquirer records a TC's use in this transaction.
        refused = check(p) if check is not None else None
        if refused is not None:
            return self._reject(pid, refused[0], refused[1], at)
        amount, due, status = p["amount"], bill["amount_due"], bill["status"]
        notice = None
        if status in ("paid", "cancelled") or amount > due:
            notice = CREDITED
        if status not in ("paid", "cancelled"):
            new_due = max(0, due - amount)
            self.db.execute(
                "UPDATE bills SET amount_due = ?, status = ?, version = version + 1, seq = ? WHERE reference = ?",
                (new_due, "paid" if new_due == 0 else "partially_paid", self._next_seq(), ref),
            )
        self.db.execute(
            "INSERT INTO payments (payment_id, canonical, bill_reference, amount, currency, notice, "
            "recorded_at, terminal_id, receipt_number, business_day, transaction_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (pid, canonical, ref, amount, p["currency"], notice, at, p["terminal_id"], p["receipt_number"],
             business_day_of(p["captured_at"]), p["transaction_id"]),
        )  # fmt: skip
        self._raise_mark(p["terminal_id"], p["receipt_number"])
        result: dict[str, Any] = {
            "payment_id": pid,
            "status": "accepted",
            "receipt_number": p["receipt_number"],
        }
        if notice:
            result["notice"] = notice
        return result

    def get_payment(self, payment_id: str, terminal_id: str | None = None) -> dict[str, Any] | None:
        """The payment as recorded plus ``"status": "recorded"``; None when unknown (or another terminal's)."""
        with self.lock:
            row = self.db.execute(
                "SELECT canonical, terminal_id FROM payments WHERE payment_id = ?", (payment_id,)
            ).fetchone()
        if row is None or (terminal_id is not None and row[1] != terminal_id):
            return None
        payment: dict[str, Any] = json.loads(row[0])
        payment["status"] = "recorded"
        return payment

    def recorded_payments(self) -> list[dict[str, Any]]:
        """Every recorded payment in recording order, with how often it was submitted.

        Each item: ``payment_id``, ``bill_reference``, ``amount``, ``currency``, ``notice``,
        ``recorded_at``, ``count`` (submissions of that payment_id: accepted once + duplicates +
        conflicts), ``duplicates``, ``conflicts`` and ``payment`` (the body as recorded).
        """
        with self.lock:
            rows = self.db.execute("SELECT * FROM payments ORDER BY rowid").fetchall()
        return [
            {
                "payment_id": r["payment_id"],
                "bill_reference": r["bill_reference"],
                "amount": r["amount"],
                "currency": r["currency"],
                "notice": r["notice"],
                "recorded_at": r["recorded_at"],
                "count": r["submissions"],
                "duplicates": r["duplicates"],
                "conflicts": r["conflicts"],
                "payment": json.loads(r["canonical"]),
            }
            for r in rows
        ]

    def business_day(
        self, terminal_id: str, day: str, *, after: int, limit: int
    ) -> tuple[list[dict[str, Any]], int | None, dict[str, Any]]:
        """(items, position of the last item when more may follow else None, totals of the whole day)."""
        keys = ("payment_id", "transaction_id", "bill_reference", "amount", "currency", "method",
                "receipt_number", "captured_at")  # fmt: skip
        with self.lock:
            rows = self.db.execute(
                "SELECT rowid, canonical, recorded_at FROM payments WHERE terminal_id = ? AND business_day = ? "
                "AND rowid > ? ORDER BY rowid LIMIT ?",
                (terminal_id, day, after, limit + 1),
            ).fetchall()
            whole = self.db.execute(
                "SELECT canonical FROM payments WHERE terminal_id = ? AND business_day = ?", (terminal_id, day)
            ).fetchall()
        items = []
        for r in rows[:limit]:
            p = json.loads(r[1])
            item = {k: p.get(k) for k in keys}
            item["stamp_duty"] = p.get("stamp_duty") or 0
            item["recorded_at"] = r[2]
            items.append(item)
        more = rows[limit - 1][0] if len(rows) > limit else None
        totals: dict[str, Any] = {"count": 0, "amount": {}, "stamp_duty": {}, "by_method": {}}
        for (canonical,) in whole:
            p = json.loads(canonical)
            cur = p["currency"]
            totals["count"] += 1
            totals["amount"][cur] = totals["amount"].get(cur, 0) + p["amount"]
            if p.get("stamp_duty"):
                totals["stamp_duty"][cur] = totals["stamp_duty"].get(cur, 0) + p["stamp_duty"]
            m = totals["by_method"].setdefault(p["method"], {"count": 0, "amount": {}})
            m["count"] += 1
            m["amount"][cur] = m["amount"].get(cur, 0) + p["amount"]
        return items, more, totals

    # -- receipts and high-water marks -----------------------------------------------------------------

    def receipt_known(self, receipt_number: str, terminal_id: str) -> bool:
        """Whether a payment of this receipt (from this terminal) has been recorded."""
        with self.lock:
            row = self.db.execute(
                "SELECT 1 FROM payments WHERE receipt_number = ? AND terminal_id = ? LIMIT 1",
                (receipt_number, terminal_id),
            ).fetchone()
        return row is not None

    def queue_receipt(self, receipt_number: str, channel: str, address: str, language: str | None,
                      terminal_id: str) -> None:  # fmt: skip
        """Record a send request; the same (receipt, channel, address) again only counts."""
        with self.lock:
            self.db.execute(
                "INSERT INTO receipt_sends (receipt_number, channel, address, language, terminal_id, requested_at) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT (receipt_number, channel, address) "
                "DO UPDATE SET requests = requests + 1",
                (receipt_number, channel, address, language, terminal_id, now_rfc3339()),
            )

    def receipt_sends(self) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute("SELECT * FROM receipt_sends ORDER BY rowid").fetchall()
        return [dict(r) for r in rows]

    def _raise_mark(self, terminal_id: str, receipt_number: str) -> None:
        row = self.db.execute(
            "SELECT last_receipt_number FROM terminal_marks WHERE terminal_id = ?", (terminal_id,)
        ).fetchone()
        if row is None or receipt_key(receipt_number) > receipt_key(row[0]):
            self.db.execute(
                "INSERT INTO terminal_marks VALUES (?, ?) ON CONFLICT (terminal_id) "
                "DO UPDATE SET last_receipt_number = excluded.last_receipt_number",
                (terminal_id, receipt_number),
            )

    def note_receipt(self, terminal_id: str, receipt_number: str | None) -> str | None:
        """Raise the terminal's high-water mark to ``receipt_number`` (when given); returns the mark."""
        with self.lock:
            if receipt_number is not None:
                self._raise_mark(terminal_id, receipt_number)
            row = self.db.execute(
                "SELECT last_receipt_number FROM terminal_marks WHERE terminal_id = ?", (terminal_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def rejections(self) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute("SELECT payment_id, code, message, at FROM rejections ORDER BY id")
            return [dict(r) for r in rows]

    # -- authorizations ------------------------------------------------------------------------------

    def get_authorization(self, payment_id: str, terminal_id: str | None = None) -> dict[str, Any] | None:
        """The answer given for ``payment_id``; None when there is none (or it is another terminal's)."""
        with self.lock:
            row = self.db.execute(
                "SELECT response, terminal_id FROM authorizations WHERE payment_id = ?", (payment_id,)
            ).fetchone()
        if row is None or (terminal_id is not None and row[1] is not None and row[1] != terminal_id):
            return None
        found: dict[str, Any] = json.loads(row[0])
        return found

    def authorization_terminal(self, payment_id: str) -> str | None:
        """The terminal that first asked under this key (None when nobody did)."""
        with self.lock:
            row = self.db.execute(
                "SELECT terminal_id FROM authorizations WHERE payment_id = ?", (payment_id,)
            ).fetchone()
        return None if row is None else row[0]

    def reverse_authorization(self, payment_id: str, terminal_id: str, reason: str) -> bool:
        """Mark an approval reversed (idempotent: the first reason stays). False when there is no approval."""
        with self.lock:
            found = self.get_authorization(payment_id, terminal_id)
            if found is None or not found.get("approved"):
                return False
            self.db.execute(
                "UPDATE authorizations SET reversed_at = COALESCE(reversed_at, ?), "
                "reversal_reason = COALESCE(reversal_reason, ?) WHERE payment_id = ?",
                (now_rfc3339(), reason, payment_id),
            )
        return True

    def authorization_request(self, payment_id: str) -> tuple[int, str, str, str | None, str | None] | None:
        """(amount, currency, pan_masked, card_id, emv_hash) of the first request under this key, or None."""
        with self.lock:
            row = self.db.execute(
                "SELECT amount, currency, pan_masked, card_id, emv_hash FROM authorizations WHERE payment_id = ?",
                (payment_id,),
            ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), str(row[2]), row[3], row[4])

    def approved_authorization(self, key: str) -> dict[str, Any] | None:
        """The approved, non-reversed authorization under `key`: amount, currency, pan_masked, terminal_id, code."""
        with self.lock:
            row = self.db.execute(
                "SELECT response, amount, currency, pan_masked, terminal_id FROM authorizations "
                "WHERE payment_id = ? AND reversed_at IS NULL",
                (key,),
            ).fetchone()
        if row is None:
            return None
        response = json.loads(row[0])
        if response.get("approved") is not True:
            return None
        return {"amount": int(row[1]), "currency": row[2], "pan_masked": row[3], "terminal_id": row[4],
                "code": response.get("code")}  # fmt: skip

    def transaction_total(self, transaction_id: str) -> int:
        """The sum of the recorded payments of a transaction (this batch's so far included)."""
        with self.lock:
            row = self.db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM payments WHERE transaction_id = ?", (transaction_id,)
            ).fetchone()
        return int(row[0])

    def save_authorization(
        self,
        payment_id: str,
        response: dict[str, Any],
        *,
        amount: int,
        currency: str,
        pan_masked: str,
        terminal_id: str | None = None,
        chip: Mapping[str, Any] | None = None,
        card_id: str | None = None,
        emv_hash: str | None = None,
    ) -> dict[str, Any]:
        """Store the first answer for ``payment_id``; a replay gets that same answer back. ``chip`` is the
        issuer's check of the ARQC (kept for ``/_sandbox/authorizations``, never in the answer)."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                row = self.db.execute(
                    "SELECT response FROM authorizations WHERE payment_id = ?", (payment_id,)
                ).fetchone()
                if row is not None:
                    self.db.execute(
                        "UPDATE authorizations SET requests = requests + 1 WHERE payment_id = ?",
                        (payment_id,),
                    )
                    stored: dict[str, Any] = json.loads(row[0])
                else:
                    self.db.execute(
                        "INSERT INTO authorizations (payment_id, response, amount, currency, pan_masked, created_at, "
                        "requests, terminal_id, chip, card_id, emv_hash) VALUES (?,?,?,?,?,?,1,?,?,?,?)",
                        (payment_id, canonical_json(response), amount, currency, pan_masked, now_rfc3339(),
                         terminal_id, None if chip is None else canonical_json(dict(chip)), card_id, emv_hash),
                    )  # fmt: skip
                    stored = response
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return stored

    def authorizations(self) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute("SELECT * FROM authorizations ORDER BY rowid").fetchall()
        return [
            {
                "payment_id": r["payment_id"],
                "amount": r["amount"],
                "currency": r["currency"],
                "pan_masked": r["pan_masked"],
                "created_at": r["created_at"],
                "requests": r["requests"],
                "terminal_id": r["terminal_id"],
                "reversed_at": r["reversed_at"],
                "reversal_reason": r["reversal_reason"],
                "reversed": r["reversed_at"] is not None,
                "chip": None if r["chip"] is None else json.loads(r["chip"]),
                "response": json.loads(r["response"]),
            }
            for r in rows
        ]


def _bill(row: sqlite3.Row) -> dict[str, Any]:
    return {f: row[f] for f in BILL_FIELDS}


def _check_bill(b: dict[str, Any]) -> None:
    for key in ("reference", "contract", "customer_name", "period", "agency_id", "customer_id"):
        if not _is_text(b.get(key)):
            raise ValueError(f"{key}: must be a non-empty string")
    if b["service"] not in SERVICES:
        raise ValueError(f"service: must be one of {', '.join(SERVICES)}")
    if b["status"] not in BILL_STATUSES:
        raise ValueError(f"status: must be one of {', '.join(BILL_STATUSES)}")
    if not isinstance(b["currency"], str) or b["currency"] not in CURRENCIES:
        raise ValueError(f"currency: must be one of {', '.join(CURRENCIES)}")
    if not _is_int(b["amount_due"]) or b["amount_due"] < 0:
        raise ValueError("amount_due: must be an integer >= 0 in minor units")
    for key in ("issued_on", "due_on"):
        if not isinstance(b[key], str) or not _DATE.match(b[key]):
            raise ValueError(f"{key}: must be a date YYYY-MM-DD")
