"""Review 1, findings 7 and 13: a receipt is as tall as its rows (long bill details within the contract's limits
never push the seal off the paper; a detail row is cut to a few lines, with a note), and a logo is read from a
regular file only, at most MAX_LOGO_BYTES of it."""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from drivers.printer.seal import verify
from tests.receipts.conftest import KEY, basket_by_card
from ui.receipts import ReceiptOptions, render
from ui.receipts.render import MAX_LOGO_BYTES


def test_long_bill_details_keep_the_seal_and_every_row() -> None:
    zxingcpp = pytest.importorskip("zxingcpp", reason="reading the seal back needs zxing-cpp")
    rec = basket_by_card()
    words = ("Benali Karim Abdelkader ben Mohamed " * 6)[:200].strip()
    bills = tuple(replace(b, period=("2026-T3 " * 25)[:200].strip(), customer=words,
                          contract=("CT-77812 " * 22)[:200].strip()) for b in rec.bills)  # fmt: skip
    options = ReceiptOptions(dots=384, languages=("fr", "ar"), signing_key=KEY)
    picture = render(replace(rec, bills=bills), options)
    [text] = [r.text for r in zxingcpp.read_barcodes(picture.convert("L"))]
    assert verify(text, KEY).receipt_number == rec.number
    assert options.notes == ["a detail row was cut to 4 lines"]
    # nothing below the seal's footer was lost: the picture ends on paper, not on a crop
    assert picture.height > render(rec, ReceiptOptions(dots=384, languages=("fr", "ar"), signing_key=KEY)).height


def _render_with_logo(logo: Path) -> list[str]:
    options = ReceiptOptions(dots=384, languages=("fr",), signing_key=KEY, logo=logo)
    done: list[list[str]] = []
    def run() -> None:
        render(basket_by_card(), options)
        done.append(options.notes)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(60)  # a guard against a hang, not a timing: it returns at once or never
    assert done, f"render blocked on the logo {logo}"
    return done[0]


def test_a_fifo_or_huge_logo_is_left_out_without_reading_it(tmp_path: Path) -> None:
    fifo = tmp_path / "logo.png"
    os.mkfifo(fifo)
    assert any("not a regular file" in n for n in _render_with_logo(fifo))
    huge = tmp_path / "huge.png"
    with huge.open("wb") as f:
        f.truncate(512 * 1024 * 1024)  # sparse: read whole before, only MAX_LOGO_BYTES + 1 now
    assert any(f"larger than {MAX_LOGO_BYTES} bytes" in n for n in _render_with_logo(huge))
