"""Review 1, findings 6 and 14: a file:// printer that takes no data cannot hold a job or the drawer past the
timeout; a printer that never answers DLE EOT still prints with ``?status=off`` (status reported unknown)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.printer import PrinterTimeout, PrinterUnavailable, open_printer


def test_a_device_file_nobody_reads_is_unavailable_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "lp0"
    os.mkfifo(fifo)
    printer = open_printer(f"file://{fifo}", timeout=1)
    for result in (printer.print_job(b"\x1b@hello\n"), printer.kick_drawer()):  # before: blocked forever
        assert not result.ok and isinstance(result.error, PrinterUnavailable), result.error


def test_a_device_file_that_stops_taking_bytes_times_out(tmp_path: Path) -> None:
    fifo = tmp_path / "lp0"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a device that is there and takes nothing more
    try:
        result = open_printer(f"file://{fifo}", timeout=0.5).print_job(b"x" * (1 << 20))
        assert not result.ok and isinstance(result.error, PrinterTimeout), result.error
        assert 0 < len(os.read(reader, 1 << 20))  # what it took, it got
    finally:
        os.close(reader)


def test_a_device_file_that_takes_the_job_prints(tmp_path: Path) -> None:
    out = tmp_path / "lp0"
    out.touch()
    assert open_printer(f"file://{out}", timeout=1).print_job(b"\x1b@receipt\n").ok
    assert out.read_bytes() == b"\x1b@receipt\n"


@pytest.fixture
def mute_printer() -> Iterator[tuple[int, bytearray]]:
    """A TCP printer that prints what it gets and never answers a status request."""
    server = socket.create_server(("127.0.0.1", 0))
    got = bytearray()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    while data := conn.recv(4096):
                        got.extend(data)
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], got
    server.close()


def test_a_printer_that_never_answers_status_prints_with_status_off(mute_printer: tuple[int, bytearray]) -> None:
    port, got = mute_printer
    job = b"\x1b@receipt\n\x1dVB\x30"
    asked = open_printer(f"tcp://127.0.0.1:{port}", timeout=0.5).print_job(job)
    assert not asked.ok and isinstance(asked.error, PrinterTimeout) and asked.bytes_sent == 0
    blind = open_printer(f"tcp://127.0.0.1:{port}?status=off", timeout=0.5).print_job(job)
    assert blind.ok and blind.bytes_sent == len(job) and not blind.status.known
    assert any("status unknown" in n for n in blind.notes)
    with pytest.raises(PrinterUnavailable, match="status='maybe'"):
        open_printer(f"tcp://127.0.0.1:{port}?status=maybe")


def test_a_missing_device_file_is_unavailable_and_not_created(tmp_path: Path) -> None:
    target = tmp_path / "lp0"  # an unplugged USB printer: its /dev node is gone
    result = open_printer(f"file://{target}", timeout=1).print_job(b"\x1b@")
    assert not result.ok and isinstance(result.error, PrinterUnavailable) and not target.exists()
