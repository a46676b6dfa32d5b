"""The device registry: the one place that knows the card readers, the TPE and (soon) the receipt printer,
and whether each is there and answering. The status bar, the heartbeat's ``devices`` list, `guichet devices`
and `guichet doctor` all read it.

    from agent.devices import DeviceRegistry
    registry = DeviceRegistry.from_config(cfg)            # a reader probe and, with tpe.port, a TPE probe
    registry.subscribe(lambda st: print(st.kind, st.name, st.state))   # called from the probe's thread
    with registry:                                        # start(): one presence thread per probe
        registry.snapshot()      # [DeviceState(kind='tpe', name='/dev/ttyUSB0', state='ready', ...), ...]
        registry.heartbeat()     # [{"kind": "tpe", "name": "/dev/ttyUSB0", "state": "ready"}, ...]
    registry.refresh()           # or no thread at all: every probe once, now (doctor, the CLI)

The presence loop, like an IoT box's: PC/SC events for the readers (a blocking wait on pcscd, woken by a
reader or card coming or going); for a TPE on a serial path, the path appearing and disappearing (a
USB-serial adapter unplugged), with pyserial's port listing naming the adapter; and a light liveness check
while the TPE is idle (E+: one ENQ awaiting ACK; V3: a TCP connect and close), skipped while a payment holds
the port (``TerminalLink.probe`` answers Busy without touching the line). Every probe is bounded and caught:
a failing probe reports state "error" with one line and is asked again; a loop never dies.

A new kind of device implements :class:`Probe` and joins with one line in ``PROBES`` (from the config) or
``registry.add(probe)``.

States: ready, card_present (a reader with a card), busy (a payment holds it), present (a TPE plugged in,
not asked yet: the first liveness check waits ``liveness`` s, so that starting the agent sends the terminal
nothing), unresponsive (there but not answering), absent (not plugged in / not listening), unavailable
(pcscd down, pyscard missing), error (any other failure: the detail says which), unknown (not probed yet).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from config import Config

log = logging.getLogger("guichet.devices")

Kind = Literal["reader", "tpe", "printer"]
STATES = ("ready", "card_present", "busy", "present", "unresponsive", "absent", "unavailable", "error", "unknown")
# The heartbeat's kind names (billing API 1.1 shows "pcsc" for a reader): the server's dashboards keep theirs.
HEARTBEAT_KINDS = {"reader": "pcsc"}
MAX_HEARTBEAT_DEVICES = 64  # the contract's maxItems
MAX_TEXT = 200  # the contract's maxLength for name and state
DEFAULT_INTERVAL = 1.0  # seconds between two presence checks of a TPE path
DEFAULT_LIVENESS = 30.0  # seconds between two liveness checks of an idle TPE that answers
RETRY_LIVENESS = 5.0  # ... of one that does not answer (each costs up to ack_timeout on the line)
ERROR_WAIT = 1.0  # seconds a loop waits after its probe raised


@dataclass(frozen=True)
class DeviceState:
    """One device as last seen. ``since``: when it entered this state (UTC).

    >>> DeviceState("tpe", "/dev/ttyUSB0", "ready", "answered ENQ").line()
    'tpe     /dev/ttyUSB0  ready  answered ENQ'
    """

    kind: str
    name: str
    state: str
    detail: str = ""
    since: datetime = field(default_factory=lambda: datetime.now(UTC), compare=False)

    def line(self) -> str:
        return f"{self.kind:<7} {self.name}  {self.state}" + (f"  {self.detail}" if self.detail else "")

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "state": self.state, "detail": self.detail,
                "since": self.since.isoformat(timespec="seconds")}


class Probe(Protocol):
    """What the registry needs from a kind of device (readers, the TPE, the printer to come).

    ``poll`` returns the devices this probe knows, as of now; it may block, bounded (at most a few seconds),
    and should return early once ``stop`` is set. The loop calls it again ``interval`` seconds later.
    ``once``: a one-shot look (doctor, the CLI): wait for nothing, check everything now.
    ``wake`` (from another thread) cuts a blocking poll short; ``close`` lets go of what poll holds.
    """

    kind: str
    interval: float

    def poll(self, stop: threading.Event, once: bool = False) -> list[DeviceState]: ...

    def wake(self) -> None: ...

    def close(self) -> None: ...


# -- readers -------------------------------------------------------------------------------------------------


class ReaderProbe:
    """PC/SC readers, from pcscd's events: a poll waits up to ``wait`` s for a reader or card to change."""

    kind = "reader"
    interval = 0.0  # poll itself waits on pcscd

    def __init__(self, wanted: str = "", *, wait: float = 1.0) -> None:
        self.wanted = wanted  # cards.reader: readers whose name holds it ("" = any)
        self.wait = wait
        self._monitor: Any = None
        self._cards: dict[str, bool] = {}  # reader -> card present

    @classmethod
    def from_config(cls, cfg: Config) -> ReaderProbe:
        return cls(cfg.cards.reader)

    def poll(self, stop: threading.Event, once: bool = False) -> list[DeviceState]:
        wait = 0.0 if once else self.wait
        try:
            from drivers import pcsc  # here: a counter without libpcsclite still runs, its reader "unavailable"
        except ImportError as e:
            stop.wait(wait)
            return [DeviceState(self.kind, "pcscd", "unavailable", f"pyscard cannot load: {e}")]
        try:
            if self._monitor is None:
                self._monitor = pcsc.Monitor()
                self._cards.clear()
            events = self._monitor.poll(wait)
        except pcsc.PcscError as e:
            self.close()
            stop.wait(wait)
            return [DeviceState(self.kind, "pcscd", "unavailable", f"pcscd cannot be reached: {e}")]
        for ev in events:
            if self.wanted and self.wanted.casefold() not in ev.reader.casefold():
                continue
            if ev.kind == "reader_removed":
                self._cards.pop(ev.reader, None)
            else:
                self._cards[ev.reader] = ev.kind == "card_inserted"
        if not self._cards:
            detail = f"no reader matches cards.reader={self.wanted!r}" if self.wanted else "no PC/SC reader"
            return [DeviceState(self.kind, self.wanted or "reader", "absent", detail)]
        return [DeviceState(self.kind, name, "card_present" if card else "ready")
                for name, card in sorted(self._cards.items())]

    def wake(self) -> None:
        mon = self._monitor
        if mon is not None:
            mon.cancel()

    def close(self) -> None:
        mon, self._monitor = self._monitor, None
        if mon is not None:
            try:
                mon.close()
            except Exception:  # noqa: BLE001, S110 - a dead context cannot be closed; forget it
                pass


