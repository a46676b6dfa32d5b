"""The Concert E+ exchange with a payment terminal over a serial line (pyserial path or URL).

    from drivers.concert import ConcertLink      # or link_for(port): drivers.concert picks the transport
    link = ConcertLink("/dev/ttyACM0", baud=9600, framing="8N1")   # or ConcertLink.from_config(cfg.tpe)
    link.check()                                   # Ready, or Timeout/LinkError: ENQ/ACK/EOT only
    result = link.pay(123450, "DZD", cancel=event, on_event=print)
    if isinstance(result, Approved): print(result.response.pan_masked)
    elif not result.definitive and result.amount_sent: ...   # unknown: settle from the TPE's ticket

The exchange: ENQ -> ACK, ``STX request ETX LRC`` -> ACK (a NAK makes us resend, bounded), EOT; then the
terminal calls back: ENQ -> ACK, ``STX answer ETX LRC`` -> ACK (a bad LRC is answered NAK and the frame
awaited again, bounded), EOT. Every wait has a deadline; ``cancel`` is polled while waiting.

``amount_sent`` on every result says whether the request frame may have reached the terminal: once it has,
a missing answer is *unknown*, never a reason to send the amount again.
"""

from __future__ import annotations

import errno
import os
import termios
import threading
import time
from collections.abc import Callable
from typing import Any

import serial

from drivers.concert.base import (
    POLL,
    UNKNOWN,
    Approved,
    Busy,
    Cancel,
    Cancelled,
    Counters,
    LinkDown,
    LinkError,
    Ready,
    Refused,
    Result,
    TerminalLink,
    Timeout,
    close,
)
from drivers.concert.eplus_codec import (
    ACK,
    ENQ,
    EOT,
    ETX,
    NAK,
    STATUS_APPROVED,
    STATUS_REFUSED,
    STX,
    FrameError,
    Request,
    Response,
    build_request,
    decode_frame,
    encode_frame,
)
from drivers.concert.fields import ConcertError

MAX_FRAME = 200  # bytes: longer than any E+ frame; a run past it is noise


class _Line:
    """A pyserial port with deadlines: reads a byte at a time from a buffer, polls ``cancel``."""

    def __init__(self, port: Any, seven_bit: bool, counters: Counters) -> None:
        self.port = port
        self.mask = 0x7F if seven_bit else 0xFF
        self.buf = bytearray()
        self.c = counters

    def write(self, data: bytes) -> None:
        try:
            self.port.write(data)  # blocking write; no tcdrain: the reply we then wait for says it went out
        except (serial.SerialException, OSError, ValueError, termios.error) as e:
            raise LinkDown(f"write failed: {e}") from None
        self.c.bytes_out += len(data)

    def read_byte(self, deadline: float, cancel: threading.Event | None = None) -> int | None:
        """The next byte, or None at ``deadline``; _Cancel if ``cancel`` is set; LinkDown if the line is gone."""
        while not self.buf:
            if cancel is not None and cancel.is_set():
                raise Cancel()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                # The port's timeout stays POLL (changing it costs a tcsetattr on POSIX): loop to the deadline.
                waiting = self.port.in_waiting
                chunk = self.port.read(max(1, min(waiting, 4096)))
            except (serial.SerialException, OSError, ValueError, TypeError, termios.error) as e:
                raise LinkDown(f"read failed: {e}") from None
            self.buf.extend(chunk)
            self.c.bytes_in += len(chunk)
        b = self.buf.pop(0)
        return b & self.mask

    def drain(self) -> None:
        """Forget what is buffered (stale bytes from a previous exchange)."""
        self.buf.clear()
        try:
            self.port.reset_input_buffer()
        except (serial.SerialException, OSError, ValueError, AttributeError):
            pass


def _frame_bits(framing: str) -> tuple[int, str]:
    if framing == "7E1":
        return serial.SEVENBITS, serial.PARITY_EVEN
    if framing == "8N1":
        return serial.EIGHTBITS, serial.PARITY_NONE
    raise ConcertError(f"framing: {framing!r} is not 7E1 or 8N1")


