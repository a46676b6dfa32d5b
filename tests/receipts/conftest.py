"""Receipts through the real print path: drivers.printer -> tcp://127.0.0.1 (or a pty) -> the virtual printer
(sandbox.printer) -> a PNG per job. Times are shown in Algiers' time zone, whatever the machine's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sandbox.printer import VirtualPrinter
from ui.receipts import BillLine, Receipt

KEY = b"test-signing-key-0123456789abcdef"
WHEN = datetime(2026, 11, 30, 8, 14, tzinfo=UTC)  # 09:14 in Algiers
TEST_PAN = "6280580000001239"  # Luhn-valid: must never reach a receipt in full


@pytest.fixture(autouse=True)
def algiers_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Africa/Algiers")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def vprinter(tmp_path: Path) -> Iterator[VirtualPrinter]:
    with VirtualPrinter(tmp_path / "paper") as vp:
        vp.listen("127.0.0.1", 0)
        yield vp


def one_bill() -> Receipt:
    return Receipt(number="ORAN-07-G2-000042", agency_id="ORAN-07", terminal_id="ORAN-07-G2", cashier_id="c0007",
                   when=WHEN, currency="DZD",
                   bills=(BillLine("SEOR-2026-000123", 1127300, "2026-T3", "Benali Karim", "CT-77812"),),
                   method="card_terminal", scheme="CIB", pan_masked="628058******1239", auth_code="A1B2C3")


def basket_by_card() -> Receipt:
    return Receipt(number="ORAN-07-G2-000043", agency_id="ORAN-07", terminal_id="ORAN-07-G2", cashier_id="c0007",
                   when=WHEN, currency="DZD",
                   bills=(BillLine("SEOR-2026-000123", 1127300, "2026-T3", "Benali Karim", "CT-77812"),
                          BillLine("SEOR-2026-000124", 345600, "2026-T3", "Benali Karim", "CT-77812"),
                          BillLine("SEOR-2026-000125", 98050, "2026-T2", "Benali Karim", "CT-77812")),
                   method="card_reader", scheme="EDAHABIA", pan_masked="628058******1239", auth_code="0F4411")


def cash_with_stamp_duty() -> Receipt:
    return Receipt(number="ORAN-07-G2-000044", agency_id="ORAN-07", terminal_id="ORAN-07-G2", cashier_id="c0007",
                   when=WHEN, currency="DZD",
                   bills=(BillLine("SEOR-2026-000126", 1127300, "2026-T3", "Haddad Amina", "CT-90211"),),
                   method="cash", stamp_duty=11300)
