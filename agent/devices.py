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

import collections
import contextlib
import errno
import logging
import os
import queue
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
ERROR_WAIT = 1.0  # seconds a loop waits after its probe raised (doubling while it keeps raising) ...
MAX_BACKOFF = 60.0  # ... up to this
REFRESH_LIMIT = 8.0  # seconds each probe of a one-shot look (doctor, `guichet devices`) gets
MAX_PENDING = 1000  # state changes waiting for a slow subscriber; the oldest are dropped past it
# What the status bar shows of a kind with several devices: a card first (the cashier acts on it), a payment,
# then whatever is wrong, then fine.
DISPLAY_ORDER = ("card_present", "busy", "error", "unavailable", "unresponsive", "absent", "present", "ready",
                 "unknown")


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


class _PcscThread:
    """The one thread that owns a reader probe's ``pcsc.Monitor`` (a PC/SC context is one thread's) and runs
    its polls; the probe's loop waits for each with a deadline. pcsc-lite's client waits for pcscd without a
    limit: a call that overruns abandons this thread and its context for good (a new one is made once the
    stuck call returns, never two stuck at once)."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[tuple[Callable[[], Any], dict[str, Any], threading.Event] | None] = \
            queue.SimpleQueue()
        self.monitor: Any = None
        self.abandoned = False
        self.thread = threading.Thread(target=self._run, name="device-reader-pcsc", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            fn, box, done = job
            try:
                box["value"] = fn()
            except BaseException as e:  # noqa: BLE001 - handed back to the probe's loop
                box["error"] = e
            done.set()
            if self.abandoned:
                break
        mon, self.monitor = self.monitor, None
        if mon is not None:
            with contextlib.suppress(Exception):
                mon.close()

    def poll(self, wait: float) -> Any:
        """In this thread: the monitor (made on first use) polled for ``wait`` s."""
        from drivers import pcsc

        if self.monitor is None:
            self.monitor = pcsc.Monitor()
        return self.monitor.poll(wait)

    def call(self, fn: Callable[[], Any], limit: float) -> Any:
        from drivers import pcsc

        box: dict[str, Any] = {}
        done = threading.Event()
        self.jobs.put((fn, box, done))
        if not done.wait(limit):
            self.abandoned = True
            self.jobs.put(None)
            raise pcsc.NotAnswering(f"pcscd not answering (no reply within {limit:g} s)")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def cancel(self) -> None:
        mon = self.monitor
        if mon is not None:  # SCardCancel talks to pcscd too: never from the caller's thread
            threading.Thread(target=mon.cancel, name="device-reader-cancel", daemon=True).start()

    def close(self) -> None:
        self.jobs.put(None)


class ReaderProbe:
    """PC/SC readers, from pcscd's events: a poll waits up to ``wait`` s for a reader or card to change. Every
    PC/SC call is bounded (``wait`` + ``pcsc.ANSWER_LIMIT``): a wedged pcscd is "unavailable: pcscd not
    answering", and the loop goes on."""

    kind = "reader"
    interval = 0.0  # poll itself waits on pcscd

    def __init__(self, wanted: str = "", *, wait: float = 1.0) -> None:
        self.wanted = wanted  # cards.reader: readers whose name holds it ("" = any)
        self.wait = wait
        self._pcsc: _PcscThread | None = None
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
        worker = self._pcsc
        if worker is not None and worker.abandoned:
            if worker.thread.is_alive():  # its call to pcscd still hangs: do not pile up another
                stop.wait(max(wait, ERROR_WAIT))
                return [DeviceState(self.kind, "pcscd", "unavailable", "pcscd not answering")]
            worker = self._pcsc = None
        if worker is None:
            worker = self._pcsc = _PcscThread()
            self._cards.clear()
        try:
            events = worker.call(lambda: worker.poll(wait), wait + pcsc.ANSWER_LIMIT)
        except pcsc.NotAnswering as e:
            return [DeviceState(self.kind, "pcscd", "unavailable", str(e))]
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
        worker = self._pcsc
        if worker is not None:
            worker.cancel()

    def close(self) -> None:
        worker, self._pcsc = self._pcsc, None
        if worker is not None and not worker.abandoned:
            worker.close()  # its thread closes the context it made
        elif worker is not None:
            self._pcsc = worker  # still stuck in pcscd: remembered, so no second thread joins it


# -- the TPE -------------------------------------------------------------------------------------------------


