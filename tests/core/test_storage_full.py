"""A full disk: no payment starts without room for its outcome, and an approval the journal cannot write is
still returned and shown, kept aside, and written into the journal once there is room; never lost, never
charged twice. Real small filesystems (tmpfs), so root only (CI is root)."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import config
from agent.authorize import AuthOutcome, AuthRequest, CashAuthorizer, StatusCallback
from agent.context import AgentContext
from agent.errors import StorageError
from agent.journal import PENDING_NAME
from tests.core.conftest import with_changes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB filesystem of its own, for the state directory."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    """Fill `disk` to the last byte (bounded by its size); returns the filler to delete later."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        chunk = b"\0" * 65536
        for _ in range(64):  # 4 MiB at most: more than the disk
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
