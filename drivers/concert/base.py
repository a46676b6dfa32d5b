"""What every Concert link shares, whatever its transport: the typed results, the counters they carry, the
internal signals of an exchange, the settings from ``[tpe]`` and the shape of ``pay``.

    from drivers.concert.base import TerminalLink, Approved
    class MyLink(TerminalLink[MyRequest]):          # eplus_link.ConcertLink and v3_link.V3Link are the two
        protocol = "X"
        def build_request(self, amount, currency): ...           # checked before anything is sent
        def _exchange(self, req, cancel, notify, c): ...          # every outcome a Result (self._result)
        def check(self): ...
        def _probe(self): ...                                     # the light liveness check (probe())

``probe()`` is the device registry's liveness check: it never waits for, nor disturbs, an exchange in
progress. ``pay`` and ``check`` hold the port's lock (one per port in this process) for the whole exchange;
``probe`` only tries that lock and answers ``Busy`` when it is held.

    link.probe()        # Ready | Busy | Timeout | LinkError; never sends an amount
    link.busy           # True while a payment or check on this port runs in this process
``amount_sent`` on every result says whether the request may have reached the terminal: once it may have, a
missing or unreadable answer is *unknown*, never a reason to send the amount again.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from drivers.concert.eplus_codec import Response
from drivers.concert.fields import ConcertError
from drivers.concert.v3_codec import V3Response

Answer = Response | V3Response  # what a terminal answered: E+ record or V3 tags; the same attribute names

POLL = 0.02  # seconds between cancel checks while a read waits
UNKNOWN = "; the payment is unknown: settle it from the terminal's ticket"


@dataclass(frozen=True, kw_only=True)
class Result:
    """What came of an exchange. ``amount_sent``: the request may have reached the terminal."""

    amount_sent: bool
    message: str = ""
    naks_received: int = 0
    naks_sent: int = 0
    elapsed: float = 0.0
    bytes_out: int = 0
    bytes_in: int = 0
    _definitive: ClassVar[bool] = False  # Ready, Approved, Refused, Cancelled: True; Timeout, LinkError: unknown

    @property
    def definitive(self) -> bool:
        """The terminal (or the cashier, before anything was sent) settled it: no doubt about the money."""
        return self._definitive

    @property
    def kind(self) -> str:
        return type(self).__name__.lower()


@dataclass(frozen=True, kw_only=True)
class Ready(Result):
    """The terminal is there and listening (E+: ENQ/ACK/EOT; V3: it accepted a connection)."""

    _definitive = True


@dataclass(frozen=True, kw_only=True)
class Busy(Result):
    """``probe`` only: the port is in use (an exchange of ours, or another program holds it); nothing sent."""


@dataclass(frozen=True, kw_only=True)
class Approved(Result):
    response: Answer
    _definitive = True


@dataclass(frozen=True, kw_only=True)
class Refused(Result):
    response: Answer
    _definitive = True


@dataclass(frozen=True, kw_only=True)
class Cancelled(Result):
    """No money taken: cancelled before the amount left us, or the terminal answered that nothing was done."""

    by: str = "cashier"  # "cashier" | "terminal"
    response: Answer | None = None
    _definitive = True


@dataclass(frozen=True, kw_only=True)
class Timeout(Result):
    stage: str = ""


@dataclass(frozen=True, kw_only=True)
class LinkError(Result):
    stage: str = ""


class LinkDown(Exception):
    """Inside an exchange: the port or connection is gone (becomes a LinkError result). ``errno`` when the
    system gave one (EBUSY/EAGAIN: another program holds the port)."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class Cancel(Exception):
    """Inside an exchange: the cashier cancelled while nothing could have reached the terminal yet."""


@dataclass
class Counters:
    naks_received: int = 0
    naks_sent: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    started: float = field(default_factory=time.monotonic)


RequestT = TypeVar("RequestT")

_port_locks: dict[str, threading.Lock] = {}
_port_locks_guard = threading.Lock()


def port_lock(port: str) -> threading.Lock:
    """The one lock of ``port`` in this process: every link object on the same port shares it."""
    with _port_locks_guard:
        return _port_locks.setdefault(port, threading.Lock())


@dataclass(frozen=True)
class Heard:
    """What the last exchange on a port said of the terminal: it sent bytes (``answered``) or stayed silent.
    ``at``: time.monotonic(). The registry takes it as a liveness check it need not make."""

    at: float
    answered: bool
    message: str


_heard: dict[str, Heard] = {}


def last_heard(port: str) -> Heard | None:
    """The last exchange's word on the terminal at ``port`` in this process (None: none yet)."""
    with _port_locks_guard:
        return _heard.get(port)


