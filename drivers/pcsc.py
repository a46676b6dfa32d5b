"""PC/SC readers through pyscard's low-level ``scard`` API: readers, hot-plug and card events, APDUs.

    from drivers import pcsc
    pcsc.list_readers()                       # ['Virtual PCD 00 00', ...]; PcscUnavailable if pcscd is down
    pcsc.reader_states()                      # [ReaderState(name, card_present, atr), ...]
    pcsc.within(3.0, pcsc.reader_states)      # the same, NotAnswering if a wedged pcscd keeps it 3 s
    with pcsc.Monitor() as mon:               # reader plugged/unplugged, card inserted/removed
        for ev in mon.poll(timeout=0.5):      # bounded wait; [] on timeout
            print(ev.kind, ev.reader)
    with pcsc.connect("Virtual PCD 00 00") as conn:   # T=0 or T=1, as the card offers
        data, sw = conn.transmit(bytes.fromhex("00A404000E315041592E5359532E444446303100"))

Every failure is a :class:`PcscError` subclass with one clear line: :class:`PcscUnavailable` (no pcscd),
:class:`NoReader`, :class:`NoCard`, :class:`CardRemoved`, :class:`ReaderGone`, :class:`TransportError`.
pcscd restarting, readers unplugged and plugged back are all recovered by the next call (the context is
re-established), so a long-running agent never needs a restart.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from smartcard import scard

PNP = "\\\\?PnP?\\Notification"


class PcscError(Exception):
    """Base of every PC/SC failure."""


class PcscUnavailable(PcscError):
    """pcscd is not running or cannot be reached."""


class NoReader(PcscError):
    """No (matching) reader is connected."""


class NoCard(PcscError):
    """The reader holds no card (or none answers)."""


class CardRemoved(PcscError):
    """The card left the reader during the exchange."""


class ReaderGone(PcscError):
    """The reader disappeared (unplugged, or its driver lost it)."""


class TransportError(PcscError):
    """Any other transmission failure."""


class Timeout(PcscError):
    """No card was presented in time."""


class Cancelled(PcscError):
    """The wait was cancelled by the caller."""


ANSWER_LIMIT = 3.0  # seconds pcscd gets to answer a call that does not wait for a card (it answers in ms)


class NotAnswering(PcscUnavailable):
    """pcscd took the connection but does not answer (wedged): the call was abandoned."""


def within(seconds: float, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a throwaway daemon thread, abandoned after ``seconds``: pcsc-lite's client waits for
    pcscd with no time limit (opening a context, listing readers). Raises NotAnswering then; whatever that
    call was building (a context) is never used again.

        names = pcsc.within(3.0, pcsc.list_readers)
    """
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed back to the caller
            box["error"] = e
        done.set()

    threading.Thread(target=run, name="pcsc-call", daemon=True).start()
    if not done.wait(seconds):
        raise NotAnswering(f"pcscd not answering (no reply within {seconds:g} s)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _hr(h: int) -> int:
    return h & 0xFFFFFFFF


_E = {k: _hr(getattr(scard, k)) for k in dir(scard) if k.startswith(("SCARD_E_", "SCARD_W_", "SCARD_F_"))}


def error_for(hresult: int, what: str) -> PcscError:
    """Map a PC/SC status to our typed error, with pcsc-lite's message."""
    code = _hr(hresult)
    try:
        msg = scard.SCardGetErrorMessage(hresult)
    except Exception:  # noqa: BLE001 - the message is a nicety
        msg = f"{code:#010x}"
    text = f"{what}: {msg.rstrip('.')} ({code:#010x})"
    if code in (_E["SCARD_E_NO_SERVICE"], _E["SCARD_E_SERVICE_STOPPED"]):
        return PcscUnavailable(f"{what}: pcscd is not running ({code:#010x})")
    if code in (_E["SCARD_W_REMOVED_CARD"], _E["SCARD_E_NO_SMARTCARD"], _E["SCARD_W_RESET_CARD"]):
        return CardRemoved(f"{what}: the card was removed ({code:#010x})")
    if code in (_E["SCARD_E_READER_UNAVAILABLE"], _E["SCARD_E_UNKNOWN_READER"], _E["SCARD_E_NO_READERS_AVAILABLE"]):
        return ReaderGone(f"{what}: the reader is gone ({code:#010x})")
    if code in (_E["SCARD_W_UNRESPONSIVE_CARD"], _E["SCARD_W_UNPOWERED_CARD"]):
        return NoCard(f"{what}: the card does not answer; insert it again ({code:#010x})")
    if code == _E["SCARD_E_TIMEOUT"]:
        return Timeout(text)
    if code == _E["SCARD_E_CANCELLED"]:
        return Cancelled(text)
    return TransportError(text)


class Context:
    """A PC/SC context, re-established when pcscd restarts. Thread-confined: one per thread."""

    def __init__(self) -> None:
        self._h: Any = None

    @property
    def handle(self) -> Any:
        if self._h is None:
            hr, h = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if hr != scard.SCARD_S_SUCCESS:
                raise error_for(hr, "PC/SC")
            self._h = h
        return self._h

    def reset(self) -> None:
        if self._h is not None:
            try:
                scard.SCardReleaseContext(self._h)
            except Exception:  # noqa: BLE001, S110 - a dead context cannot be released; forget it
                pass
            self._h = None

    def readers(self) -> list[str]:
        hr, names = scard.SCardListReaders(self.handle, [])
        if _hr(hr) == _E["SCARD_E_NO_READERS_AVAILABLE"]:
            return []
        if _hr(hr) in (_E["SCARD_E_NO_SERVICE"], _E["SCARD_E_SERVICE_STOPPED"], _E["SCARD_E_INVALID_HANDLE"]):
            # pcscd restarted under us: one fresh try.
            self.reset()
            hr, names = scard.SCardListReaders(self.handle, [])
            if _hr(hr) == _E["SCARD_E_NO_READERS_AVAILABLE"]:
                return []
        if hr != scard.SCARD_S_SUCCESS:
            raise error_for(hr, "listing readers")
        return list(names)

    def cancel(self) -> None:
        """Wake a blocked :meth:`Monitor.poll` from another thread."""
        if self._h is not None:
            scard.SCardCancel(self._h)

    def close(self) -> None:
        self.reset()


@dataclass(frozen=True)
class ReaderState:
    name: str
    card_present: bool
    atr: bytes = b""
    in_use: bool = False


def list_readers() -> list[str]:
    ctx = Context()
    try:
        return ctx.readers()
    finally:
        ctx.close()


def reader_states(ctx: Context | None = None) -> list[ReaderState]:
    """Every reader with card presence and ATR, without waiting."""
    own = ctx is None
    c = ctx or Context()
    try:
        names = c.readers()
        if not names:
            return []
        hr, states = scard.SCardGetStatusChange(c.handle, 0, [(n, scard.SCARD_STATE_UNAWARE) for n in names])
        if hr != scard.SCARD_S_SUCCESS and _hr(hr) != _E["SCARD_E_TIMEOUT"]:
            raise error_for(hr, "reading reader states")
        return [
            ReaderState(
                n,
                bool(st & scard.SCARD_STATE_PRESENT) and not st & scard.SCARD_STATE_MUTE,
                bytes(atr),
                bool(st & scard.SCARD_STATE_INUSE),
            )
            for n, st, atr in states
        ]
    finally:
        if own:
            c.close()


def pick_reader(names: list[str], wanted: str | None) -> list[str]:
    """Readers whose name contains ``wanted`` (case-insensitive); all of them when ``wanted`` is empty."""
    if not wanted:
        return names
    return [n for n in names if wanted.casefold() in n.casefold()]


# --------------------------------------------------------------------------- events

EventKind = Literal["reader_added", "reader_removed", "card_inserted", "card_removed"]


@dataclass(frozen=True)
class ReaderEvent:
    kind: EventKind
    reader: str
    atr: bytes = b""


class Monitor:
    """Reader hot-plug and card insert/remove, one bounded :meth:`poll` at a time (no thread of its own).

    The first poll reports the readers present and the cards already inserted, so a watcher started with
    a card in place sees it.
    """

    def __init__(self) -> None:
        self.ctx = Context()
        self._known: dict[str, int] = {}  # reader -> last state (without CHANGED)
        self._atr: dict[str, bytes] = {}
        self._pnp: int | None = scard.SCARD_STATE_UNAWARE  # None: pcscd has no PnP notification
        self._lock = threading.Lock()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.ctx.close()

    def cancel(self) -> None:
        """From another thread: make a blocked :meth:`poll` return now."""
        try:
            self.ctx.cancel()
        except Exception:  # noqa: BLE001, S110 - nothing to wake
            pass

    def _sync_readers(self) -> list[ReaderEvent]:
        events: list[ReaderEvent] = []
        names = self.ctx.readers()
        for gone in [n for n in self._known if n not in names]:
            if self._known[gone] & scard.SCARD_STATE_PRESENT:
                events.append(ReaderEvent("card_removed", gone))
            events.append(ReaderEvent("reader_removed", gone))
            del self._known[gone]
            self._atr.pop(gone, None)
        for new in [n for n in names if n not in self._known]:
            self._known[new] = scard.SCARD_STATE_UNAWARE
            events.append(ReaderEvent("reader_added", new))
        return events

    def poll(self, timeout: float = 0.5) -> list[ReaderEvent]:
        """Wait up to ``timeout`` seconds for changes; the events, or ``[]``.

        Raises :class:`PcscUnavailable` when pcscd is down (the next poll tries again).
        """
        try:
            events = self._sync_readers()
        except PcscUnavailable:
            self.ctx.reset()
            raise
        states = [(n, st) for n, st in self._known.items()]
        if self._pnp is not None:
            states.append((PNP, self._pnp))
        if not states:
            time.sleep(min(timeout, 0.5))
            return events
        hr, result = scard.SCardGetStatusChange(self.ctx.handle, int(timeout * 1000), states)
        code = _hr(hr)
        if code in (_E["SCARD_E_TIMEOUT"], _E["SCARD_E_CANCELLED"]):
            return events
        if code in (_E["SCARD_E_NO_SERVICE"], _E["SCARD_E_SERVICE_STOPPED"], _E["SCARD_E_INVALID_HANDLE"]):
            self.ctx.reset()
            raise error_for(hr, "watching readers")
        if code in (_E["SCARD_E_UNKNOWN_READER"], _E["SCARD_E_READER_UNAVAILABLE"]):
            return events + self._sync_readers()
        if hr != scard.SCARD_S_SUCCESS:
            raise error_for(hr, "watching readers")
        for name, st, atr in result:
            if name == PNP:
                # pcsc-lite keeps the reader count in the upper word: hand back what it said.
                self._pnp = None if st & scard.SCARD_STATE_UNKNOWN else st & ~scard.SCARD_STATE_CHANGED
                if st & scard.SCARD_STATE_CHANGED:
                    events += self._sync_readers()
                continue
            old = self._known.get(name)
            if old is None:
                continue
            st &= ~scard.SCARD_STATE_CHANGED
            if st & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_IGNORE):
                events += self._sync_readers()
                continue
            was = bool(old & scard.SCARD_STATE_PRESENT)
            now = bool(st & scard.SCARD_STATE_PRESENT) and not st & scard.SCARD_STATE_MUTE
            if was and not now:
                events.append(ReaderEvent("card_removed", name))
            elif now and not was:
                self._atr[name] = bytes(atr)
                events.append(ReaderEvent("card_inserted", name, bytes(atr)))
            elif now and was and bytes(atr) != self._atr.get(name):
                # A card swapped faster than one poll: removal then insertion.
                self._atr[name] = bytes(atr)
                events += [ReaderEvent("card_removed", name), ReaderEvent("card_inserted", name, bytes(atr))]
            # Keep MUTE out of "present" so a card that starts answering is reported then.
            self._known[name] = st if now else st & ~scard.SCARD_STATE_PRESENT
        return events


