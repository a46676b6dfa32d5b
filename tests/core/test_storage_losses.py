"""A loss of committed payments blocks every connection and process on the journal, not just the one that
found it; `guichet journal check` reads a damaged journal without a traceback; parked outcomes are never
overwritten nor thrown away; the doctor only reads the high-water mark, and a mark left behind by a power cut
raises no alarm. Real SQLite files, real CLI subprocesses."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import config
from agent.cashiers import CashierStore
from agent.errors import JournalDamaged, StorageError
from agent.journal import DB_NAME, HWM_NAME, PENDING_NAME, HighWater, Journal, NewPayment
from agent.states import State
from tests.core.conftest import GUICHET

BILL = {"reference": "410726095518", "amount_due": 345600, "currency": "DZD", "status": "unpaid", "version": 3}
PAGE = 4096
TERMINAL = "ORAN-07-G2"


def open_journal(path: Path, terminal: str = TERMINAL) -> Journal:
    return Journal.open(path, terminal_id=terminal, agency_id="ORAN-07")


def pay_cash(j: Journal, reference: str = "410726095518") -> str:
    [p] = j.create([NewPayment({**BILL, "reference": reference}, 1000)], currency="DZD", method="cash",
                   cashier_id="c0042", captured_offline=False)
    j.transition(p.payment_id, State.AUTHORIZING, actor="c0042")
    j.transition(p.payment_id, State.APPROVED, actor="c0042", authorization={"code": None})
    return p.receipt_number


def authorizing(j: Journal, reference: str = "410726095518") -> str:
    [p] = j.create([NewPayment({**BILL, "reference": reference}, 1000)], currency="DZD", method="card_terminal",
                   cashier_id="c0042", captured_offline=False)
    j.transition(p.payment_id, State.AUTHORIZING, actor="c0042")
    return p.payment_id


def park_approval(j: Journal, ids: list[str], code: str = "A1") -> None:
    j.park(ids, State.APPROVED, actor="c0042", authorization={"code": code, "reference": f"R-{code}",
                                                               "approved_at": "2026-11-30T10:00:00+01:00"})


def cli(cfg: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GUICHET_CRASHPOINT"}
    env["GUICHET_CONFIG"] = str(cfg)
    return subprocess.run([*GUICHET, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)


# -- a loss seen by every connection and process (#1) ------------------------------------------------------


def test_a_loss_another_connection_records_blocks_this_one_and_an_acceptance_unblocks_it(tmp_path: Path) -> None:
    payments = open_journal(tmp_path)  # the UI's payment flow
    heartbeat = open_journal(tmp_path)  # the UI's sync loop, on its own connection
    pay_cash(payments)
    heartbeat.check_server_high_water(f"{TERMINAL}-000007")  # the server has seen receipts the journal lost
    with pytest.raises(JournalDamaged, match="000007"):
        payments.require_healthy()
    with pytest.raises(JournalDamaged, match="000007"):
        pay_cash(payments)  # create itself refuses, whatever the caller checked before
    assert len(payments.list()) == 1

    heartbeat.accept_loss("s0001")  # a supervisor, on the other connection
    payments.require_healthy()
    assert pay_cash(payments) == f"{TERMINAL}-000008"
    payments.close()
    heartbeat.close()


def test_a_loss_another_process_records_blocks_a_running_journal_and_the_cli_acceptance_unblocks_it(
    billing_config: config.Config, tmp_path: Path
) -> None:
    state = Path(billing_config.state.dir)
    terminal = billing_config.terminal.id
    cfg = config.write_config(billing_config, tmp_path / "g.toml")
    store = CashierStore.open(state)
    try:
        store.add("s0001", "Karim S.", "917355", role="supervisor")
    finally:
        store.close()
    running = Journal.open(state, terminal_id=terminal, agency_id=billing_config.terminal.agency_id)
    pay_cash(running)
    # A `guichet sync` process whose heartbeat finds the server ahead: another process, another connection.
    other = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            from agent.journal import Journal
            j = Journal.open({str(state)!r}, terminal_id={terminal!r}, agency_id="x")
            j.check_server_high_water({terminal!r} + "-000005")
            j.close()
        """)],
        capture_output=True, text=True, timeout=60,
    )
    assert other.returncode == 0, other.stderr
    with pytest.raises(JournalDamaged, match="000005"):
        running.require_healthy()
    with pytest.raises(JournalDamaged):
        pay_cash(running)

    r = cli(cfg, "journal", "accept-loss", "--supervisor", "s0001", "--pin-stdin", stdin="917355\n")
    assert r.returncode == 0, r.stderr
    running.require_healthy()  # the running journal sees the acceptance without a restart
    assert pay_cash(running) == f"{terminal}-000006"
    running.close()