def _note(port: str, result: Result) -> None:
    if isinstance(result, Cancelled) and not result.bytes_in:
        return  # the cashier cancelled before the terminal was asked: it said nothing either way
    with _port_locks_guard:
        _heard[port] = Heard(time.monotonic(), result.bytes_in > 0, result.message)


class TerminalLink(ABC, Generic[RequestT]):
    """One payment terminal on ``port``; a new port or connection per exchange. Subclasses give the request
    and the exchange; ``pay`` and ``from_config`` are the same for every transport."""

    protocol: ClassVar[str]
    no_port: ClassVar[str] = "tpe.port: no terminal port configured"
    config_keys: ClassVar[tuple[str, ...]] = ()  # [tpe] keys of this transport only (E+: baud, framing)
    ignored_options: ClassVar[tuple[str, ...]] = ()  # the other transport's options, accepted and dropped

    def __init__(
        self,
        port: str,
        *,
        pos_number: str = "01",
        ack_timeout: float = 2.0,
        answer_timeout: float = 180.0,
        max_retries: int = 3,
        cancel_grace: float = 30.0,
    ) -> None:
        if not port:
            raise ConcertError(self.no_port)
        self.port = port
        self.pos_number = pos_number
        self.ack_timeout = ack_timeout
        self.answer_timeout = answer_timeout
        self.max_retries = max_retries
        self.cancel_grace = cancel_grace

    @classmethod
    def from_config(cls, tpe: Any, **overrides: Any) -> Any:
        """From a ``config.schema.TpeConfig``; keyword overrides win (CLI options); the other transport's
        options are ignored."""
        kw: dict[str, Any] = {
            "port": tpe.port,
            "pos_number": tpe.pos_number,
            "ack_timeout": tpe.ack_timeout,
            "answer_timeout": tpe.answer_timeout,
            "max_retries": tpe.max_retries,
            "cancel_grace": getattr(tpe, "cancel_grace", 30.0),
            **{k: getattr(tpe, k) for k in cls.config_keys},
        }
        kw.update({k: v for k, v in overrides.items() if v is not None and k not in cls.ignored_options})
        return cls(**kw)

    @abstractmethod
    def describe(self) -> str:
        """One line for the CLI and doctor: the transport's settings."""

    @abstractmethod
    def check(self) -> Result:
        """Is the terminal there? Ready, Timeout or LinkError; never sends an amount."""

    @abstractmethod
    def _probe(self) -> Result:
        """The light liveness check, the port's lock held: Ready, Busy, Timeout or LinkError."""

    @property
    def busy(self) -> bool:
        """An exchange (payment or check) on this port is in progress in this process."""
        return port_lock(self.port).locked()

    def probe(self) -> Result:
        """Liveness for the device registry, when idle: E+ one ENQ awaiting ACK within ``ack_timeout``, V3 a
        connect and close. ``Busy`` at once, touching nothing, while an exchange holds the port."""
        lock = port_lock(self.port)
        if not lock.acquire(blocking=False):
            return Busy(amount_sent=False, message="an exchange with the terminal is in progress")
        try:
            return self._probe()
        finally:
            lock.release()

    def alive(self) -> bool:
        """The terminal answered the probe (a busy terminal is alive: it is working for us)."""
        return isinstance(self.probe(), Ready | Busy)

    @abstractmethod
    def build_request(self, amount: int, currency: str) -> RequestT:
        """The debit request, checked completely (AmountError/ConcertError) before anything is sent."""

    @abstractmethod
    def _exchange(self, req: RequestT, cancel: threading.Event | None, notify: Callable[[str], None],
                  c: Counters) -> Result:
        """Send ``req`` and wait for the answer; every outcome a Result."""

    def pay(
        self,
        amount: int,
        currency: str,
        *,
        cancel: threading.Event | None = None,
        on_event: Callable[[str], None] | None = None,
        request: RequestT | None = None,
    ) -> Result:
        """One debit of ``amount`` minor units. Raises AmountError/ConcertError only before anything is sent;
        after that, every outcome is a Result. ``on_event`` hears "pin_on_terminal" and "cancel_on_terminal"."""
        req = request or self.build_request(amount, currency)
        # Waits at most one probe (ack_timeout) for the port: the registry's liveness check never wins a race.
        with port_lock(self.port):
            result = self._exchange(req, cancel, on_event or (lambda _key: None), Counters())
        _note(self.port, result)
        return result

    def _result(self, cls: type[Result], c: Counters, **kw: Any) -> Any:
        return cls(
            naks_received=c.naks_received,
            naks_sent=c.naks_sent,
            bytes_out=c.bytes_out,
            bytes_in=c.bytes_in,
            elapsed=time.monotonic() - c.started,
            **kw,
        )


def close(port: Any) -> None:
    """Close a port or socket that may already be gone."""
    try:
        port.close()
    except Exception:  # noqa: S110 - closing a port that is gone must not mask the result
        pass