def serial_ports() -> dict[str, str]:
    """pyserial's port listing: device -> description. ``include_links`` adds the symlinks pyserial finds
    among /dev's top-level entries (not /dev/serial/by-id: ``TpeProbe`` looks a link up by its real path)."""
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
        from drivers.concert.base import Busy, LinkError, Ready, Timeout

        now = time.monotonic()
        if self.serial and not os.path.exists(self.link.port):
            self._next_check = 0.0  # plugged in again: checked at once
            self._adapter = None  # maybe another adapter then
            return [self._state("absent", _missing(self.link.port))]
        if self.link.busy:
            return [self._state("busy", "a payment is in progress")]
        heard = self.link.last_heard()
        if heard is not None and heard.at > self._heard_at and not once:
            # An exchange (a payment, another program's check) just spoke with the terminal: that is the
            # liveness check. After an unknown outcome the terminal may still call back with its answer: no
            # ENQ over it until that time has passed.
            self._heard_at = heard.at
            quiet = self.liveness if heard.answered else self.retry
            self._next_check = max(heard.at + quiet, heard.answer_until)
            if heard.answered:
                return [self._state("ready", self._described("answered the last exchange"))]
            return [self._state("unresponsive", heard.message)]
        if heard is not None and now < heard.answer_until:
            # Whoever paid (this process or another, before this probe existed): the terminal may still call
            # back with the answer of that payment. Its word stands; no ENQ over it.
            self._next_check = max(self._next_check, heard.answer_until)
            return [self._state("ready" if heard.answered else "unresponsive",
                                "answered the last exchange; not asked while a payment's answer may still come"
                                if heard.answered else heard.message)]
        if not once and now < self._next_check:
            if self._last is None or self._last.state in ("absent", "busy"):
                return [self._state("present", "plugged in; asked when idle") if self.serial
                        else self._state("unknown", "asked when idle")]
            return [self._last]
        result = self.link.probe()
        self._heard_at = time.monotonic()  # our own probe is not news at the next poll
        if isinstance(result, Busy):
            # Another exchange holds the terminal (another program's payment or probe): its word reaches us
            # through last_heard; ask again ``retry`` s later, keeping what we knew (no flapping to "busy").
            self._next_check = time.monotonic() + self.retry
            if self._last is not None and self._last.state not in ("present", "unknown", "absent"):
                return [self._last]
            return [self._state("busy", result.message)]
        if isinstance(result, Ready):
            self._next_check = time.monotonic() + self.liveness
            calling = result.message.startswith("the terminal is there")
            what = (result.message if calling else "answered ENQ with ACK") if self.serial else "accepted a connection"
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


def _missing(path: str) -> str:
    """Why a serial path cannot be opened, in one line: gone (unplugged), or a link that leads nowhere."""
    if os.path.islink(path):
        try:
            os.stat(path)
        except OSError as e:
            if e.errno == errno.ELOOP:
                return f"{path} is a symlink loop (fix tpe.port: use /dev/serial/by-id/...)"
    return f"{path} does not exist (terminal cable or adapter unplugged)"


# Every kind of device the config asks for (the readers aside: see from_config): a factory takes the config
# and the loop's timing (interval=, liveness=) and gives a Probe, or None when that device is not configured.
# The printer joins with one line here: its probe's ``from_config``.
def _printer_probe(cfg: Config, **kw: Any) -> Probe | None:
    from agent.printing import PrinterProbe  # deferred: agent.printing builds on this module's Probe

    try:
        return PrinterProbe.from_config(cfg, **kw)
    except Exception as e:  # noqa: BLE001 - a printer that cannot even be named costs its probe, not the registry
        log.error("printer not watched: %s", e)
        return None


