"""Review 2 of the journal, the clock and the double-charge guard: each finding, as the user meets it, on real
SQLite files, real processes, and the sandbox billing server over HTTP on 127.0.0.1."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest

from agent import clock, storage
from agent.bills import Bill
from agent.context import AgentContext
from agent.errors import BillBlocked, GuichetError, InvalidAmount, JournalError
from agent.journal import DB_NAME, MIGRATIONS, Journal, NewPayment, open_database
from agent.states import State

REF = "410726095518"
BILL = {"reference": REF, "amount_due": 345600, "currency": "DZD", "status": "unpaid", "version": 3}
CASH = {"currency": "DZD", "method": "cash", "cashier_id": "c", "captured_offline": False}


def open_journal(state: Path | str) -> Journal:
    return Journal.open(state, terminal_id="ORAN-07-G2", agency_id="ORAN-07", check=False)


def take(j: Journal, item: NewPayment) -> str:
    [p] = j.create([item], **CASH)  # type: ignore[arg-type]
    j.transition(p.payment_id, State.AUTHORIZING, actor="c")
    j.transition(p.payment_id, State.APPROVED, actor="c")
    return p.receipt_number


# -- 1. a bill held from before a re-lookup is never paid twice ----------------------------------------------


def test_an_older_copy_of_a_bill_is_refused_after_a_re_lookup(agent: AgentContext, seeded_references) -> None:
    ref = seeded_references[0]
    bill = agent.flow.lookup(ref)
    assert bill.read_at is not None and bill.read_seq == 0
    assert agent.flow.pay([bill], method="cash", cashier_id="c1").status == "approved"
    again = agent.flow.lookup(ref)  # the counter looks it up again: nothing due now
    assert not again.payable and again.read_seq == 1
    for stale in (bill, Bill.from_api(bill.to_api())):  # the copy held from before, a copy never read here
        with pytest.raises(BillBlocked, match=f"^bill {ref}: payment ORAN-07-G1-000001 was taken on it since"):
            agent.flow.pay([stale], method="cash", cashier_id="c1")
    assert [p.state for p in agent.journal.list(bill_reference=ref)] == ["approved"]


def test_a_sibling_read_by_customer_bills_does_not_refresh_an_older_copy(agent: AgentContext,
                                                                          seeded_references) -> None:
    first = agent.flow.lookup(seeded_references[0])
    [sibling, *_] = agent.flow.customer_bills(first)
    assert sibling.read_seq == 0
    assert agent.flow.pay([sibling], method="cash", cashier_id="c1").status == "approved"
    agent.flow.customer_bills(first)  # read again: the sibling's new copy, not the one still held
    with pytest.raises(BillBlocked, match="was taken on it since its amount was read"):
        agent.flow.pay([sibling], method="cash", cashier_id="c1")
    assert len(agent.journal.list(bill_reference=sibling.reference)) == 1


# -- 2. commit order, not the clock: a payment committed after another process read the bill ----------------


def _charge_when_free(state: str, ready: multiprocessing.synchronize.Event, go: multiprocessing.synchronize.Event,
                      out: multiprocessing.Queue) -> None:
    """Another counter's process: on `go` it takes a payment, waiting for the write lock (held by the test)."""
    j = open_journal(state)
    ready.set()
    go.wait(30)
    out.put(take(j, NewPayment(BILL, 345600)))


