"""One scheduler of named periodic jobs, shared by the headless service, the cashier UI and `guichet sync`.

    >>> sched = Scheduler()
    >>> def tick() -> Outcome | None:
    ...     return None                              # done: next run after the interval
    >>> job = sched.add("tick", tick, interval=30)
    >>> sched.step() is job, sched.step()            # one step runs the most overdue job; then none is due
    (True, None)
    >>> def flaky() -> Outcome:
    ...     return Outcome(error="billing server unreachable: refused", offline=True)
    >>> _ = sched.add("upload", flaky, interval=5)
    >>> sched.run_once(["upload"])["upload"].offline  # the CLI's "now, once", whatever the schedule says
    True
    >>> st = sched.status()
    >>> st.online, st.last_error, st.retry_in is not None
    (False, 'billing server unreachable: refused', True)

A job is a callable returning an `Outcome` (or None for "done"): `more` runs it again at once (a batch or a
feed page is waiting), `error` backs that job off (exponential, full jitter, never less than the server's
Retry-After), `offline` says the billing server did not answer (connect, timeout, reset): the shared link goes
down and every job that talks to the server (`needs_link`) waits for the link's retry time, except a job added
with `own_pace` (the money's upload), which waits only on its own failures. A Retry-After (429/503) or an answer
we cannot read is about the request that got it: that job alone backs off. A job that raises (anything but the
exceptions in `fatal`, a damaged journal, which leave the loop) is logged, counted and backed off; the loop goes
on (a ServerUnreachable it raises is classified as above).

A step does one request's worth of work: a job that loops over items checks `step_over()` between two items
and returns `Outcome(more=True)` once the step's slice (STEP_SLICE) is spent. So the longest step is
STEP_SLICE plus one item (one request: 2 x server.timeout + 3 s), what WatchdogSec must exceed.

Whoever builds the agent registers the jobs (`add`); the scheduler knows none of them by name, except that
`wake()` with no name wakes "upload". `wake(name)` runs that job now, past the link's retry time, once (never
before a Retry-After the server gave that job); only `reset=True` (the cashier's Ctrl+R) forgets the waits.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agent.errors import BadAnswer, GuichetError, JournalDamaged, JournalError, RetryLater, ServerUnreachable

if TYPE_CHECKING:  # types only: the scheduler itself runs any job
    from agent.billing import BillingClient
    from agent.bills import BillCache
    from agent.journal import Journal
    from config import Config

log = logging.getLogger("guichet.scheduler")

BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0
MAX_WAIT = 1.0  # seconds: how long run() sleeps at most before looking at `stop` again
ONCE_BOUND = 100_000  # run_once: steps of one job at most (a 10,000-payment backlog in batches of 1 fits)
STEP_SLICE = 1.0  # seconds: a job starts no new item (request, receipt) after this much of its step

_step = threading.local()  # the deadline of the step running in this thread (step_over)


def step_over() -> bool:
    """True once the running step has spent its slice: a job looping over items stops there and returns
    Outcome(more=True). Outside a scheduler's step (a direct call, a test), never.

    >>> step_over()
    False
    """
    deadline: float | None = getattr(_step, "deadline", None)
    return deadline is not None and time.monotonic() >= deadline


def is_outage(e: ServerUnreachable) -> bool:
    """Whether a failed request says the link is down (connect, timeout, reset, a 5xx), rather than something
    about that request: a Retry-After (429/503) or an answer outside the contract backs off that job alone.

    >>> is_outage(ServerUnreachable("refused")), is_outage(RetryLater("busy", 30)), is_outage(BadAnswer("x"))
    (True, False, False)
    """
    return not isinstance(e, (RetryLater, BadAnswer))


def one_line(e: BaseException) -> str:
    """An exception as one bounded line: our errors as they are, anything else with its type.

    >>> one_line(ValueError("bad\\n  byte"))
    'ValueError: bad byte'
    >>> one_line(SystemExit())
    'SystemExit'
    """
    text = str(e) if isinstance(e, GuichetError) or not str(e) else f"{type(e).__name__}: {e}"
    text = text or type(e).__name__  # a bare sys.exit(), KeyboardInterrupt: their name
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


class Backoff:
    """Exponential backoff with full jitter: a delay drawn uniformly from [0, min(cap, base * 2**n)].

    >>> b = Backoff(base=1, cap=4, rng=random.Random(1))
    >>> [round(b.next(), 2) for _ in range(4)], b.next(at_least=60)
    ([0.13, 1.69, 3.06, 1.02], 60)
    """

    def __init__(self, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP, rng: random.Random | None = None):
        self.base, self.cap, self.attempt = base, cap, 0
        self.rng = rng or random.Random()

    def next(self, at_least: float | None = None) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.attempt, 30))
        self.attempt += 1
        delay = self.rng.uniform(0, ceiling)
        return max(delay, at_least or 0.0)

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class Outcome:
    """What one run of a job says. None from a job is Outcome(): done, next run after the interval."""

    more: bool = False  # run again at once (another batch, another feed page)
    error: str | None = None  # this job backs off; with `offline`, the link too
    retry_after: float | None = None  # the server's floor for the next try
    offline: bool = False  # the link is down (connect, timeout, reset): not for a Retry-After or a bad answer


@dataclass
class LinkStatus:
    """The link to the billing server as the status bar, STATUS= and doctor show it (a copy)."""

    online: bool | None = None  # None: not tried yet
    since: datetime | None = None
    retry_in: float | None = None  # the delay chosen at the last failure
    last_error: str | None = None
    clock_skew: float | None = None
    failures: int = 0  # job runs that failed other than by an outage (garbage answers, bugs) since the start


class Link:
    """The shared link state: up or down, since when, the last error, the clock skew, when to try again.

    The jobs mark it as they talk to the server (`up`, `down`); the scheduler sets the retry time.
    """

    def __init__(self, backoff: Backoff | None = None) -> None:
        self.state = LinkStatus()
        self.backoff = backoff or Backoff()
        self.retry_at: float | None = None  # monotonic; jobs that need the link wait until then
        self._lock = threading.Lock()  # status() is read from other threads (the UI's status poller)

    def up(self, error: str | None = None) -> None:
        """The server answered (`error`: it answered, but refused what we asked)."""
        with self._lock:
            if self.state.online is not True:
                if self.state.online is False:
                    log.info("billing server reachable")
                self.state.since = datetime.now().astimezone()
            self.state.online = True
            self.state.last_error = error
            self.state.retry_in = None
            self.retry_at = None
        self.backoff.reset()

    def down(self, error: str, *, count: bool = False) -> None:
        """The server did not answer (`count`: it answered something we cannot read: counted as a failure)."""
        with self._lock:
            if self.state.online is not False:
                log.warning("billing server unreachable: %s", error)
                self.state.since = datetime.now().astimezone()
            self.state.online = False
            self.state.last_error = error
            self.state.failures += count

    def set_skew(self, seconds: float | None) -> None:
        with self._lock:
            self.state.clock_skew = seconds

    def failed(self, what: str, text: str) -> None:
        """A job failed other than by an outage: counted, and the last error says which."""
        with self._lock:
            self.state.failures += 1
            self.state.last_error = f"{what}: {text}"

    def wait(self, now: float, retry_after: float | None) -> float:
        """After an outage: the delay before any job talks to the server again."""
        delay = self.backoff.next(retry_after)
        with self._lock:
            self.retry_at = now + delay
            self.state.retry_in = delay
        return delay

    def snapshot(self) -> LinkStatus:
        with self._lock:
            return LinkStatus(**vars(self.state))


@dataclass
class JobParts:
    """What a registration builds its jobs from, opened in the thread that runs the scheduler (an SQLite
    connection belongs to its thread). `devices` returns the heartbeat's device list. What a registration
    opens itself it hands to `closing` (`parts.closing.callback(box.close)`): the runner closes it when its
    scheduler ends (the UI starts its worker again after a failure: nothing may leak)."""

    config: Config
    journal: Journal
    client: BillingClient
    bills: BillCache | None = None
    devices: Callable[[], list[dict[str, Any]]] | None = None
    closing: ExitStack = field(default_factory=ExitStack)


# A registration adds its jobs to a scheduler: `sync_jobs(scheduler, parts)`. The composition root
# (guichet/cli/run.py: JOBS) lists them; a new periodic job is one more entry there.
Registration = Callable[["Scheduler", JobParts], object]


@dataclass
class Job:
    name: str
    run: Callable[[], Outcome | None]
    interval: float
    needs_link: bool = True
    own_pace: bool = False  # never waits on the link's retry time (it waits on its own failures only)
    backoff: Backoff = field(default_factory=Backoff)
    due: float = 0.0  # monotonic
    wait: float = 0.0  # the delay chosen at the last run
    not_before: float = 0.0  # monotonic: the server's Retry-After for this job; a wake never runs it sooner
    woken: bool = False  # wake() since this job's last run started (a wake during its step is kept)
    ungated: bool = False  # wake(): its next run passes the link's retry time, once
    last_error: str | None = None  # None after a run that went well
    runs: int = 0
    failures: int = 0


class Scheduler:
    """Named periodic jobs, one at a time, in the thread that calls step()/run()/run_once()."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        link: Link | None = None,
        fatal: tuple[type[BaseException], ...] = (JournalDamaged,),
    ) -> None:
        self.clock = clock
        self.link = link or Link()
        self.fatal = fatal
        self.jobs: dict[str, Job] = {}
        self.steps = 0
        self.step_slice = STEP_SLICE
        self._wake = threading.Event()
        self._lock = threading.Lock()  # wake() comes from other threads (the UI's): job.due/woken/ungated

    def add(self, name: str, run: Callable[[], Outcome | None], interval: float, *, needs_link: bool = True,
            own_pace: bool = False, backoff: Backoff | None = None, first_due: float | None = None) -> Job:
        """Register a job, due at once (or at `first_due`, monotonic). A name is registered once. `own_pace`:
        the job never waits on the link's retry time set by another job (the upload of the money)."""
        if name in self.jobs:
            raise ValueError(f"job {name!r} is already registered")
        job = Job(name, run, float(interval), needs_link, own_pace, backoff or Backoff(),
                  self.clock() if first_due is None else first_due)
        self.jobs[name] = job
        return job

    # -- status --------------------------------------------------------------------------------------

    def status(self) -> LinkStatus:
        return self.link.snapshot()

    def job(self, name: str) -> Job | None:
        return self.jobs.get(name)

    def retry_in(self) -> float | None:
        """Seconds until the link is tried again (None when it is not waiting)."""
        at = self.link.retry_at
        return None if at is None else max(0.0, at - self.clock())

    def next_due(self) -> float:
        """When the next job is due (monotonic); +inf without jobs."""
        return min((self._due(j) for j in self.jobs.values()), default=float("inf"))

    def _due(self, job: Job) -> float:
        at = self.link.retry_at
        gated = job.needs_link and not job.own_pace and not job.ungated and at is not None
        return max(job.due, at) if gated and at is not None else job.due

    # -- running -------------------------------------------------------------------------------------

    def wake(self, name: str = "upload", *, reset: bool = False) -> None:
        """Run `name` now (a payment was approved, an address typed), past the link's retry time, once; never
        before the Retry-After the server gave that job. The other jobs keep their waits. `reset` (the cashier
        says the link is back) also forgets the link's retry time, the backoffs and that job's Retry-After.
        Safe from any thread; a wake during that job's own step runs it again right after."""
        job = self.jobs.get(name)
        with self._lock:
            if job is not None:
                if reset:
                    job.backoff.reset()
                    job.not_before = 0.0
                job.due = min(job.due, max(self.clock(), job.not_before))
                job.woken = job.ungated = True
            if reset:
                self.link.retry_at = None
                self.link.backoff.reset()
        self._wake.set()

    def step(self) -> Job | None:
        """Run the most overdue job once; None when nothing is due."""
        now = self.clock()
        # the most overdue first; at the same time, the first registered
        due = [(self._due(j), i, j) for i, j in enumerate(self.jobs.values()) if self._due(j) <= now]
        if not due:
            return None
        job = min(due, key=lambda d: d[:2])[2]
        self._run(job)
        return job

    def _run(self, job: Job) -> Outcome:
        now = self.clock()
        job.runs += 1
        self.steps += 1
        with self._lock:
            job.woken = job.ungated = False
        _step.deadline = time.monotonic() + self.step_slice
        try:
            outcome = job.run() or Outcome()
            if not isinstance(outcome, Outcome):
                raise TypeError(f"job {job.name} returned {type(outcome).__name__}, not an Outcome")
        except self.fatal:
            raise
        except ServerUnreachable as e:  # a job may leave the failed request to the scheduler
            if is_outage(e):
                self.link.down(str(e))
            elif isinstance(e, BadAnswer):
                log.warning("%s: %s", job.name, e)
                self.link.failed(job.name, str(e))
            outcome = Outcome(error=str(e), retry_after=e.retry_after, offline=is_outage(e))
        except JournalError as e:
            # Busy (another process holds a write), a full disk: the journal may be fine in a moment, and
            # restarting would not make it so. This job backs off; the others go on.
            text = one_line(e)
            log.error("%s step: %s", job.name, text)
            self.link.failed(job.name, text)
            outcome = Outcome(error=text)
        except KeyboardInterrupt:
            if threading.current_thread() is threading.main_thread():
                raise  # Ctrl+C on a foreground `guichet sync`: the person wants it to stop
            outcome = self._failed(job, "KeyboardInterrupt")
        except BaseException as e:  # noqa: BLE001 - one job's failure (a bug, a sys.exit in it) never ends the loop
            outcome = self._failed(job, one_line(e))
        finally:
            _step.deadline = None
        if outcome.offline and outcome.error is None:
            outcome.error = "billing server unreachable"
        job.last_error = outcome.error
        if outcome.error is None:
            job.backoff.reset()
            job.wait = 0.0 if outcome.more else job.interval
        elif outcome.offline:  # the link is down: every job that needs it waits for it
            job.failures += 1
            if self.link.state.online is not False:  # the job did not say so itself
                self.link.down(outcome.error)
            job.wait = self.link.wait(now, outcome.retry_after)
        else:  # refused, a bad answer, a Retry-After: about this job's request, this job waits alone
            job.failures += 1
            job.wait = job.backoff.next(outcome.retry_after)
        with self._lock:
            if outcome.retry_after is not None:
                job.not_before = now + outcome.retry_after
            if job.woken:  # woken while it ran: again now (never before its Retry-After)
                job.due = max(self.clock(), job.not_before)
            else:
                job.due = now + job.wait
        return outcome

    def _failed(self, job: Job, text: str) -> Outcome:
        log.error("%s step failed: %s", job.name, text)
        self.link.failed(job.name, text)
        return Outcome(error=text)

    def run_once(self, names: Iterable[str] | None = None, *, due_only: bool = False,
                 bound: int = ONCE_BOUND) -> dict[str, Outcome]:
        """Each job (or those named, or with `due_only` those due), in order of registration, now and until
        it has nothing more or fails; once the link fails in this pass, the jobs that need it are left for
        its retry time. For `guichet sync --once` and `SyncWorker.step()`."""
        done: dict[str, Outcome] = {}
        went_down = False
        now = self.clock()
        for name in list(names) if names is not None else list(self.jobs):
            job = self.jobs[name]
            if (job.needs_link and went_down) or (due_only and self._due(job) > now):
                continue
            for _ in range(bound):
                done[name] = outcome = self._run(job)
                # The link is down, or a job (the upload) says the server gives no answer it can use.
                went_down = went_down or outcome.offline or self.link.state.online is False
                if not outcome.more or outcome.error is not None:
                    break
        return done

    def run(self, stop: threading.Event, *, on_step: Callable[[Job | None], None] | None = None,
            max_wait: float = MAX_WAIT) -> None:
        """Steps until `stop` is set. `on_step` runs after each step (None: nothing was due) and after each
        wait of at most `max_wait` seconds (the service pings the watchdog there); what it raises goes up."""
        while not stop.is_set():
            job = self.step()
            if on_step is not None:
                on_step(job)
            if job is not None or stop.is_set():
                continue
            left = self.next_due() - self.clock()
            if left > 0:
                self._wake.wait(min(left, max_wait))
                self._wake.clear()
