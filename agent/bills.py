"""Bills: the contract's Bill, and the offline cache kept fresh by the delta feed.

Against the sandbox server (on 127.0.0.1, the tests' stand-in for the billing server), in a temp state dir:

>>> import config, tempfile
>>> from agent.billing import BillingClient
>>> from sandbox.billing.server import SandboxServer
>>> server, state = SandboxServer(seed_bills=5).start(), tempfile.mkdtemp()
>>> client = BillingClient(config.validate({
...     "terminal": {"id": "ORAN-07-G1", "agency_id": "ORAN-07", "currency": "DZD"},
...     "server": {"url": server.url, "token": "test-token"}, "state": {"dir": state},
...     "cards": {"hmac_key": "test-hmac-key-0123456789abcdef"}}))
>>> cache = BillCache.open(state)
>>> cache.refresh(client, "ORAN-07") > 0    # follows GET /v1/bills?updated_after=cursor
True
>>> [ref, *_] = server.references(status="unpaid")
>>> bill, age = cache.get(ref)              # the copy and its age in seconds
>>> bill.reference == ref, bill.offline, age < 60
(True, True, True)
>>> cache.close(); server.stop()
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import Field, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError

from agent import clock
from agent.billing import BillingClient
from agent.errors import ApiError
from agent.storage import open_database
from contract import models

log = logging.getLogger("guichet.bills")

DB_NAME = "bills.db"
PAYABLE = ("unpaid", "partially_paid")

MIGRATIONS = [
    (
        1,
        """
        CREATE TABLE bills (
            reference TEXT PRIMARY KEY,
            customer_id TEXT,
            version INTEGER NOT NULL,
            data TEXT NOT NULL,
            fetched_at TEXT NOT NULL
        );
        CREATE INDEX bills_customer ON bills(customer_id);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
    ),
    # fetched_at in agent.clock's one stored form (UTC; version 1 wrote local time with its offset).
    (2, "UPDATE bills SET fetched_at = utc_stamp(fetched_at);"),
]


# The contract's fields are contract.models.Bill's, written there once. For the type checker the agent's Bill
# is that model (its fields typed as there) and a dataclass whose replace() takes them; at run time it holds
# one model and hands its fields out.
if TYPE_CHECKING:

    class _Contract(models.Bill):
        __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

else:
    _Contract = object
_frozen_dataclass = dataclass(frozen=True, init=False)  # its own __init__ takes the contract's fields


@_frozen_dataclass
class Bill(_Contract):
    """A bill as the contract defines it (`api`, a validated contract.models.Bill), plus where this copy came
    from. Its contract fields read as attributes; `dataclasses.replace(bill, amount_due=...)` works on them.

    >>> b = Bill(reference="410726095518", amount_due=345600, currency="DZD", status="unpaid", version=3)
    >>> b.amount_due, b.offline, b.payable, "source" in b.to_api()
    (345600, False, True, False)
    >>> from dataclasses import replace
    >>> replace(b, amount_due=0, status="paid").payable
    False
    >>> read = replace(b, read_at="2026-11-22T08:14:03.000000Z", read_seq=41)   # as PaymentFlow.lookup stamps it
    >>> read.read_at, read.read_seq                                      # NewPayment(seen_at=..., seen_seq=...)
    ('2026-11-22T08:14:03.000000Z', 41)
    """

    api: models.Bill
    # Not in the contract: "server" or "cache", the age of a cached copy in seconds, when the copy was fetched,
    # and when its amount due was worked out here against the journal (PaymentFlow.lookup), with the journal's
    # receipt counter read at that moment (Journal.read_bill): what NewPayment.seen_at / seen_seq take, so that
    # the journal refuses to pay this copy if another payment was taken on the bill since. Each copy carries
    # its own: an older copy, still held, is checked against its own older read.
    source: str
    cache_age: float | None
    fetched_at: str | None
    read_at: str | None
    read_seq: int | None

    def __init__(
        self,
        api: models.Bill | None = None,
        *,
        source: str = "server",
        cache_age: float | None = None,
        fetched_at: str | None = None,
        read_at: str | None = None,
        read_seq: int | None = None,
        **contract: Any,
    ) -> None:
        """From a validated model, or from the contract's fields (validated here; `replace` passes both)."""
        if api is None:
            api = models.Bill.model_validate(contract)
        elif contract:
            api = models.Bill.model_validate({**api.model_dump(), **contract})
        object.__setattr__(self, "api", api)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "cache_age", cache_age)
        object.__setattr__(self, "fetched_at", fetched_at)
        object.__setattr__(self, "read_at", read_at)
        object.__setattr__(self, "read_seq", read_seq)

    def __getattr__(self, name: str) -> Any:
        # Only called for names not found on the Bill itself: the contract's fields.
        if name in models.Bill.model_fields:
            return getattr(self.api, name)
        raise AttributeError(f"Bill has no attribute {name!r}")

    @classmethod
    def from_api(cls, data: dict[str, Any], **extra: Any) -> Bill:
        """From the contract's JSON object (validated; fields it does not define ignored, so a server's
        "source" never collides with ours). Raises pydantic.ValidationError."""
        return cls(models.Bill.model_validate(data), **extra)

    def to_api(self) -> dict[str, Any]:
        """The contract's fields only, as the journal keeps them with a payment."""
        return self.api.to_api()

    @property
    def offline(self) -> bool:
        return self.source == "cache"

    @property
    def payable(self) -> bool:
        return self.status in PAYABLE and self.amount_due > 0


