"""Printer faults while a receipt prints: each is one typed error in the PrintResult, never an exception into
the caller (a payment), and the receipt prints once the printer is back."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from drivers.printer import (
    PrinterNotReady,
    PrinterProtocolError,
    PrinterTimeout,
    PrinterUnavailable,
    open_printer,
)
from sandbox.printer import VirtualPrinter
from tests.receipts.conftest import KEY, cash_with_stamp_duty, one_bill
from ui.receipts import ReceiptOptions, print_receipt

OPTIONS = ReceiptOptions(dots=576, languages=("fr", "ar"), signing_key=KEY)


def test_status_of_a_ready_printer(vprinter: VirtualPrinter) -> None:
    status = open_printer(vprinter.url).status()
    assert status.known and status.ready and status.paper == "ok" and status.online and not status.cover_open


@pytest.mark.parametrize(("behaviour", "problem"),
                         [("paper_out", "paper out"), ("cover_open", "cover open"), ("offline", "offline")])
def test_not_ready_then_prints_when_back(vprinter: VirtualPrinter, behaviour: str, problem: str) -> None:
    printer = open_printer(vprinter.url, timeout=2)
    vprinter.behaviour = behaviour
    assert printer.status().problem == problem
    result = print_receipt(printer, one_bill(), OPTIONS)
    assert not result.ok and isinstance(result.error, PrinterNotReady)
    assert result.error.status.problem == problem and result.bytes_sent == 0
    vprinter.behaviour = "ok"  # paper loaded, cover closed: the queued receipt prints
    again = print_receipt(printer, one_bill(), OPTIONS)
    assert again.ok, again.error
    assert len(vprinter.wait_jobs(1)) == 1 and vprinter.jobs[0].job.cut


def test_a_slow_printer_times_out_within_the_bound(tmp_path: Path) -> None:
    with VirtualPrinter(tmp_path, behaviour="slow", slow_delay=2.0) as vp:
        vp.listen("127.0.0.1", 0)
        result = print_receipt(open_printer(vp.url, timeout=0.5), one_bill(), OPTIONS)
    assert not result.ok and isinstance(result.error, PrinterTimeout)
    assert "DLE EOT 1" in str(result.error)


def test_a_printer_dropping_the_link_mid_job(tmp_path: Path) -> None:
    with VirtualPrinter(tmp_path, behaviour="disconnect", disconnect_after=3000) as vp:
        vp.listen("127.0.0.1", 0)
        result = print_receipt(open_printer(vp.url, timeout=2), one_bill(), OPTIONS)
    assert not result.ok and isinstance(result.error, PrinterUnavailable), result.error


def test_a_printer_answering_garbage_is_a_protocol_error(tmp_path: Path) -> None:
    with VirtualPrinter(tmp_path, behaviour="garbage") as vp:
        vp.listen("127.0.0.1", 0)
        result = print_receipt(open_printer(vp.url, timeout=2), one_bill(), OPTIONS)
    assert not result.ok and isinstance(result.error, PrinterProtocolError)
    assert "DLE EOT 1" in str(result.error) and "\n" not in str(result.error)


def test_nobody_listening_and_no_printer_configured() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        result = print_receipt(open_printer(f"tcp://127.0.0.1:{port}", timeout=1), one_bill(), OPTIONS)
    assert not result.ok and isinstance(result.error, PrinterUnavailable)
    none = print_receipt(open_printer("none"), one_bill(), OPTIONS)
    assert not none.ok and isinstance(none.error, PrinterUnavailable) and "none" in str(none.error)


def test_cash_opens_the_drawer_and_a_duplicate_does_not(vprinter: VirtualPrinter) -> None:
    from dataclasses import replace

    options = replace(OPTIONS, drawer=True)
    printer = open_printer(vprinter.url)
    assert print_receipt(printer, cash_with_stamp_duty(), options).ok
    assert print_receipt(printer, replace(cash_with_stamp_duty(), duplicate=True), options).ok
    assert print_receipt(printer, one_bill(), options).ok  # a card payment
    jobs = vprinter.wait_jobs(3)
    assert [j.job.drawer_kicks for j in jobs] == [1, 0, 0]
    assert printer.kick_drawer().ok


def test_serial_printer_on_a_pty(tmp_path: Path) -> None:
    with VirtualPrinter(tmp_path) as vp:
        vp.on_pty()
        printer = open_printer(vp.url, timeout=3)
        assert printer.parsed.kind == "serial" and printer.parsed.baud == 115200
        assert printer.status().ready
        result = print_receipt(printer, one_bill(), ReceiptOptions(dots=576, languages=("ar",), signing_key=KEY))
        assert result.ok, result.error
        assert vp.wait_jobs(1)[0].job.cut


def test_file_printer_writes_without_status(tmp_path: Path) -> None:
    target = tmp_path / "lp0"
    target.touch()  # the device is there (a missing one is unavailable, never created)
    result = print_receipt(open_printer(f"file://{target}"), one_bill(), OPTIONS)
    assert result.ok and not result.status.known
    assert target.read_bytes().startswith(b"\x1b@")


@pytest.mark.parametrize("url", ["lpt://x", "tcp://", "tcp://h:99999", "serial:///dev/ttyS0?baud=12",
                                 "usb://zz:01", "file://relative"])
def test_bad_urls_are_one_line(url: str) -> None:
    with pytest.raises(PrinterUnavailable) as e:
        open_printer(url)
    assert "printer url" in str(e.value) and "\n" not in str(e.value)


def test_presence_in_the_device_registry_words(vprinter: VirtualPrinter, tmp_path: Path) -> None:
    printer = open_printer(vprinter.url, timeout=1)
    assert printer.presence() == ("ready", "")
    vprinter.behaviour = "cover_open"
    assert printer.presence() == ("error", "cover open")
    vprinter.behaviour = "garbage"
    assert printer.presence()[0] == "error"
    assert open_printer("tcp://127.0.0.1:9", timeout=1).presence()[0] == "absent"
    assert open_printer(f"file://{tmp_path}/nope").presence()[0] == "absent"
    (tmp_path / "lp0").touch()
    assert open_printer(f"file://{tmp_path}/lp0").presence() == ("present", "write only: no status")


def test_a_report_laid_out_in_rows_prints(vprinter: VirtualPrinter) -> None:
    """The Z report's and the shift close's way to the printer: rows per language, never raising."""
    from ui.formatting import money
    from ui.receipts import Row, print_rows, tr

    blocks = [(lang, [Row("title", tr(lang, "Total")), Row("pair", tr(lang, "Cash"), money(1127300, "DZD", lang)),
                      Row("rule")]) for lang in ("fr", "ar")]
    assert print_rows(open_printer(vprinter.url), blocks, OPTIONS).ok
    assert vprinter.wait_jobs(1)[0].job.cut
    vprinter.behaviour = "paper_out"
    result = print_rows(open_printer(vprinter.url), blocks, OPTIONS)
    assert not result.ok and isinstance(result.error, PrinterNotReady)
