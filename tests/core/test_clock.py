"""One clock convention: every store writes UTC in one form; a journal or cashier file written by an earlier
version (local time with its offset) is rewritten by its migration, reads the same instants, and a crash in
the middle of that migration loses nothing."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from agent import clock
from agent.cashiers.db import FILE_NAME as CASHIERS_DB
from agent.cashiers.db import MIGRATIONS as CASHIER_MIGRATIONS
from agent.cashiers.db import CashierFile
from agent.journal import DB_NAME, MIGRATIONS, Journal
from agent.states import State
from agent.storage import open_database

BILL = '{"reference": "410726095518", "amount_due": 345600, "currency": "DZD", "status": "unpaid", "version": 3}'
# What version 4 wrote: local time (here +01:00, Algiers) with its offset; events to the microsecond.
OLD_CAPTURED = "2026-11-22T09:14:03+01:00"
OLD_EVENTS = ("2026-11-22T09:14:03.100000+01:00", "2026-11-22T09:14:04.200000+01:00",
              "2026-11-22T09:14:09.300000+01:00")


def old_journal(state: Path, n: int = 3, reference: str = "410726095518") -> None:
    """A journal as guichet wrote it before migration 5: n approved cash payments, one loss accepted."""
    conn = open_database(state / DB_NAME, MIGRATIONS[:4])
    conn.execute("BEGIN")
    for seq in range(1, n + 1):
        pid = f"0192a000-0000-7000-8000-{seq:012d}"
        conn.execute(
            "INSERT INTO payment (payment_id, transaction_id, bill_reference, amount, currency, method, agency_id,"
            " terminal_id, cashier_id, receipt_number, captured_at, captured_offline, bill, created_at, seq)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (pid, pid, reference, 1000 * seq, "DZD", "cash", "ORAN-07", "ORAN-07-G2", "c0042",
             f"ORAN-07-G2-{seq:06d}", OLD_CAPTURED, 0, BILL, OLD_EVENTS[0], seq),
        )
        for step, (state_, from_, at) in enumerate(
            zip(("created", "authorizing", "approved"), (None, "created", "authorizing"), OLD_EVENTS, strict=True)
        ):
            conn.execute(
                "INSERT INTO event (event_id, payment_id, step, state, from_state, at, actor)"
                " VALUES (?,?,?,?,?,?,?)",
                (seq * 8 + (step if step < 2 else 3), pid, step if step < 2 else 3, state_, from_, at, "c0042"),
            )
        conn.execute("INSERT INTO open (seq, payment_id) VALUES (?, ?)", (seq, pid))
    conn.execute("UPDATE counters SET value = ? WHERE name = 'receipt'", (n,))
    conn.execute(
        "INSERT INTO incident (detected_at, kind, message, journal_seq, expected_seq, accepted_at, accepted_by)"
        " VALUES (?, 'server_ahead', 'x', 0, 0, ?, 's1')",
        ("2026-11-21T23:30:00.000001+01:00", "2026-11-22T00:10:00.5+01:00"),
    )
    conn.execute("COMMIT")
    conn.close()


def open_journal(state: Path) -> Journal:
    return Journal.open(state, terminal_id="ORAN-07-G2", agency_id="ORAN-07")


def test_an_old_journal_reads_the_same_instants_in_utc(tmp_path: Path) -> None:
    old_journal(tmp_path)
    j = open_journal(tmp_path)
    assert j._conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    [p, *_] = j.list(limit=None)[::-1]
    assert p.captured_at == "2026-11-22T08:14:03.000000Z" and p.created_at == "2026-11-22T08:14:03.100000Z"
    assert clock.parse(p.captured_at) == clock.parse(OLD_CAPTURED)
    assert [a["at"] for a in j.audit(p.payment_id)] == [
        "2026-11-22T08:14:03.100000Z", "2026-11-22T08:14:04.200000Z", "2026-11-22T08:14:09.300000Z"]
    [incident] = j.incidents()
    assert (incident["detected_at"], incident["accepted_at"]) == (
        "2026-11-21T22:30:00.000001Z", "2026-11-21T23:10:00.500000Z")
    # what was (maybe) uploaded before keeps its exact text: a replay stays a duplicate on the server
    assert p.to_api()["captured_at"] == OLD_CAPTURED
    # bounds given in any offset are compared as instants
    assert len(j.list(since="2026-11-22T10:14:03.1+02:00")) == 3
    assert j.list(since=datetime(2026, 11, 22, 8, 14, 3, 100001, tzinfo=UTC)) == []
    stats = j.queue_stats()
    assert stats.oldest_captured_at == clock.parse(OLD_CAPTURED)
    j.close()


def test_new_payments_are_stored_in_utc_and_compared_as_instants(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    from agent.journal import NewPayment

    [p] = j.create([NewPayment({"reference": "123", "amount_due": 500}, 500)], currency="DZD", method="cash",
                   cashier_id="c", captured_offline=False)
    j.transition(p.payment_id, State.AUTHORIZING, actor="c")
    j.transition(p.payment_id, State.APPROVED, actor="c")
    assert p.captured_at.endswith("Z") and len(p.captured_at) == 27 and p.to_api()["captured_at"] == p.captured_at
    j.record_upload_results([{"payment_id": p.payment_id, "status": "accepted"}])
    uploaded = clock.parse(j.get(p.payment_id).uploaded_at or "")
    east, west = clock.parse("2026-01-01T00:00:00+05:00").tzinfo, clock.parse("2026-01-01T00:00:00-05:00").tzinfo
    # a snapshot taken a microsecond before the upload (written east of UTC: as text it sorts after) counts it
    assert j.pending_against("123", (uploaded - timedelta(microseconds=1)).astimezone(east).isoformat()) == 500
    # one taken at the upload's instant (written west of UTC: as text it sorts before) already shows it
    assert j.pending_against("123", uploaded.astimezone(west).isoformat()) == 0
    assert j.pending_against("123", "not a time") == 500  # counted: at worst less shown due
    j.close()


def _crash_migrating(state: str) -> None:
    calls = 0
    real = clock.migrate_text

    def dying(ts: str | None) -> str | None:
        nonlocal calls
        calls += 1
        if calls == 40:  # in the middle of rewriting the event table
            os.kill(os.getpid(), signal.SIGKILL)
        return real(ts)

    clock.migrate_text = dying
    import agent.storage

    agent.storage.clock.migrate_text = dying
    open_journal(Path(state))


def test_a_crash_in_the_middle_of_the_migration_loses_nothing(tmp_path: Path) -> None:
    old_journal(tmp_path, n=30)
    proc = multiprocessing.get_context("fork").Process(target=_crash_migrating, args=(str(tmp_path),))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    raw = sqlite3.connect(tmp_path / DB_NAME)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 4  # rolled back as a whole
    assert raw.execute("SELECT COUNT(*) FROM event WHERE at LIKE '%+01:00'").fetchone()[0] == 90
    raw.close()
    j = open_journal(tmp_path)
    payments = j.list()
    assert len(payments) == 30 and {p.state for p in payments} == {"approved"}
    assert all(p.captured_at == "2026-11-22T08:14:03.000000Z" for p in payments)
    assert j._conn.execute("SELECT COUNT(*) FROM event WHERE at NOT LIKE '%Z'").fetchone()[0] == 0
    assert len(j.outbox_batch(100)) == 30
    j.close()


def test_the_cashier_file_of_version_1_is_rewritten_in_the_one_form(tmp_path: Path) -> None:
    conn = open_database(tmp_path / CASHIERS_DB, CASHIER_MIGRATIONS[:1])
    conn.execute("INSERT INTO cashiers (cashier_id, name, role, pin_hash, created_at, locked_until)"
                 " VALUES ('c1', 'A', 'cashier', 'h', '2026-11-22T08:14:03+00:00', '2026-11-22T09:00:00+01:00')")
    conn.execute("INSERT INTO shifts (cashier_id, opened_at) VALUES ('c1', '2026-11-22T08:00:00+00:00')")
    conn.execute("INSERT INTO events (at, cashier_id, kind) VALUES ('2026-11-22T08:14:03+00:00', 'c1', 'login')")
    conn.close()
    f = CashierFile(tmp_path / CASHIERS_DB)
    row = f._db.execute("SELECT created_at, locked_until FROM cashiers").fetchone()
    assert tuple(row) == ("2026-11-22T08:14:03.000000Z", "2026-11-22T08:00:00.000000Z")
    assert f._db.execute("SELECT opened_at, closed_at FROM shifts").fetchone()[0] == "2026-11-22T08:00:00.000000Z"
    assert f.events()[0]["at"] == "2026-11-22T08:14:03.000000Z"
    f.close()


@given(st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(9998, 12, 30),
                    timezones=st.sampled_from([UTC, clock.parse("2026-01-01T00:00:00+05:45").tzinfo,
                                               clock.parse("2026-01-01T00:00:00-09:30").tzinfo])))
def test_the_stored_form_orders_as_its_instants(dt: datetime) -> None:
    s = clock.stamp(dt)
    assert len(s) == 27 and clock.parse(s) == dt
    assert clock.stored(dt.isoformat()) == s and clock.migrate_text(dt.isoformat()) == s
    later = clock.stamp(dt.replace(microsecond=(dt.microsecond + 1) % 1_000_000)) if dt.microsecond < 999_999 else s
    assert (later > s) == (clock.parse(later) > dt)


def test_the_bill_cache_of_version_1_is_rewritten_and_ages_the_same(tmp_path: Path) -> None:
    from agent.bills import DB_NAME as BILLS_DB
    from agent.bills import MIGRATIONS as BILL_MIGRATIONS
    from agent.bills import BillCache

    ten_minutes_ago = (clock.utc_now() - timedelta(minutes=10)).astimezone(
        clock.parse("2026-01-01T00:00:00+01:00").tzinfo)
    conn = open_database(tmp_path / BILLS_DB, BILL_MIGRATIONS[:1])
    conn.execute("INSERT INTO bills (reference, customer_id, version, data, fetched_at) VALUES (?,?,?,?,?)",
                 ("410726095518", "C1", 3, BILL, ten_minutes_ago.isoformat(timespec="microseconds")))
    conn.close()
    cache = BillCache.open(tmp_path)
    [stored] = cache._conn.execute("SELECT fetched_at FROM bills").fetchone()
    assert stored == clock.stamp(ten_minutes_ago) and stored.endswith("Z")
    got = cache.get("410726095518")
    assert got is not None and 600 <= got[1] < 3600 and got[0].fetched_at == stored
    cache.close()


@example("0001-01-01T00:00:00+05:00")  # before year 1 in UTC
@example("9999-12-31T23:59:59-05:00")  # after year 9999 in UTC
@given(st.one_of(st.none(), st.text(max_size=60), st.datetimes().map(lambda d: d.isoformat() + "+05:00")))
def test_a_migration_never_fails_nor_loses_a_value_it_cannot_read(text: str | None) -> None:
    out = clock.migrate_text(text)
    assert out == text or (out is not None and clock.parse(out) == clock.parse(text or ""))
    assert clock.display(text) if text else True  # shown as it is when it is no time: never a traceback


def test_a_payment_uploaded_before_the_migration_is_a_duplicate_after_it(tmp_path: Path, billing_server) -> None:
    """The server compares a replay byte for byte: the body a migrated payment sends is the one sent before."""
    import config
    from agent.billing import BillingClient
    from tests.conftest import BILLING_TOKEN, TEST_HMAC_KEY

    [ref, *_] = billing_server.references(status="unpaid")
    old_journal(tmp_path, n=1, reference=ref)
    raw = sqlite3.connect(tmp_path / DB_NAME)
    raw.row_factory = sqlite3.Row
    row = dict(raw.execute("SELECT * FROM payment").fetchone())
    raw.close()
    # what version 4 uploaded (Payment.to_api() of then: the stored texts as they were)
    sent_before = {k: row[k] for k in ("payment_id", "transaction_id", "bill_reference", "amount", "currency",
                                       "method", "agency_id", "terminal_id", "cashier_id", "receipt_number",
                                       "captured_at")}
    sent_before.update(card=None, authorization=None, captured_offline=False)
    client = BillingClient(config.validate({
        "terminal": {"id": "ORAN-07-G2", "agency_id": "ORAN-07", "currency": "DZD"},
        "server": {"url": billing_server.url, "token": BILLING_TOKEN}, "state": {"dir": str(tmp_path)},
        "cards": {"hmac_key": TEST_HMAC_KEY}}))
    assert [r["status"] for r in client.post_batch([sent_before])] == ["accepted"]
    j = open_journal(tmp_path)  # migrates
    [p] = j.outbox_batch(10)
    assert p.captured_at.endswith("Z") and p.to_api() == sent_before
    assert [r["status"] for r in client.post_batch([p.to_api()])] == ["duplicate"]
    j.close()