# -- the TPE -------------------------------------------------------------------------------------------------


def serial_ports() -> dict[str, str]:
    """pyserial's port listing: device -> description (symlinks in /dev included, e.g. /dev/serial/by-id)."""
    from serial.tools import list_ports

    out: dict[str, str] = {}
    for p in list_ports.comports(include_links=True):
        out[p.device] = p.description if p.description not in (None, "", "n/a") else ""
    return out


class TpeProbe:
    """The payment terminal on ``link.port``: present (a serial path exists), then alive (``link.probe()``).

    ``interval``: how often the path is looked at (and a busy port); ``liveness``: how often an idle terminal
    that answers is asked; one that does not answer is asked every ``retry`` s. A payment's exchange counts
    as a check (``drivers.concert.base.last_heard``): the terminal is only asked after ``liveness`` s of
    quiet, the first time too (``first_check``, default ``liveness``), so starting the agent sends nothing.
    """

    kind = "tpe"

    def __init__(self, link: Any, *, interval: float = DEFAULT_INTERVAL, liveness: float = DEFAULT_LIVENESS,
                 retry: float = RETRY_LIVENESS, first_check: float | None = None) -> None:
        self.link = link
        self.interval = interval
        self.liveness = liveness
        self.retry = min(retry, liveness)
        self.serial = "://" not in link.port
        self._last: DeviceState | None = None
        self._next_check = time.monotonic() + (liveness if first_check is None else first_check)
        self._heard_at = time.monotonic()  # payments heard before this are not news
        self._adapter: str | None = None  # pyserial's description of the port; None: read it (again)

    @classmethod
    def from_config(cls, cfg: Config, **kw: Any) -> TpeProbe | None:
        if not cfg.tpe.port:
            return None
        from drivers.concert import link_from_config

        # One ENQ per liveness check, whatever tpe.max_retries says: a light touch on the line.
        return cls(link_from_config(cfg.tpe, max_retries=0), **kw)

    @property
    def name(self) -> str:
        return str(self.link.port)

    def _state(self, state: str, detail: str) -> DeviceState:
        st = DeviceState(self.kind, self.name, state, detail)
        if self._last is not None and (self._last.state, self._last.detail) == (state, detail):
            return self._last  # keeps ``since``
        self._last = st
        return st

    def poll(self, stop: threading.Event, once: bool = False) -> list[DeviceState]:
        from drivers.concert.base import Busy, LinkError, Ready, Timeout, last_heard

        now = time.monotonic()
        if self.serial and not os.path.exists(self.link.port):
            self._next_check = 0.0  # plugged in again: checked at once
            self._adapter = None  # maybe another adapter then
            return [self._state("absent", f"{self.link.port} does not exist (terminal cable or adapter unplugged)")]
        if self.link.busy:
            return [self._state("busy", "a payment is in progress")]
        heard = last_heard(self.link.port)
        if heard is not None and heard.at > self._heard_at and not once:
            # A payment just spoke with the terminal: that is the liveness check, no need to ask again.
            self._heard_at = heard.at
            self._next_check = heard.at + (self.liveness if heard.answered else self.retry)
            if heard.answered:
                return [self._state("ready", self._described("answered the last exchange"))]
            return [self._state("unresponsive", heard.message)]
        if not once and now < self._next_check:
            if self._last is None or self._last.state in ("absent", "busy"):
                return [self._state("present", "plugged in; asked when idle") if self.serial
                        else self._state("unknown", "asked when idle")]
            return [self._last]
        result = self.link.probe()
        if isinstance(result, Busy):
            self._next_check = 0.0
            return [self._state("busy", result.message)]
        if isinstance(result, Ready):
            self._next_check = time.monotonic() + self.liveness
            what = "answered ENQ with ACK" if self.serial else "accepted a connection"
            return [self._state("ready", self._described(what))]
        self._next_check = time.monotonic() + self.retry
        if isinstance(result, Timeout):
            return [self._state("unresponsive", result.message)]
        if isinstance(result, LinkError) and not self.serial:
            return [self._state("absent", result.message)]
        return [self._state("error", result.message)]

    def _described(self, what: str) -> str:
        """``what``, with the adapter's name from pyserial's listing when it knows the port."""
        if not self.serial:
            return what
        if self._adapter is None:  # the listing is read when the port (re)appears, not at every check
            try:
                ports = serial_ports()
                real = os.path.realpath(self.link.port)
                self._adapter = ports.get(self.link.port) or ports.get(real) or ""
            except Exception:  # noqa: BLE001 - the listing is decoration
                self._adapter = ""
        return f"{what} ({self._adapter})" if self._adapter else what

    def wake(self) -> None:
        pass

    def close(self) -> None:
        pass


