"""The card side of the vsmartcard ``vpcd`` protocol: a Python card "inserted" in the virtual reader.

vpcd (the pcscd driver) listens on TCP 127.0.0.1:35963. The card connects as a client; every message is a
2-byte big-endian length and the data. A 1-byte message is a control: 0 power off, 1 power on, 2 reset,
4 get ATR (answered with the ATR). Anything longer is a command APDU, answered with the response APDU.
Connected = card present; closing the socket = card removed (pcscd notices on its next presence poll).

    card = VirtualCard(profile)                 # sandbox.cards.card
    with inserted(card) as link:                # a thread serves the card until the block ends
        ...                                     # read it through pcscd
    link.apdus                                  # how many APDUs the card received

TCP_NODELAY and TCP_QUICKACK (set again before every receive: Linux clears it) keep each APDU at a
fraction of a millisecond instead of ~40 ms of delayed-ACK wait.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

VPCD_HOST = "127.0.0.1"
VPCD_PORT = 35963

CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0, 1, 2, 4


class Card(Protocol):
    atr: bytes

    def power(self, on: bool) -> None: ...

    def reset(self) -> None: ...

    def apdu(self, command: bytes) -> bytes | None:
        """The response APDU, or None to pull the card out now."""
        ...


def vpcd_listening(host: str = VPCD_HOST, port: int = VPCD_PORT) -> bool:
    """True when vpcd's listener is up, read from the kernel's socket table.

    Never probe it by connecting: vpcd listens with a backlog of 0, so a probe that pcscd has not yet accepted
    makes the next connection (the card's, or another probe's) time out, and pcscd takes each probe for a card.
    """
    want = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 3 and cols[1].endswith(want) and cols[3] == "0A":  # 0A: TCP_LISTEN
                return True
    if not os.path.exists("/proc/net/tcp"):  # no procfs: fall back to a connect, with its side effect
        try:
            socket.create_connection((host, port), timeout=2.0).close()
            return True
        except OSError:
            return False
    return False


SLOT_LOCK = "/tmp/guichet-vpcd.lock"  # noqa: S108 (shared on purpose by every process using the vpcd slot)
_held = 0  # how many `slot()` of this process are open: the one flock is shared by nested ones
_held_lock = threading.Lock()


@contextmanager
def slot(timeout: float | None = None, path: str = SLOT_LOCK) -> Iterator[bool]:
    """Hold the one vpcd slot: every process that inserts a virtual card takes turns through this lock.

    Yields True once held, or False if `timeout` seconds passed first (None waits as long as it takes). Nested
    in a process that already holds it, it is held at once: a test that watches the reader across several
    insertions holds the slot around all of them, and each insertion's own `slot()` nests inside.

        with slot(timeout=60) as mine:
            if mine:
                ...                         # insert and remove cards at will
    """
    global _held
    with _held_lock:
        nested = _held > 0
        if nested:
            _held += 1
    if nested:  # flock would refuse our own second descriptor: the process already has the slot
        try:
            yield True
        finally:
            with _held_lock:
                _held -= 1
        return
    with open(path, "a") as fh:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.1)
        with _held_lock:
            _held += 1
        try:
            yield True
        finally:
            with _held_lock:
                _held -= 1
            fcntl.flock(fh, fcntl.LOCK_UN)


class LinkClosed(Exception):
    pass


class VpcdLink:
    """Serves one card over one vpcd connection, in a thread (:meth:`start`) or inline (:meth:`serve`)."""

    def __init__(self, card: Card, host: str = VPCD_HOST, port: int = VPCD_PORT) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.apdus = 0
        self.apdu_seconds = 0.0  # time the card spent answering
        self.removed = threading.Event()  # set when the card left the reader (any reason)
        self.error: BaseException | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._quickack = getattr(socket, "TCP_QUICKACK", None)

    def connect(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=2.0)
                break
            except OSError as e:
                if time.monotonic() >= deadline:
                    raise ConnectionError(f"vpcd is not listening on {self.host}:{self.port}: {e}") from e
                time.sleep(0.1)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock

    def _recv_exact(self, n: int) -> bytes:
        assert self._sock is not None
        buf = bytearray()
        while len(buf) < n:
            if self._quickack is not None:
                self._sock.setsockopt(socket.IPPROTO_TCP, self._quickack, 1)
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise LinkClosed("vpcd closed the connection")
            buf += chunk
        return bytes(buf)

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.sendall(struct.pack(">H", len(data)) + data)

    def serve(self) -> None:
        """Answer vpcd until the card is pulled, :meth:`remove` is called or vpcd goes away."""
        if self._sock is None:
            self.connect()
        try:
            while True:
                (length,) = struct.unpack(">H", self._recv_exact(2))
                msg = self._recv_exact(length) if length else b""
                if length == 1:
                    ctrl = msg[0]
                    if ctrl == CTRL_ATR:
                        self._send(self.card.atr)
                    elif ctrl == CTRL_ON:
                        self.card.power(True)
                    elif ctrl == CTRL_OFF:
                        self.card.power(False)
                    elif ctrl == CTRL_RESET:
                        self.card.reset()
                    continue
                t0 = time.perf_counter()
                resp = self.card.apdu(msg)
                self.apdu_seconds += time.perf_counter() - t0
                self.apdus += 1
                if resp is None:
                    return  # pulled out mid-exchange: vpcd sees the connection drop
                self._send(resp)
        except (LinkClosed, OSError) as e:
            if not isinstance(e, LinkClosed) and not self.removed.is_set():
                self.error = e
        finally:
            self._close()

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self.removed.set()

    def start(self) -> VpcdLink:
        self.connect()
        self._thread = threading.Thread(target=self.serve, name="virtual-card", daemon=True)
        self._thread.start()
        return self

    def remove(self, timeout: float = 5.0) -> None:
        """Take the card out of the reader."""
        self.removed.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the serving thread's recv
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout)


@contextmanager
def inserted(card: Card, host: str = VPCD_HOST, port: int = VPCD_PORT) -> Iterator[VpcdLink]:
    link = VpcdLink(card, host, port).start()
    try:
        yield link
    finally:
        link.remove()
