"""The journal keeps every payment through every state change, on disk, and refuses what it cannot do."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from agent.errors import InvalidTransition, JournalError
from agent.journal import DB_NAME, MIGRATIONS, Journal, NewPayment, now_stamp, open_database
from agent.states import State

BILL = {"reference": "410726095518", "amount_due": 345600, "currency": "DZD", "status": "unpaid", "version": 3}


def open_journal(path: Path) -> Journal:
    return Journal.open(path, terminal_id="ORAN-07-G2", agency_id="ORAN-07")


def approved(j: Journal, amount: int = 1000, reference: str = "410726095518"):
    [p] = j.create([NewPayment({**BILL, "reference": reference}, amount)], currency="DZD", method="cash",
                   cashier_id="c0042", captured_offline=False)
    j.transition(p.payment_id, State.AUTHORIZING, actor="c0042")
    return j.transition(p.payment_id, State.APPROVED, actor="c0042", authorization={"code": "123456"})[0]


def test_database_is_wal_full_sync_and_private(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "state")
    approved(j)
    assert j._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert j._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
        assert stat.S_IMODE((tmp_path / "state" / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    j.close()


def test_each_state_change_is_audited_and_approval_queues_the_upload(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    p = approved(j, 345600)
    assert p.state == "approved" and p.authorization == {"code": "123456"}
    assert [p.payment_id] == [q.payment_id for q in j.outbox_batch(10)]
    trail = [(a["from_state"], a["to_state"]) for a in j.audit(p.payment_id)]
    assert trail == [(None, "created"), ("created", "authorizing"), ("authorizing", "approved")]
    assert all(a["actor"] == "c0042" for a in j.audit(p.payment_id))
    stats = j.queue_stats()
    assert (stats.count, stats.total) == (1, {"DZD": 345600})


def test_a_forbidden_transition_changes_nothing(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    p = approved(j)
    with pytest.raises(InvalidTransition, match="from approved to declined"):
        j.transition(p.payment_id, State.DECLINED, actor="x")
    assert j.get(p.payment_id).state == "approved"
    assert len(j.audit(p.payment_id)) == 3
    assert len(j.outbox_batch(10)) == 1


def test_group_transition_is_all_or_nothing(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    a = approved(j)
    [b] = j.create([NewPayment(BILL, 10)], currency="DZD", method="cash", cashier_id="c", captured_offline=False)
    with pytest.raises(InvalidTransition):
        j.transition([b.payment_id, a.payment_id], State.AUTHORIZING, actor="c")
    assert j.get(b.payment_id).state == "created"


def test_receipt_numbers_never_repeat_across_reopen(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    first = [approved(j).receipt_number for _ in range(3)]
    j.close()
    j = open_journal(tmp_path)
    second = [approved(j).receipt_number for _ in range(2)]
    numbers = first + second
    assert numbers == [f"ORAN-07-G2-{n:06d}" for n in range(1, 6)]


def test_several_bills_share_one_transaction(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    ps = j.create(
        [NewPayment({**BILL, "reference": r}, 100 * i) for i, r in enumerate(["111", "222", "333"], 1)],
        currency="DZD", method="cash", cashier_id="c", captured_offline=True,
    )
    assert len({p.transaction_id for p in ps}) == 1 and ps[0].transaction_id == ps[0].payment_id
    assert len({p.receipt_number for p in ps}) == 3
    assert [p.amount for p in j.transaction(ps[0].transaction_id)] == [100, 200, 300]


def test_recover_never_guesses(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    [created] = j.create([NewPayment(BILL, 1)], currency="DZD", method="cash", cashier_id="c", captured_offline=False)
    [inflight] = j.create([NewPayment({**BILL, "reference": "999"}, 1)], currency="DZD", method="card_terminal",
                          cashier_id="c", captured_offline=False)
    j.transition(inflight.payment_id, State.AUTHORIZING, actor="c")
    done = approved(j, reference="777")
    changed = {p.payment_id: p.state for p in j.recover()}
    assert changed == {created.payment_id: "cancelled", inflight.payment_id: "unknown"}
    assert j.get(done.payment_id).state == "approved"
    assert getattr(j.blocking_payment("999"), "payment_id", None) == inflight.payment_id
    assert j.blocking_payment("777") is None


def test_upload_results_are_idempotent(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    a, b = approved(j), approved(j, reference="888")
    results = [
        {"payment_id": a.payment_id, "status": "accepted", "notice": "credited_to_account"},
        {"payment_id": b.payment_id, "status": "rejected", "error": {"code": "bill_not_found", "message": "no"}},
    ]
    assert j.record_upload_results(results)["accepted"] == 1
    assert j.record_upload_results(results)["skipped"] == 2  # a replayed answer changes nothing
    assert j.get(a.payment_id).state == "uploaded" and j.get(a.payment_id).notice == "credited_to_account"
    assert j.get(b.payment_id).state == "rejected" and (j.get(b.payment_id).error or "").startswith("bill_not_found")
    assert j.outbox_batch(10) == []
    assert j.queue_stats().needs_attention == 2
    # One batch answering a payment twice, and a payment this journal never had: one move, two skips.
    c = approved(j, reference="777")
    odd = [{"payment_id": c.payment_id, "status": "duplicate"}] * 2
    odd.append({"payment_id": "elsewhere", "status": "accepted"})
    assert j.record_upload_results(odd) == {"accepted": 0, "duplicate": 1, "rejected": 0, "skipped": 2}
    assert [(e["from_state"], e["to_state"]) for e in j.audit(c.payment_id)][-1] == ("approved", "uploaded")
    assert len(j.audit(c.payment_id)) == 4


def test_corrupt_journal_is_reported_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    garbage = b"this is not a database, but it was someone's journal" * 100
    path.write_bytes(garbage)
    with pytest.raises(JournalError, match="corrupt") as e:
        open_journal(tmp_path)
    assert str(path) in str(e.value)
    assert path.read_bytes() == garbage


def test_journal_from_a_newer_guichet_is_refused(tmp_path: Path) -> None:
    open_journal(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(JournalError, match="newer than this guichet"):
        open_journal(tmp_path)


def test_read_only_journal_fails_clearly_and_keeps_its_payments(tmp_path: Path) -> None:
    """A journal on a file system remounted read-only (what a failing SD card does): a clear error."""
    state = tmp_path / "ro"
    state.mkdir()
    mounted = False
    if os.geteuid() == 0:
        # root writes through chmod, so use a real read-only mount
        mounted = os.system(f"mount -t tmpfs -o size=8m tmpfs {state} 2>/dev/null") == 0
        if not mounted:
            pytest.skip("cannot mount a tmpfs here to make a read-only file system")
    try:
        j = open_journal(state)
        p = approved(j)
        j.close()
        if mounted:
            assert os.system(f"mount -o remount,ro {state}") == 0
        else:
            for f in state.iterdir():
                f.chmod(0o400)
            state.chmod(0o500)
        with pytest.raises(JournalError) as e:
            jr = open_journal(state)
            jr.transition(p.payment_id, State.UPLOADED, actor="sync")
        assert str(state) in str(e.value)
        assert any(w in str(e.value) for w in ("read-only", "permission", "cannot"))
        if mounted:
            assert os.system(f"mount -o remount,rw {state}") == 0
        else:
            state.chmod(0o700)
            for f in state.iterdir():
                f.chmod(0o600)
        reopened = open_journal(state)
        assert reopened.get(p.payment_id).state == "approved"
        reopened.close()
    finally:
        if mounted:
            os.system(f"umount -l {state}")


def test_answers_are_current_when_another_process_moved_the_payment(tmp_path: Path) -> None:
    """Two connections on one journal (the UI and `guichet sync`): each answer is the payment as stored."""
    a, b = open_journal(tmp_path), open_journal(tmp_path)
    [p] = a.create([NewPayment(BILL, 1000)], currency="DZD", method="cash", cashier_id="c", captured_offline=False)
    b.transition(p.payment_id, State.AUTHORIZING, actor="other")
    [q] = a.transition(p.payment_id, State.APPROVED, actor="c", authorization={"code": "1"})
    assert q == a.get(p.payment_id) and q.state == "approved" and q.authorization == {"code": "1"}
    b.record_upload_results([{"payment_id": p.payment_id, "status": "accepted", "notice": "credited_to_account"}])
    assert a.get(p.payment_id).state == "uploaded" and a.get(p.payment_id).notice == "credited_to_account"
    for j in (a, b):
        [r] = j.create([NewPayment(BILL, 5)], currency="DZD", method="cash", cashier_id="c", captured_offline=False)
        for to in (State.AUTHORIZING, State.APPROVED):
            [moved] = j.transition(r.payment_id, to, actor="c", card={"scheme": "CIB"} if to == "approved" else None)
            assert moved == j.get(r.payment_id)  # the answer built without a read equals the stored row



def test_a_move_from_a_stale_copy_starts_where_the_payment_really_is(tmp_path: Path) -> None:
    """The UI holds a payment `authorizing`; meanwhile another process settles it (a supervisor marks it
    unknown, or declined). The UI's next move starts from the stored state, or is refused: never from its copy."""
    ui, other = open_journal(tmp_path), open_journal(tmp_path)
    first, second = (
        ui.create([NewPayment({**BILL, "reference": ref}, n)], currency="DZD", method="card_terminal",
                  cashier_id="c", captured_offline=False)[0].payment_id
        for ref, n in (("410726095518", 1000), ("410726095519", 2000))
    )
    for pid in (first, second):
        ui.transition(pid, State.AUTHORIZING, actor="c")
    other.transition(first, State.UNKNOWN, actor="supervisor")
    other.transition(second, State.DECLINED, actor="supervisor")

    [p] = ui.transition(first, State.APPROVED, actor="c", authorization={"code": "1"})
    assert p == ui.get(first) and p.state == "approved"
    assert [(a["from_state"], a["to_state"]) for a in ui.audit(first)] == [
        (None, "created"), ("created", "authorizing"), ("authorizing", "unknown"), ("unknown", "approved")]
    with pytest.raises(InvalidTransition, match="cannot go from declined to approved"):
        ui.transition(second, State.APPROVED, actor="c", authorization={"code": "2"})
    assert ui.get(second).state == "declined" and len(ui.audit(second)) == 3

    # the file itself refuses an event that does not follow the payment's latest one, whoever writes it
    seq = ui.get(second).seq
    with pytest.raises(sqlite3.IntegrityError, match="latest state"):
        ui._conn.execute(
            "INSERT INTO event (event_id, payment_id, step, state, from_state, at, actor)"
            " VALUES (?, ?, 4, 'uploaded', 'approved', ?, 'tool')",
            (seq * 8 + 4, second, now_stamp()),
        )
    assert ui.get(second).state == "declined"
    ui.close()
    other.close()

