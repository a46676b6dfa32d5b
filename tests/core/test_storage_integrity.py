"""A damaged journal is found when it opens and takes no new payment; a journal that lost committed payments
(a damaged WAL frame, a replaced file, the server ahead of it) is loud, blocks payments until a supervisor
accepts the loss, and never issues a receipt number twice. The state directory is private from the start."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

import config
from agent.cashiers import CashierStore
from agent.errors import GuichetError, JournalDamaged
from agent.journal import DB_NAME, HWM_NAME, Journal, NewPayment
from agent.states import State
from tests.core.conftest import GUICHET, with_changes

BILL = {"reference": "410726095518", "amount_due": 345600, "currency": "DZD", "status": "unpaid", "version": 3}
WAL_HEADER, FRAME_HEADER, PAGE = 32, 24, 4096


def open_journal(path: Path, terminal: str = "ORAN-07-G2") -> Journal:
    return Journal.open(path, terminal_id=terminal, agency_id="ORAN-07")


def pay_cash(j: Journal, reference: str = "410726095518") -> str:
    [p] = j.create([NewPayment({**BILL, "reference": reference}, 1000)], currency="DZD", method="cash",
                   cashier_id="c0042", captured_offline=False)
    j.transition(p.payment_id, State.AUTHORIZING, actor="c0042")
    j.transition(p.payment_id, State.APPROVED, actor="c0042", authorization={"code": None})
    return p.receipt_number


def snapshot(src: Path, dst: Path) -> None:
    """What is on disk now (journal, its WAL, its high-water mark), as a power cut would leave it."""
    dst.mkdir(mode=0o700)
    for name in (DB_NAME, DB_NAME + "-wal", HWM_NAME):
        shutil.copy2(src / name, dst / name)


def flip_wal_frame(state: Path, frame: int) -> None:
    """Flip one byte in the page of WAL frame `frame` (0-based): its checksum fails, and SQLite drops it and
    every later frame without a word."""
    with open(state / (DB_NAME + "-wal"), "r+b") as f:
        at = WAL_HEADER + frame * (FRAME_HEADER + PAGE) + FRAME_HEADER + 100
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_a_flipped_byte_in_the_wal_is_a_loud_loss_and_no_receipt_number_is_reissued(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "live")
    issued = [pay_cash(j, f"41072609551{n}") for n in range(6)]
    frames = ((tmp_path / "live" / (DB_NAME + "-wal")).stat().st_size - WAL_HEADER) // (FRAME_HEADER + PAGE)
    snapshot(tmp_path / "live", tmp_path / "state")
    j.close()
    flip_wal_frame(tmp_path / "state", frames // 2)  # the later payments' frames are gone

    j = open_journal(tmp_path / "state")
    kept = [p.receipt_number for p in j.list()]
    assert len(kept) < len(issued)  # what the damaged frame took with it
    assert j.damage is not None and "lost committed payments" in j.damage
    assert issued[-1] in j.damage and "accept-loss" in j.damage
    with pytest.raises(JournalDamaged, match="lost committed payments"):
        pay_cash(j)
    assert [p.receipt_number for p in j.list()] == kept  # refused before anything was written
    j.close()

    j = open_journal(tmp_path / "state")  # still blocked after a restart: the loss is recorded
    with pytest.raises(JournalDamaged):
        pay_cash(j)
    assert j.accept_loss("s0001") == 1
    [incident] = j.incidents()
    assert incident["accepted_by"] == "s0001" and incident["kind"] == "lost_payments"
    after = pay_cash(j)
    assert after not in issued
    assert after == f"ORAN-07-G2-{len(issued) + 1:06d}"
    j.close()


def test_a_damaged_page_is_found_on_open_and_refuses_new_payments(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    for n in range(40):
        pay_cash(j, f"4107260955{n:02d}")
    leaf = j._conn.execute("SELECT pageno FROM dbstat WHERE name = 'event' AND pagetype = 'leaf' LIMIT 1").fetchone()[0]
    j.close()  # checkpointed: the page is in the main file
    with open(tmp_path / DB_NAME, "r+b") as f:
        f.seek((leaf - 1) * PAGE + 3)  # the page's cell count
        f.write(b"\xff\xff")
    j = open_journal(tmp_path)
    assert j.damage is not None and "damaged" in j.damage and "restore" in j.damage
    assert "\n" not in j.damage
    with pytest.raises(JournalDamaged):
        pay_cash(j, "999999999999")
    j.close()


def test_the_server_ahead_of_the_journal_blocks_payments_and_moves_the_receipt_counter(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    pay_cash(j)
    assert j.high_water() == "ORAN-07-G2-000001"
    j.check_server_high_water("ORAN-07-G2-000001")  # in step: nothing to say
    assert j.damage is None
    with pytest.raises(GuichetError, match="not a receipt number of terminal"):
        j.check_server_high_water("ORAN-07-G9-000777")
    assert j.damage is None
    j.check_server_high_water("ORAN-07-G2-000009")
    assert j.damage is not None and "ORAN-07-G2-000009" in j.damage
    assert j.high_water() == "ORAN-07-G2-000009"
    j.close()
    j = open_journal(tmp_path)
    with pytest.raises(JournalDamaged):
        pay_cash(j)
    j.accept_loss("s0001")
    assert pay_cash(j) == "ORAN-07-G2-000010"
    j.close()


def test_a_replaced_journal_file_is_caught_by_its_high_water_mark(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    pay_cash(j)
    pay_cash(j)
    j.close()
    for name in os.listdir(tmp_path):
        if name.startswith(DB_NAME):
            os.remove(tmp_path / name)  # an empty journal where one with two payments was
    j = open_journal(tmp_path)
    with pytest.raises(JournalDamaged, match="ORAN-07-G2-000002"):
        pay_cash(j)
    j.close()


def _cli(cfg: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GUICHET_CRASHPOINT"}
    env["GUICHET_CONFIG"] = str(cfg)
    return subprocess.run([*GUICHET, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)


def test_every_command_that_opens_a_damaged_journal_says_so(
    billing_config: config.Config, config_file: Path, seeded_references: list[str]
) -> None:
    state = Path(billing_config.state.dir)
    j = Journal.open(state, terminal_id=billing_config.terminal.id, agency_id=billing_config.terminal.agency_id)
    for n in range(40):
        pay_cash(j, f"5107260955{n:02d}")
    leaf = j._conn.execute("SELECT pageno FROM dbstat WHERE name = 'event' AND pagetype = 'leaf' LIMIT 1").fetchone()[0]
    j.close()
    with open(state / DB_NAME, "r+b") as f:
        f.seek((leaf - 1) * PAGE + 3)
        f.write(b"\xff\xff")

    r = _cli(config_file, "pay", seeded_references[0], "--method", "cash", "--no-upload")
    assert r.returncode == 1
    assert "the journal is damaged" in r.stderr and "Traceback" not in r.stderr
    for args in (("queue", "status"), ("queue", "list"), ("sync", "--once"), ("journal", "check")):
        r = _cli(config_file, *args)
        assert "the journal is damaged" in r.stderr, args
        assert "Traceback" not in r.stderr, (args, r.stderr)
        # Each fails as a whole (its read hits the damaged page, or the check finds it): a script sees it.
        assert r.returncode == 1, (args, r.returncode, r.stderr)
        assert r.stderr.strip().splitlines()[-1].startswith("guichet: "), (args, r.stderr)


def test_accept_loss_from_the_cli_needs_a_supervisor(billing_config: config.Config, tmp_path: Path) -> None:
    state = Path(billing_config.state.dir)
    cfg = config.write_config(billing_config, tmp_path / "g.toml")
    store = CashierStore.open(state)
    try:
        store.add("s0001", "Karim S.", "917355", role="supervisor")
        store.add("c0042", "Amel B.", "123456", role="cashier", actor="s0001")
    finally:
        store.close()
    j = Journal.open(state, terminal_id=billing_config.terminal.id, agency_id=billing_config.terminal.agency_id)
    pay_cash(j)
    j.check_server_high_water(f"{billing_config.terminal.id}-000005")
    j.close()
    r = _cli(cfg, "journal", "accept-loss", "--supervisor", "c0042", "--pin-stdin", stdin="123456\n")
    assert r.returncode == 1 and "not a supervisor" in r.stderr
    r = _cli(cfg, "journal", "accept-loss", "--supervisor", "s0001", "--pin-stdin", stdin="917355\n")
    assert r.returncode == 0, r.stderr
    j = Journal.open(state, terminal_id=billing_config.terminal.id, agency_id=billing_config.terminal.agency_id)
    assert j.damage is None
    assert pay_cash(j) == f"{billing_config.terminal.id}-000006"
    j.close()


def test_cashier_add_as_the_first_command_leaves_the_state_dir_private(
    billing_config: config.Config, tmp_path: Path
) -> None:
    fresh = tmp_path / "fresh" / "state"
    cfg = config.write_config(with_changes(billing_config, state={"dir": str(fresh)}), tmp_path / "fresh.toml")
    old = os.umask(0o022)
    try:
        r = _cli(cfg, "cashier", "add", "s0001", "--name", "Karim S.", "--supervisor", "--pin-stdin",
                 stdin="917355\n")
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700


def test_doctor_reports_a_loss_not_yet_accepted(tmp_path: Path) -> None:
    from agent.doctor import check_journal

    j = open_journal(tmp_path)
    pay_cash(j)
    j.close()
    assert check_journal(tmp_path).ok
    j = open_journal(tmp_path)
    j.check_server_high_water("ORAN-07-G2-000004")
    j.close()
    check = check_journal(tmp_path)
    assert not check.ok and check.severity == "error"
    assert "ORAN-07-G2-000004" in check.detail and "accept-loss" in check.fix
