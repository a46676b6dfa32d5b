"""Upload the outbox to the billing server, refresh the bill cache, send heartbeats: three jobs of the
agent's one scheduler (agent/scheduler.py), registered by `sync_jobs`.

    >>> import tempfile, config
    >>> from agent.journal import Journal
    >>> tmp = tempfile.TemporaryDirectory()
    >>> cfg = config.validate({"terminal": {"id": "ORAN-07-G1", "agency_id": "ORAN-07"},
    ...                        "server": {"url": "http://127.0.0.1:9/", "token": "t"}, "state": {"dir": tmp.name}})
    >>> journal = Journal.open(tmp.name, terminal_id="ORAN-07-G1", agency_id="ORAN-07")
    >>> with UploadLock(tmp.name):                   # one uploader per journal
    ...     worker = SyncWorker(cfg, journal, BillingClient(cfg))
    ...     report, delay = worker.step()            # nothing queued: no upload; the heartbeat finds no server
    >>> report.uploaded, report.remaining, report.error, delay == cfg.sync.interval
    (0, 0, None, True)
    >>> link = worker.status()
    >>> link.online, link.last_error
    (False, 'billing server unreachable (127.0.0.1:9): connection refused')
    >>> journal.close(); tmp.cleanup()

Idempotent by payment_id: a batch whose answer was lost is sent again and comes back `duplicate`.
Failures back off exponentially with full jitter (base 1 s, cap 300 s) and never wait less than the
server's Retry-After. `rejected` payments are kept for a supervisor and never retried.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent import __version__
from agent.billing import BillingClient, server_time_skew
from agent.bills import BillCache
from agent.crashpoints import crashpoint
from agent.errors import ApiError, BadAnswer, GuichetError, JournalError, ServerUnreachable
from agent.journal import Journal
from agent.locks import UploadLock  # noqa: F401  (re-exported: agent.sync.UploadLock)
from agent.scheduler import (  # noqa: F401  (Backoff, LinkStatus, one_line re-exported: agent.sync.*)
    BACKOFF_BASE,
    BACKOFF_CAP,
    Backoff,
    Job,
    JobParts,
    Link,
    LinkStatus,
    Outcome,
    Scheduler,
    is_outage,
    one_line,
)

log = logging.getLogger("guichet.sync")

FEED_PAGE = 1000  # bills per step of the bill refresh job: one page per step keeps steps short (the watchdog)
CLOCK_SKEW_WARN = 120.0
HWM_RETRY = 3600.0  # seconds before the heartbeat offers last_receipt_number again to a server that refused it
REFUSALS_BEFORE_REJECT = 3  # whole-request 4xx answers for one payment alone before it needs attention
REFUSAL_SPACING = 300.0  # seconds: refusals closer together count once (a server's bad minutes reject nothing)
# The 4xx a batch can get for what it holds (contract: bad JSON, unknown field, too many, too large). Any other
# (a 404 from a proxy, a 418...) says nothing about the payments: it is waited out, and never rejects one.
REFUSALS = frozenset({400, 409, 413, 422})
# Codes about the request, not about a payment in it: our JSON is always well formed, a payment of ours is far
# below 1 MiB, one payment is never too many. A payment refused alone with one of these is never rejected.
REQUEST_CODES = frozenset({"invalid_json", "batch_too_large", "body_too_large", "too_many_items",
                           "too_many_payments", "unauthorized", "forbidden", "too_many_requests"})


@dataclass
class SyncReport:
    uploaded: int = 0
    duplicates: int = 0
    rejected: int = 0
    remaining: int = 0
    notices: list[tuple[str, str]] = field(default_factory=list)  # (receipt_number, notice)
    error: str | None = None
    retry_after: float | None = None
    pending: bool = False  # run_once stopped at max_batches in the middle of a round: call it again now


class SyncWorker:
    """The sync jobs: upload the outbox, keep the bill cache, send heartbeats. Call from one thread.

    Its three jobs ("upload", "bills", "heartbeat") live in `scheduler`, the one given (the agent's, shared
    with the other jobs: `sync_jobs`) or one of its own (the CLI, the tests). `step()` and `run_forever()`
    drive that scheduler a round at a time; `run_once()`, `refresh_bills()` and `heartbeat()` are the
    requests themselves.
    """

    def __init__(
        self,
        config: Any,
        journal: Journal,
        client: BillingClient,
        bills: BillCache | None = None,
        devices: Callable[[], list[dict[str, Any]]] | None = None,
        rng: random.Random | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.config = config
        self.journal = journal
        self.client = client
        self.bills = bills
        self.devices = devices or (lambda: [])
        self.scheduler = scheduler or Scheduler(link=Link(Backoff(rng=rng)))
        self.link = self.scheduler.link
        # 4xx refusals of one payment sent alone, by payment_id: (times counted, monotonic time of the last)
        self._refusals: dict[str, tuple[int, float]] = {}
        self.refusal_spacing = REFUSAL_SPACING
        self.clock = time.monotonic
        # A round (the outbox once through) may span several run_once(max_batches=...) calls (the upload job
        # does one request per step): the payments of a refused batch still to send alone, the payments
        # refused alone (left for the next round), whether the server took a batch in this round.
        self._split: list[Any] = []
        self._skip: dict[str, ApiError] = {}
        self._round_took = False
        # The order (a count of answers) in which the server last took a batch (200 with results) and last
        # refused a batch of several payments: a server that refuses everything blames no payment.
        self._answers = 0
        self._last_took = -1
        self._last_multi_refusal = -1
        # A 1.0 server refuses the heartbeat's last_receipt_number: left out until this time (monotonic), then
        # tried again, so one garbage `400 unknown_field` never switches the high-water check off for good.
        self._hwm_retry_at: float | None = None
        # The upload job's steps add up to a round's report; the last whole round's is kept for step() and
        # run_forever()'s callback.
        self._round = SyncReport()
        self.last_round: SyncReport | None = None
        self._outage: ServerUnreachable | None = None  # the last request's, within one job step
        sync = config.sync
        # The money's upload never waits on a retry time another job's failure set (own_pace).
        self.upload_job = self.scheduler.add("upload", self._upload_step, sync.interval, own_pace=True)
        if bills is not None:
            self.scheduler.add("bills", self._bills_step, sync.bill_refresh)
        self.scheduler.add("heartbeat", self._heartbeat_step, sync.heartbeat)

    # -- status ------------------------------------------------------------------------------------

    @property
    def backoff(self) -> Backoff:
        """The link's backoff (after an outage every job waits for it)."""
        return self.link.backoff

    @backoff.setter
    def backoff(self, value: Backoff) -> None:
        self.link.backoff = value

    def status(self) -> LinkStatus:
        st = self.link.snapshot()
        if st.online is False and st.retry_in is None and self.upload_job.last_error is not None:
            # The money's upload is what waits (its own Retry-After or back-off): the status says for how long.
            st.retry_in = self.upload_job.wait
        return st

    def _mark(self, online: bool, error: str | None = None) -> None:
        if online:
            self.link.up(error)
        else:
            self.link.down(error or "billing server unreachable")

    def _down(self, job: str, e: ServerUnreachable) -> None:
        """A request failed. Only a failed transport takes the shared link down (every job waits); a
        Retry-After or an answer outside the contract (logged, counted) is about that request: its job backs
        off alone. The status still says offline when the money's upload cannot get an answer it can use."""
        self._outage = e
        if is_outage(e) or job == "upload":
            self.link.down(str(e), count=isinstance(e, BadAnswer))
            if isinstance(e, BadAnswer):
                log.warning("%s: %s", job, e)
        elif isinstance(e, BadAnswer):
            log.warning("%s: %s", job, e)
            self.link.failed(job, str(e))
        else:
            log.warning("%s: %s", job, e)

    def _failed_outcome(self, e: ServerUnreachable) -> Outcome:
        return Outcome(error=str(e), retry_after=e.retry_after, offline=is_outage(e))

    def wake(self) -> None:
        """Start the next upload now (a payment was just approved, or the cashier asked)."""
        self.scheduler.wake("upload")

    # -- one round ---------------------------------------------------------------------------------

    def run_once(self, max_batches: int | None = None) -> SyncReport:
        """Upload batches until the outbox is empty or the server fails; never raises for the link.

        `max_batches` bounds the requests of this call (the service's step stays short); the round goes on at
        the next call (`report.pending`). A batch the server refuses as a whole (a contract 4xx other than
        auth) is sent again one payment at a time, so that one payment it will not take does not hold back the
        others; a payment refused alone is kept for the next round and `report.error` says so (the caller
        backs off). It is marked rejected (needs attention) only after REFUSALS_BEFORE_REJECT refusals at
        least `refusal_spacing` apart, each for a code about the payment, while the server takes others.
        """
        report = SyncReport()
        size = self.config.sync.batch_size
        requests_made = 0
        while max_batches is None or requests_made < max_batches:
            if self._split:
                batch = [self._split.pop(0)]
            else:
                batch = [p for p in self.journal.outbox_batch(size + len(self._skip))
                         if p.payment_id not in self._skip][:size]
                if not batch:
                    self._end_round(report)
                    break
            requests_made += 1
            ids = [p.payment_id for p in batch]
            try:
                crashpoint("sync.before_post")
                results = self.client.post_batch([p.to_api() for p in batch])
                crashpoint("sync.after_post")
            except ServerUnreachable as e:
                report.error, report.retry_after = str(e), e.retry_after
                self._down("upload", e)
                self.journal.note_upload_failure(ids, str(e))
                self._abandon_round()
                break
            except ApiError as e:
                self._mark(True, str(e))  # the server answered: the link is up, the request is not liked
                if e.status not in REFUSALS:  # the token (401/403), or a status the contract never gives here
                    report.error = str(e)
                    self.journal.note_upload_failure(ids, str(e))
                    log.error("upload refused: %s", e)
                    self._abandon_round()
                    break
                if len(batch) > 1:
                    log.warning("batch refused (%s); sending its %d payments one by one", e, len(batch))
                    self._answers += 1
                    self._last_multi_refusal = self._answers
                    self._split = list(batch)
                    continue
                self.journal.note_upload_failure(ids, str(e))
                log.error("payment %s refused by the server: %s", ids[0], e, extra={"payment_id": ids[0]})
                self._skip[ids[0]] = e
                continue
            self._mark(True)
            self._round_took = True
            self._answers += 1
            self._last_took = self._answers
            counts = self.journal.record_upload_results(results)
            report.uploaded += counts["accepted"]
            report.duplicates += counts["duplicate"]
            report.rejected += counts["rejected"]
            by_id = {p.payment_id: p for p in batch}
            for r in results:
                if r.get("notice"):
                    report.notices.append((by_id[r["payment_id"]].receipt_number, str(r["notice"])))
                    log.warning("payment %s: %s", r["payment_id"], r["notice"], extra={"payment_id": r["payment_id"]})
                if r["status"] == "rejected":
                    log.error(
                        "payment %s rejected: %s",
                        r["payment_id"],
                        (r.get("error") or {}).get("code"),
                        extra={"payment_id": r["payment_id"], "state": "rejected"},
                    )
        else:
            report.pending = True  # stopped at max_batches: the round goes on at the next call
        report.remaining = self.journal.queue_stats().count
        return report

    def _abandon_round(self) -> None:
        """The link failed or the server refused us as a whole: the next round starts afresh, counting nothing."""
        self._split.clear()
        self._skip.clear()
        self._round_took = False

    def _end_round(self, report: SyncReport) -> None:
        """The outbox went through once: count the refusals of the payments refused alone, report them."""
        skipped, took = dict(self._skip), self._round_took
        self._abandon_round()
        if not skipped:
            return
        kept = 0
        for payment_id, e in skipped.items():
            if not self._give_up_if_refused_again(payment_id, e, report, took):
                kept += 1
        if kept:
            last = next(reversed(skipped.values()))
            report.error = f"{kept} payment(s) refused by the server, kept for the next round: {last}"

    def _give_up_if_refused_again(self, payment_id: str, e: ApiError, report: SyncReport, took: bool) -> bool:
        """Reject here (needs attention, kept) a payment refused REFUSALS_BEFORE_REJECT times on its own.

        A refusal counts only when it is about this payment: a code about the request never counts, nor a
        413; the server must be taking other batches (in this round, or since it last refused a batch of
        several payments); and refusals closer than `refusal_spacing` count once. Garbage, a misconfigured
        proxy or a server's bad minutes must never turn a payment into "rejected" (final)."""
        # Counted here, not from the journal's attempts: those also count answers we could not read.
        if e.code in REQUEST_CODES or e.status == 413:
            return False
        if not (took or self._last_took > self._last_multi_refusal):
            return False
        now = self.clock()
        count, last = self._refusals.get(payment_id, (0, 0.0))
        if count and now - last < self.refusal_spacing:
            return False
        failures = count + 1
        self._refusals[payment_id] = (failures, now)
        if failures < REFUSALS_BEFORE_REJECT:
            return False
        del self._refusals[payment_id]
        self.journal.record_upload_results(
            [
                {
                    "payment_id": payment_id,
                    "status": "rejected",
                    "error": {"code": e.code, "message": f"refused {failures} times: {e.message}"},
                }
            ]
        )
        report.rejected += 1
        log.error(
            "payment %s rejected after %d refusals: %s",
            payment_id,
            failures,
            e,
            extra={"payment_id": payment_id, "state": "rejected"},
        )
        return True

    def refresh_bills(self, limit: int = FEED_PAGE, max_pages: int = 10_000) -> int | None:
        """Follow the bill feed (until caught up, or `max_pages`); how many bills changed, None when the server
        did not answer or refused (logged)."""
        if self.bills is None:
            return None
        try:
            n = self.bills.refresh(self.client, self.config.terminal.agency_id, limit=limit, max_pages=max_pages)
        except ServerUnreachable as e:
            self._down("bill refresh", e)
            return None
        except ApiError as e:
            log.error("bill cache refresh refused: %s", e)
            return None
        self._mark(True)
        return n

    def heartbeat(self) -> dict[str, Any] | None:
        stats = self.journal.queue_stats()
        body = {
            "agent_version": __version__,
            "queue_depth": stats.count,
            "oldest_pending_at": stats.oldest_captured_at.isoformat() if stats.oldest_captured_at else None,
            "devices": self.devices(),
        }
        if self._hwm_retry_at is None or self.clock() >= self._hwm_retry_at:
            body["last_receipt_number"] = self.journal.high_water()
        try:
            try:
                answer = self.client.heartbeat(body)
            except ApiError as e:
                if e.code != "unknown_field" or "last_receipt_number" not in body:
                    raise
                log.warning("the billing server does not take last_receipt_number (contract 1.0); left out for %.0f s",
                            HWM_RETRY)
                self._hwm_retry_at = self.clock() + HWM_RETRY
                del body["last_receipt_number"]
                answer = self.client.heartbeat(body)
        except ServerUnreachable as e:
            self._down("heartbeat", e)
            return None
        except ApiError as e:
            log.error("heartbeat refused: %s", e)
            return None
        self._mark(True)
        try:
            # The server's view of our high-water mark: ahead of the journal means committed payments were lost.
            self.journal.check_server_high_water(answer.get("last_receipt_number"))
        except JournalError:
            raise
        except GuichetError as e:
            log.error("heartbeat: %s", e)
        skew = server_time_skew(answer)
        self.link.set_skew(skew)
        if skew is not None and abs(skew) > CLOCK_SKEW_WARN:
            log.warning("clock is %+.0f s off the billing server's; fix the time (NTP)", skew)
        return answer

    # -- the jobs: one request per step --------------------------------------------------------------

    def _upload_step(self) -> Outcome:
        # One request per step (the service's watchdog); a round that needs more (another batch, a refused
        # batch sent one payment at a time) goes on at the next step, at once.
        self._outage = None
        try:
            report = self.run_once(max_batches=1)
        except BaseException as e:
            # The round ends unfinished (a busy journal, a bug): its report says so, and what is left.
            self._round.error = one_line(e)
            try:
                self._round.remaining = self.journal.queue_stats().count
            except Exception as e2:  # noqa: BLE001 - the journal that failed may fail again; the error stands
                log.debug("queue count after a failed upload step: %s", one_line(e2))
            self._end_report()
            raise
        r = self._round
        r.uploaded, r.duplicates, r.rejected = (r.uploaded + report.uploaded, r.duplicates + report.duplicates,
                                                r.rejected + report.rejected)
        r.notices += report.notices
        r.error, r.retry_after, r.remaining, r.pending = (report.error, report.retry_after, report.remaining,
                                                          report.pending)
        if report.uploaded or report.duplicates or report.rejected:
            log.info("uploaded %d, duplicates %d, rejected %d, %d left", report.uploaded, report.duplicates,
                     report.rejected, report.remaining)
        if report.error is not None:
            self._end_report()
            if self._outage is not None:
                return self._failed_outcome(self._outage)
            # The server answered but refuses what we send (payments kept, or the token): the link is up,
            # only the uploads back off, and the status says why nothing goes up.
            log.error("upload: %s", report.error)
            return Outcome(error=report.error, retry_after=report.retry_after)
        more = report.pending or bool(report.remaining and (report.uploaded or report.duplicates))
        if not more:
            self._end_report()
        return Outcome(more=more)

    def _end_report(self) -> None:
        self.last_round, self._round = self._round, SyncReport()

    def _feed_cursor(self) -> str | None:
        # BillCache keeps its cursor in its meta table; it has no public reader (yet).
        return None if self.bills is None else self.bills._meta("cursor")

    def _bills_step(self) -> Outcome:
        self._outage = None
        before = self._feed_cursor()
        changed = self.refresh_bills(limit=FEED_PAGE, max_pages=1)
        if self._outage is not None:
            return self._failed_outcome(self._outage)
        if changed and self.bills is not None:
            log.info("bill cache: %d bills changed, %d cached", changed, self.bills.count())
        # A full page that moved the cursor: the feed is not caught up, the next page at once. A full page on
        # the same cursor (a stuck feed) would be asked for again and again: after the interval, as when refused.
        full = changed is not None and changed >= FEED_PAGE
        if full and self._feed_cursor() == before:
            log.warning("bill feed: a full page left the cursor at %r; asked again after the interval", before)
            return Outcome()
        return Outcome(more=full)

    def _heartbeat_step(self) -> Outcome:
        self._outage = None
        self.heartbeat()
        if self._outage is not None:
            return self._failed_outcome(self._outage)
        return Outcome()

    # -- rounds (the CLI, the tests) -----------------------------------------------------------------

    def step(self) -> tuple[SyncReport, float]:
        """Upload now until the outbox is empty or the server fails, then the bill cache and the heartbeat if
        they are due and the link is up; returns the round's report and the delay before the next round."""
        self.scheduler.wake("upload")
        self._round = SyncReport()
        self.scheduler.run_once(due_only=True)
        report = self.last_round or SyncReport()
        self.last_round = None
        if report.error is None and self.upload_job.last_error is not None:
            report.error = self.upload_job.last_error  # the step raised: the scheduler has the one line
        return report, self.upload_job.wait

    def run_forever(
        self,
        stop: threading.Event,
        on_round: Callable[[SyncReport, float], None] | None = None,
        max_rounds: int | None = None,
    ) -> None:
        """The scheduler's loop until `stop` is set; `on_round` sees each upload round's report and the delay
        chosen after it."""
        rounds = 0
        halt = threading.Event()

        def after(job: Job | None) -> None:
            nonlocal rounds
            if job is self.upload_job and self.last_round is not None:
                report, self.last_round = self.last_round, None
                rounds += 1
                if on_round is not None:
                    try:
                        on_round(report, job.wait)
                    except Exception as e:  # noqa: BLE001 - a status callback must not stop the uploads
                        log.warning("sync: status callback failed: %s", one_line(e))
            if stop.is_set() or (max_rounds is not None and rounds >= max_rounds):
                halt.set()

        self.scheduler.run(halt, on_step=after, max_wait=0.5)


def sync_jobs(scheduler: Scheduler, parts: JobParts) -> SyncWorker:
    """The registration of upload, bill refresh and heartbeat (guichet/cli/run.py: JOBS)."""
    return SyncWorker(parts.config, parts.journal, parts.client, parts.bills, devices=parts.devices,
                      scheduler=scheduler)