def _v1_journal(state_dir: Path) -> list[str]:
    """A journal as guichet wrote it before migration 2 (events found through a (payment_id, step) index):
    one payment uploaded with a notice, one waiting for upload, one unknown, one rejected."""
    conn = open_database(state_dir / DB_NAME, MIGRATIONS[:1])
    at = "2026-11-21T09:14:03.000000+01:00"
    paths = {
        1: ["created", "authorizing", "approved", "uploaded"],
        2: ["created", "authorizing", "approved"],
        3: ["created", "authorizing", "unknown"],
        4: ["created", "authorizing", "approved", "rejected"],
    }
    ids = []
    for n, states in paths.items():
        pid = f"01936c2e-0000-7000-8000-{n:012d}"
        ids.append(pid)
        conn.execute(
            "INSERT INTO payment (payment_id, transaction_id, bill_reference, amount, currency, method, agency_id,"
            " terminal_id, cashier_id, receipt_number, captured_at, captured_offline, bill, created_at)"
            " VALUES (?, ?, ?, ?, 'DZD', 'cash', 'ORAN-07', 'ORAN-07-G2', 'c0042', ?, ?, 0, ?, ?)",
            (pid, pid, BILL["reference"], 1000 * n, f"ORAN-07-G2-{n:06d}", at[:19] + "+01:00", '{"version": 3}', at),
        )
        for prev, state in zip([None, *states], states, strict=False):
            conn.execute(
                "INSERT INTO event (payment_id, step, state, from_state, at, actor, authorization, notice, error)"
                " VALUES (?, ?, ?, ?, ?, 'c0042', ?, ?, ?)",
                (pid, {"created": 0, "authorizing": 1, "unknown": 2, "approved": 3}.get(state, 4), state, prev, at,
                 '{"code": "123456"}' if state == "approved" else None,
                 "already paid at the post office" if state == "uploaded" else None,
                 "invalid_bill: unknown reference" if state == "rejected" else None),
            )
        if states[-1] != "uploaded":
            conn.execute("INSERT INTO open (payment_id, state, since) VALUES (?, ?, ?)", (pid, states[-1], at))
    conn.execute("UPDATE counters SET value = 4 WHERE name = 'receipt'")
    conn.close()
    return ids