# -- `guichet journal check` on a damaged journal (#2) ------------------------------------------------------


def _damage_table(state: Path, table: str) -> None:
    """Zero the first page of `table` in the main file (checkpointed first): reading it fails as malformed."""
    j = open_journal(state)
    pageno = j._conn.execute("SELECT pageno FROM dbstat WHERE name = ? ORDER BY pageno LIMIT 1", (table,)).fetchone()[0]
    j.close()  # checkpointed: the page is in the main file
    assert pageno > 1
    with open(state / DB_NAME, "r+b") as f:
        f.seek((pageno - 1) * PAGE)
        f.write(b"\xff" * 8 + b"\0" * (PAGE - 8))


@pytest.mark.parametrize("table", ["counters", "incident"])
def test_journal_check_on_a_damaged_page_is_one_line_and_exit_1(
    billing_config: config.Config, config_file: Path, table: str
) -> None:
    state = Path(billing_config.state.dir)
    j = Journal.open(state, terminal_id=billing_config.terminal.id, agency_id=billing_config.terminal.agency_id)
    pay_cash(j)
    j.close()
    _damage_table(state, table)
    for args in (("journal", "check"), ("journal", "check", "--json")):
        r = cli(config_file, *args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr, r.stderr
        assert "damaged" in r.stderr or "corrupt" in r.stderr, r.stderr
    r = cli(config_file, "journal", "check", "--json")
    out = json.loads(r.stdout)
    assert out["ok"] is False and out["damage"]


# -- parked outcomes: never overwritten, never thrown away (#3, #6) -----------------------------------------


def test_a_33rd_parked_outcome_is_refused_and_the_32_parked_ones_are_kept(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    ids = [authorizing(j, f"4107260955{n:02d}") for n in range(33)]
    for n, pid in enumerate(ids[:32]):
        park_approval(j, [pid], code=f"C{n:02d}")
    with pytest.raises(StorageError, match="slots") as e:
        park_approval(j, [ids[32]], code="C32")
    assert "\n" not in str(e.value)
    assert j.parked == 32
    j.close()
    j = open_journal(tmp_path)  # a restart replays every one of the 32
    assert j.parked == 32
    done = j.recover()
    codes = {p.payment_id: (p.authorization or {}).get("code") for p in done if p.state == State.APPROVED}
    assert codes == {pid: f"C{n:02d}" for n, pid in enumerate(ids[:32])}
    assert j.get(ids[32]).state == State.UNKNOWN  # never parked: unknown, settled from the ticket
    assert j.parked == 0
    j.close()


def test_a_parked_outcome_for_payments_the_journal_lacks_is_kept_and_listed(
    billing_config: config.Config, config_file: Path
) -> None:
    from agent.doctor import check_journal

    state = Path(billing_config.state.dir)
    j = Journal.open(state, terminal_id=billing_config.terminal.id, agency_id=billing_config.terminal.agency_id)
    pay_cash(j)
    stranger = "0193aaaa-0000-7000-8000-000000000001"  # parked, then the journal was replaced from a backup
    park_approval(j, [stranger])
    assert j.replay_pending() == []
    assert j.parked == 1  # kept: the only trace of money taken
    j.close()
    j = Journal.open(state, terminal_id=billing_config.terminal.id, agency_id=billing_config.terminal.agency_id)
    j.recover()
    assert j.parked == 1
    assert j.parked_outcomes() == [{"payment_ids": [stranger], "to": "approved", "at": j.parked_outcomes()[0]["at"],
                                    "missing": [stranger]}]
    j.close()
    r = cli(config_file, "journal", "check")
    assert stranger in r.stdout and "NOT IN THE JOURNAL" in r.stdout, r.stdout
    check = check_journal(state)
    assert not check.ok and stranger in check.detail


def test_a_replayed_outcome_the_journal_contradicts_is_logged_and_its_slot_wiped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    j = open_journal(tmp_path)
    pid = authorizing(j)
    park_approval(j, [pid], code="Z9")
    j.transition(pid, State.DECLINED, actor="c0042")  # settled meanwhile, differently
    with caplog.at_level(logging.ERROR, logger="guichet.journal"):
        assert j.replay_pending() == []
    assert any(pid in r.getMessage() and "says approved" in r.getMessage() and "Z9" in r.getMessage()
               for r in caplog.records if r.levelno == logging.ERROR)
    assert j.get(pid).state == State.DECLINED
    assert j.parked == 0
    j.close()
    raw = (tmp_path / PENDING_NAME).read_bytes()
    assert pid.encode() not in raw and b"Z9" not in raw  # the whole slot is zeroed, not just its header


def test_recovery_turns_the_payment_unknown_when_its_parked_outcome_cannot_be_replayed(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    torn = authorizing(j, "410726095501")
    unreadable = authorizing(j, "410726095502")
    park_approval(j, [torn])
    j.close()
    with open(tmp_path / PENDING_NAME, "r+b") as f:  # a power cut tore the parked record
        f.seek(40)
        f.write(b"\xff")
    j = open_journal(tmp_path)
    changed = {p.payment_id: p.state for p in j.recover()}
    assert changed[torn] == State.UNKNOWN and changed[unreadable] == State.UNKNOWN
    j.close()

    # journal.pending unreadable (here a FIFO where the file was): the journal still opens, recovery still runs.
    pid = authorizing(open_journal(tmp_path), "410726095503")
    (tmp_path / PENDING_NAME).unlink()
    os.mkfifo(tmp_path / PENDING_NAME, 0o600)
    j = open_journal(tmp_path)
    assert j.parked == 0
    assert {p.payment_id: p.state for p in j.recover()} == {pid: State.UNKNOWN}
    with pytest.raises(StorageError):
        park_approval(j, [pid])
    j.close()


# -- the high-water mark: read-only doctor, a mark behind after a power cut (#5, #9) ---------------------------


def test_the_doctor_reads_the_mark_without_creating_or_changing_it(tmp_path: Path) -> None:
    from agent.doctor import check_journal

    j = open_journal(tmp_path)
    pay_cash(j)
    j.close()
    mark = tmp_path / HWM_NAME
    mark.unlink()
    assert check_journal(tmp_path).ok
    assert not mark.exists()  # never created by a read-only check

    j = open_journal(tmp_path)
    pay_cash(j)
    j.close()
    os.chmod(mark, 0o644)
    before = mark.read_bytes()
    assert check_journal(tmp_path).ok
    assert stat.S_IMODE(mark.stat().st_mode) == 0o644  # not its business: `guichet doctor` reports, never fixes
    assert mark.read_bytes() == before

    mark.unlink()
    mark.mkdir()  # a mark that exists but cannot be read (as EACCES would, for a non-root doctor)
    check = check_journal(tmp_path)
    assert check.severity == "warning" and HWM_NAME in check.detail, check  # said, not skipped


def test_a_mark_left_behind_by_a_power_cut_raises_no_alarm_and_moves_forward(tmp_path: Path) -> None:
    live = tmp_path / "live"
    j = open_journal(live)
    pay_cash(j)
    pay_cash(j)
    old_mark = (live / HWM_NAME).read_bytes()  # what the disk held of the mark at the cut
    issued = [pay_cash(j, f"41072609552{n}") for n in range(3)]
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    for name in (DB_NAME, DB_NAME + "-wal"):
        shutil.copy2(live / name, state / name)  # the journal's synced WAL holds all five
    (state / HWM_NAME).write_bytes(old_mark)
    j.close()

    j = open_journal(state)
    assert j.damage is None
    assert j.high_water() == issued[-1]
    assert pay_cash(j) == f"{TERMINAL}-000006"
    j.close()
    mark = HighWater(state / HWM_NAME)
    assert mark.read()[0] == 6  # brought forward, never left behind for long
    mark.close()
