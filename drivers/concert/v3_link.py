"""Concert V3 / Caisse-AP over TCP: the cash register connects to the terminal (default port 8888), sends one
request of ``TAG LLL VALUE`` records and waits for the answer on the same connection.

    from drivers.concert import V3Link          # or link_for(url): drivers.concert picks the transport
    link = V3Link("tcp://192.168.1.20:8888")            # or caisse-ap://host:port, ?version=0320&cj=...&quiet=0.1
    link.check()                                         # Ready: the terminal accepts connections (nothing sent)
    result = link.pay(123450, "DZD", cancel=event, on_event=print)

The results are those of the E+ link (``Approved``, ``Refused``, ``Cancelled``, ``Timeout``, ``LinkError``), with
the same ``amount_sent``: once the request may have been read by the terminal, a missing or unreadable answer
is *unknown* and the request is never sent again. TCP has no NAK: the terminal's "not done, message format
error" answer (``AE=01 AF=09``) plays its part and is the only one after which the request is resent
(bounded by ``max_retries``, each time on a new connection).

The message has no length and no end marker: the answer is complete when the bytes read are a whole number
of records holding the tags the outcome rests on (``AE``, ``CA``, ``CE``, and ``CB`` when done) and nothing
more comes for ``quiet`` seconds (or the terminal closes the connection). Bytes before the first ``CZ`` are
noise and skipped; after it, every byte must parse. The answer's free fields are checked and scrubbed of card
numbers in ``drivers.concert.v3_codec.check_fields``; an approval whose fields fail is unknown, never kept raw.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from drivers.concert.base import (
    POLL,
    UNKNOWN,
    Approved,
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
from drivers.concert.fields import ConcertError
from drivers.concert.v3_codec import (
    DEFAULT_PORT,
    DEFAULT_PROTOCOL_ID,
    DEFAULT_VERSION,
    MAX_MESSAGE,
    REASON_FORMAT_ERROR,
    STATUS_DONE,
    STATUS_NOT_DONE,
    TlvError,
    V3Request,
    V3Response,
    build_request,
    parse_prefix,
)

SCHEMES = ("tcp", "caisse-ap")
DEFAULT_QUIET = 0.1  # seconds of silence after a complete answer before it is taken as whole
# AE=01 reasons that mean the customer or the operator ended it on the terminal: cancelled, not refused.
CANCEL_REASONS = {"06": "abandoned", "08": "input time-out", "11": "cancelled by the operator"}
# AE=01 reasons that mean the terminal did not take this request at all (our message or its settings).
REJECT_REASONS = {"10": "selection error", "12": "unknown action type", "13": "currency not supported"}
# Fields an approval does not rest on: dropped (a card number in them, too long), the approval stands without them.
# CF is the register's own private data; AI only names the application (the scheme also comes from AA's BIN).
OPTIONAL_FIELDS = {"CF", "AI"}


def is_tcp_url(port: str) -> bool:
    """Does this port value select Concert V3 over TCP (``tcp://`` or ``caisse-ap://``)?

    >>> is_tcp_url("tcp://127.0.0.1:8888"), is_tcp_url("socket://127.0.0.1:7000"), is_tcp_url("/dev/ttyACM0")
    (True, False, False)
    """
    return port.split("://", 1)[0].lower() in SCHEMES if "://" in port else False


def parse_url(url: str) -> tuple[str, int, dict[str, str]]:
    """``tcp://host[:port][?version=0320&cj=...&quiet=0.05]`` -> (host, port, options); ConcertError names
    the part at fault. A bare ``host[:port]`` is taken as ``tcp://``.

    >>> parse_url("caisse-ap://127.0.0.1?version=0320")
    ('127.0.0.1', 8888, {'version': '0320'})
    """
    if "://" not in url:
        url = "tcp://" + url
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORT
    except ValueError as e:
        raise ConcertError(f"tpe.port: {url!r}: {e}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ConcertError(f"tpe.port: {url!r}: Concert V3 runs over TCP here: give tcp://host:{DEFAULT_PORT}")
    if not parts.hostname:
        raise ConcertError(f"tpe.port: {url!r} has no host")
    if parts.path not in ("", "/"):
        raise ConcertError(f"tpe.port: {url!r}: unexpected path {parts.path!r}")
    options: dict[str, str] = {}
    for key, values in parse_qs(parts.query, keep_blank_values=True, strict_parsing=False).items():
        if key not in ("version", "cj", "quiet"):
            raise ConcertError(f"tpe.port: unknown option {key!r} in {url!r} (version, cj, quiet)")
        options[key] = values[-1]
    return parts.hostname, port, options


class V3Link(TerminalLink[V3Request]):
    """One Concert V3 terminal reachable over TCP at ``port`` (a ``tcp://``/``caisse-ap://`` URL). A new
    connection per exchange, like the serial link opens its port per exchange."""

    protocol = "V3"
    no_port = "tpe.port: no terminal address configured"
    ignored_options = ("baud", "framing")

    def __init__(
        self,
        port: str,
        *,
        version: str | None = None,
        protocol_id: str | None = None,
        quiet: float | None = None,
        **common: Any,
    ) -> None:
        """``common``: pos_number, ack_timeout, answer_timeout, max_retries, cancel_grace (TerminalLink)."""
        super().__init__(port, **common)
        self.host, self.tcp_port, options = parse_url(port)
        self.version = version or options.get("version", DEFAULT_VERSION)
        self.protocol_id = protocol_id or options.get("cj", DEFAULT_PROTOCOL_ID)
        try:
            self.quiet = quiet if quiet is not None else float(options.get("quiet", DEFAULT_QUIET))
        except ValueError:
            raise ConcertError(f"tpe.port: quiet={options['quiet']!r} is not a number of seconds") from None
        if not 0 <= self.quiet <= 5:
            raise ConcertError(f"tpe.port: quiet={self.quiet} must be between 0 and 5 seconds")
        # Checks version and protocol id now, not at the first payment.
        V3Request(pos_number=self.pos_number, amount=1, currency_numeric="012", version=self.version,
                  protocol_id=self.protocol_id).tags()

    def describe(self) -> str:
        return f"Concert V3 over TCP {self.host}:{self.tcp_port}, POS {self.pos_number}"

    # -- the connection -----------------------------------------------------------------------------------

    def _connect(self, c: Counters) -> socket.socket:
        """A connection, or LinkDown/TimeoutError (nothing was sent either way)."""
        try:
            sock = socket.create_connection((self.host, self.tcp_port), timeout=self.ack_timeout)
        except TimeoutError:
            raise
        except OSError as e:
            raise LinkDown(f"cannot connect to the terminal at {self.host}:{self.tcp_port}: "
                            f"{e.strerror or e}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(max(self.ack_timeout, 1.0))  # bounds sendall; reads go through select
        return sock

    def _closed_by_peer(self, sock: socket.socket) -> bool:
        """Did the terminal close (or reset) the connection before we sent anything?"""
        r, _, _ = select.select([sock], [], [], 0)
        if not r:
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _send(self, sock: socket.socket, data: bytes, c: Counters) -> None:
        try:
            sock.sendall(data)
        except OSError as e:
            raise LinkDown(f"send failed: {e.strerror or e}") from None
        c.bytes_out += len(data)

    def _receive(self, sock: socket.socket, deadline: float, cancel: threading.Event | None,
                 notify: Callable[[str], None], c: Counters) -> V3Response | str:
        """The terminal's answer, or why there is none: "timeout", "closed", "cancel_timeout" or a one-line
        description of a malformed answer."""
        buf = bytearray()
        started = False  # the first CZ was seen: from here every byte must parse
        quiet_until: float | None = None
        cancelled = False
        while True:
            now = time.monotonic()
            if not cancelled and cancel is not None and cancel.is_set():
                # The amount is at the terminal: only the terminal can end this (no abort message over IP).
                cancelled = True
                deadline = min(deadline, now + self.cancel_grace)
                notify("cancel_on_terminal")
            if quiet_until is not None and now >= min(quiet_until, deadline):
                return self._decode(buf)
            if now >= deadline:
                if buf and started:
                    return f"answer cut short after {len(buf)} bytes"
                return "cancel_timeout" if cancelled else "timeout"
            limit = deadline if quiet_until is None else min(deadline, quiet_until)
            r, _, _ = select.select([sock], [], [], max(0.0, min(POLL * 5, limit - now)))
            if not r:
                continue
            try:
                chunk = sock.recv(4096)
            except OSError as e:
                if quiet_until is not None:
                    return self._decode(buf)
                return f"connection dropped ({e.strerror or e})" if buf else "closed"
            if not chunk:
                if quiet_until is not None:
                    return self._decode(buf)
                return f"connection closed after {len(buf)} bytes of an incomplete answer" if started else "closed"
            c.bytes_in += len(chunk)
            buf += chunk
            if not started:
                at = buf.find(b"CZ")
                if at < 0:
                    del buf[: max(0, len(buf) - 1)]  # keep a trailing "C": the "Z" may follow
                    continue
                del buf[:at]
                started = True
            if len(buf) > MAX_MESSAGE:
                return f"answer longer than {MAX_MESSAGE} bytes"
            try:
                records, end = parse_prefix(bytes(buf))
            except TlvError as e:
                return f"malformed answer: {e}"
            complete = end == len(buf) and _essential(dict(records))
            quiet_until = time.monotonic() + self.quiet if complete else None

    def _decode(self, buf: bytearray) -> V3Response | str:
        try:
            return V3Response.decode(bytes(buf))
        except TlvError as e:
            return f"malformed answer: {e}"

    # -- public -------------------------------------------------------------------------------------------

    @property
    def lock_key(self) -> str:
        """One terminal whatever the URL's scheme, case or options: tcp://host:port."""
        return f"tcp://{self.host.lower()}:{self.tcp_port}"

    def _probe(self) -> Result:
        """The same connect and close: a Caisse-AP terminal takes a connection that sends nothing."""
        c = Counters()
        try:
            sock = self._connect(c)
        except TimeoutError:
            return self._result(Timeout, c, amount_sent=False, stage="connect",
                                message=f"no answer from {self.host}:{self.tcp_port} within {self.ack_timeout} s "
                                "(is the terminal on, on this network, in Caisse-AP IP mode?)")
        except LinkDown as e:
            return self._result(LinkError, c, amount_sent=False, stage="connect", message=str(e))
        close(sock)
        return self._result(Ready, c, amount_sent=False, message="terminal accepted the connection")

    def build_request(self, amount: int, currency: str) -> V3Request:
        return build_request(amount, currency, pos_number=self.pos_number, version=self.version,
                             protocol_id=self.protocol_id)

    def _exchange(self, req: V3Request, cancel: threading.Event | None, notify: Callable[[str], None],
                  c: Counters) -> Result:
        data = req.encode()
        sent = False
        stage = "connect"
        sock: socket.socket | None = None
        try:
            for attempt in range(self.max_retries + 1):
                if cancel is not None and cancel.is_set():
                    raise Cancel()
                stage = "connect"
                try:
                    sock = self._connect(c)
                except TimeoutError:
                    return self._result(Timeout, c, amount_sent=False, stage=stage,
                                        message=f"no answer from {self.host}:{self.tcp_port} within "
                                        f"{self.ack_timeout} s; amount not sent")
                if cancel is not None and cancel.is_set():
                    raise Cancel()
                if self._closed_by_peer(sock):
                    return self._result(LinkError, c, amount_sent=False, stage=stage,
                                        message="the terminal closed the connection before the request; "
                                        "amount not sent")
                stage = "request"
                sent = True  # from the first byte on, the terminal may have it
                self._send(sock, data, c)
                if attempt == 0:
                    notify("pin_on_terminal")
                stage = "answer"
                got = self._receive(sock, time.monotonic() + self.answer_timeout, cancel, notify, c)
                close(sock)
                sock = None
                if isinstance(got, V3Response) and got.status == STATUS_NOT_DONE \
                        and got.reason == REASON_FORMAT_ERROR:
                    # The terminal says it did not take the request: the one answer after which we resend.
                    c.naks_received += 1
                    sent = False
                    continue
                return self._outcome(got, req, c)
            return self._result(
                LinkError, c, amount_sent=False, stage="request",
                message=f"the terminal refused the request {self.max_retries + 1} times (message format error, "
                "AE=01 AF=09); amount not taken",
            )
        except Cancel:
            return self._result(Cancelled, c, amount_sent=False, message="cancelled before sending")
        except LinkDown as e:
            return self._result(LinkError, c, amount_sent=sent, stage=stage, message=str(e)
                                + (UNKNOWN if sent else ""))
        finally:
            if sock is not None:
                close(sock)

    def _outcome(self, got: V3Response | str, req: V3Request, c: Counters) -> Result:
        if isinstance(got, str):
            if got in ("timeout", "cancel_timeout"):
                what = "no answer from the terminal" if got == "timeout" else "cancelled while waiting"
                return self._result(Timeout, c, amount_sent=True, stage="answer", message=what + UNKNOWN)
            if got == "closed":
                got = "the terminal closed the connection without answering"
            return self._result(LinkError, c, amount_sent=True, stage="answer", message=got + UNKNOWN)
        r = got
        # A CD that could not be read is no echo of ours: a mismatch, not a missing tag.
        if r.pos_number != req.pos_number or r.currency_numeric != req.currency_numeric \
                or (r.action and r.action != req.action) or "CD" in r.dropped:
            return self._result(
                LinkError, c, amount_sent=True, stage="answer",
                message=f"answer for POS {r.pos_number}/currency {r.currency_numeric}/action {r.action or '?'}, "
                f"sent POS {req.pos_number}/currency {req.currency_numeric}/action {req.action}{UNKNOWN}",
            )
        if r.status == STATUS_DONE:
            if r.amount != req.amount:
                return self._result(LinkError, c, amount_sent=True, stage="answer",
                                    message=f"done for {r.amount} minor units, asked {req.amount}{UNKNOWN}")
            if set(r.dropped) - OPTIONAL_FIELDS:
                # Money may have moved, but what the terminal sent cannot be kept as a record (a card number
                # in the authorisation code, an over-long field): the ticket is the record.
                return self._result(LinkError, c, amount_sent=True, stage="answer",
                                    message=f"approved, but the answer is unusable: {'; '.join(r.problems)}{UNKNOWN}")
            return self._result(Approved, c, amount_sent=True, response=r, message="approved")
        if r.status == STATUS_NOT_DONE:
            if "AF" in r.dropped:  # "not done" for a reason we cannot read: it may be "authorised" (01)
                return self._result(LinkError, c, amount_sent=True, stage="answer",
                                    message=f"not done (AE=01) for an unreadable reason (AF){UNKNOWN}")
            if r.reason == "01":  # "not done" yet "authorised": no way to tell which is true
                return self._result(LinkError, c, amount_sent=True, stage="answer",
                                    message=f"contradictory answer AE=01 AF=01{UNKNOWN}")
            if r.reason in CANCEL_REASONS:
                return self._result(Cancelled, c, amount_sent=True, by="terminal", response=r,
                                    message=f"cancelled on the terminal ({r.reason_label}, AF={r.reason})")
            if r.reason in REJECT_REASONS:
                return self._result(Cancelled, c, amount_sent=True, by="terminal", response=r,
                                    message=f"the terminal did not take the request: {r.reason_label} "
                                    f"(AF={r.reason})")
            return self._result(Refused, c, amount_sent=True, response=r,
                                message=f"refused ({r.reason_label}, AF={r.reason or '-'})")
        return self._result(LinkError, c, amount_sent=True, stage="answer",
                            message=f"unexpected status AE={r.status}{UNKNOWN}")


def _essential(tags: dict[str, str]) -> bool:
    """The tags an outcome rests on are there: status, POS, currency, and the amount of a done operation."""
    return all(t in tags for t in ("AE", "CA", "CE")) and (tags["AE"] != STATUS_DONE or "CB" in tags)