def test_a_journal_from_before_migration_2_keeps_every_payment_and_goes_on(tmp_path: Path) -> None:
    uploaded, waiting, unknown, rejected = _v1_journal(tmp_path)
    j = open_journal(tmp_path)
    assert j._conn.execute("PRAGMA user_version").fetchone()[0] == MIGRATIONS[-1][0]
    assert [j.get(pid).state for pid in (uploaded, waiting, unknown, rejected)] == [
        "uploaded", "approved", "unknown", "rejected"]
    assert j.get(uploaded).notice == "already paid at the post office"
    assert j.get(uploaded).uploaded_at is not None
    assert j.get(waiting).authorization == {"code": "123456"}
    assert j.get(rejected).error == "invalid_bill: unknown reference"
    assert [a["to_state"] for a in j.audit(uploaded)] == ["created", "authorizing", "approved", "uploaded"]
    assert [p.payment_id for p in j.outbox_batch(10)] == [waiting]
    stats = j.queue_stats()
    assert (stats.count, stats.unknown, stats.needs_attention) == (1, 1, 3)  # unknown, rejected, the notice
    views = dict(j._conn.execute("SELECT payment_id, state FROM payments").fetchall())
    assert views == {uploaded: "uploaded", waiting: "approved", unknown: "unknown", rejected: "rejected"}

    # ... and the migrated payments go on through their states; new ones number after them
    [settled] = j.transition(unknown, State.APPROVED, actor="supervisor", authorization={"code": "654321"})
    assert settled.state == "approved"
    assert j.record_upload_results([{"payment_id": waiting, "status": "accepted"}])["accepted"] == 1
    assert approved(j).receipt_number == "ORAN-07-G2-000005"
    j.close()
    j = open_journal(tmp_path)
    assert [j.get(pid).state for pid in (waiting, unknown)] == ["uploaded", "approved"]
    assert [a["to_state"] for a in j.audit(unknown)] == ["created", "authorizing", "unknown", "approved"]
    assert j.integrity_check() == "ok"
    j.close()