# Every kind of device the config asks for (the readers aside: see from_config): a factory takes the config
# and the loop's timing (interval=, liveness=) and gives a Probe, or None when that device is not configured.
# The printer joins with one line here: its probe's ``from_config``.
PROBES: list[Callable[..., Probe | None]] = [
    TpeProbe.from_config,
]


# -- the registry --------------------------------------------------------------------------------------------

Subscriber = Callable[[DeviceState], None]


class DeviceRegistry:
    """The devices of this counter and their states; see the module docstring."""

    def __init__(self, probes: Iterable[Probe] = ()) -> None:
        self._probes: list[Probe] = []
        self._states: dict[int, list[DeviceState]] = {}  # id(probe) -> its devices, last poll
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False  # start() was called and stop() not yet: a probe added now gets its loop
        self.polls = 0
        for p in probes:
            self.add(p)

    @classmethod
    def from_config(cls, cfg: Config, *, readers: bool = True, interval: float = DEFAULT_INTERVAL,
                    liveness: float = DEFAULT_LIVENESS) -> DeviceRegistry:
        """The readers (unless ``readers=False``: a counter without card reading), the TPE when tpe.port is
        set, and every kind in ``PROBES``."""
        reg = cls([ReaderProbe.from_config(cfg)] if readers else [])
        for factory in PROBES:
            probe = factory(cfg, interval=interval, liveness=liveness)
            if probe is not None:
                reg.add(probe)
        return reg

    def add(self, probe: Probe) -> Probe:
        """One more device kind; its loop starts at once if the registry runs."""
        with self._lock:
            self._probes.append(probe)
            self._states[id(probe)] = [DeviceState(probe.kind, getattr(probe, "name", probe.kind), "unknown")]
            running = self._started and not self._stop.is_set()
        if running:
            self._spawn(probe)
        return probe

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """``fn(state)`` on every change, from the probe's thread (the UI posts a message from it). Returns
        the unsubscribe function."""
        with self._lock:
            self._subscribers.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._subscribers:
                    self._subscribers.remove(fn)

        return unsubscribe

    # -- reading -------------------------------------------------------------------------------------------

    def snapshot(self) -> list[DeviceState]:
        with self._lock:
            return [st for p in self._probes for st in self._states.get(id(p), [])]

    def states(self, kind: str) -> list[DeviceState]:
        return [st for st in self.snapshot() if st.kind == kind]

    def summary(self) -> dict[str, DeviceState]:
        """One state per kind, the one a cashier needs to see first (a card present, then busy, ready...)."""
        out: dict[str, DeviceState] = {}
        for st in self.snapshot():
            best = out.get(st.kind)
            if best is None or _rank(st.state) < _rank(best.state):
                out[st.kind] = st
        return out

    def heartbeat(self) -> list[dict[str, str]]:
        """The heartbeat's ``devices``: ``[{"kind", "name", "state"}]`` as billing API 1.1 bounds them."""
        return [{"kind": HEARTBEAT_KINDS.get(st.kind, st.kind)[:40], "name": st.name[:MAX_TEXT],
                 "state": st.state[:MAX_TEXT]} for st in self.snapshot()][:MAX_HEARTBEAT_DEVICES]

    # -- probing -------------------------------------------------------------------------------------------

    def refresh(self) -> list[DeviceState]:
        """Every probe once, now, in this thread: doctor and `guichet devices`. While the loops run, they
        own the probes (a PC/SC context is one thread's): the latest states, then."""
        with self._lock:
            probes = [] if self.running else list(self._probes)
        for p in probes:
            self._poll_once(p, threading.Event(), once=True)
            _close(p)
        return self.snapshot()

    def _poll_once(self, probe: Probe, stop: threading.Event, once: bool = False) -> bool:
        """One poll, caught: False when it raised (reported as state "error")."""
        ok = True
        try:
            states = probe.poll(stop, once=once)
        except Exception as e:  # noqa: BLE001 - a probe's failure is its device's state, never the loop's end
            log.warning("device probe %s failed: %s", probe.kind, e)
            states = [DeviceState(probe.kind, getattr(probe, "name", probe.kind), "error",
                                  f"{type(e).__name__}: {e}".splitlines()[0][:MAX_TEXT])]
            ok = False
        self._update(probe, states)
        return ok

    def _update(self, probe: Probe, states: list[DeviceState]) -> None:
        with self._lock:
            self.polls += 1
            old = {(st.kind, st.name): st for st in self._states.get(id(probe), [])}
            new = {(st.kind, st.name): st for st in states}
            changed = [st for key, st in new.items() if key not in old or old[key] != st]
            # A device no longer reported (a reader unplugged) is announced absent once, then forgotten.
            gone = [replace(st, state="absent", detail="no longer seen", since=datetime.now(UTC))
                    for key, st in old.items() if key not in new and st.state != "unknown"]
            kept = [old[(st.kind, st.name)] if (st.kind, st.name) in old and old[(st.kind, st.name)] == st else st
                    for st in states]
            self._states[id(probe)] = kept
            subscribers = list(self._subscribers)
        for st in [*changed, *gone]:
            log.info("device %s %s: %s%s", st.kind, st.name, st.state, f" ({st.detail})" if st.detail else "")
            for fn in subscribers:
                try:
                    fn(st)
                except Exception:  # a broken subscriber must not stop the probes
                    log.exception("device subscriber failed on %s %s", st.kind, st.name)

    def start(self) -> DeviceRegistry:
        """One daemon thread per probe; returns self."""
        self._stop.clear()
        with self._lock:
            probes = list(self._probes)
            self._started = True
        for p in probes:
            self._spawn(p)
        return self

    def _spawn(self, probe: Probe) -> None:
        t = threading.Thread(target=self._run, args=(probe,), name=f"device-{probe.kind}", daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def _run(self, probe: Probe) -> None:
        try:
            while not self._stop.is_set():
                ok = self._poll_once(probe, self._stop)
                self._stop.wait(probe.interval if ok else max(probe.interval, ERROR_WAIT))
        finally:
            _close(probe)  # in its own thread: a PC/SC context belongs to the thread that made it

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loops: each ends within its probe's bound and closes its probe. Waits up to ``timeout``
        (0 from the UI thread: the loops are daemons and end by themselves)."""
        self._stop.set()
        with self._lock:
            probes, threads = list(self._probes), list(self._threads)
            self._started = False
        for p in probes:
            try:
                p.wake()
            except Exception:  # noqa: BLE001, S110 - nothing to wake
                pass
        end = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, end - time.monotonic()))
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def __enter__(self) -> DeviceRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[DeviceState]:
        return iter(self.snapshot())


def _close(probe: Probe) -> None:
    try:
        probe.close()
    except Exception:  # noqa: BLE001 - closing must not mask the caller's exit
        log.exception("closing the %s probe", probe.kind)


def _rank(state: str) -> int:
    return STATES.index(state) if state in STATES else len(STATES)