def test_a_payment_committed_after_another_process_read_the_bill_refuses_that_read(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    ctx = multiprocessing.get_context("fork")  # forked before any lock is taken (SQLite's rule for fork)
    ready, go, out = ctx.Event(), ctx.Event(), ctx.Queue()
    other = ctx.Process(target=_charge_when_free, args=(str(tmp_path), ready, go, out))
    other.start()
    assert ready.wait(30)
    holder = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # an uploader's batch: every writer queues behind it
    go.set()
    threading.Event().wait(0.3)  # (ordering only) the other process is now waiting inside create
    seen_at = clock.now_stamp()  # this counter reads the bill: the other payment is not committed
    pending, seq = j.read_bill(REF, seen_at)
    assert (pending, seq) == (0, 0)
    holder.execute("COMMIT")
    assert out.get(timeout=60) == "ORAN-07-G2-000001"
    other.join(60)
    # by commit order, with or without the time of the read
    for item in (NewPayment(BILL, 345600, seen_seq=seq), NewPayment(BILL, 345600, seen_at=seen_at, seen_seq=seq)):
        with pytest.raises(BillBlocked, match="^bill 410726095518: payment ORAN-07-G2-000001 was taken on it since"):
            j.create([item], **CASH)  # type: ignore[arg-type]
    # the clock alone holds too now: the other payment was stamped under the write lock, after this read
    with pytest.raises(BillBlocked, match="payment ORAN-07-G2-000001 was taken on it since"):
        j.create([NewPayment(BILL, 345600, seen_at=seen_at)], **CASH)  # type: ignore[arg-type]
    assert [p.state for p in j.list()] == ["approved"]
    # a read after that commit takes its amount into account: the next payment goes through
    pending, seq = j.read_bill(REF, seen_at)
    assert (pending, seq) == (345600, 1)
    assert take(j, NewPayment(BILL, 100, seen_seq=seq)) == "ORAN-07-G2-000002"
    j.close()


def test_a_payment_still_created_at_the_read_is_below_its_bound(tmp_path: Path) -> None:
    """Not counted in the amount (nothing asked for yet), so if it is taken after the read, the read is stale."""
    j = open_journal(tmp_path)
    [p] = j.create([NewPayment(BILL, 345600)], **CASH)  # type: ignore[arg-type]
    pending, seq = j.read_bill(REF, None)
    assert (pending, seq) == (0, 0)
    j.transition(p.payment_id, State.AUTHORIZING, actor="c")
    j.transition(p.payment_id, State.APPROVED, actor="c")
    with pytest.raises(BillBlocked, match="was taken on it since"):
        j.create([NewPayment(BILL, 345600, seen_seq=seq)], **CASH)  # type: ignore[arg-type]
    j.close()


# -- 3. one bill twice in a basket ---------------------------------------------------------------------------


def test_a_basket_naming_one_bill_twice_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    seen = clock.now_stamp()
    other = {**BILL, "reference": "410726095519"}
    with pytest.raises(InvalidAmount, match="^bill 410726095518: in the basket twice; one payment per bill$"):
        j.create([NewPayment(BILL, 345600, seen_at=seen), NewPayment(other, 10), NewPayment(BILL, 345600)],
                 **CASH)  # type: ignore[arg-type]
    assert j.list() == []
    j.close()


# -- 4. an older version still running after the upgrade ------------------------------------------------------

OLD_WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("SELECT COUNT(*) FROM payment").fetchone()    # the old agent, its file open
print("open", flush=True); sys.stdin.readline()
try:
    conn.execute("UPDATE event SET at = '2026-11-30T23:00:00.000000+01:00'")
    print("written")
except sqlite3.Error as e:
    print("refused:", e)
"""


def _v6_journal(state: Path) -> None:
    """A journal as the previous release (version 6) left it, holding one approved payment."""
    conn = open_database(state / DB_NAME, MIGRATIONS[:6])
    at = clock.now_stamp()
    conn.execute(
        "INSERT INTO payment (payment_id, transaction_id, bill_reference, amount, currency, method, agency_id,"
        " terminal_id, cashier_id, receipt_number, captured_at, captured_offline, bill, created_at, seq)"
        " VALUES ('p1', 'p1', ?, 345600, 'DZD', 'cash', 'ORAN-07', 'ORAN-07-G2', 'c', 'ORAN-07-G2-000001', ?, 0,"
        " '{}', ?, 1)", (REF, at, at))
    for step, state_, prev in ((0, "created", None), (1, "authorizing", "created"), (3, "approved", "authorizing")):
        conn.execute("INSERT INTO event (event_id, payment_id, step, state, from_state, at, actor)"
                     " VALUES (?, 'p1', ?, ?, ?, ?, 'c')", (8 + step, step, state_, prev, at))
    conn.execute("INSERT INTO open (seq, payment_id) VALUES (1, 'p1')")
    conn.execute("UPDATE counters SET value = 1")
    conn.close()


def test_an_older_version_still_running_cannot_write_local_times_after_the_upgrade(tmp_path: Path) -> None:
    _v6_journal(tmp_path)
    old = subprocess.Popen([sys.executable, "-c", OLD_WRITER, str(tmp_path / DB_NAME)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    assert old.stdout is not None and old.stdin is not None
    assert old.stdout.readline().strip() == "open"
    j = open_journal(tmp_path)  # the new version migrates under it
    assert j._conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    old.stdin.write("\n")
    old.stdin.flush()
    said = old.stdout.read()
    old.wait(30)
    assert said.startswith("refused: not a UTC time as agent.clock stores it"), said
    # what the new version writes goes in; every stored time keeps the one form
    take(j, NewPayment({**BILL, "reference": "2"}, 10))
    ats = [r[0] for r in j._conn.execute("SELECT at FROM event")]
    assert len(ats) == 6 and all(len(a) == 27 and a.endswith("Z") for a in ats)
    j.close()


def test_a_journal_is_not_upgraded_while_another_process_takes_payments_on_it(tmp_path: Path) -> None:
    _v6_journal(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from agent.locks import CounterLock; l = CounterLock(sys.argv[1]);"
         " l.acquire(); print('held', flush=True); sys.stdin.readline()", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "held"
    line = (rf"cannot upgrade it \(version 6 to {len(MIGRATIONS)}\) while another process \(pid {holder.pid}\)"
            r" holds counter.lock: stop the running guichet first")
    with pytest.raises(JournalError, match=line):
        open_journal(tmp_path)
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 6  # untouched
    conn.close()
    holder.stdin.write("\n")
    holder.stdin.flush()
    holder.wait(30)
    j = open_journal(tmp_path)
    assert [p.state for p in j.list()] == ["approved"]
    j.close()


def test_the_previous_migrations_and_the_byte_identical_replay_still_hold(tmp_path: Path) -> None:
    """A v4 file (local times with offsets) goes through 5 (rewritten), 6 and 7; what was uploaded is sent
    again byte for byte; the rewritten rows are what the triggers take."""
    conn = open_database(tmp_path / DB_NAME, MIGRATIONS[:4])
    sent = "2026-11-22T09:14:03+01:00"
    conn.execute(
        "INSERT INTO payment (payment_id, transaction_id, bill_reference, amount, currency, method, agency_id,"
        " terminal_id, cashier_id, receipt_number, captured_at, captured_offline, bill, created_at, seq)"
        " VALUES ('p1', 'p1', '410726095518', 10, 'DZD', 'cash', 'ORAN-07', 'ORAN-07-G2', 'c',"
        " 'ORAN-07-G2-000001', ?, 0, '{}', ?, 1)", (sent, "2026-11-22T09:14:03.000001+01:00"))
    conn.execute("INSERT INTO event (event_id, payment_id, step, state, from_state, at, actor)"
                 " VALUES (8, 'p1', 0, 'created', NULL, ?, 'c')", (sent,))
    conn.execute("INSERT INTO open (seq, payment_id) VALUES (1, 'p1')")
    conn.execute("UPDATE counters SET value = 1")
    conn.close()
    j = open_journal(tmp_path)
    p = j.get("p1")
    assert p.captured_at == "2026-11-22T08:14:03.000000Z" and p.to_api()["captured_at"] == sent
    j.transition("p1", State.AUTHORIZING, actor="c")
    j.transition("p1", State.APPROVED, actor="c")
    assert j.get("p1").to_api()["captured_at"] == sent
    j.close()


def test_an_opener_waits_for_another_process_s_migration(tmp_path: Path, monkeypatch) -> None:
    _v6_journal(tmp_path)
    lock = f"{tmp_path / DB_NAME}.lock"
    migrating = subprocess.Popen(  # holds the migration lock as a migrating process does
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600);"
         " fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.readline()", lock],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert migrating.stdout is not None and migrating.stdin is not None
    assert migrating.stdout.readline().strip() == "held"
    monkeypatch.setattr(storage, "MIGRATION_WAIT", 0.2)
    with pytest.raises(JournalError, match="another process is still upgrading this file"):
        open_journal(tmp_path)
    monkeypatch.setattr(storage, "MIGRATION_WAIT", 120.0)
    opened: list[Journal] = []
    opener = threading.Thread(target=lambda: opened.append(open_journal(tmp_path)))
    opener.start()  # waits on the lock, not on SQLite's 10 s busy timeout
    migrating.stdin.write("\n")
    migrating.stdin.flush()
    migrating.wait(30)
    opener.join(120)
    [j] = opened
    assert j._conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    j.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_journal_is_not_upgraded_without_room_for_a_copy_of_it(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m,mode=0700", "tmpfs", str(disk)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        _v6_journal(disk)
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (storage.free_bytes(disk) - 4 * 1024 * 1024))  # 4 MiB left: less than 8 + file
        with pytest.raises(JournalError, match=r"cannot upgrade it: \d+ KiB free on the disk, the upgrade needs"):
            open_journal(disk)
        conn = sqlite3.connect(disk / DB_NAME)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 6  # untouched, nothing half-written
        conn.close()
        filler.unlink()
        j = open_journal(disk)
        assert j._conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert [p.state for p in j.list()] == ["approved"]
        j.close()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


# -- 5. a payment left `created` by a failed write does not block the bill ----------------------------------------


def test_a_failed_authorizing_write_leaves_no_payment_in_progress(agent: AgentContext, seeded_references) -> None:
    ref = seeded_references[0]
    tool = sqlite3.connect(agent.journal.path, isolation_level=None)
    tool.execute("CREATE TRIGGER fail_authorizing BEFORE INSERT ON event WHEN NEW.state = 'authorizing'"
                 " BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")  # the file refuses that one write
    with pytest.raises(JournalError, match="write failed"):
        agent.flow.pay([agent.flow.lookup(ref)], method="cash", cashier_id="c1")
    assert [p.state for p in agent.journal.list(bill_reference=ref)] == ["cancelled"]
    tool.execute("DROP TRIGGER fail_authorizing")
    tool.close()
    result = agent.flow.pay([agent.flow.lookup(ref)], method="cash", cashier_id="c1")  # no restart needed
    assert result.status == "approved"


# -- 6. a naive time is refused, never read two ways --------------------------------------------------------------


def test_a_naive_time_is_refused_at_the_journal_s_boundaries(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    take(j, NewPayment(BILL, 1000))
    for naive in (datetime.now().isoformat(), datetime.now()):
        with pytest.raises(GuichetError, match=r"^seen_at: .* no UTC offset \(local or UTC\?\); give one, or Z$"):
            j.create([NewPayment(BILL, 1000, seen_at=naive)], **CASH)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="no UTC offset"):
            j.list(since=naive)
    assert j.read_bill(REF, datetime.now())[0] == 1000  # at worst less due: every payment counts
    assert len(j.list(since=datetime.now().astimezone().replace(year=2000))) == 1  # aware: fine
    assert clock.migrate_text("2026-11-22T08:14:03") == "2026-11-22T08:14:03.000000Z"  # older files: UTC
    j.close()


# -- 7. today's history starts at local midnight, with midnight's offset --------------------------------------------


def test_today_starts_at_midnight_s_offset_on_a_dst_day() -> None:
    code = ("from datetime import date; from agent.payments import today_start;"
            " print(today_start(date(2026, 9, 27)), today_start(date(2026, 9, 28)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "TZ": "Pacific/Chatham"}, cwd=Path(__file__).parents[2]).stdout
    # Chatham moves from +12:45 to +13:45 at 02:45 that Sunday: the day began at +12:45
    assert out.split() == ["2026-09-27T00:00:00+12:45", "2026-09-28T00:00:00+13:45"]


# -- 9. stamp duty: no zero uploaded, no absurd amount --------------------------------------------------------------


def test_a_stamp_duty_is_bounded_and_zero_is_none(tmp_path: Path) -> None:
    j = open_journal(tmp_path)

    def one(ref: str, duty: object, method: str = "cash"):
        [p] = j.create([NewPayment({**BILL, "reference": ref}, 100, stamp_duty=duty)],  # type: ignore[arg-type]
                       currency="DZD", method=method, cashier_id="c", captured_offline=False)
        return p

    with pytest.raises(InvalidAmount, match="^stamp_duty: 1000000000000 is more than the 100 paid on the bill"):
        one("R1", 10**12)
    for ref, duty, method in (("R3", -1, "cash"), ("R4", 5, "card_reader"), ("R5", True, "cash")):
        with pytest.raises(InvalidAmount, match="^stamp_duty: "):
            one(ref, duty, method)
    zero = one("R2", 0, "card_terminal")
    assert zero.stamp_duty is None and "stamp_duty" not in zero.to_api()
    assert one("R6", 100).to_api()["stamp_duty"] == 100  # up to the amount itself
    assert [p.bill_reference for p in j.list()] == ["R6", "R2"]
    j.close()