def _v2_journal(state_dir: Path) -> list[str]:
    """A journal as guichet wrote it before migration 3 (the state kept in the open row): one payment waiting
    for upload after two failed attempts, one created, one authorizing, one rejected, one declined."""
    conn = open_database(state_dir / DB_NAME, MIGRATIONS[:2])
    at = "2026-11-21T09:14:03.000000+01:00"
    steps = {"created": 0, "authorizing": 1, "unknown": 2, "approved": 3, "declined": 3, "rejected": 4}
    paths = {
        # seq: states; the waiting payment is the newest, so capture order and id order differ from insertion
        5: ["created", "authorizing", "approved"],
        1: ["created"],
        2: ["created", "authorizing"],
        3: ["created", "authorizing", "approved", "rejected"],
        4: ["created", "authorizing", "declined"],
    }
    ids = []
    for seq, states in paths.items():
        pid = f"01936c2e-0000-7000-8000-{seq:012d}"
        ids.append(pid)
        conn.execute(
            "INSERT INTO payment (payment_id, transaction_id, bill_reference, amount, currency, method, agency_id,"
            " terminal_id, cashier_id, receipt_number, captured_at, captured_offline, bill, created_at, seq)"
            " VALUES (?, ?, ?, ?, 'DZD', 'cash', 'ORAN-07', 'ORAN-07-G2', 'c0042', ?, ?, 0, ?, ?, ?)",
            (pid, pid, f"41072609551{seq}", 1000 * seq, f"ORAN-07-G2-{seq:06d}", at[:19] + "+01:00",
             '{"version": 3}', at, seq),
        )
        for prev, state in zip([None, *states], states, strict=False):
            conn.execute(
                "INSERT INTO event (event_id, payment_id, step, state, from_state, at, actor, error)"
                " VALUES (?, ?, ?, ?, ?, ?, 'c0042', ?)",
                (seq * 8 + steps[state], pid, steps[state], state, prev, at,
                 "invalid_bill: unknown reference" if state == "rejected" else None),
            )
        if states[-1] != "declined":
            conn.execute(
                "INSERT INTO open (payment_id, state, since, seq, attempts, last_error) VALUES (?, ?, ?, ?, ?, ?)",
                (pid, states[-1], at, seq, *((2, "timeout") if states[-1] == "approved" else (0, None))),
            )
    conn.execute("UPDATE counters SET value = 5 WHERE name = 'receipt'")
    conn.close()
    return ids


