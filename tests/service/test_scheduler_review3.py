"""Review 3 of the one scheduler: a Retry-After answers for what it was asked (never the money's upload),
`guichet sync --once` exits 1 while money is left, a step does one request's worth of work, a stuck bill feed
is no busy loop, nothing a job raises ends a loop, `wake` keeps the other jobs' waits and is never lost, and
what the registrations open is closed. Real sandbox server on 127.0.0.1, real journals."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import config
from agent.context import AgentContext
from agent.notify import Notifier
from agent.scheduler import Backoff, JobParts, Link, Outcome, Scheduler
from agent.service import Agent
from guichet.cli.run import JOBS
from tests.core.stub_server import StubServer, json_answer
from tests.core.test_review_fixes import requests_forward
from tests.service.conftest import GUICHET
from ui.receipt import request_send


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _scheduler(clock: Clock) -> Scheduler:
    return Scheduler(clock=clock, link=Link(Backoff(base=1, cap=8, rng=random.Random(3))))


def _sched(agent: Agent) -> Scheduler:
    assert agent.scheduler is not None
    return agent.scheduler


def _until(agent: Agent, done: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Step the agent (as its loop does) until `done`, or False after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        if not agent.step():
            time.sleep(0.02)
    return done()


def _pay(cfg: config.Config, refs: list[str]) -> None:
    """Cash payments taken by the UI (another process): approved, waiting for the upload."""
    ctx = AgentContext.open(cfg, ["cash"], take_payments=True)
    try:
        for ref in refs:
            ctx.flow.pay([ctx.flow.lookup(ref)], method="cash", cashier_id="c0042")
    finally:
        ctx.close()


def _agent(cfg: config.Config) -> Agent:
    agent = Agent(cfg, Notifier(None), jobs=JOBS, devices=lambda: [])
    agent.start()
    return agent


# -- 1: a Retry-After on one endpoint never holds the money ---------------------------------------------


def test_a_retry_after_on_the_receipts_endpoint_never_holds_the_money_uploads(
    billing_server: Any, billing_config: config.Config, seeded_references: list[str]
) -> None:
    cfg = billing_config
    request_send(cfg, "R-ORAN-07-G1-000001", "client@example.dz")
    billing_server.set_faults(unavailable_rate=1.0, retry_after=300, only=["POST /v1/receipts"])
    agent = _agent(cfg)
    try:
        send = _sched(agent).job("receipt-send")
        assert send is not None
        assert _until(agent, lambda: send.runs >= 1)
        assert send.last_error and "503" in send.last_error
        _pay(cfg, seeded_references[:1])
        assert _until(agent, lambda: len(billing_server.recorded_payments()) == 1), "the payment never went up"
        assert _sched(agent).retry_in() is None  # the link never waited for the receipts' Retry-After
        assert agent.status_line().startswith("online;")
        assert send.runs == 1 and send.due >= time.monotonic() + 250  # the receipt waits its own 300 s

        # 6: waking the receipt job (an address typed) never sends it before the Retry-After it was given.
        busy = billing_server.fault_status()["injected"].get("unavailable", 0)
        _sched(agent).wake("receipt-send")
        _until(agent, lambda: False, timeout=0.5)
        assert send.runs == 1 and billing_server.fault_status()["injected"].get("unavailable", 0) == busy
    finally:
        agent.close()


def test_a_retry_after_or_garbage_on_one_job_backs_off_that_job_and_the_link_stays_up() -> None:
    from agent.errors import BadAnswer, RetryLater

    clock, ran = Clock(), []
    s = _scheduler(clock)

    def heartbeat() -> Outcome:
        raise RetryLater("billing server busy (429), retry after 120 s", 120)

    def feed() -> Outcome:
        raise BadAnswer("billing server: bills feed: items[0].amount_due: should be an integer")

    s.add("upload", lambda: ran.append("upload"), interval=5, own_pace=True)
    s.add("heartbeat", heartbeat, interval=60)
    s.add("bills", feed, interval=900, backoff=Backoff(base=1000, cap=1000, rng=random.Random(1)))
    while s.step():
        pass
    assert s.retry_in() is None and s.status().online is not False and s.status().failures == 1
    clock.now += 5
    assert s.step() is s.jobs["upload"] and s.step() is None  # uploads on; the heartbeat waits its 120 s
    assert s.jobs["heartbeat"].due >= 1120 and ran == ["upload", "upload"]


def test_the_upload_never_waits_on_a_retry_time_another_jobs_outage_set() -> None:
    clock, ran = Clock(), []
    s = _scheduler(clock)
    s.add("upload", lambda: ran.append("upload"), interval=5, own_pace=True)
    s.add("heartbeat", lambda: Outcome(error="billing server: no answer within 10 s", offline=True, retry_after=60),
          interval=60)
    s.add("bills", lambda: ran.append("bills"), interval=5)
    while s.step():
        pass
    assert s.retry_in() is not None
    clock.now += 5
    while s.step():
        pass
    assert ran == ["upload", "upload"]  # the bill feed waits for the link; the money does not


# -- 2: `guichet sync --once` exits 1 while money is left -----------------------------------------------


def test_sync_once_exits_1_with_what_is_left_when_the_upload_step_fails(
    tmp_path: Path, billing_server: Any, billing_config: config.Config, seeded_references: list[str]
) -> None:
    cfg = billing_config
    _pay(cfg, seeded_references[:3])
    path = config.write_config(cfg, tmp_path / "guichet.toml")
    hold = sqlite3.connect(Path(cfg.state.dir) / "journal.db", isolation_level=None, timeout=1)
    try:
        hold.execute("BEGIN IMMEDIATE")  # a supervisor's command mid-write: the journal is busy
        env = {**os.environ, "GUICHET_CONFIG": str(path)}
        r = subprocess.run([GUICHET, "sync", "--once"], capture_output=True, text=True, env=env, timeout=300)
    finally:
        hold.execute("ROLLBACK")
        hold.close()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "left 3" in r.stdout and "Traceback" not in r.stderr
    assert "upload stopped" in r.stderr


# -- 3: one request's worth of work per step ------------------------------------------------------------


def test_no_job_of_the_agent_makes_more_than_one_request_in_a_step(
    billing_server: Any, billing_config: config.Config, seeded_references: list[str]
) -> None:
    """Every job JOBS registers keeps a step to one item once its slice is spent (a slice of 0 here): the
    service's step stays under 2 x server.timeout + 3 s + STEP_SLICE, what WatchdogSec must exceed."""
    with StubServer(requests_forward(billing_server)) as stub:
        cfg = billing_config.model_copy(deep=True)
        cfg.server.url = stub.url
        cfg.sync.batch_size = 1
        _pay(cfg, seeded_references[:3])
        for i in range(3):
            request_send(cfg, f"R-ORAN-07-G1-{900 + i:06d}", f"client{i}@example.dz")
        agent = _agent(cfg)
        try:
            _sched(agent).step_slice = 0.0
            per_step: dict[str, int] = {}
            for _ in range(60):
                before = len(stub.requests)
                job = _sched(agent).step()
                if job is None:
                    break
                per_step[job.name] = max(per_step.get(job.name, 0), len(stub.requests) - before)
            assert {"upload", "receipt-send", "heartbeat", "bills"} <= set(per_step)
            assert max(per_step.values()) == 1, per_step
            receipts = [r for r in stub.requests if r[1].startswith("/v1/receipts")]
            assert len(receipts) == 3  # all sent, one per step
            assert len(billing_server.recorded_payments()) == 3
        finally:
            agent.close()