class ConcertLink(TerminalLink[Request]):
    """One Concert E+ terminal on ``port`` (a device path or a pyserial URL). Opens the port per exchange."""

    protocol = "E+"
    config_keys = ("baud", "framing")

    def __init__(self, port: str, *, baud: int = 9600, framing: str = "7E1", **common: Any) -> None:
        """``common``: pos_number, ack_timeout, answer_timeout, max_retries, cancel_grace (TerminalLink)."""
        super().__init__(port, **common)
        self.baud = baud
        self.framing = framing
        self.bytesize, self.parity = _frame_bits(framing)

    def describe(self) -> str:
        return f"{self.baud} {self.framing}, POS {self.pos_number}"

    # -- port ---------------------------------------------------------------------------------------------

    def _open(self, wait_lock: bool = True) -> Any:
        """The port, opened and locked. Another process's liveness probe holds the lock for at most its
        ``ack_timeout``: with ``wait_lock`` a locked port is tried again until then, so a payment never fails
        on a probe (a program that keeps the port still fails, a moment later)."""
        deadline = time.monotonic() + self.ack_timeout + 0.5
        while True:
            try:
                return self._open_once()
            except LinkDown as e:
                if not wait_lock or e.errno not in (errno.EAGAIN, errno.EBUSY) or time.monotonic() >= deadline:
                    raise
            time.sleep(POLL)

    def _open_once(self) -> Any:
        try:
            return serial.serial_for_url(
                self.port,
                baudrate=self.baud,
                bytesize=self.bytesize,
                parity=self.parity,
                stopbits=serial.STOPBITS_ONE,
                timeout=POLL,
                write_timeout=max(self.ack_timeout, 1.0),
                # Two programs on one terminal line would read each other's answers: lock the device.
                exclusive=True if "://" not in self.port else None,
            )
        except (serial.SerialException, OSError, ValueError, termios.error) as e:
            raise LinkDown(f"cannot open {self.port} at {self.baud} {self.framing}: {e}",
                           getattr(e, "errno", None)) from None

    # -- pieces of the exchange ----------------------------------------------------------------------------

    def _handshake(self, line: _Line, cancel: threading.Event | None, retries: int | None = None) -> bool:
        """ENQ until ACK (bounded: ``retries``, default max_retries). Noise and stray bytes are skipped."""
        for _ in range((self.max_retries if retries is None else retries) + 1):
            if cancel is not None and cancel.is_set():
                raise Cancel()
            line.write(bytes([ENQ]))
            deadline = time.monotonic() + self.ack_timeout
            while True:
                b = line.read_byte(deadline, cancel)
                if b is None or b == NAK:
                    break
                if b == ACK:
                    return True
        return False

    def _send_frame(self, line: _Line, frame: bytes, sent: list[bool]) -> str:
        """Send until ACK: "ack", "nak" (refused every time: not delivered) or "silent" (may have arrived)."""
        for _ in range(self.max_retries + 1):
            line.write(frame)
            sent[0] = True
            deadline = time.monotonic() + self.ack_timeout + self._wire_time(len(frame))
            while True:
                b = line.read_byte(deadline)
                if b is None:
                    return "silent"
                if b == ACK:
                    return "ack"
                if b == NAK:
                    line.c.naks_received += 1
                    break
        # Every copy was refused by the terminal: it did not take the request.
        sent[0] = False
        return "nak"

    def _wire_time(self, nbytes: int) -> float:
        return nbytes * 10 / self.baud

    def _read_frame(self, line: _Line, deadline: float) -> bytes | int | None:
        """After our ACK to the terminal's ENQ: the frame bytes, a control byte (ENQ/EOT) that interrupts, or
        None at the deadline. Bytes before STX are noise."""
        while True:
            b = line.read_byte(deadline)
            if b is None:
                return None
            if b in (ENQ, EOT):
                return b
            if b == STX:
                break
        frame = bytearray([STX])
        while len(frame) < MAX_FRAME:
            b = line.read_byte(deadline)
            if b is None:
                return bytes(frame)  # truncated: decode fails, answered NAK
            if b == STX:  # a restart: what came before was noise
                frame = bytearray([STX])
                continue
            frame.append(b)
            if b == ETX:
                lrc_byte = line.read_byte(deadline)
                if lrc_byte is None:
                    return bytes(frame)
                frame.append(lrc_byte)
                return bytes(frame)
        return bytes(frame)

    def _receive_answer(self, line: _Line, deadline: float, cancel: threading.Event | None,
                        on_event: Callable[[str], None]) -> Response | str:
        """Wait for the terminal's call-back and its answer: a Response, or "timeout"/"bad"."""
        cancelled_at: float | None = None
        bad = 0
        while True:
            try:
                b = line.read_byte(deadline, None if cancelled_at is not None else cancel)
            except Cancel:
                # The amount is at the terminal: only the terminal can end this. Ask the cashier to press
                # its red key and keep listening for its answer a bounded while.
                cancelled_at = time.monotonic()
                deadline = min(deadline, cancelled_at + self.cancel_grace)
                on_event("cancel_on_terminal")
                continue
            if b is None:
                return "timeout" if bad == 0 else "bad"
            if b != ENQ:
                continue  # noise, or the EOT closing a failed attempt
            line.write(bytes([ACK]))
            while True:
                frame_deadline = min(deadline, time.monotonic() + self.ack_timeout + self._wire_time(200))
                got = self._read_frame(line, frame_deadline)
                if got is None or got == EOT:
                    break  # the terminal gave up this attempt; it may call again
                if got == ENQ:
                    line.write(bytes([ACK]))
                    continue
                assert isinstance(got, bytes)
                try:
                    response = Response.decode(decode_frame(got))
                except FrameError:
                    bad += 1
                    line.write(bytes([NAK]))
                    line.c.naks_sent += 1
                    if bad > self.max_retries:
                        return "bad"
                    continue
                line.write(bytes([ACK]))
                # The terminal closes with EOT; its answer stands without it.
                eot_deadline = time.monotonic() + self.ack_timeout
                while (x := line.read_byte(eot_deadline)) is not None and x != EOT:
                    pass
                return response

    # -- public -------------------------------------------------------------------------------------------

    @property
    def lock_key(self) -> str:
        """A device path by its real path (a /dev/serial/by-id link and its ttyUSBn are one line); a URL
        without case differences in its scheme."""
        if "://" in self.port:
            scheme, rest = self.port.split("://", 1)
            return f"{scheme.lower()}://{rest}"
        return os.path.realpath(self.port)

    def _check(self) -> Result:
        """ENQ/ACK handshake then EOT: Ready, Timeout (no ACK) or LinkError (port missing or gone)."""
        return self._handshake_only(self.max_retries)

    def _probe(self) -> Result:
        """One ENQ, ACK awaited ``ack_timeout``, then EOT; a port another program locked is Busy. A terminal
        that wants to talk (its ENQ, pending or in answer) or answers NAK is there: Ready, and the probe lets
        go of the line at once, sending nothing more (no EOT over a late answer)."""
        c = Counters()
        try:
            port = self._open(wait_lock=False)  # a probe never waits: the port is someone's
        except LinkDown as e:
            if e.errno in (errno.EAGAIN, errno.EBUSY):
                return self._result(Busy, c, amount_sent=False, message=f"{self.port} is held by another program")
            return self._result(LinkError, c, amount_sent=False, message=str(e), stage="open")
        try:
            line = _Line(port, self.framing == "7E1", c)
            # No drain: an ENQ the terminal sent before we opened says it is there and has something to say.
            pending_until = time.monotonic() + 2 * POLL  # a line that never stops talking is cut short
            while (b := line.read_byte(pending_until)) is not None:
                if b == ENQ:
                    return self._calling(c, "it is calling (an answer to deliver?)")
            line.write(bytes([ENQ]))
            deadline = time.monotonic() + self.ack_timeout
            while (b := line.read_byte(deadline)) is not None:
                if b == ACK:
                    line.write(bytes([EOT]))
                    return self._result(Ready, c, amount_sent=False, message="terminal acknowledged ENQ")
                if b in (ENQ, STX):
                    return self._calling(c, "it answered ENQ with ENQ: it wants to send" if b == ENQ
                                         else "it is sending a frame")
                if b == NAK:
                    return self._calling(c, "it answered NAK")
            line.write(bytes([EOT]))
            return self._result(
                Timeout, c, amount_sent=False, stage="enq",
                message=f"no ACK from the terminal on {self.port} after 1 ENQ "
                f"(check the cable, baud rate {self.baud} and framing {self.framing})",
            )
        except LinkDown as e:
            return self._result(LinkError, c, amount_sent=False, message=str(e), stage="enq")
        finally:
            close(port)

    def _calling(self, c: Counters, why: str) -> Result:
        return self._result(Ready, c, amount_sent=False, message=f"the terminal is there ({why})")

    def _handshake_only(self, retries: int) -> Result:
        c = Counters()
        try:
            port = self._open()
        except LinkDown as e:
            return self._result(LinkError, c, amount_sent=False, message=str(e), stage="open")
        try:
            line = _Line(port, self.framing == "7E1", c)
            line.drain()
            if not self._handshake(line, None, retries):
                line.write(bytes([EOT]))
                return self._result(
                    Timeout, c, amount_sent=False, stage="enq",
                    message=f"no ACK from the terminal on {self.port} after {retries + 1} ENQ "
                    f"(check the cable, baud rate {self.baud} and framing {self.framing})",
                )
            line.write(bytes([EOT]))
            return self._result(Ready, c, amount_sent=False, message="terminal acknowledged ENQ")
        except LinkDown as e:
            return self._result(LinkError, c, amount_sent=False, message=str(e), stage="enq")
        finally:
            close(port)

    def build_request(self, amount: int, currency: str) -> Request:
        return build_request(amount, currency, pos_number=self.pos_number)

    def _exchange(self, req: Request, cancel: threading.Event | None, notify: Callable[[str], None],
                  c: Counters) -> Result:
        frame = encode_frame(req.encode())
        sent = [False]
        stage = "open"
        try:
            if cancel is not None and cancel.is_set():
                return self._result(Cancelled, c, amount_sent=False, message="cancelled before sending")
            port = self._open()
        except LinkDown as e:
            return self._result(LinkError, c, amount_sent=False, message=str(e), stage=stage)
        try:
            line = _Line(port, self.framing == "7E1", c)
            line.drain()
            stage = "enq"
            if not self._handshake(line, cancel):
                line.write(bytes([EOT]))
                return self._result(
                    Timeout, c, amount_sent=False, stage=stage,
                    message=f"no ACK from the terminal after {self.max_retries + 1} ENQ; amount not sent",
                )
            stage = "request"
            if cancel is not None and cancel.is_set():
                line.write(bytes([EOT]))
                return self._result(Cancelled, c, amount_sent=False, message="cancelled before sending")
            outcome = self._send_frame(line, frame, sent)
            line.write(bytes([EOT]))
            if outcome == "nak":
                return self._result(
                    LinkError, c, amount_sent=False, stage=stage,
                    message=f"the terminal refused the request frame {self.max_retries + 1} times (NAK); "
                    "amount not taken",
                )
            if outcome == "silent":
                return self._result(
                    Timeout, c, amount_sent=True, stage=stage,
                    message="no ACK for the request frame: the terminal may have it; check its screen",
                )
            notify("pin_on_terminal")
            stage = "answer"
            deadline = time.monotonic() + self.answer_timeout
            got = self._receive_answer(line, deadline, cancel, notify)
            if isinstance(got, str):
                cls = Timeout if got == "timeout" else LinkError
                what = "no answer from the terminal" if got == "timeout" else "unreadable answer (bad LRC/frame)"
                return self._result(
                    cls, c, amount_sent=True, stage=stage,
                    message=what + UNKNOWN,
                )
            return self._classify(got, req, c)
        except Cancel:
            if not sent[0]:
                try:
                    line.write(bytes([EOT]))
                except LinkDown:
                    pass
                return self._result(Cancelled, c, amount_sent=False, message="cancelled before sending")
            return self._result(Timeout, c, amount_sent=True, stage=stage, message="cancelled while waiting")
        except LinkDown as e:
            return self._result(LinkError, c, amount_sent=sent[0], message=str(e), stage=stage)
        finally:
            close(port)

    def _classify(self, r: Response, req: Request, c: Counters) -> Result:
        if r.pos_number != req.pos_number or r.currency_numeric != req.currency_numeric:
            return self._result(
                LinkError, c, amount_sent=True, stage="answer",
                message=f"answer for POS {r.pos_number}/currency {r.currency_numeric}, sent POS "
                f"{req.pos_number}/currency {req.currency_numeric}: settle from the ticket",
            )
        if r.status == STATUS_APPROVED:
            if r.amount != req.amount:
                return self._result(
                    LinkError, c, amount_sent=True, stage="answer",
                    message=f"approved {r.amount} minor units, asked {req.amount}: settle from the ticket",
                )
            return self._result(Approved, c, amount_sent=True, response=r, message="approved")
        if r.status != STATUS_REFUSED:
            # Concert defines 0 (approved) and 7 (refused) only: anything else may have charged the card.
            return self._result(
                LinkError, c, amount_sent=True, stage="answer",
                message=f"unexpected terminal status {r.status!r}: settle from the ticket",
            )
        if not r.card_presented and r.extended:
            # Extended answer with an empty report: no card was read, the transaction was abandoned.
            return self._result(
                Cancelled, c, amount_sent=True, by="terminal", response=r,
                message=f"cancelled on the terminal (status {r.status})",
            )
        return self._result(Refused, c, amount_sent=True, response=r, message=f"refused (status {r.status})")

