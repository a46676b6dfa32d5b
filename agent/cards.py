"""Cards for the agent: reader events for the UI, and one card read for the ``card_reader`` payment.

Events, in a thread of their own (the caller never blocks)::

    events = queue.Queue()
    with CardWatcher(config, events):             # or CardWatcher(config, callback)
        ev = events.get()                         # CardInserted, CardRead, CardRemoved, CardError,
                                                  # ReaderAdded, ReaderRemoved, PcscDown
    # CardRead.card is a CardData whose PAN is already wiped: events never carry a card number.

One read for a payment (blocks until a card is read, the timeout, or ``cancel``)::

    card = read_card(config, cancel=threading.Event(), timeout=30)
    try:
        outcome_card = card.payment_card()        # scheme, pan_masked, pan_token, expiry, aid
        with card.pan_in_memory() as pan:         # the full PAN, once, for POST /v1/authorizations
            ...
    finally:
        card.wipe()

Every failure is a :class:`CardReadError` (a ``GuichetError``) with one clear line; the driver error is
its ``__cause__`` and its class name is in ``kind``; ``unusable`` says the card itself is at fault (its data,
its answers, its size) rather than the reader, pcscd, the cashier, a card pulled out, a read past its time
(a slow card and a slow reader look the same) or a bug of ours. A read is
bounded (``drivers.emv.reader``: records, bytes, commands), lasts at most ``cards.read_timeout`` once the
card is in, and stops between two commands when ``cancel`` is set.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

from agent.errors import GuichetError
from config import Config
from config.money import currency
from drivers import pcsc
from drivers.emv import CardData, EmvError, EmvReader, ReadCancelled, ReadTimeout, Terminal
from drivers.pan import safe_text

log = logging.getLogger("agent.cards")

# One EMV session at a time in this process: two readers of the same card would interleave APDUs.
_session_lock = threading.Lock()

COUNTRY_OF_CURRENCY = {"DZD": "012", "TND": "788", "EUR": "250", "USD": "840", "MAD": "504"}


class CardReadError(GuichetError):
    """A card could not be read; ``kind`` names the cause (CardRemoved, Timeout, CardDataError, ...)."""

    def __init__(self, message: str, kind: str = "", *, unusable: bool = False) -> None:
        super().__init__(message)
        self.kind = kind or type(self).__name__
        self.unusable = unusable


class CardTimeout(CardReadError):
    pass


class CardCancelled(CardReadError):
    pass


class CardExpired(CardReadError):
    pass


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class ReaderAdded:
    reader: str


@dataclass(frozen=True)
class ReaderRemoved:
    reader: str


@dataclass(frozen=True)
class CardInserted:
    reader: str
    atr: str  # hex
    interface: str


@dataclass(frozen=True)
class CardRead:
    reader: str
    card: CardData  # PAN wiped


@dataclass(frozen=True)
class CardRemoved:
    reader: str


@dataclass(frozen=True)
class CardError:
    reader: str
    message: str
    kind: str


@dataclass(frozen=True)
class PcscDown:
    message: str


CardEvent = Union[ReaderAdded, ReaderRemoved, CardInserted, CardRead, CardRemoved, CardError, PcscDown]  # noqa: UP007
Sink = Union[Callable[[CardEvent], None], "queue.Queue[CardEvent]"]  # noqa: UP007


def terminal_for(config: Config, amount: int = 0) -> Terminal:
    """The terminal data for a read (``guichet card read``, the CardWatcher): never an offline approval, so the
    TTQ demands an online cryptogram whatever the scheme (a qVSDC card answers an ARQC and keeps its offline
    balance; drivers.emv.tvr.ttq)."""
    code = config.terminal.currency
    return Terminal(country=COUNTRY_OF_CURRENCY.get(code, "000"), currency=currency(code).numeric, amount=amount,
                    offline_ok=False)


def _message(e: BaseException) -> str:
    """One line for the cashier; what a driver error says is scrubbed and bounded (it may quote the card)."""
    return safe_text(_describe(e), MAX_MESSAGE)


MAX_MESSAGE = 300


def _describe(e: BaseException) -> str:
    if isinstance(e, pcsc.CardRemoved):
        return "the card was removed before it was read; insert it again"
    if isinstance(e, pcsc.ReaderGone):
        return "the card reader was disconnected; plug it back in"
    if isinstance(e, pcsc.PcscUnavailable):
        return "the smart card service (pcscd) is not running"
    if isinstance(e, pcsc.NoCard):
        return "the card does not answer; insert it again (chip first, face up)"
    if isinstance(e, ReadTimeout):
        return str(e)
    if isinstance(e, EmvError):
        return f"this card cannot be read: {e}"
    return str(e)


def read_inserted(
    config: Config,
    reader: str,
    *,
    amount: int = 0,
    ctx: pcsc.Context | None = None,
    require_token: bool = True,
    cancel: threading.Event | None = None,
) -> CardData:
    """Read the card already in ``reader``, within ``cards.read_timeout`` and until ``cancel``.
    Driver errors pass through (callers translate them)."""
    key = config.cards.hmac_key.get_secret_value()
    if require_token and not key:
        raise CardReadError("cards.hmac_key is not set: run `guichet config init` or set it", "ConfigError")
    with _session_lock, pcsc.connect(reader, ctx=ctx) as conn:
        t0 = time.perf_counter()
        card = EmvReader(
            conn,
            schemes=config.cards.schemes,
            aids=config.cards.aids,
            terminal=terminal_for(config, amount),
            hmac_key=key or None,
            cancel=cancel,
            deadline=time.monotonic() + config.cards.read_timeout,
        ).read()
        object.__setattr__(card, "elapsed_ms", (time.perf_counter() - t0) * 1000)
        return card


def read_card(
    config: Config,
    cancel: threading.Event,
    timeout: float | None = None,
    *,
    reader: str | None = None,
    amount: int = 0,
    allow_expired: bool = False,
    require_token: bool = True,
    on_status: Callable[[str], None] | None = None,
) -> CardData:
    """Wait for a card and read it: the payment flow's ``card_reader`` step.

    ``reader`` (a substring) defaults to ``cards.reader``; ``timeout`` to ``cards.read_timeout``.
    Raises :class:`CardTimeout`, :class:`CardCancelled`, :class:`CardExpired` (unless ``allow_expired``)
    or :class:`CardReadError`. The caller wipes the returned card (``card.wipe()``) when done.
    """
    wanted = reader if reader is not None else config.cards.reader
    limit = config.cards.read_timeout if timeout is None else timeout
    status = on_status or (lambda _key: None)
    status("insert_card")
    try:
        name, _atr = pcsc.wait_for_card(wanted, limit, cancel)
        if cancel.is_set():
            raise CardCancelled("cancelled before the card was read", "Cancelled")
        status("reading_card")
        card = read_inserted(config, name, amount=amount, require_token=require_token, cancel=cancel)
    except pcsc.Timeout as e:
        raise CardTimeout(f"no card presented within {limit:g} s", "Timeout") from e
    except (pcsc.Cancelled, ReadCancelled) as e:
        raise CardCancelled("cancelled before the card was read", "Cancelled") from e
    except ReadTimeout as e:
        # A slow card or a slow reader: nothing tells them apart, and the reader is not the card's fault.
        raise CardReadError(_message(e) + "; try again", "ReadTimeout") from e
    except EmvError as e:
        raise CardReadError(_message(e), type(e).__name__, unusable=True) from e
    except pcsc.PcscError as e:
        raise CardReadError(_message(e), type(e).__name__) from e
    except CardReadError:
        raise
    except Exception as e:  # a bug of ours must not escape: nothing was sent, the read failed; not the card's fault
        log.exception("card read failed unexpectedly")
        text = safe_text(f"{type(e).__name__}: {e}", 200)
        raise CardReadError(f"the card read failed ({text}); try again", type(e).__name__) from e
    if card.expired and not allow_expired:
        card.wipe()
        raise CardExpired(f"the card expired at the end of {card.expiry}", "CardExpired")
    return card


# --------------------------------------------------------------------------- watcher


class CardWatcher:
    """Follows readers and cards in a daemon thread and emits events to a callback or a queue.

    With ``read=True`` (default) an inserted card is read and a :class:`CardRead` (PAN wiped) or a
    :class:`CardError` follows its :class:`CardInserted`. The watcher survives everything: pcscd
    stopping (one :class:`PcscDown`, then it retries), readers unplugged, garbage cards.
    """

    def __init__(self, config: Config, sink: Sink, *, read: bool = True, poll: float = 0.5) -> None:
        self.config = config
        self.read = read
        self.poll = poll
        self._sink = sink
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._monitor: pcsc.Monitor | None = None
        self.reads = 0
        self.errors = 0

    def _emit(self, event: CardEvent) -> None:
        try:
            if isinstance(self._sink, queue.Queue):
                self._sink.put_nowait(event)
            else:
                self._sink(event)
        except Exception:  # a broken consumer must not kill the watcher
            log.exception("card event consumer failed on %s", type(event).__name__)

    def start(self) -> CardWatcher:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="card-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        mon = self._monitor
        if mon is not None:
            mon.cancel()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> CardWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wanted(self, reader: str) -> bool:
        return bool(pcsc.pick_reader([reader], self.config.cards.reader))

    def _run(self) -> None:
        down = False
        while not self._stop.is_set():
            try:
                with pcsc.Monitor() as mon:
                    self._monitor = mon
                    while not self._stop.is_set():
                        events = mon.poll(self.poll)
                        if down:
                            down = False
                        for ev in events:
                            self._handle(ev, mon)
            except pcsc.PcscUnavailable as e:
                if not down:
                    down = True
                    self._emit(PcscDown(_message(e)))
                    log.warning("pcscd unavailable: %s", e)
                self._stop.wait(1.0)
            except Exception:  # keep watching whatever happens
                log.exception("card watcher: unexpected error; restarting the monitor")
                self._stop.wait(1.0)
            finally:
                self._monitor = None

    def _handle(self, ev: pcsc.ReaderEvent, mon: pcsc.Monitor) -> None:
        if not self._wanted(ev.reader):
            return
        if ev.kind == "reader_added":
            self._emit(ReaderAdded(ev.reader))
        elif ev.kind == "reader_removed":
            self._emit(ReaderRemoved(ev.reader))
        elif ev.kind == "card_removed":
            self._emit(CardRemoved(ev.reader))
        elif ev.kind == "card_inserted":
            self._emit(CardInserted(ev.reader, ev.atr.hex().upper(), pcsc.detect_interface(ev.reader, ev.atr)))
            if self.read:
                self._read(ev.reader, mon)

    def _read(self, reader: str, mon: pcsc.Monitor) -> None:
        try:
            card = read_inserted(self.config, reader, ctx=mon.ctx, require_token=False, cancel=self._stop)
        except Exception as e:  # noqa: BLE001 - whatever the card sends, the watcher reports it and goes on
            self.errors += 1
            if not isinstance(e, pcsc.PcscError | EmvError | CardReadError):
                log.exception("card in %s: unexpected error while reading", reader)
            log.info("card in %s not read: %s", reader, e)
            self._emit(CardError(reader, _message(e), type(e).__name__))
            return
        card.wipe()  # events never carry the card number
        self.reads += 1
        self._emit(CardRead(reader, card))
