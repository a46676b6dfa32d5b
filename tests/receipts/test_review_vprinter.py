"""Review 1, finding 16: a hostile client cannot flood or stall the virtual printer: jobs per connection and
pictures per directory are bounded, numbering never overwrites a kept picture, a repeated print-QR is drawn once."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import sandbox.printer as vprinter_module
from sandbox.printer import VirtualPrinter
from sandbox.printer.escpos import Interpreter

CUT = b"\x1dV\x00"


def test_numbering_follows_the_highest_kept_picture(tmp_path: Path) -> None:
    (tmp_path / "0001.png").write_bytes(b"kept 1")
    (tmp_path / "0005.png").write_bytes(b"kept 5")
    with VirtualPrinter(tmp_path) as vp:
        vp.listen("127.0.0.1", 0)
        host, port = vp.url[len("tcp://"):].split(":")
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"\x1b@hello\n" + CUT)
        [job] = vp.wait_jobs(1)
    assert job.path.name == "0006.png"
    assert (tmp_path / "0005.png").read_bytes() == b"kept 5"  # before: the count (2) made 0003, 0004, 0005...


def test_a_flood_of_cuts_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vprinter_module, "MAX_JOBS_PER_CONNECTION", 6)
    monkeypatch.setattr(vprinter_module, "MAX_FILES", 4)
    with VirtualPrinter(tmp_path) as vp:
        vp.listen("127.0.0.1", 0)
        host, port = vp.url[len("tcp://"):].split(":")
        with socket.create_connection((host, int(port))) as s:
            s.settimeout(10)
            try:
                s.sendall((b"x\n" + CUT) * 3000)
                while s.recv(4096):  # the printer closes the link once the connection's jobs are spent
                    pass
            except (BrokenPipeError, ConnectionResetError):
                pass
        vp.wait_jobs(6)
        assert len(vp.jobs) == 6
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["0003.png", "0004.png", "0005.png", "0006.png"]


def test_a_repeated_print_qr_is_drawn_once_and_prints_every_time() -> None:
    interp = Interpreter(384)
    store = b"GQ1;R=x"
    header = b"\x1d(k" + (len(store) + 3).to_bytes(2, "little") + b"\x31\x50\x30" + store
    once = header + b"\x1d(k\x03\x00\x31\x51\x30" + CUT
    interp.feed(once)
    [single] = interp.take_jobs()
    interp.feed(header + b"\x1d(k\x03\x00\x31\x51\x30" * 50 + CUT)
    [many] = interp.take_jobs()
    assert many.height == 50 * single.height and not many.errors