def wait_for_card(
    wanted: str | None = None,
    timeout: float = 30.0,
    cancel: threading.Event | None = None,
    *,
    poll: float = 0.25,
) -> tuple[str, bytes]:
    """The first reader (matching ``wanted``) holding a card: ``(reader, atr)``.

    A card already in the reader counts. Raises :class:`Timeout`, :class:`Cancelled`, :class:`NoReader`
    (no matching reader at the deadline) or :class:`PcscUnavailable`.
    """
    deadline = time.monotonic() + timeout
    seen_reader = False
    with Monitor() as mon:
        while True:
            for st in reader_states(mon.ctx):
                if pick_reader([st.name], wanted):
                    seen_reader = True
                    if st.card_present:
                        return st.name, st.atr
            left = deadline - time.monotonic()
            if cancel is not None and cancel.is_set():
                raise Cancelled("waiting for a card: cancelled")
            if left <= 0:
                if not seen_reader:
                    raise NoReader(f"no PC/SC reader{f' matching {wanted!r}' if wanted else ''} is connected")
                raise Timeout(f"no card presented within {timeout:g} s")
            mon.poll(min(poll, left))


# --------------------------------------------------------------------------- connection

CONTACTLESS_NAME_HINTS = ("picc", "contactless", " cl ", "nfc", "ctls")


