"""A Concert E+ payment terminal on a pty (or any serial device), with scripted behaviours.

    from sandbox.tpe import TpeSimulator
    with TpeSimulator.on_pty(baud=9600, framing="7E1", behaviour="approve") as sim:
        print(sim.path)                        # /dev/pts/N: give it to the driver or to pyTeliumManager
        sim.script("nak_first", "refuse")     # the next two exchanges; then back to ``behaviour``
        ...
        sim.exchanges[-1].outcome               # what the terminal did, for tests

A pty neither paces bytes nor checks parity, so the simulator does both: it writes at the configured baud
rate, treats received bytes as arriving one character time after another, and checks each one as its UART
would: in 7E1 a byte with the 8th bit set is a parity error; when the peer's termios (read through the pty
master) says another baud rate, or (where the kernel keeps them) another size/parity, bytes are garbled as
on a real line. The full PAN of the simulated card never leaves this module: the answer's report carries
the masked PAN only.
"""

from __future__ import annotations

import os
import pty
import select
import termios
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.concert.eplus_codec import (
    ACK,
    ENQ,
    EOT,
    ETX,
    NAK,
    STATUS_APPROVED,
    STATUS_REFUSED,
    STX,
    ConcertError,
    Request,
    decode_frame,
    encode_frame,
    encode_response,
)
from drivers.pan import mask_pan
from sandbox.tpe.base import TEST_CARDS, Simulator

BEHAVIOURS = {
    "approve": "approve after the think time",
    "refuse": "refuse (status 7, card read)",
    "cancel": "the customer presses the red key: status 7, no card",
    "slow": "slow customer: PIN entry takes --pin-delay seconds, then approve",
    "nak_first": "NAK the first request frame, then approve",
    "bad_lrc": "send the answer once with a wrong LRC, then correctly; approve",
    "bad_lrc_always": "every answer frame has a wrong LRC",
    "no_answer": "acknowledge the amount, then never call back",
    "silent": "never answer ENQ (switched off)",
    "garbage": "noise bytes before each reply, then approve",
    "unplug": "acknowledge the amount, then the cable is pulled (the line disappears)",
    "odd_status": "answer with status 3, which Concert does not define (card read)",
}

LINE_ERROR = -1  # a byte the UART flagged (parity/framing error)
RETRIES = 3  # Concert: a frame is sent at most 1 + 3 times


def _even_parity_bit(b: int) -> int:
    return bin(b & 0x7F).count("1") & 1


_SPEEDS = {getattr(termios, f"B{b}"): b for b in (300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200,
                                                   230400, 460800, 921600) if hasattr(termios, f"B{b}")}


def _sleep_until(t: float, spin: bool) -> None:
    """Sleep to ``t``. With ``spin``, busy-wait the last fraction of a millisecond: at 115200 baud a character
    lasts 87 us, less than the oversleep of ``time.sleep``. Only in a process of its own (the CLI): in a
    thread, spinning would hold the GIL against the cash register's side."""
    while (left := t - time.monotonic()) > 0:
        if not spin:
            time.sleep(left)
        elif left > 0.0006:
            time.sleep(left - 0.0004)


_PARKED = termios.B50  # no Concert terminal runs at 50 baud: "no client has configured the line yet"


@dataclass
class Exchange:
    """What happened in one exchange, as the terminal saw it (for tests and the CLI log)."""

    behaviour: str
    request: Request | None = None
    outcome: str = ""  # approved | refused | cancelled | no_answer | unplugged | handshake | aborted
    naks_sent: int = 0
    naks_received: int = 0
    line_errors: int = 0


@dataclass
class _Rx:
    data: deque[tuple[int, float]] = field(default_factory=deque)
    free_at: float = 0.0


class _Unplugged(Exception):
    pass