PROBES: list[Callable[..., Probe | None]] = [
    TpeProbe.from_config,
    _printer_probe,
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
        self._stop = threading.Event()  # this run's; each start() makes a new one
        self._threads: dict[int, threading.Thread] = {}  # id(probe) -> its loop (the latest)
        self._started = False  # start() was called and stop() not yet: a probe added now gets its loop
        self._changes: collections.deque[DeviceState] = collections.deque(maxlen=MAX_PENDING)
        self._pending = threading.Condition(self._lock)
        self._dispatcher: threading.Thread | None = None
        self.polls = 0
        for p in probes:
            self.add(p)

    @classmethod
    def from_config(cls, cfg: Config, *, readers: bool | None = None, interval: float = DEFAULT_INTERVAL,
                    liveness: float = DEFAULT_LIVENESS) -> DeviceRegistry:
        """The readers (when ``readers``; default: when card_reader is one of payments.methods), the TPE when
        tpe.port is set, and every kind in ``PROBES``."""
        if readers is None:
            readers = "card_reader" in cfg.payments.methods
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
            running, stop = self._started and not self._stop.is_set(), self._stop
        if running:
            self._spawn(probe, stop)
        return probe

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """``fn(state)`` on every change. While the loops run, from one dispatcher thread of the registry (a
        subscriber that blocks delays the others' news, never a probe); from ``refresh()``, in the thread of
        the probe that changed (probes look side by side: a subscriber must be thread-safe).
        Returns the unsubscribe function."""
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
        """One state per kind, the one a cashier needs to see first: a card present, then busy, then what is
        wrong, then ready (``DISPLAY_ORDER``): a broken reader never hides behind a working one."""
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

    def refresh(self, limit: float = REFRESH_LIMIT) -> list[DeviceState]:
        """Every probe once, now, side by side, each within ``limit`` s (one that overruns is "error", the
        others still answer): doctor and `guichet devices`. While the loops run, they own the probes (a
        PC/SC context is one thread's): the latest states, then."""
        with self._lock:
            probes = [] if self.running else list(self._probes)

        def look(p: Probe) -> None:
            try:
                self._poll_once(p, threading.Event(), once=True)
            finally:
                _close(p)

        threads = [threading.Thread(target=look, args=(p,), name=f"device-{p.kind}-look", daemon=True)
                   for p in probes]
        for t in threads:
            t.start()
        end = time.monotonic() + limit
        for p, t in zip(probes, threads, strict=True):
            t.join(max(0.0, end - time.monotonic()))
            if t.is_alive():
                name = getattr(p, "name", p.kind)
                self._update(p, [DeviceState(p.kind, name, "error", f"no answer within {limit:g} s")])
        return self.snapshot()

    def _poll_once(self, probe: Probe, stop: threading.Event, once: bool = False) -> bool:
        """One poll, caught: False when it raised (reported as state "error"; logged when the error is new)."""
        ok = True
        try:
            states = probe.poll(stop, once=once)
        except Exception as e:  # noqa: BLE001 - a probe's failure is its device's state, never the loop's end
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
            queued = self._dispatcher is not None and self._dispatcher.is_alive()
            if queued:
                self._changes.extend([*changed, *gone])
                self._pending.notify()
        for st in [*changed, *gone]:  # on state change only: a probe failing the same way is not news
            level = logging.WARNING if st.state == "error" else logging.INFO
            log.log(level, "device %s %s: %s%s", st.kind, st.name, st.state, f" ({st.detail})" if st.detail else "")
        if not queued:
            _notify(subscribers, [*changed, *gone])

    def _dispatch(self, stop: threading.Event) -> None:
        while True:
            with self._lock:
                while not self._changes and not stop.is_set():
                    self._pending.wait(1.0)
                if not self._changes:
                    return
                batch = list(self._changes)
                self._changes.clear()
                subscribers = list(self._subscribers)
            _notify(subscribers, batch)

    def start(self) -> DeviceRegistry:
        """One daemon thread per probe and one that calls the subscribers; returns self. Started already:
        nothing more (never two loops on one probe); after a ``stop(timeout=0)`` each new loop first waits
        for its probe's old one to end."""
        with self._lock:
            if self._started:
                return self
            self._stop = stop = threading.Event()
            probes = list(self._probes)
            self._started = True
            self._dispatcher = threading.Thread(target=self._dispatch, args=(stop,), name="device-subscribers",
                                                daemon=True)
        self._dispatcher.start()
        for p in probes:
            self._spawn(p, stop)
        return self

    def _spawn(self, probe: Probe, stop: threading.Event) -> None:
        with self._lock:
            before = self._threads.get(id(probe))
            t = threading.Thread(target=self._run, args=(probe, stop, before), name=f"device-{probe.kind}",
                                 daemon=True)
            self._threads[id(probe)] = t
        t.start()

    def _run(self, probe: Probe, stop: threading.Event, before: threading.Thread | None) -> None:
        if before is not None:
            before.join()  # the last run's loop ends within its probe's bound; one poll at a time
        failures = 0
        try:
            while not stop.is_set():
                ok = self._poll_once(probe, stop)
                failures = 0 if ok else failures + 1
                # A probe that keeps raising is asked less and less often: 1, 2, 4 ... 60 s.
                wait = probe.interval if ok else max(probe.interval, min(ERROR_WAIT * 2 ** (failures - 1), MAX_BACKOFF))
                stop.wait(wait)
        finally:
            _close(probe)  # in its own thread: a PC/SC context belongs to the thread that made it

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loops: each ends within its probe's bound and closes its probe. Waits up to ``timeout``
        (0 from the UI thread: the loops are daemons and end by themselves)."""
        with self._lock:
            self._stop.set()
            self._pending.notify_all()
            probes, threads = list(self._probes), list(self._threads.values())
            dispatcher = self._dispatcher
            self._started = False
        for p in probes:
            try:
                p.wake()
            except Exception:  # noqa: BLE001, S110 - nothing to wake
                pass
        end = time.monotonic() + timeout
        for t in [*threads, *([dispatcher] if dispatcher else [])]:
            t.join(max(0.0, end - time.monotonic()))

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in list(self._threads.values()))

    def __enter__(self) -> DeviceRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[DeviceState]:
        return iter(self.snapshot())


def _notify(subscribers: list[Subscriber], changes: list[DeviceState]) -> None:
    for st in changes:
        for fn in subscribers:
            try:
                fn(st)
            except Exception:  # a broken subscriber must not stop the others
                log.exception("device subscriber failed on %s %s", st.kind, st.name)


def _close(probe: Probe) -> None:
    try:
        probe.close()
    except Exception:  # noqa: BLE001 - closing must not mask the caller's exit
        log.exception("closing the %s probe", probe.kind)


def _rank(state: str) -> int:
    return DISPLAY_ORDER.index(state) if state in DISPLAY_ORDER else len(DISPLAY_ORDER)
