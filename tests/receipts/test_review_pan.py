"""Review 1, finding 12: one masking rule on receipts (drivers.pan), and every row scrubbed: a card number in
the authorization code or a bill's customer name never reaches the rows or the paper."""

from __future__ import annotations

import pytest

from drivers.pan import masked_pan_fault
from drivers.printer import open_printer
from sandbox.printer import VirtualPrinter
from tests.receipts.conftest import KEY, TEST_PAN, WHEN
from ui.receipts import Receipt, ReceiptOptions, print_receipt, rows
from ui.receipts.model import safe_pan


@pytest.mark.parametrize("shown", ["4761739001******", "47617390******10", "4761739001xxxxxx", TEST_PAN,
                                   "628058######1239", "628058******1239", "************1239", "garbage"])
def test_a_receipt_shows_a_card_number_only_as_the_contract_keeps_it(shown: str) -> None:
    got = safe_pan(shown)
    assert got == "" or got.startswith("****") or masked_pan_fault(got) is None, got
    assert sum(c.isdigit() for c in got) <= 10 and TEST_PAN not in got


class Row:
    bill_reference, amount, currency, method, state = "SEOR-1", 100, "DZD", "card_terminal", "approved"
    card = {"scheme": "CIB", "pan_masked": "628058******1239"}
    authorization = {"code": TEST_PAN}  # the cashier typed the card number in the code box
    agency_id, terminal_id, cashier_id, receipt_number = "A", "T", "c", "T-000001"
    captured_at, captured_offline = WHEN.isoformat(), False
    bill = {"customer_name": f"client {TEST_PAN[:8]} {TEST_PAN[8:]}", "period": "2026-T3"}  # split, from outside


def test_no_card_number_in_any_row_nor_on_paper(vprinter: VirtualPrinter) -> None:
    receipt = Receipt.from_payments([Row()])
    for lang in ("fr", "ar"):
        for row in rows(receipt, lang):
            assert TEST_PAN not in (row.left + row.right).replace(" ", ""), row
    assert any("2026-T3" in r.left for r in rows(receipt, "fr"))  # the rest of the field stays
    options = ReceiptOptions(dots=576, languages=("fr",), text=True, signing_key=KEY)
    assert print_receipt(open_printer(vprinter.url), receipt, options).ok
    printed = "\n".join(vprinter.wait_jobs(1)[0].job.text)
    assert TEST_PAN not in printed.replace(" ", "") and "628058******1239" in printed