class TpeSimulator(Simulator[Exchange]):
    """The terminal side of a Concert E+ line. Runs in a thread (``start``/``stop``, or ``with``)."""

    behaviours = BEHAVIOURS
    thread_name = "tpe-sim"

    def __init__(
        self,
        fd: int,
        *,
        path: str = "",
        peer_fd: int | None = None,
        baud: int = 9600,
        framing: str = "7E1",
        behaviour: str = "approve",
        think: float = 0.0,
        pin_delay: float = 2.0,
        ack_timeout: float = 2.0,
        card: str = "EDAHABIA",
        log: Callable[[str], None] | None = None,
        seed: int | None = None,
        spin: bool = False,
    ) -> None:
        if framing not in ("7E1", "8N1"):
            raise ValueError(f"framing: {framing!r} is not 7E1 or 8N1")
        super().__init__(behaviour=behaviour, think=think, pin_delay=pin_delay, card=card, log=log, seed=seed)
        self.fd = fd
        self.path = path
        self._peer_fd = peer_fd  # our own handle on the pty slave: keeps the line up between clients
        self.baud = baud
        self.framing = framing
        self.ack_timeout = ack_timeout
        self.spin = spin
        self.char_time = 10.0 / baud  # start + 7 data + parity + stop, or start + 8 data + stop
        self._rx = _Rx()
        self._tx_free = 0.0
        self._is_pty_master = peer_fd is not None
        self._termios_keeps_framing = self._probe_framing_support() if peer_fd is not None else False
        self._reset_peer_speed()

    # -- construction --------------------------------------------------------------------------------------

    @classmethod
    def on_pty(cls, **kw: object) -> TpeSimulator:
        """A new pty pair: the simulator holds the master; ``.path`` is the slave for the cash register."""
        master, slave = pty.openpty()
        tty.setraw(slave)  # no echo, no line editing before the client configures it
        return cls(master, path=os.ttyname(slave), peer_fd=slave, **kw)  # type: ignore[arg-type]

    @classmethod
    def on_device(cls, path: str, **kw: object) -> TpeSimulator:
        """An existing serial device or one end of a socat pair."""
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)
        return cls(fd, path=path, **kw)  # type: ignore[arg-type]

    def _probe_framing_support(self) -> bool:
        """Does this kernel keep CS7/PARENB on a pty? (Linux does; some sandboxes refuse them.)"""
        assert self._peer_fd is not None
        try:
            attrs = termios.tcgetattr(self._peer_fd)
            saved = list(attrs)
            attrs[2] = (attrs[2] & ~termios.CSIZE) | termios.CS7 | termios.PARENB
            termios.tcsetattr(self._peer_fd, termios.TCSANOW, attrs)
            ok = (termios.tcgetattr(self._peer_fd)[2] & termios.CSIZE) == termios.CS7
            termios.tcsetattr(self._peer_fd, termios.TCSANOW, saved)
            return ok
        except termios.error:
            return False

    def _reset_peer_speed(self) -> None:
        """Where the kernel refuses CS7/PARENB on a pty unless the speed changes in the same call (some
        sandboxed kernels), park the slave at a sentinel speed between exchanges so that a 7E1 client's next
        open changes the speed and is accepted. Real Linux keeps CS7/PARENB: nothing to do there."""
        if self._peer_fd is None or self._termios_keeps_framing:
            return
        try:
            attrs = termios.tcgetattr(self._peer_fd)
            attrs[4] = attrs[5] = _PARKED
            termios.tcsetattr(self._peer_fd, termios.TCSANOW, attrs)
        except termios.error:
            pass

    def _send_last(self, byte: int) -> None:
        """The last byte a client waits for before it may reconfigure its port (pyTeliumManager sets a new
        timeout, hence a tcsetattr, right after it): park first, or a kernel that wants a speed change with
        CS7/PARENB refuses that call when it comes before our ``finally`` parks the line."""
        self._reset_peer_speed()
        self.send(bytes([byte]))

    def _close(self) -> None:
        for fd in (self.fd, self._peer_fd):
            if fd is not None and fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.fd = -1
        self._peer_fd = None

    # -- the line ------------------------------------------------------------------------------------------

    def _peer_line(self) -> tuple[int | None, str | None]:
        """The client's baud rate and framing, as it configured the pty (None when unknown)."""
        if not self._is_pty_master:
            return None, None
        try:
            attrs = termios.tcgetattr(self.fd)  # on a pty master: the slave's settings
        except termios.error:
            return None, None
        baud = None if attrs[5] == _PARKED else _SPEEDS.get(attrs[5])
        framing = None
        if self._termios_keeps_framing:
            cs7 = (attrs[2] & termios.CSIZE) == termios.CS7
            parenb = bool(attrs[2] & termios.PARENB)
            framing = "7E1" if cs7 and parenb else "8N1" if not cs7 and not parenb else "other"
        return baud, framing

    def _receive_as_uart(self, b: int, peer_baud: int | None, peer_framing: str | None) -> int:
        """The byte our UART would hand over, or LINE_ERROR."""
        if peer_baud is not None and peer_baud != self.baud:
            return LINE_ERROR  # another baud rate: framing errors and garbage
        if self.framing == "7E1":
            if peer_framing is None:
                # Peer framing unknown (kernel drops CS7/PARENB on ptys): assume the peer is set like us, so
                # its bytes are 7-bit; an 8th bit set cannot come from a 7E1 UART.
                return LINE_ERROR if b & 0x80 else b
            if peer_framing == "7E1":
                return b & 0x7F  # the peer's UART sent 7 bits + a correct parity bit
            # 8 data bits on the wire: the 8th is read as the parity bit.
            return b & 0x7F if _even_parity_bit(b) == (b >> 7) else LINE_ERROR
        if peer_framing == "7E1":
            return (b & 0x7F) | (_even_parity_bit(b) << 7)  # its parity bit lands in our 8th bit
        return b

    def _fill(self, timeout: float) -> None:
        if self.fd < 0:
            raise _Unplugged()
        r, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not r:
            return
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            # No client has the slave open (only on devices without our own slave handle): wait.
            time.sleep(min(0.05, max(0.0, timeout)))
            return
        now = time.monotonic()
        baud, framing = self._peer_line()
        t = max(now, self._rx.free_at)
        for b in chunk:
            t += self.char_time
            self._rx.data.append((self._receive_as_uart(b, baud, framing), t))
        self._rx.free_at = t

    def recv(self, deadline: float) -> int | None:
        """The next received byte at its wire arrival time, LINE_ERROR, or None at the deadline."""
        while True:
            if self._stop.is_set():
                raise _Unplugged()
            now = time.monotonic()
            if self._rx.data:
                b, at = self._rx.data[0]
                if at <= now:
                    self._rx.data.popleft()
                    return b
                if at > deadline:
                    _sleep_until(deadline, self.spin)
                    return None
                _sleep_until(at, self.spin)
                continue
            if now >= deadline:
                return None
            self._fill(min(0.1, deadline - now))

    def send(self, data: bytes) -> None:
        """Write at the baud rate: byte i leaves when the line has carried the bytes before it."""
        if self.fd < 0:
            raise _Unplugged()
        baud, framing = self._peer_line()
        out = bytearray()
        for b in data:
            if baud is not None and baud != self.baud:
                b = self._rng.randrange(256)  # the peer's UART makes garbage of it
            elif self.framing == "7E1" and framing == "8N1":
                b = (b & 0x7F) | (_even_parity_bit(b) << 7)
            out.append(b)
        start = max(time.monotonic(), self._tx_free)
        i = 0
        while i < len(out):
            now = time.monotonic()
            due = int((now - start) / self.char_time)  # bytes whose last bit is on the wire by now
            if due > i:
                n = min(due, len(out)) - i
                self._write(bytes(out[i:i + n]))
                i += n
                continue
            _sleep_until(start + (i + 1) * self.char_time, self.spin)
        self._tx_free = start + len(out) * self.char_time

    def _write(self, data: bytes) -> None:
        try:
            os.write(self.fd, data)
        except OSError as e:
            raise _Unplugged() from e

    def _pause(self, seconds: float) -> None:
        """Think or wait for the customer; bytes arriving meanwhile are dropped (the terminal is busy)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self._stop.is_set():
                raise _Unplugged()
            self._rx.data.clear()
            self._fill(min(0.05, left))
        self._rx.data.clear()

    def _garbage(self) -> None:
        self.send(self._noise())

    # -- the terminal --------------------------------------------------------------------------------------

    def serve(self) -> None:
        """Answer exchanges until ``stop()`` (or until a scripted unplug)."""
        try:
            while not self._stop.is_set():
                b = self.recv(time.monotonic() + 0.2)
                if b == ENQ:
                    self.busy.set()
                    try:
                        self._exchange()
                    finally:
                        self._reset_peer_speed()
                        self.busy.clear()
        except _Unplugged:
            pass
        except Exception as e:  # noqa: BLE001 - a simulator bug must show, not hang the test
            self._log(f"simulator error: {e!r}")
            raise

    def _read_frame(self, ex: Exchange) -> bytes | None:
        """After our ACK: the frame (maybe bad), or None if the peer sent EOT or nothing."""
        deadline = time.monotonic() + self.ack_timeout
        while True:
            b = self.recv(deadline)
            if b is None or b == EOT:
                return None
            if b == ENQ:  # the peer retried its ENQ: acknowledge again
                self.send(bytes([ACK]))
                deadline = time.monotonic() + self.ack_timeout
                continue
            if b == STX:
                damaged = False
                break
            if b == LINE_ERROR:
                # A flagged byte where STX should be: a damaged frame starts; it ends in a NAK.
                ex.line_errors += 1
                damaged = True
                break
        frame = bytearray([STX])
        while len(frame) < 256:
            b = self.recv(time.monotonic() + self.ack_timeout)
            if b is None:
                return b""
            if b == LINE_ERROR:
                ex.line_errors += 1
                damaged = True
                frame.append(0x00)
                continue
            frame.append(b)
            if b == ETX:
                lrc = self.recv(time.monotonic() + self.ack_timeout)
                if lrc is None or lrc == LINE_ERROR:
                    return b""
                frame.append(lrc)
                return b"" if damaged else bytes(frame)
        return b""

    def _exchange(self) -> None:
        behaviour = self._next_behaviour()
        ex = Exchange(behaviour)
        self.exchanges.append(ex)
        if behaviour == "silent":
            ex.outcome = "silent"
            self._pause(self.ack_timeout)
            return
        if behaviour == "garbage":
            self._garbage()
        self.send(bytes([ACK]))
        request: Request | None = None
        refused_first = behaviour == "nak_first"
        for _ in range(RETRIES + 1):
            frame = self._read_frame(ex)
            if frame is None:
                ex.outcome = "handshake"  # ENQ/ACK/EOT: `guichet tpe check`
                return
            try:
                request = Request.decode(decode_frame(frame))
            except ConcertError as e:
                self._log(f"bad request frame: {e}")
                self.send(bytes([NAK]))
                ex.naks_sent += 1
                continue
            if refused_first:
                refused_first = False
                self.send(bytes([NAK]))
                ex.naks_sent += 1
                request = None
                continue
            self._send_last(ACK)
            break
        if request is None:
            ex.outcome = "aborted"
            return
        ex.request = request
        eot_deadline = time.monotonic() + self.ack_timeout
        while (b := self.recv(eot_deadline)) is not None and b != EOT:
            pass
        self._log(f"request: {request.amount} minor units, currency {request.currency_numeric}, behaviour {behaviour}")
        if behaviour == "unplug":
            ex.outcome = "unplugged"
            self.unplugged.set()
            self._close()
            raise _Unplugged()
        if behaviour == "no_answer":
            ex.outcome = "no_answer"
            return
        self._pause(self.pin_delay if behaviour == "slow" else self.think)
        status, report = STATUS_APPROVED, mask_pan(TEST_CARDS[self.card])
        if behaviour == "refuse":
            status = STATUS_REFUSED
        elif behaviour == "cancel":
            status, report = STATUS_REFUSED, ""
        elif behaviour == "odd_status":
            status = "3"
        self._seq += 1
        payload = encode_response(
            pos_number=request.pos_number,
            status=status,
            amount=request.amount,
            currency_numeric=request.currency_numeric,
            report=report if request.answer_flag == "1" else None,
            payment_mode=request.payment_mode,
            private=f"{self._seq:010d}",
        )
        ex.outcome = {"0": "approved"}.get(status, "cancelled" if behaviour == "cancel" else "refused")
        if not self._call_back(encode_frame(payload), behaviour, ex):
            ex.outcome = "aborted"

    def _call_back(self, frame: bytes, behaviour: str, ex: Exchange) -> bool:
        """ENQ, the answer until ACK (bounded), EOT. False if the cash register never took it."""
        for _ in range(RETRIES + 1):
            if behaviour == "garbage":
                self._garbage()
            self.send(bytes([ENQ]))
            b = self.recv(time.monotonic() + self.ack_timeout)
            while b is not None and b != ACK:
                b = self.recv(time.monotonic() + self.ack_timeout)
            if b == ACK:
                break
        else:
            self._send_last(EOT)
            return False
        bad_left = 1 if behaviour == "bad_lrc" else (RETRIES + 1 if behaviour == "bad_lrc_always" else 0)
        for _ in range(RETRIES + 1):
            out = frame
            if bad_left > 0:
                bad_left -= 1
                out = frame[:-1] + bytes([frame[-1] ^ 0x21])
            self.send(out)
            deadline = time.monotonic() + self.ack_timeout
            b = self.recv(deadline)
            while b is not None and b not in (ACK, NAK):
                b = self.recv(deadline)
            if b == ACK:
                self._send_last(EOT)
                return True
            if b == NAK:
                ex.naks_received += 1
                continue
            break
        self._send_last(EOT)
        return False
