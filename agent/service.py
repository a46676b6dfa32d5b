"""The headless agent that systemd runs (`guichet run --headless`): uploads, bill cache, heartbeats.

    >>> from agent.service import Agent
    >>> agent = Agent(config)          # Notifier.from_env() by default
    >>> agent.start()                  # journal open + recovered, devices probed, then READY=1
    >>> agent.run()                    # until SIGTERM/SIGINT (install_signal_handlers) or agent.stop.set()
    >>> agent.close()                  # STOPPING=1 was sent by run(); journal closed cleanly

One loop in the main thread does one step at a time (one upload batch, one page of the bill feed, or one
heartbeat) and sends WATCHDOG=1 between steps and while it waits, so a step that hangs stops the pings and
systemd restarts the agent (WatchdogSec= must exceed the longest step: 2 x server.timeout + 3 s).
STATUS= says whether the billing server answers and what waits in the queue.

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
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType

from agent.ages import age_text
from agent.billing import BillingClient
from agent.bills import BillCache
from agent.context import AgentContext
from agent.errors import AlreadyRunning, ApiError, BadAnswer, JournalDamaged, JournalError, ServerUnreachable
from agent.journal import Journal
from agent.locks import UploadLock
from agent.notify import Notifier
from agent.sync import Backoff, SyncWorker, one_line
from config import Config
from config.money import format_amount

log = logging.getLogger("guichet.service")

HANG_ENV = "GUICHET_TEST_HANG_AFTER"
FEED_PAGE = 1000  # bills per page of the delta feed: one page per step keeps steps short
MAX_WAIT_SLICE = 1.0  # seconds: how long the loop sleeps at most before looking at stop/watchdog again


@dataclass
class Schedule:
    upload: float = 0.0
    bills: float = 0.0
    heartbeat: float = 0.0

    def next_due(self) -> float:
        return min(self.upload, self.bills, self.heartbeat)


def probe_devices(config: Config, timeout: float = 3.0) -> list[dict[str, str]]:
    """What the heartbeat reports: PC/SC readers and the TPE port. Cheap: no card, no terminal exchange."""
    from agent.doctor import _bounded, _list_readers

    devices: list[dict[str, str]] = []
    try:
        names = _bounded(_list_readers, timeout)
        devices += [{"kind": "pcsc", "name": n, "state": "ready"} for n in names]
        if not names:
            devices.append({"kind": "pcsc", "name": "pcscd", "state": "no_reader"})
    except Exception as e:  # noqa: BLE001 - reported, never fatal: the agent still uploads
        log.warning("PC/SC unavailable: %s", e)
        devices.append({"kind": "pcsc", "name": "pcscd", "state": "unavailable"})
    port = config.tpe.port
    if port:
        present = "://" in port or Path(port).exists()
        devices.append({"kind": "tpe", "name": port, "state": "present" if present else "missing"})
    return devices


class Agent:
    """The headless agent. Not thread-safe: start(), run() and close() belong to one thread."""

    def __init__(self, config: Config, notifier: Notifier | None = None, hang_after: int | None = None) -> None:
        self.config = config
        self.notifier = notifier if notifier is not None else Notifier.from_env()
        if hang_after is None and os.environ.get(HANG_ENV, "").isdigit():
            hang_after = int(os.environ[HANG_ENV])
        self.hang_after = hang_after
        self.stop = threading.Event()
        self.stopped_by: str | None = None  # the signal that asked the loop to stop
        self.context: AgentContext | None = None
        self.journal: Journal | None = None
        self.bills: BillCache | None = None
        self.client: BillingClient | None = None
        self.worker: SyncWorker | None = None
        self.lock: UploadLock | None = None
        self.devices: list[dict[str, str]] = []
        self.steps = 0
        self.schedule = Schedule()
        self.backoff = Backoff()
        self.upload_backoff = Backoff()  # the server answers but refuses the uploads: only they wait
        self.journal_backoff = Backoff()  # a step the journal failed (busy, disk full): that task waits
        self.upload_error: str | None = None
        self.online: bool | None = None
        self.offline_since: datetime | None = None
        self.last_error: str | None = None
        self.failures = 0  # steps that raised (counted, logged, backed off from; the loop goes on)
        self.retry_at: float | None = None
        self._status = ""

    # -- start ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Take the upload lock, open the journal (recovered when no payment taker runs), probe devices;
        then READY=1.

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
        self.devices = probe_devices(cfg)
        self.worker = SyncWorker(cfg, self.journal, self.client, self.bills, devices=lambda: self.devices)
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
        assert self.journal is not None
        if self.online is None:
            link = "starting"
        elif self.online:
            link = "online"
        else:
            since = self.offline_since.strftime("%H:%M") if self.offline_since else "?"
            link = f"offline since {since} ({self.last_error})"
            if self.retry_at is not None:
                link += f", retry in {max(0.0, self.retry_at - time.monotonic()):.0f} s"
        stats = self.journal.queue_stats()
        queue = f"{stats.count} unsent"
        if stats.total:
            queue += " (" + ", ".join(format_amount(v, c, with_code=True) for c, v in sorted(stats.total.items())) + ")"
        age = stats.oldest_age()
        if age is not None:
            queue += f", oldest {age_text(age)}"
        parts = [link, queue]
        if self.online and self.upload_error:
            parts.append(f"upload refused ({self.upload_error})")
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

    # -- link bookkeeping ----------------------------------------------------------------------------

    def _link_up(self) -> None:
        if self.online is not True:
            log.info("billing server reachable")
        self.online, self.offline_since, self.last_error, self.retry_at = True, None, None, None
        self.backoff.reset()

    def _link_down(self, error: str, retry_after: float | None = None) -> None:
        if self.online is not False:
            log.warning("billing server unreachable: %s", error)
            self.offline_since = datetime.now().astimezone()
        self.online, self.last_error = False, error
        delay = self.backoff.next(retry_after)
        now = time.monotonic()
        self.retry_at = now + delay
        # Everything that talks to the server waits for the retry time.
        self.schedule.upload = max(self.schedule.upload, self.retry_at)
        self.schedule.bills = max(self.schedule.bills, self.retry_at)
        self.schedule.heartbeat = max(self.schedule.heartbeat, self.retry_at)

    # -- steps ---------------------------------------------------------------------------------------

    def _upload(self) -> None:
        assert self.worker is not None
        # One request per step (the watchdog); a round that needs more (a refused batch sent one payment at a
        # time) goes on at the next step.
        report = self.worker.run_once(max_batches=1)
        now = time.monotonic()
        if report.uploaded or report.duplicates or report.rejected:
            log.info("uploaded %d, duplicates %d, rejected %d, %d left", report.uploaded, report.duplicates,
                     report.rejected, report.remaining)
        if report.error is not None:
            self.upload_error = report.error
            if self.worker.status().online is True:
                # The server answered but refuses what we send (payments kept, or the token): the link is up,
                # only the uploads back off, and the status says why nothing goes up.
                self._link_up()
                log.error("upload: %s", report.error)
                self.schedule.upload = now + self.upload_backoff.next(report.retry_after)
                return
            self._link_down(report.error, report.retry_after)
            return
        self.upload_error = None
        self.upload_backoff.reset()
        if report.uploaded or report.duplicates or report.rejected:
            self._link_up()
        # More waiting: next batch at once; otherwise the idle interval.
        more = report.pending or (report.remaining and (report.uploaded or report.duplicates))
        self.schedule.upload = now if more else now + self.config.sync.interval

    def _refresh_bills(self) -> None:
        assert self.bills is not None and self.client is not None
        now = time.monotonic()
        try:
            changed = self.bills.refresh(self.client, self.config.terminal.agency_id, limit=FEED_PAGE, max_pages=1)
        except ServerUnreachable as e:
            if isinstance(e, BadAnswer):
                self.failures += 1
                log.warning("bill refresh: %s", e)
            self._link_down(str(e), e.retry_after)
            return
        except ApiError as e:
            log.error("bill cache refresh refused: %s", e)
            self.schedule.bills = now + self.config.sync.bill_refresh
            return
        self._link_up()
        # A full page means the feed is not caught up: fetch the next page at the next step.
        self.schedule.bills = now if changed >= FEED_PAGE else now + self.config.sync.bill_refresh
        if changed:
            log.info("bill cache: %d bills changed, %d cached", changed, self.bills.count())

    def _heartbeat(self) -> None:
        assert self.worker is not None
        now = time.monotonic()
        self.devices = probe_devices(self.config)
        answer = self.worker.heartbeat()
        link = self.worker.status()
        if answer is None and link.online is False:
            self._link_down(link.last_error or "heartbeat failed")
            return
        if answer is not None:
            self._link_up()
        self.schedule.heartbeat = now + self.config.sync.heartbeat

    def step(self) -> bool:
        """Run the one task that is most overdue; False when nothing was due."""
        now = time.monotonic()
        due = [(t, name) for name, t in vars(self.schedule).items() if t <= now]
        if not due:
            return False
        _, name = min(due)
        try:
            {"upload": self._upload, "bills": self._refresh_bills, "heartbeat": self._heartbeat}[name]()
        except JournalDamaged:
            raise
        except JournalError as e:
            # Busy (a UI or a supervisor's command holds a write), a full disk, an I/O error: the journal may
            # be fine in a moment, and restarting would not make it so. This task backs off; the agent goes on.
            self.failures += 1
            log.error("%s step: %s", name, one_line(e))
            setattr(self.schedule, name, now + self.journal_backoff.next())
            self.steps += 1
            return True
        except Exception as e:  # noqa: BLE001 - a step's failure (even a bug) is reported, never the end of the agent
            self.failures += 1
            text = one_line(e)
            log.error("%s step failed: %s", name, text)
            self._link_down(text)
        self.journal_backoff.reset()
        self.steps += 1
        return True

    # -- the loop ------------------------------------------------------------------------------------

    def _ping(self) -> None:
        if self.notifier.watchdog_due():
            self.notifier.watchdog()

    def _test_hang(self) -> None:
        log.warning("%s=%s: hanging on purpose (test only)", HANG_ENV, self.hang_after)
        threading.Event().wait(3600)

    def run(self) -> None:
        """Steps until stop is set; then STOPPING=1. JournalDamaged propagates (the caller exits 1); any other
        JournalError (busy, disk full) is logged and the step's task backs off."""
        while not self.stop.is_set():
            worked = self.step()
            if self.hang_after is not None and self.steps >= self.hang_after:
                self._test_hang()
            self._ping()
            try:
                self._publish_status()
            except JournalDamaged:
                raise
            except Exception as e:  # noqa: BLE001 - STATUS= is a courtesy; the uploads go on
                log.warning("status: %s", one_line(e))
            if worked:
                continue
            # Idle until the next task is due, waking often enough for the watchdog and for stop.
            slice_ = MAX_WAIT_SLICE
            if self.notifier.ping_interval is not None:
                slice_ = min(slice_, self.notifier.ping_interval / 2)
            wait = max(0.0, min(self.schedule.next_due() - time.monotonic(), slice_))
            self.stop.wait(wait)
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
        if self.context is not None:
            self.context.close()
        self.context, self.client, self.bills, self.journal = None, None, None, None
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        self.notifier.close()


def main(config: Config) -> int:
    """`guichet run --headless`: 0 after a clean stop, 1 when the journal cannot be used or the agent is
    already running. Errors are one line on stderr (journald)."""
    agent = Agent(config)
    agent.install_signal_handlers()
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
    log.info("stopped cleanly")
    return 0

