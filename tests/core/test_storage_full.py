"""A full disk: no payment starts without room for its outcome, and an approval the journal cannot write is
still returned and shown, kept aside, and written into the journal once there is room; never lost, never
charged twice. Real small filesystems (tmpfs), so root only (CI is root)."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import config
from agent.authorize import AuthOutcome, AuthRequest, CashAuthorizer, StatusCallback
from agent.context import AgentContext
from agent.errors import StorageError
from agent.journal import PENDING_NAME, Journal
from agent.states import State
from tests.core.conftest import GUICHET, with_changes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


@contextmanager
def tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB filesystem of its own, for the state directory."""
    with tmpfs(tmp_path / "disk", "2m") as mnt:
        yield mnt


@pytest.fixture
def disk_for_the_cli(tmp_path: Path) -> Iterator[Path]:
    """A 12 MiB filesystem: room for the 8 MiB free that `guichet pay` wants before it asks for money."""
    with tmpfs(tmp_path / "disk", "12m") as mnt:
        yield mnt


def fill(disk: Path) -> Path:
    """Fill `disk` to the last byte (bounded by its size); returns the filler to delete later."""
    filler = disk / "filler"
    st = os.statvfs(disk)
    with open(filler, "wb") as f:
        chunk = b"\0" * 65536
        for _ in range(st.f_blocks * st.f_frsize // len(chunk) + 2):  # more than the disk holds
            try:
                f.write(chunk)
                f.flush()
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
        for _ in range(65536 // 512):  # the last partial chunk
            try:
                os.write(f.fileno(), b"\0" * 512)
            except OSError:
                break
    return filler


class DrawerOnAFillingDisk:
    """Cash in the drawer, while something else on the machine fills the disk: between the journal's
    `authorizing` and its outcome, exactly when an approval must not be lost."""

    method = "cash"

    def __init__(self, disk: Path) -> None:
        self.disk = disk
        self.cash = CashAuthorizer()

    def authorize(self, req: AuthRequest, *, cancel: threading.Event, on_status: StatusCallback) -> AuthOutcome:
        fill(self.disk)
        return self.cash.authorize(req, cancel=cancel, on_status=on_status)


def on(disk: Path, cfg: config.Config) -> config.Config:
    return with_changes(cfg, state={"dir": str(disk / "state")})


def test_no_payment_starts_without_room_for_its_outcome(
    small_disk: Path, billing_config: config.Config, seeded_references: list[str]
) -> None:
    with AgentContext.open(on(small_disk, billing_config), ["cash"], take_payments=True) as ctx:
        bill = ctx.flow.lookup(seeded_references[0])
        # 2 MiB is less than the 8 MiB a payment needs free: refused before anybody is asked for money
        with pytest.raises(StorageError, match="free on the disk") as e:
            ctx.flow.pay([bill], method="cash", cashier_id="c0042")
        assert "\n" not in str(e.value)
        assert ctx.journal.list() == []


def test_an_approval_the_full_disk_refuses_is_returned_kept_and_journaled_later(
    small_disk: Path, billing_config: config.Config, seeded_references: list[str]
) -> None:
    cfg = on(small_disk, billing_config)
    with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
        bill = ctx.flow.lookup(seeded_references[0])
        ctx.flow.min_free_bytes = 256 * 1024  # this small disk has room enough when the payment starts
        ctx.flow.authorizers["cash"] = DrawerOnAFillingDisk(small_disk)
        result = ctx.flow.pay([bill], method="cash", cashier_id="c0042")
        assert result.status == "approved"
        assert not result.journaled
        assert "not yet journaled: do not charge again" in result.message
        assert "\n" not in result.message
        [p] = result.payments
        assert p.state == "approved" and p.authorization is not None
        receipt = result.receipt_number
        assert receipt and p.authorization["reference"] == f"cash-{receipt}"
        assert ctx.journal.get(p.payment_id).state == "authorizing"  # the disk took nothing more
        assert ctx.journal.parked == 1
        assert oct((small_disk / "state" / PENDING_NAME).stat().st_mode & 0o777) == "0o600"

    (small_disk / "filler").unlink()
    # The next start writes the parked approval before recovery could call the payment unknown.
    with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
        stored = ctx.journal.get(p.payment_id)
        assert stored.state == "approved"
        assert stored.authorization is not None and stored.authorization["reference"] == f"cash-{receipt}"
        assert ctx.journal.parked == 0
        assert [q.payment_id for q in ctx.journal.outbox_batch(10)] == [p.payment_id]


def test_the_next_payment_writes_a_parked_approval_first(
    small_disk: Path, billing_config: config.Config, seeded_references: list[str]
) -> None:
    with AgentContext.open(on(small_disk, billing_config), ["cash"], take_payments=True) as ctx:
        ctx.flow.min_free_bytes = 256 * 1024
        ctx.flow.authorizers["cash"] = DrawerOnAFillingDisk(small_disk)
        first = ctx.flow.pay([ctx.flow.lookup(seeded_references[0])], method="cash", cashier_id="c0042")
        assert not first.journaled and ctx.journal.parked == 1
        (small_disk / "filler").unlink()
        ctx.flow.authorizers["cash"] = CashAuthorizer()
        second = ctx.flow.pay([ctx.flow.lookup(seeded_references[1])], method="cash", cashier_id="c0042")
        assert second.journaled and second.status == "approved"
        assert ctx.journal.parked == 0
        assert ctx.journal.get(first.payments[0].payment_id).state == "approved"  # without a restart


def test_an_outcome_that_cannot_be_parked_says_so_and_turns_unknown_at_the_next_start(
    small_disk: Path, billing_config: config.Config, seeded_references: list[str]
) -> None:
    cfg = on(small_disk, billing_config)
    with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
        for n in range(32):  # every slot taken by outcomes still waiting (for payments of a lost journal)
            ctx.journal.park([f"0193aaaa-0000-7000-8000-{n:012d}"], State.APPROVED, actor="c0042")
        ctx.flow.min_free_bytes = 256 * 1024
        ctx.flow.authorizers["cash"] = DrawerOnAFillingDisk(small_disk)
        result = ctx.flow.pay([ctx.flow.lookup(seeded_references[0])], method="cash", cashier_id="c0042")
        assert result.status == "approved" and not result.journaled
        assert "could NOT be kept" in result.message and "write down the TPE ticket" in result.message
        assert "kept aside" not in result.message
        [p] = result.payments
        assert ctx.journal.parked == 32
    (small_disk / "filler").unlink()
    with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
        assert ctx.journal.get(p.payment_id).state == "unknown"  # settled from the ticket, never charged twice
        assert ctx.journal.parked == 32  # the others are kept, never dropped


def test_guichet_pay_when_the_disk_fills_while_the_terminal_waits_for_the_pin(
    disk_for_the_cli: Path, billing_config: config.Config, seeded_references: list[str], tmp_path: Path
) -> None:
    """The lead's `guichet pay` path: the approval is shown, exit 0, no upload; the parked card is PAN-free."""
    from sandbox.tpe import TEST_CARDS, TpeSimulator
    from tests.tpe.conftest import FAST_BAUD, TPE_TIMEOUTS

    sim = TpeSimulator.on_pty(baud=FAST_BAUD, framing="7E1", think=0.0, pin_delay=5.0, ack_timeout=0.5,
                              behaviour="slow").start()
    try:
        data = on(disk_for_the_cli, billing_config).model_dump(mode="python")
        data["server"]["token"] = data["server"]["token"].get_secret_value()
        data["cards"]["hmac_key"] = data["cards"]["hmac_key"].get_secret_value()
        data["tpe"].update({"port": sim.path, "baud": FAST_BAUD, "framing": "7E1", **TPE_TIMEOUTS,
                            "answer_timeout": 60})
        cfg = config.write_config(config.validate(data), tmp_path / "guichet.toml")
        env = {k: v for k, v in os.environ.items() if k != "GUICHET_CRASHPOINT"}
        env["GUICHET_CONFIG"] = str(cfg)
        proc = subprocess.Popen([*GUICHET, "pay", seeded_references[0], "--method", "card_terminal"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                stdin=subprocess.DEVNULL)
        try:
            for _ in range(3000):  # bounded: until the terminal has the amount (or the CLI ended)
                if any(e.request is not None for e in sim.exchanges) or proc.poll() is not None:
                    break
                time.sleep(0.01)
            assert proc.poll() is None, proc.communicate()
            filler = fill(disk_for_the_cli)  # while the customer types the PIN
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    finally:
        sim.stop()
    assert proc.returncode == 0, err
    assert "not yet journaled: do not charge again" in err and "kept aside" in err
    assert "Traceback" not in err
    state = disk_for_the_cli / "state"
    parked = (state / PENDING_NAME).read_bytes()
    pan = TEST_CARDS["EDAHABIA"]
    assert pan.encode() not in parked and pan[:12].encode() not in parked  # PCI: never a full PAN on disk
    masked = pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
    assert masked.encode() in parked  # what a receipt shows, for the journal
    filler.unlink()
    j = Journal.open(state, terminal_id=billing_config.terminal.id, agency_id=billing_config.terminal.agency_id)
    try:
        j.recover()
        [p] = j.list()
        assert p.state == "approved"  # written at the next start, not uploaded by the failed run
        assert p.card is not None and p.card["pan_masked"] == masked
    finally:
        j.close()