def test_a_journal_from_before_migration_3_keeps_states_attempts_and_the_outbox(tmp_path: Path) -> None:
    waiting, created, authorizing, rejected, declined = _v2_journal(tmp_path)
    j = open_journal(tmp_path)
    assert j._conn.execute("PRAGMA user_version").fetchone()[0] == MIGRATIONS[-1][0]
    assert [j.get(pid).state for pid in (waiting, created, authorizing, rejected, declined)] == [
        "approved", "created", "authorizing", "rejected", "declined"]
    assert j.upload_failures(waiting) == 2  # the attempts count survives: the sync gives up on time
    assert [tuple(r) for r in j._conn.execute("SELECT payment_id, attempts, last_error FROM outbox")] == [
        (waiting, 2, "timeout")]
    stats = j.queue_stats()
    assert (stats.count, stats.total, stats.in_doubt_count, stats.needs_attention) == (1, {"DZD": 5000}, 1, 1)
    assert getattr(j.blocking_payment("410726095512"), "payment_id", None) == authorizing
    assert j.pending_against("410726095515", None) == 5000

    # recovery still finds the payments a crash left half-way, and they settle
    assert sorted((p.payment_id, p.state) for p in j.recover()) == sorted(
        [(created, "cancelled"), (authorizing, "unknown")])
    j.note_upload_failure([waiting], "timeout again")
    assert j.upload_failures(waiting) == 3
    assert [p.payment_id for p in j.outbox_batch(10)] == [waiting]
    assert j.record_upload_results([{"payment_id": waiting, "status": "accepted"}])["accepted"] == 1
    assert j.outbox_batch(10) == []
    assert [r[0] for r in j._conn.execute("SELECT seq FROM open ORDER BY seq")] == [2, 3]  # unknown, rejected
    assert approved(j).receipt_number == "ORAN-07-G2-000006"
    assert j.integrity_check() == "ok"
    j.close()
