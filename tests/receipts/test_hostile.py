"""Every byte from the printer, every QR text and every job the virtual printer takes is hostile input:
one typed error naming the fault, bounded memory, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from drivers.pan import scrub_pans
from drivers.printer import open_printer
from drivers.printer.raster import ink_rows, raster
from drivers.printer.seal import Seal, SealError, parse, verify
from drivers.printer.status import PrinterProtocolError, parse_status, status_answer, status_byte
from sandbox.printer import VirtualPrinter
from sandbox.printer.escpos import MAX_BAND_BYTES, MAX_ROWS, Interpreter
from tests.receipts.conftest import KEY, TEST_PAN, WHEN, basket_by_card
from ui.receipts import Receipt, ReceiptOptions, print_receipt, rows, safe_pan


@given(st.integers(1, 4), st.binary(max_size=20))
def test_status_bytes_are_validated(n: int, answer: bytes) -> None:
    try:
        b = status_byte(n, answer)
    except PrinterProtocolError as e:
        assert f"DLE EOT {n}" in str(e) and "\n" not in str(e)
    else:
        assert len(answer) == 1 and b & 0x93 == 0x12
        parse_status({n: b})


@given(st.booleans(), st.booleans(), st.sampled_from(["ok", "near_end", "out"]))
def test_status_codec_round_trip(online: bool, cover: bool, paper: str) -> None:
    answers = {n: status_byte(n, status_answer(n, online=online, cover_open=cover, paper=paper))  # type: ignore[arg-type]
               for n in (1, 2, 3, 4)}
    s = parse_status(answers)
    assert (s.online, s.cover_open, s.paper) == (online, cover, paper)


@given(st.text(max_size=600))
def test_qr_texts_are_validated(text: str) -> None:
    try:
        parse(text)
    except SealError as e:
        assert "\n" not in str(e)


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=30),
       st.integers(0, 10**12), st.sampled_from(["DZD", "TND"]))
def test_seals_verify_and_any_change_is_caught(number: str, amount: int, currency: str) -> None:
    text = Seal(number, "ORAN-07-G2", amount, currency, "20261130T0914Z").sign(KEY)
    assert verify(text, KEY).amount == amount
    with pytest.raises(SealError):
        verify(text, b"another key")
    with pytest.raises(SealError):
        verify(text.replace(f"A={amount};", f"A={amount + 1};"), KEY)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_the_virtual_printer_survives_any_bytes(chunks: list[bytes]) -> None:
    p = Interpreter(dots=128)
    for chunk in chunks:
        p.feed(chunk)
        assert len(p._pending) <= 8 + MAX_BAND_BYTES
    for job in p.finish():
        assert job.height <= MAX_ROWS and len(job.errors) <= 50
        job.image()


def test_a_hostile_job_cannot_exhaust_memory() -> None:
    p = Interpreter(dots=64)
    p.feed(b"\x1dv0\x00\xff\xff\xff\xff" + bytes(100_000))  # a 4 GB band announced: refused, bytes skipped
    assert len(p._pending) == 0
    refused = p.finish()
    assert len(refused) == 1 and "refused" in refused[0].errors[0] and refused[0].height == 0
    p = Interpreter(dots=64)
    p.feed(b"\x1bJ\xff" * (MAX_ROWS // 255 + 10) + b"\x1dVB\x00")  # more than 2 m of paper
    jobs = p.take_jobs()
    assert len(jobs) == 1 and jobs[0].height == MAX_ROWS and jobs[0].truncated


@settings(max_examples=60, deadline=None)
@given(st.integers(8, 96), st.integers(1, 60), st.data())
def test_raster_round_trip(width: int, height: int, data: st.DataObject) -> None:
    """What raster() sends, interpreted by the virtual printer, is the bitmap dot for dot."""
    pixels = data.draw(st.lists(st.sampled_from([0, 255, 255, 255]), min_size=width * height,
                                max_size=width * height))
    im = Image.new("L", (width, height))
    im.putdata(pixels)
    bitmap = im.convert("1", dither=Image.Dither.NONE)
    p = Interpreter(dots=(width + 7) // 8 * 8)
    p.feed(raster(bitmap) + b"\x1dVB\x00")
    job = p.take_jobs()[0]
    _, want = ink_rows(bitmap)
    assert [r.ljust(len(want[0]), b"\x00") for r in job.rows[:height]] == want


def test_no_full_card_number_reaches_a_receipt(vprinter: VirtualPrinter) -> None:
    """Even a card dict carrying the full PAN (a bug upstream) prints masked: rows, text job and PNG source."""
    from dataclasses import replace

    leaky = replace(basket_by_card(), pan_masked=safe_pan(TEST_PAN))
    assert TEST_PAN not in leaky.pan_masked and leaky.pan_masked.endswith("1239")

    class Row:  # the journal's Payment has these attributes
        bill_reference, amount, currency, method, state = "SEOR-1", 100, "DZD", "card_reader", "approved"
        card = {"scheme": "CIB", "pan_masked": TEST_PAN}
        authorization = {"code": "X1"}
        agency_id, terminal_id, cashier_id, receipt_number = "A", "T", "c", "T-000001"
        captured_at, captured_offline, bill = WHEN.isoformat(), False, None

    from_rows = Receipt.from_payments([Row()])
    for lang in ("fr", "ar", "en"):
        for row in rows(from_rows, lang):
            assert TEST_PAN not in row.left + row.right and scrub_pans(row.right) == row.right
    options = ReceiptOptions(dots=576, languages=("fr",), text=True, signing_key=KEY)
    assert print_receipt(open_printer(vprinter.url), from_rows, options).ok
    printed = "\n".join(vprinter.wait_jobs(1)[0].job.text)
    assert "1239" in printed and TEST_PAN not in printed and scrub_pans(printed) == printed


def test_a_broken_logo_is_left_out_not_fatal(vprinter: VirtualPrinter, tmp_path: Path) -> None:
    bad = tmp_path / "logo.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    options = ReceiptOptions(dots=576, languages=("fr", "ar"), signing_key=KEY, logo=bad)
    result = print_receipt(open_printer(vprinter.url), basket_by_card(), options)
    assert result.ok and any("logo left out" in n for n in result.notes)


def test_a_logo_prints_at_the_top(vprinter: VirtualPrinter, tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (1200, 300), (0, 0, 0, 255)).save(logo)
    options = ReceiptOptions(dots=384, languages=("ar",), signing_key=KEY, logo=logo)
    assert print_receipt(open_printer(vprinter.url), basket_by_card(), options).ok
    paper = Image.open(vprinter.wait_jobs(1)[0].path)
    assert paper.getpixel((192, 40)) == 0 and paper.getpixel((400, 40)) != 0  # scaled into the 58 mm width
