"""The headless agent that systemd runs (`guichet run --headless`): uploads, bill cache, heartbeats.

    >>> import tempfile, config
    >>> from agent.notify import Notifier
    >>> tmp = tempfile.TemporaryDirectory()
    >>> cfg = config.validate({"terminal": {"id": "ORAN-07-G1", "agency_id": "ORAN-07"},
    ...                        "server": {"url": "http://127.0.0.1:9/", "token": "t"}, "state": {"dir": tmp.name}})
    >>> agent = Agent(cfg, Notifier(None), devices=lambda: [])  # main(): Notifier.from_env(), the devices probed
    >>> agent.start()                  # upload lock, journal open + recovered, jobs registered, then READY=1
    >>> agent.status_line()
    'starting; 0 unsent'
    >>> agent.step(), agent.step()     # one job per step: the upload (nothing queued), the bill feed (no server)
    (True, True)
    >>> agent.status_line()
    'offline since ... (billing server unreachable (127.0.0.1:9): connection refused), retry in ... s; 0 unsent'
    >>> agent.stop.set()               # what SIGTERM/SIGINT do (install_signal_handlers)
    >>> agent.run()                    # the loop ends after its step; STOPPING=1
    >>> agent.close(); tmp.cleanup()   # journal closed cleanly, upload lock released

The jobs (upload, bill refresh, heartbeat, and whatever the composition root registers: `jobs=`) run in
the one scheduler (agent/scheduler.py), in the main thread, one step at a time (one upload batch, one page
of the bill feed, one heartbeat, one receipt sent or printed). This module adds only what systemd needs:
WATCHDOG=1 between steps and while it waits, so a step that hangs stops the pings and systemd restarts the
agent (WatchdogSec= must exceed the longest step: STEP_SLICE + 2 x server.timeout + 3 s); STATUS= says
whether the billing server answers and what waits in the queue; the signals.

SIGTERM/SIGINT only set a flag: the current step finishes (a journal write is one SQLite transaction, never
cut in half), then STOPPING=1, the journal is closed and the process exits 0.

Test-only: ``GUICHET_TEST_HANG_AFTER=N`` makes the loop hang after N steps, as a worker stuck on a dead
socket would, so tests can see the watchdog pings stop. Never set it in production.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from agent.ages import age_text
from agent.billing import BillingClient
from agent.bills import BillCache
from agent.context import AgentContext
from agent.errors import AlreadyRunning, JournalDamaged, JournalError
from agent.journal import Journal
from agent.locks import UploadLock
from agent.notify import Notifier
from agent.scheduler import Job, JobParts, Registration, Scheduler, one_line
from agent.sync import sync_jobs
from config import Config
from config.money import format_amount

log = logging.getLogger("guichet.service")

HANG_ENV = "GUICHET_TEST_HANG_AFTER"
MAX_WAIT_SLICE = 1.0  # seconds: how long the loop sleeps at most before looking at stop/watchdog again


class Agent:
    """The headless agent. Not thread-safe: start(), run() and close() belong to one thread.

    `jobs`: the registrations of its periodic jobs (default: upload, bill refresh, heartbeat); `devices`:
    the heartbeat's device list (main(): the device registry's; none when not given).
    """

    def __init__(self, config: Config, notifier: Notifier | None = None, hang_after: int | None = None, *,
                 jobs: Sequence[Registration] | None = None,
                 devices: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self.config = config
        self.notifier = notifier if notifier is not None else Notifier.from_env()
        if hang_after is None and os.environ.get(HANG_ENV, "").isdigit():
            hang_after = int(os.environ[HANG_ENV])
        self.hang_after = hang_after
        self.registrations: list[Registration] = list(jobs) if jobs is not None else [sync_jobs]
        self.devices_source = devices or (lambda: [])
        self.stop = threading.Event()
        self.stopped_by: str | None = None  # the signal that asked the loop to stop
        self.context: AgentContext | None = None
        self.journal: Journal | None = None
        self.bills: BillCache | None = None
        self.client: BillingClient | None = None
        self.scheduler: Scheduler | None = None
        self.lock: UploadLock | None = None
        self.parts: JobParts | None = None
        self.devices: list[dict[str, Any]] = []
        self.steps = 0
        self._status = ""

    # -- start ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Take the upload lock, open the journal (recovered when no payment taker runs), probe devices,
        register the jobs; then READY=1.

        Raises JournalError or AlreadyRunning with a one-line reason (the caller exits 1).
        """
        cfg = self.config
        self.notifier.status("opening the journal")
        self.lock = UploadLock(cfg.state.dir)
        self.lock.acquire()
        try:
            # The lead's context opens journal and cache; no payment method: this process takes no payment.
            self.context = AgentContext.open(cfg, methods=[])
            # Settles what a crashed predecessor left mid-step, unless a UI or `guichet pay` holds the counter.
            for p in self.context.recover_if_idle():
                log.warning("payment %s left mid-step by the last run is now %s", p.receipt_number, p.state,
                            extra={"payment_id": p.payment_id, "state": str(p.state)})
        except BaseException:
            self.close()
            raise
        self.journal, self.bills, self.client = self.context.journal, self.context.bills, self.context.client
        self.devices = self.devices_source()
        self.scheduler = Scheduler()
        self.parts = parts = JobParts(cfg, self.journal, self.client, self.bills, devices=self.devices_source)
        for register in self.registrations:
            register(self.scheduler, parts)
        stats = self.journal.queue_stats()
        log.info("started: journal %s, %d unsent, %d in doubt; devices: %s", self.journal.path, stats.count,
                 stats.unknown, ", ".join(f"{d['name']} ({d['state']})" for d in self.devices) or "none")
        self._status = self.status_line()
        self.notifier.ready(status=self._status)
        if self.notifier.ping_interval is not None:
            self.notifier.watchdog()

    # -- status --------------------------------------------------------------------------------------

    def status_line(self) -> str:
        """``online; 3 unsent (12345.00 DZD), oldest 4 min; 1 in doubt`` — what systemctl status shows."""
        assert self.journal is not None and self.scheduler is not None
        link = self.scheduler.status()
        if link.online is None:
            text = "starting"
        elif link.online:
            text = "online"
        else:
            since = link.since.strftime("%H:%M") if link.since else "?"
            text = f"offline since {since} ({link.last_error})"
            retry = self.scheduler.retry_in()
            if retry is not None:
                text += f", retry in {retry:.0f} s"
        stats = self.journal.queue_stats()
        queue = f"{stats.count} unsent"
        if stats.total:
            queue += " (" + ", ".join(format_amount(v, c, with_code=True) for c, v in sorted(stats.total.items())) + ")"
        age = stats.oldest_age()
        if age is not None:
            queue += f", oldest {age_text(age)}"
        parts = [text, queue]
        upload = self.scheduler.job("upload")
        if link.online and upload is not None and upload.last_error:
            parts.append(f"upload refused ({upload.last_error})")
        if stats.unknown:
            parts.append(f"{stats.unknown} in doubt")
        if stats.needs_attention - stats.unknown > 0:
            parts.append(f"{stats.needs_attention - stats.unknown} need attention")
        return "; ".join(parts)

    def _publish_status(self) -> None:
        line = self.status_line()
        if line != self._status:
            self._status = line
            self.notifier.status(line)

    def step(self) -> bool:
        """Run the one job that is most overdue; False when nothing was due."""
        assert self.scheduler is not None
        return self.scheduler.step() is not None

    # -- the loop ------------------------------------------------------------------------------------

    def _ping(self) -> None:
        if self.notifier.watchdog_due():
            self.notifier.watchdog()

    def _test_hang(self) -> None:
        log.warning("%s=%s: hanging on purpose (test only)", HANG_ENV, self.hang_after)
        threading.Event().wait(3600)

    def run(self) -> None:
        """The scheduler's loop until stop is set; then STOPPING=1. JournalDamaged propagates (the caller exits
        1); any other JournalError (busy, disk full) is logged and that job backs off."""
        assert self.scheduler is not None

        def after(job: Job | None) -> None:
            if job is not None:
                self.steps += 1
                if self.hang_after is not None and self.steps >= self.hang_after:
                    self._test_hang()
            self._ping()
            try:
                self._publish_status()
            except JournalDamaged:
                raise
            except Exception as e:  # noqa: BLE001 - STATUS= is a courtesy; the uploads go on
                log.warning("status: %s", one_line(e))

        # Idle until the next job is due, waking often enough for the watchdog and for stop.
        slice_ = MAX_WAIT_SLICE
        if self.notifier.ping_interval is not None:
            slice_ = min(slice_, self.notifier.ping_interval / 2)
        self.scheduler.run(self.stop, on_step=after, max_wait=slice_)
        self.notifier.stopping(status="stopping: " + self._status)
        log.info("stopping%s", f" ({self.stopped_by} received)" if self.stopped_by else "")

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        # A signal handler runs between two bytecodes of the main thread, maybe in the middle of a write to
        # stderr: logging here can raise ("reentrant call") before the stop is set, and the SIGTERM is lost.
        # Set the event only; the loop says why it stops.
        self.stop.set()
        if signum is not None and self.stopped_by is None:
            self.stopped_by = signal.Signals(signum).name

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def close(self) -> None:
        if self.parts is not None:  # what the registrations opened (the receipts' stores), before the journal
            parts, self.parts = self.parts, None
            try:
                parts.closing.close()
            except Exception as e:  # noqa: BLE001 - the journal must still be closed, the lock released
                log.warning("closing the jobs' stores: %s", one_line(e))
        if self.context is not None:
            self.context.close()
        self.context, self.client, self.bills, self.journal = None, None, None, None
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        self.notifier.close()


def main(config: Config, *, jobs: Sequence[Registration] | None = None,
         devices: Callable[[], list[dict[str, Any]]] | None = None) -> int:
    """`guichet run --headless`: 0 after a clean stop, 1 when the journal cannot be used or the agent is
    already running. Errors are one line on stderr (journald). `jobs`, `devices`: as Agent takes them."""
    registry = None
    if devices is None:  # the one device registry: its presence loops feed the heartbeat (docs/devices.md)
        from agent.devices import DeviceRegistry

        registry = DeviceRegistry.from_config(config).start()
        devices = registry.heartbeat
    agent = Agent(config, jobs=jobs, devices=devices)
    agent.install_signal_handlers()
    try:
        try:
            agent.start()
        except (JournalError, AlreadyRunning) as e:
            log.error("%s", e)
            agent.notifier.status(f"failed: {e}")
            return 1
        try:
            agent.run()
        except JournalError as e:
            log.error("%s", e)
            agent.notifier.status(f"failed: {e}")
            return 1
        finally:
            agent.close()
    finally:
        if registry is not None:
            registry.stop()
    log.info("stopped cleanly")
    return 0

