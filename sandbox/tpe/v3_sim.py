"""A Concert V3 / Caisse-AP payment terminal over TCP (loopback), with scripted behaviours.

    from sandbox.tpe import V3Simulator
    with V3Simulator(port=0, behaviour="approve") as sim:    # 127.0.0.1, a free port
        print(sim.url)                                       # tcp://127.0.0.1:NNNNN: give it to the cash register
        sim.script("nak_first", "refuse")                    # the next two exchanges; then back to ``behaviour``
        ...
        sim.exchanges[-1].outcome                            # what the terminal did, for tests

One connection at a time, like a terminal: a request is ``TAG LLL VALUE`` records; it is complete when the
records parse to the end and the mandatory tags (CZ CJ CA CB CD CE) are there, or when the client stops
sending for ``read_quiet`` seconds. A request that does not parse is answered "not done, message format
error" (``AE=01 AF=09``), the protocol's NAK. The card's full PAN never leaves this module: ``AA`` carries
the masked PAN (``#`` as mask, as some terminals do).
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from drivers.concert.v3_codec import (
    MANDATORY_REQUEST,
    REASON_FORMAT_ERROR,
    STATUS_DONE,
    STATUS_NOT_DONE,
    TlvError,
    V3Request,
    encode,
    encode_response,
    parse,
    parse_prefix,
)
from drivers.pan import mask_pan
from sandbox.tpe.base import TEST_CARDS, Simulator

V3_BEHAVIOURS = {
    "approve": "approve after the think time",
    "refuse": "refuse (AE=01 AF=04)",
    "cancel": "the customer presses the red key (AE=01 AF=06, abandoned)",
    "slow": "slow customer: PIN entry takes --pin-delay seconds, then approve",
    "nak_first": "answer the first request 'message format error' (AE=01 AF=09), approve the resend",
    "malformed": "an answer that does not parse (bad length field)",
    "no_answer": "read the request, then never answer (the connection stays open)",
    "silent": "switched off: the port refuses connections",
    "garbage": "noise bytes before the answer, then approve",
    "fragmented": "approve, the answer split in pieces a few milliseconds apart",
    "unplug": "read the request, then the connection drops (reset)",
    # Hostile terminals: fields a real terminal should never send, which must never be stored as sent.
    "pan_in_code": "approve with the card's full PAN as the authorisation code (AC)",
    "pan_in_private": "approve with the card's full PAN in the private data (CF)",
    "long_fields": "approve with an 11-character AC and a 999-character CF holding the full PAN",
    "refuse_long": "refuse with a 999-character CF holding the full PAN, a 50-character AF and a bad AA",
    "pan_in_aid": "approve with the application id (AI) 'A' followed by the card's full PAN",
    "pan_dotted": "approve with the card's full PAN in CF written 4761.7390.0101.0010",
    "pan_split": "approve with the card's PAN split: its first 8 digits as AC, the rest in CF",
    "not_done_labelled": "not done, reason 'authorised' with its label (AE=01 AF='01 transaction authorised')",
    "not_done_garbled": "not done for a reason that is not two digits (AE=01 AF='?4')",
    "refuse_bad_action": "refuse (AE=01 AF=04) echoing an action (CD) of two characters",
}
AIDS = {"VISA": "A0000000031010"}  # CIB/Edahabia AIDs come from the acquirer: none is invented here


@dataclass
class V3Exchange:
    """One request as the terminal saw it (for tests and the CLI log)."""

    behaviour: str
    request: V3Request | None = None
    outcome: str = ""  # approved | refused | cancelled | format_error | malformed | no_answer | unplugged |
    # handshake (connected, sent nothing) | aborted (the client left before the answer)
    naks_sent: int = 0


def _auth_code(seq: int) -> str:
    """Six letters for the ``seq``-th approval (AAAAAB, AAAAAC...). Letters, not digits: the agent judges AC
    and CF by their digits together, and a digit code beside the 10-digit CF would make a Luhn-valid run of
    13+ digits (a "card number") for one approval in ten from the 104th on.

    >>> _auth_code(1), _auth_code(27)
    ('AAAAAB', 'AAAABB')
    """
    letters = ""
    for _ in range(6):
        seq, r = divmod(seq, 26)
        letters = chr(ord("A") + r) + letters
    return letters


class _Gone(Exception):
    pass


class V3Simulator(Simulator[V3Exchange]):
    """The terminal side of Concert V3 over TCP. Runs in a thread (``start``/``stop``, or ``with``)."""

    behaviours = V3_BEHAVIOURS
    thread_name = "tpe-v3-sim"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        behaviour: str = "approve",
        think: float = 0.0,
        pin_delay: float = 2.0,
        card: str = "EDAHABIA",
        read_quiet: float = 0.3,
        log: Callable[[str], None] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(behaviour=behaviour, think=think, pin_delay=pin_delay, card=card, log=log, seed=seed)
        self.host = host
        self.read_quiet = read_quiet
        self._lock = threading.Lock()
        self._resend: V3Exchange | None = None  # a nak_first exchange waiting for the resend
        self._listener = self._bind(port)
        self.port: int = self._listener.getsockname()[1]
        self._listening = False
        self._set_listening(behaviour != "silent")

    # -- the port ------------------------------------------------------------------------------------------

    def _bind(self, port: int) -> socket.socket:
        s = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, port))
        return s

    def _set_listening(self, on: bool) -> None:
        """Switched on: listening. Switched off ("silent"): the port is held but refuses connections."""
        with self._lock:
            if on == self._listening:
                return
            if on:
                self._listener.listen(8)
            else:
                self._listener.close()
                self._listener = self._bind(self.port)
            self._listening = on

    def _switched(self, behaviour: str) -> None:
        self._set_listening(behaviour != "silent")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    @property
    def path(self) -> str:
        """What to give the cash register as ``tpe.port`` (the E+ simulator's name for it)."""
        return self.url

    # -- control -------------------------------------------------------------------------------------------

    def _check_scripted(self, behaviour: str) -> None:
        self._check(behaviour)
        if behaviour == "silent":
            raise ValueError("behaviour: 'silent' is the terminal switched off, not one exchange: set "
                             "behaviour='silent' instead of scripting it")

    def _pending(self) -> bool:
        with self._lock:
            if not self._listening:
                return False
            try:
                return bool(select.select([self._listener], [], [], 0)[0])
            except (OSError, ValueError):
                return False

    def _idle(self) -> bool:
        """No connection in progress or waiting to be accepted."""
        return not (self.busy.is_set() or self._pending())

    def _close(self) -> None:
        with self._lock:
            self._listener.close()

    # -- serving -------------------------------------------------------------------------------------------

    def serve(self) -> None:
        """Answer connections one at a time until ``stop()``."""
        while not self._stop.is_set():
            with self._lock:
                listener, listening = self._listener, self._listening
            if not listening:
                time.sleep(0.02)
                continue
            try:
                r, _, _ = select.select([listener], [], [], 0.1)
                if not r:
                    continue
                self.busy.set()  # before accept: wait_idle never sees an accepted, unhandled connection as idle
                conn, _addr = listener.accept()
            except OSError:
                self.busy.clear()
                continue  # switched off meanwhile
            try:
                self._connection(conn)
            except _Gone:
                pass
            except Exception as e:  # noqa: BLE001 - a simulator bug must show, not hang the test
                self._log(f"simulator error: {e!r}")
                raise
            finally:
                try:
                    conn.close()
                except OSError:
                    pass
                self.busy.clear()

    def _recv(self, conn: socket.socket, timeout: float | None) -> bytes | None:
        """Bytes, b"" at EOF, None when ``timeout`` passes (None: wait until EOF or stop)."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            left = 0.1 if end is None else min(0.1, end - time.monotonic())
            if left <= 0:
                return None
            r, _, _ = select.select([conn], [], [], left)
            if r:
                try:
                    return conn.recv(4096)
                except OSError:
                    return b""
        raise _Gone()

    def _read_request(self, conn: socket.socket) -> bytes | None:
        """A whole request (maybe malformed), or None when the client closed without sending one."""
        buf = b""
        while True:
            chunk = self._recv(conn, None if not buf else self.read_quiet)
            if chunk is None:
                return buf  # the client stopped sending: take what came
            if not chunk:
                return buf or None
            buf += chunk
            try:
                records, end = parse_prefix(buf)
            except TlvError:
                return buf
            if end == len(buf) and all(t in dict(records) for t in MANDATORY_REQUEST):
                return buf

    def _send(self, conn: socket.socket, data: bytes) -> None:
        try:
            conn.sendall(data)
        except OSError as e:
            raise _Gone() from e

    def _pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self._stop.is_set():
                raise _Gone()
            time.sleep(min(0.02, left))

    def _connection(self, conn: socket.socket) -> None:
        seen = False
        while True:
            data = self._read_request(conn)
            if data is None:
                if not seen:
                    self.exchanges.append(V3Exchange("handshake", outcome="handshake"))
                return
            seen = True
            if not self._request(conn, data):
                return

    def _format_error(self, conn: socket.socket, ex: V3Exchange, why: str) -> None:
        self._log(f"bad request: {why}")
        ex.naks_sent += 1
        self._send(conn, encode({"CZ": "0300", "CA": "01", "CE": "000", "AE": STATUS_NOT_DONE,
                                 "AF": REASON_FORMAT_ERROR}))

    def _request(self, conn: socket.socket, data: bytes) -> bool:
        """Answer one request; False when the connection is to be dropped."""
        resend, self._resend = self._resend, None
        ex = resend or V3Exchange(self._next_behaviour())
        if resend is None:
            self.exchanges.append(ex)
        behaviour = "approve" if resend is not None else ex.behaviour
        try:
            req = V3Request.from_tags(dict(parse(data)))
        except TlvError as e:
            ex.outcome = "format_error"
            self._format_error(conn, ex, str(e))
            return True
        if behaviour == "nak_first":
            ex.outcome = "format_error"
            ex.naks_sent += 1
            self._resend = ex
            self._send(conn, encode_response(req, status=STATUS_NOT_DONE, reason=REASON_FORMAT_ERROR))
            return True
        ex.request = req
        self._log(f"request: {req.amount} minor units, currency {req.currency_numeric}, behaviour {behaviour}")
        if behaviour == "unplug":
            ex.outcome = "unplugged"
            # RST rather than FIN: a cable pulled, not a terminal that finished
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if behaviour == "no_answer":
            ex.outcome = "no_answer"
            while self._recv(conn, None):  # until the cash register gives up and closes
                pass
            return False
        self._pause(self.pin_delay if behaviour == "slow" else self.think)
        answer = self._answer(req, behaviour)
        ex.outcome = "aborted"
        if behaviour == "garbage":
            self._send(conn, self._noise())
        if behaviour == "fragmented":
            cuts = sorted({7, len(answer) // 2 + 1, len(answer) - 3})
            pieces = [answer[a:b] for a, b in zip([0, *cuts], [*cuts, len(answer)], strict=True)]
            for piece in pieces:
                self._send(conn, piece)
                self._pause(0.01)
        else:
            self._send(conn, answer)
        ex.outcome = {"approve": "approved", "slow": "approved", "garbage": "approved", "fragmented": "approved",
                      "refuse": "refused", "cancel": "cancelled", "malformed": "malformed",
                      "pan_in_code": "approved", "pan_in_private": "approved", "long_fields": "approved",
                      "refuse_long": "refused", "pan_in_aid": "approved", "pan_dotted": "approved",
                      "pan_split": "approved", "not_done_labelled": "refused", "not_done_garbled": "refused",
                      "refuse_bad_action": "refused"}[behaviour]
        return True

    def _answer(self, req: V3Request, behaviour: str) -> bytes:
        if behaviour == "refuse":
            return encode_response(req, status=STATUS_NOT_DONE, reason="04")
        if behaviour == "cancel":
            return encode_response(req, status=STATUS_NOT_DONE, reason="06")
        if behaviour == "malformed":
            return encode({"CZ": req.version, "CA": req.pos_number}) + b"AE0x210"
        pan = TEST_CARDS[self.card]
        if behaviour == "refuse_long":
            return encode_response(req, status=STATUS_NOT_DONE, reason="04 refused by the issuer".ljust(50, "."),
                                   extra={"CF": (pan + " ").ljust(999, "x"), "AA": "card " + pan})
        if behaviour == "not_done_labelled":
            return encode_response(req, status=STATUS_NOT_DONE, reason="01 transaction authorised")
        if behaviour == "not_done_garbled":
            return encode_response(req, status=STATUS_NOT_DONE, reason="?4")
        if behaviour == "refuse_bad_action":
            return encode_response(req, status=STATUS_NOT_DONE, reason="04", extra={"CD": "11"})
        self._seq += 1
        extra = {
            "AA": mask_pan(pan).replace("*", "#"),
            "AC": _auth_code(self._seq),
            "CI": "1",
            "CF": f"{self._seq:010d}",
        }
        if behaviour == "pan_in_code":
            extra["AC"] = pan
        elif behaviour == "pan_in_private":
            extra["CF"] = f"REF {pan}"
        elif behaviour == "long_fields":
            extra["AC"] = "A" * 11
            extra["CF"] = (pan + " ").ljust(999, "x")
        elif behaviour == "pan_dotted":
            extra["CF"] = ".".join(pan[i : i + 4] for i in range(0, len(pan), 4))
        elif behaviour == "pan_split":
            extra["AC"], extra["CF"] = pan[:8], pan[8:]
        if self.card in AIDS:
            extra["AI"] = AIDS[self.card]
        if behaviour == "pan_in_aid":
            extra["AI"] = "A" + pan
        return encode_response(req, status=STATUS_DONE, extra=extra)