# -- 4: a bill feed stuck on one cursor -----------------------------------------------------------------


def _bill(ref: str) -> dict[str, Any]:
    return {"reference": ref, "contract": "07-118-00423", "customer_name": "B. Amel", "service": "water",
            "period": "2026-T3", "issued_on": "2026-10-05", "due_on": "2026-11-15", "amount_due": 345600,
            "currency": "DZD", "status": "unpaid", "agency_id": "ORAN-07", "customer_id": "C-0071182",
            "version": 3}


def test_a_feed_stuck_on_one_cursor_is_asked_once_per_refresh(billing_config: config.Config) -> None:
    items = [_bill(f"1{i:011d}") for i in range(1000)]

    def handler(method: str, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/v1/bills"):
            return json_answer(200, {"items": items, "next_cursor": "c1"})  # a full page, the same cursor
        if "heartbeat" in path:
            return json_answer(200, {"server_time": "2026-11-30T21:00:00Z"})
        return json_answer(404, {"error": {"code": "not_found", "message": "x"}})

    with StubServer(handler) as stub:
        cfg = billing_config.model_copy(deep=True)
        cfg.server.url = stub.url
        agent = Agent(cfg, Notifier(None), devices=lambda: [])
        agent.start()
        try:
            assert agent.bills is not None
            agent.bills.store([], "c1")
            done = _sched(agent).run_once(["bills"], bound=5)
            assert done["bills"].more is False
            assert sum(1 for r in stub.requests if r[1].startswith("/v1/bills")) == 1
            assert _sched(agent).jobs["bills"].due >= time.monotonic() + 800  # next: after bill_refresh
        finally:
            agent.close()


# -- 5: nothing a job raises ends a loop ----------------------------------------------------------------


def test_a_job_that_raises_systemexit_or_keyboardinterrupt_in_a_thread_is_a_failure_of_that_job() -> None:
    clock, ran = Clock(), []
    s = _scheduler(clock)
    errors: list[BaseException] = [SystemExit(3), KeyboardInterrupt(), GeneratorExit()]

    def plugin() -> None:
        raise errors.pop(0)

    s.add("plugin", plugin, interval=5, needs_link=False, backoff=Backoff(base=0.001, cap=0.001))
    s.add("upload", lambda: ran.append("upload"), interval=5)
    t = threading.Thread(target=lambda: [s.step() for _ in range(2)])
    t.start()
    t.join()
    assert s.jobs["plugin"].last_error == "SystemExit: 3" and ran == ["upload"]
    t = threading.Thread(target=s.step)  # Ctrl+C is for the main thread: in a worker, a job's failure
    clock.now += 1
    t.start()
    t.join()
    assert s.jobs["plugin"].last_error == "KeyboardInterrupt" and s.jobs["plugin"].failures == 2
    clock.now += 1
    assert s.step() is s.jobs["plugin"] and s.jobs["plugin"].failures == 3


def test_sys_exit_in_a_job_never_stops_the_headless_agent(
    billing_server: Any, billing_config: config.Config, seeded_references: list[str]
) -> None:
    def bad(scheduler: Scheduler, parts: JobParts) -> None:
        def run() -> None:
            raise SystemExit  # a library's bare sys.exit(): exit 0, which Restart=on-failure would not restart

        scheduler.add("plugin", run, 0.05, needs_link=False)

    agent = Agent(billing_config, Notifier(None), jobs=[*JOBS, bad], devices=lambda: [])
    agent.start()
    try:
        _pay(billing_config, seeded_references[:1])
        plugin = _sched(agent).job("plugin")
        assert plugin is not None
        assert _until(agent, lambda: len(billing_server.recorded_payments()) == 1 and plugin.failures >= 2)
        assert plugin.last_error == "SystemExit"
    finally:
        agent.close()


def test_ctrl_c_in_the_main_thread_still_stops_a_foreground_run() -> None:
    s = Scheduler()

    def job() -> None:
        raise KeyboardInterrupt

    s.add("upload", job, interval=5)
    with pytest.raises(KeyboardInterrupt):
        s.step()


# -- 6, 7: wake ----------------------------------------------------------------------------------------


def test_wake_runs_that_job_past_the_link_once_and_the_others_keep_waiting() -> None:
    clock, ran = Clock(), []
    s = _scheduler(clock)
    up = {"now": False}
    s.add("upload", lambda: None if up["now"] else Outcome(error="billing server unreachable: refused",
                                                           offline=True, retry_after=60), interval=5)
    s.add("heartbeat", lambda: ran.append("heartbeat"), interval=5, first_due=2000)
    s.add("receipt-send", lambda: ran.append("receipt-send"), interval=30, first_due=2000)
    s.step()
    retry_at = s.link.retry_at
    assert retry_at is not None
    clock.now += 5
    s.jobs["heartbeat"].due = clock.now
    s.wake("receipt-send")
    while s.step():
        pass
    assert ran == ["receipt-send"] and s.link.retry_at == retry_at  # the heartbeat waits for the link
    s.wake("receipt-send")
    s.jobs["receipt-send"].due = clock.now  # once per wake: a due job is held by the link again
    s.step()
    assert ran == ["receipt-send", "receipt-send"]
    s.jobs["receipt-send"].due = clock.now
    assert s.step() is None
    up["now"] = True
    s.wake("upload", reset=True)  # Ctrl+R: the cashier says the link is back
    assert s.link.retry_at is None
    while s.step():
        pass
    assert "heartbeat" in ran


def test_wake_never_runs_a_job_before_the_retry_after_it_was_given_unless_reset() -> None:
    clock, ran = Clock(), []
    s = _scheduler(clock)

    def send() -> Outcome:
        ran.append(clock.now)
        return Outcome(error="billing server busy (429)", retry_after=300)

    s.add("receipt-send", send, interval=30)
    s.step()
    s.wake("receipt-send")
    assert s.step() is None
    s.wake("receipt-send", reset=True)
    assert s.step() is s.jobs["receipt-send"] and len(ran) == 2


def test_a_wake_during_that_jobs_own_step_is_kept() -> None:
    s = Scheduler()
    started, go = threading.Event(), threading.Event()

    def send() -> Outcome:
        started.set()
        go.wait(10)
        return Outcome()

    s.add("receipt-send", send, interval=30)
    t = threading.Thread(target=s.step)
    t.start()
    assert started.wait(10)
    s.wake("receipt-send")  # the cashier typed another address while the job was sending the last one
    go.set()
    t.join()
    started.clear()
    go.set()
    assert s.step() is s.jobs["receipt-send"]  # due now, not in 30 s


# -- 8: what the registrations open is closed ------------------------------------------------------------


def test_the_headless_agent_closes_what_its_registrations_opened(billing_config: config.Config) -> None:
    closed: list[str] = []

    def opener(scheduler: Scheduler, parts: JobParts) -> None:
        parts.closing.callback(closed.append, "store")
        scheduler.add("noop", lambda: None, 60, needs_link=False)

    agent = Agent(billing_config, Notifier(None), jobs=[opener], devices=lambda: [])
    agent.start()
    assert closed == []
    agent.close()
    assert closed == ["store"]