class BillCache:
    """The agency's payable bills, for when the billing server cannot be reached."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.path = path

    @classmethod
    def open(cls, state_dir: str | os.PathLike[str]) -> BillCache:
        path = Path(state_dir) / DB_NAME
        return cls(open_database(path, MIGRATIONS), path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @staticmethod
    def _load(data: str, reference: str) -> models.Bill | None:
        """A stored copy as the contract's bill, or None for a row an older version stored unchecked."""
        try:
            return models.Bill.model_validate(json.loads(data))
        except (ValueError, RecursionError) as e:  # ValidationError is a ValueError
            where = models.where(e, "bill") if isinstance(e, ValidationError) else "not JSON"
            log.warning("bill cache: the copy of %s is unreadable (%s); ignored", reference, where)
            return None

    @staticmethod
    def normalise(bills: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Only valid bills, holding only the contract's fields: the cache never stores garbage."""
        out = []
        for i, b in enumerate(bills):
            try:
                out.append(models.Bill.model_validate(b).to_api())
            except ValidationError as e:
                log.warning("bill cache: %s; not stored", models.where(e, f"bills[{i}]"))
        return out

    def get(self, reference: str) -> tuple[Bill, float] | None:
        """The cached bill and its age in seconds, or None (also for a copy that is not a valid bill)."""
        with self._lock:
            row = self._conn.execute("SELECT data, fetched_at FROM bills WHERE reference = ?", (reference,)).fetchone()
        if row is None:
            return None
        data = self._load(row[0], reference)
        if data is None:
            return None
        age = max(0.0, (clock.utc_now() - clock.parse(row[1])).total_seconds())
        return Bill(data, source="cache", cache_age=age, fetched_at=row[1]), age

    def customer_bills(self, customer_id: str) -> list[Bill]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT data, fetched_at FROM bills WHERE customer_id = ? ORDER BY reference", (customer_id,)
            ).fetchall()
        loaded = ((self._load(d, customer_id), f) for d, f in rows)
        return [Bill(data, source="cache", fetched_at=f) for data, f in loaded if data is not None]

    def store(self, bills: list[dict[str, Any]], cursor: str | None = None) -> None:
        """Upsert payable bills and drop paid or cancelled ones, in one transaction; keep the cursor with them."""
        now = clock.now_stamp()
        bills = self.normalise(bills)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for b in bills:
                    if b.get("status") in PAYABLE:
                        self._conn.execute(
                            "INSERT INTO bills (reference, customer_id, version, data, fetched_at) VALUES (?,?,?,?,?)"
                            " ON CONFLICT(reference) DO UPDATE SET customer_id=excluded.customer_id,"
                            " version=excluded.version, data=excluded.data, fetched_at=excluded.fetched_at"
                            " WHERE excluded.version >= bills.version",
                            (
                                b["reference"],
                                b.get("customer_id"),
                                b["version"],
                                json.dumps(b, ensure_ascii=False),
                                now,
                            ),
                        )
                    else:
                        self._conn.execute("DELETE FROM bills WHERE reference = ?", (b["reference"],))
                if cursor is not None:
                    self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('cursor', ?)", (cursor,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def refresh(self, client: BillingClient, agency: str, limit: int = 1000, max_pages: int = 10_000) -> int:
        """Follow the delta feed until caught up; returns how many bills changed. Raises ServerUnreachable.

        A feed item that is not a valid bill is skipped (logged and counted by the client): the cursor moves
        on, so one broken bill never blocks the cache.
        """
        cursor = self._meta("cursor")
        changed = 0
        for _ in range(max_pages):
            try:
                page = client.bills_feed_page(agency, updated_after=cursor, limit=limit)
            except ApiError as e:
                if e.code != "invalid_cursor" or cursor is None:
                    raise
                # A cursor the server no longer takes (its feed was rebuilt, or a broken answer gave it) would be
                # refused forever: start the feed over; versions keep the newer copy of each bill.
                log.warning("bill cache: the server refuses our feed cursor (%s); downloading the bills again", e)
                cursor = None
                page = client.bills_feed_page(agency, updated_after=None, limit=limit)
            self.store(page.items, page.next_cursor or cursor)
            changed += len(page.items)
            if page.received >= limit and (page.next_cursor or cursor) == cursor:
                # A full page that does not move the cursor would be asked for again and again: the server's
                # feed is stuck; not caught up, so the cache's freshness is not renewed. Next refresh tries again.
                log.warning("bill cache: the feed answered a full page without moving its cursor; stopped for now")
                break
            cursor = page.next_cursor or cursor
            if page.received < limit:  # caught up: only now is the cache as fresh as the server
                with self._lock:
                    self._conn.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('refreshed_at', ?)", (str(time.time()),)
                    )
                break
        return changed

    def freshness(self) -> float | None:
        """Seconds since the last complete refresh, or None if never refreshed."""
        at = self._meta("refreshed_at")
        return None if at is None else max(0.0, time.time() - float(at))

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM bills").fetchone()[0])