def detect_interface(reader: str, atr: bytes) -> str:
    """``contactless`` or ``contact``, as far as the reader tells.

    PC/SC part 3 readers build a synthetic ATR ``3B 8n 80 01 ...`` for ISO 14443-4 cards; dual readers
    name their contactless slot (…PICC, …CL, …Contactless). Other cases read as ``contact``.
    """
    name = f" {reader.casefold()} "
    if any(h in name for h in CONTACTLESS_NAME_HINTS):
        return "contactless"
    if len(atr) >= 4 and atr[0] == 0x3B and atr[1] & 0xF0 == 0x80 and atr[2] == 0x80 and atr[3] == 0x01:
        return "contactless"
    return "contact"


class Connection:
    """One card session: :meth:`transmit` raw APDUs. Use as a context manager."""

    def __init__(self, reader: str, *, ctx: Context | None = None, exclusive: bool = False) -> None:
        self.reader = reader
        self._own_ctx = ctx is None
        self.ctx = ctx or Context()
        share = scard.SCARD_SHARE_EXCLUSIVE if exclusive else scard.SCARD_SHARE_SHARED
        try:
            hr, self._card, proto = scard.SCardConnect(
                self.ctx.handle, reader, share, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
            )
            if hr != scard.SCARD_S_SUCCESS:
                raise error_for(hr, f"connecting to the card in {reader!r}")
            self.protocol = int(proto)
            hr, _name, _state, _proto, atr = scard.SCardStatus(self._card)
            if hr != scard.SCARD_S_SUCCESS:
                raise error_for(hr, f"reading the card status in {reader!r}")
        except BaseException:
            if self._own_ctx:
                self.ctx.close()
            raise
        self.atr = bytes(atr)
        self.interface = detect_interface(reader, self.atr)
        self.transmit_count = 0
        self.transmit_seconds = 0.0  # time inside SCardTransmit: the raw transport cost
        self._closed = False
        # A command in flight cannot be cut short (pcscd makes a disconnect wait for it): close() called
        # meanwhile, from another thread, returns at once and the command's own thread closes after it.
        self._lock = threading.Lock()
        self._in_flight = 0
        self._close_after: int | None = None

    @property
    def protocol_name(self) -> str:
        return "T=1" if self.protocol == scard.SCARD_PROTOCOL_T1 else "T=0"

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        """Send one command APDU; ``(data, sw)`` with ``sw`` as an int like ``0x9000``."""
        with self._lock:
            if self._closed or self._close_after is not None:
                raise TransportError("the card connection is closed")
            self._in_flight += 1
        t0 = time.perf_counter()
        try:
            hr, resp = scard.SCardTransmit(self._card, self.protocol, list(apdu))
        finally:
            with self._lock:
                self._in_flight -= 1
                late = self._close_after if not self._in_flight else None
            if late is not None:
                self._close_now(late)
        if late is not None:  # the caller gave up on this command and closed: nobody wants its answer
            raise TransportError("card exchange: the connection was closed while the command ran")
        self.transmit_seconds += time.perf_counter() - t0
        self.transmit_count += 1
        if hr != scard.SCARD_S_SUCCESS:
            err = error_for(hr, "card exchange")
            raise self._diagnose(err) if type(err) is TransportError else err
        if len(resp) < 2:
            raise self._diagnose(TransportError(f"card exchange: answer of {len(resp)} byte(s), no status word"))
        return bytes(resp[:-2]), (resp[-2] << 8) | resp[-1]

    def _diagnose(self, err: PcscError, settle: float = 2.0) -> PcscError:
        """Tell a pulled card or a lost reader from a plain transport fault.

        A reader losing the card mid-exchange often reports a generic failure (or, like vpcd, an empty
        answer) before pcscd's presence poll notices; wait (bounded) for pcscd to tell.
        """
        try:
            deadline = time.monotonic() + settle
            state = scard.SCARD_STATE_UNAWARE
            while True:
                left = max(0, int((deadline - time.monotonic()) * 1000))
                hr, result = scard.SCardGetStatusChange(self.ctx.handle, 0 if state == scard.SCARD_STATE_UNAWARE
                                                        else left, [(self.reader, state)])
                code = _hr(hr)
                if code in (_E["SCARD_E_UNKNOWN_READER"], _E["SCARD_E_READER_UNAVAILABLE"]):
                    return ReaderGone(f"card exchange: the reader {self.reader!r} is gone")
                if code not in (_hr(scard.SCARD_S_SUCCESS), _E["SCARD_E_TIMEOUT"]):
                    return err
                st = result[0][1] if result else 0
                if st & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_IGNORE):
                    return ReaderGone(f"card exchange: the reader {self.reader!r} is gone")
                if code == _hr(scard.SCARD_S_SUCCESS) and not st & scard.SCARD_STATE_PRESENT:
                    return CardRemoved("card exchange: the card was removed")
                if not left:
                    return err
                state = st & ~scard.SCARD_STATE_CHANGED
        except Exception:  # noqa: BLE001 - diagnosis is best effort; the original error stands
            return err

    def close(self, disposition: int = scard.SCARD_LEAVE_CARD) -> None:
        """End the session. Never waits for a command in flight in another thread: that thread closes after it
        (a stalled card holds the reader until it or the reader gives up; see docs/cards.md)."""
        with self._lock:
            if self._closed or self._close_after is not None:
                return
            if self._in_flight:
                self._close_after = disposition
                return
        self._close_now(disposition)

    def _close_now(self, disposition: int) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            scard.SCardDisconnect(self._card, disposition)
        except Exception:  # noqa: BLE001, S110 - the card or reader may already be gone
            pass
        if self._own_ctx:
            self.ctx.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def connect(reader: str, *, ctx: Context | None = None) -> Connection:
    return Connection(reader, ctx=ctx)
