"""The Concert E+ exchange over a real pty against the simulator, where it is E+'s own: a cancel during the
ENQ retries, a missing port, the wrong baud rate, parity, pyserial URLs (spy, loop, socket through socat),
pacing. What every link promises (each behaviour's result, amounts, cancels, check) is in test_links.py, run
against both protocols."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time

import pytest
import serial

from drivers.concert import Approved, Cancelled, ConcertLink, LinkError, Timeout
from drivers.concert.eplus_codec import ACK, ENQ, EOT, NAK, encode_frame
from sandbox.tpe import TEST_PANS


def test_cancel_during_enq_retries_to_a_silent_terminal(tpe_sim, tpe_link) -> None:
    sim = tpe_sim(behaviour="silent")
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    result = tpe_link(sim, ack_timeout=0.5).pay(500, "DZD", cancel=cancel)
    assert isinstance(result, Cancelled) and not result.amount_sent


def test_missing_port_is_a_link_error_with_nothing_sent() -> None:
    result = ConcertLink("/dev/guichet-no-such-tty", ack_timeout=0.1).pay(100, "DZD")
    assert isinstance(result, LinkError) and not result.amount_sent
    assert "/dev/guichet-no-such-tty" in result.message


def test_wrong_baud_rate_is_seen_by_the_simulator_and_nothing_is_sent(tpe_sim, tpe_link) -> None:
    sim = tpe_sim(baud=9600)
    result = tpe_link(sim, baud=19200, ack_timeout=0.1, max_retries=1).pay(100, "DZD")
    assert isinstance(result, Timeout) and not result.amount_sent
    assert all(e.request is None for e in sim.exchanges)


def test_a_byte_with_the_eighth_bit_set_is_a_parity_error_at_7e1(tpe_sim) -> None:
    # An 8N1 sender on a 7E1 line: its 8th bit lands where the parity bit goes. Where the kernel shows the
    # pty's framing the simulator checks parity of every byte; elsewhere at least the 8-bit byte is caught.
    sim = tpe_sim(framing="7E1")
    with serial.serial_for_url(sim.path, baudrate=sim.baud, bytesize=8, parity="N", timeout=1) as port:
        port.write(bytes([ENQ]))
        assert port.read(1) == bytes([ACK])
        payload = bytearray(b"01000001001101012          A010B010")
        frame = bytearray(encode_frame(bytes(payload)))
        frame[5] |= 0x80  # what an 8-bit sender puts on a 7E1 line
        frame[-1] ^= 0x80  # LRC made right for the 8-bit byte: only parity can catch it
        port.write(bytes(frame))
        assert port.read(1) == bytes([NAK])
        port.write(bytes([EOT]))
    sim.wait_idle()
    assert sim.exchanges[-1].line_errors >= 1 and sim.exchanges[-1].request is None


def test_pyserial_urls_spy_and_loop(tpe_sim, tpe_link, tmp_path) -> None:
    sim = tpe_sim()
    spy_file = tmp_path / "spy.txt"
    result = tpe_link(sim, port=f"spy://{sim.path}?file={spy_file}").pay(250, "DZD")
    assert isinstance(result, Approved)
    trace = spy_file.read_text()
    assert all(pan not in trace for pan in TEST_PANS)  # only the masked PAN crossed the line
    # loop:// echoes our ENQ back: no terminal there, nothing sent.
    looped = ConcertLink("loop://", ack_timeout=0.05, max_retries=1).pay(250, "DZD")
    assert isinstance(looped, Timeout) and not looped.amount_sent


def _listening(port: int) -> bool:
    with open("/proc/net/tcp") as f:
        return any(
            line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A" for line in f.readlines()[1:]
        )


def test_a_socket_url_through_socat(tpe_sim) -> None:
    """socket://: a terminal behind a serial-to-TCP bridge (socat standing in for the bridge)."""
    if not shutil.which("socat"):
        if os.environ.get("CI"):
            pytest.fail("socat is required in CI (./dev installs it)")
        pytest.skip("socat not installed")
    sim = tpe_sim(framing="8N1")  # socat leaves the pty at 8N1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        tcp_port = s.getsockname()[1]
    proc = subprocess.Popen(
        ["socat", f"TCP-LISTEN:{tcp_port},bind=127.0.0.1,reuseaddr", f"{sim.path},rawer"],
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(250):
            if _listening(tcp_port):
                break
            time.sleep(0.02)
        link = ConcertLink(f"socket://127.0.0.1:{tcp_port}", baud=sim.baud, ack_timeout=0.5, answer_timeout=2)
        result = link.pay(777, "DZD")
        assert isinstance(result, Approved) and result.response.amount == 777
    finally:
        proc.kill()
        proc.wait(timeout=5)


def test_pacing_at_1200_baud(tpe_sim, tpe_link) -> None:
    # A pty delivers instantly; the simulator must not be faster than the wire it stands for.
    # (A lower bound on duration, not a speed test: it cannot fail because a machine is slow.)
    sim = tpe_sim(baud=1200)
    result = tpe_link(sim, ack_timeout=1.0).pay(123450, "DZD")
    assert isinstance(result, Approved)
    wire = (result.bytes_in + result.bytes_out) * 10 / 1200
    assert result.bytes_in + result.bytes_out >= 120
    assert result.elapsed >= wire * 0.97


