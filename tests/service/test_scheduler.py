"""The agent's one scheduler (agent/scheduler.py): named jobs on their own intervals, a failing job backs off
alone, an outage holds every job that talks to the server, a job that raises never ends the loop, `wake`,
`run_once`; and a job registered by the composition root runs in the headless service beside the sync jobs."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.errors import JournalDamaged, JournalError
from agent.notify import Notifier
from agent.scheduler import Backoff, JobParts, Link, Outcome, Scheduler
from agent.service import Agent
from agent.sync import sync_jobs
from tests.service.test_service import seed_journal


class Clock:
    """A monotonic clock the test moves: schedules are about order and intervals, not about waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _scheduler(clock: Clock) -> Scheduler:
    return Scheduler(clock=clock, link=Link(Backoff(base=1, cap=8, rng=random.Random(3))))


def test_each_job_runs_on_its_own_interval() -> None:
    clock, ran = Clock(), []
    s = _scheduler(clock)
    s.add("upload", lambda: ran.append("upload"), interval=5)
    s.add("heartbeat", lambda: ran.append("heartbeat"), interval=60)
    while s.step():
        pass
    assert ran == ["upload", "heartbeat"]  # both due at start, in order of registration
    clock.now += 5
    while s.step():
        pass
    assert ran[2:] == ["upload"]
    clock.now += 55
    while s.step():
        pass
    assert sorted(ran[3:]) == ["heartbeat", "upload"]


def test_a_job_that_fails_backs_off_alone_and_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    clock, ran = Clock(), []

    def refused() -> Outcome:
        ran.append("receipts")
        return Outcome(error="receipt refused", retry_after=30)

    def broken() -> None:
        ran.append("broken")
        raise ZeroDivisionError("a bug")

    def busy() -> None:
        ran.append("busy")
        raise JournalError("journal busy: database is locked")

    def wrong() -> Any:
        ran.append("wrong")
        return "done"  # not an Outcome: a bug in the job, reported like one

    s = _scheduler(clock)
    s.add("receipts", refused, interval=1)
    s.add("broken", broken, interval=1)
    s.add("busy", busy, interval=1)
    s.add("wrong", wrong, interval=1)
    s.add("upload", lambda: ran.append("upload"), interval=1)
    for _ in range(3):
        while s.step():
            pass
        clock.now += 1
    # The healthy job kept its 1 s interval; each failing one ran once, then waits for its own backoff.
    assert ran.count("upload") == 3
    assert ran.count("receipts") == 1  # the server's Retry-After (30 s) is the floor
    jobs = {name: s.jobs[name] for name in ("receipts", "broken", "busy", "wrong")}
    for name, job in jobs.items():  # every failure drew the next delay from that job's own backoff
        assert job.failures == job.backoff.attempt == ran.count(name) >= 1
    assert s.jobs["upload"].backoff.attempt == 0 and s.link.backoff.attempt == 0
    assert jobs["receipts"].last_error == "receipt refused" and jobs["receipts"].wait >= 30
    assert jobs["broken"].last_error == "ZeroDivisionError: a bug"
    assert "not an Outcome" in (jobs["wrong"].last_error or "")
    assert s.status().online is None  # a refusal or a bug says nothing about the link
    assert s.status().failures >= 3
    assert "broken step failed: ZeroDivisionError: a bug" in caplog.text
    assert "busy step: journal busy" in caplog.text


def test_an_outage_holds_every_job_that_needs_the_link_until_its_retry_time() -> None:
    clock, ran = Clock(), []
    answers = {"up": False}

    def upload() -> Outcome | None:
        ran.append("upload")
        if not answers["up"]:
            return Outcome(error="billing server unreachable (127.0.0.1:9): connection refused", retry_after=20,
                           offline=True)
        s.link.up()
        return None

    s = _scheduler(clock)
    s.add("upload", upload, interval=5)
    s.add("heartbeat", lambda: ran.append("heartbeat"), interval=5)
    s.add("print queue", lambda: ran.append("print"), interval=5, needs_link=False)
    while s.step():
        pass
    status = s.status()
    assert status.online is False and status.last_error and "connection refused" in status.last_error
    assert status.retry_in is not None and status.retry_in >= 20  # Retry-After is the floor
    assert ran == ["upload", "print"]  # the heartbeat waits for the link; the printer does not
    for _ in range(3):  # 15 s on: the printer's job kept its interval, the heartbeat still waits
        clock.now += 5
        while s.step():
            pass
    assert ran.count("heartbeat") == 0 and ran.count("print") == 4 and ran.count("upload") == 1
    answers["up"] = True
    clock.now += status.retry_in
    while s.step():
        pass
    assert ran.count("heartbeat") == 1 and s.status().online is True and s.retry_in() is None


def test_a_job_that_raises_an_outage_takes_the_link_down_and_a_retry_after_or_garbage_backs_off_that_job_alone(
) -> None:
    from agent.errors import BadAnswer, RetryLater, ServerUnreachable

    clock, ran = Clock(), []
    errors: list[Exception] = [RetryLater("billing server busy (503)", retry_after=40),
                               BadAnswer("billing server: reversal answer: status: should be a valid string"),
                               ServerUnreachable("billing server unreachable (127.0.0.1:9): connection refused")]

    def reversals() -> None:
        raise errors.pop(0)

    s = _scheduler(clock)
    s.add("reversals", reversals, interval=5)
    s.add("heartbeat", lambda: ran.append("heartbeat"), interval=5)
    assert s.step() is s.jobs["reversals"] and s.step() is s.jobs["heartbeat"]  # a Retry-After is the job's
    assert s.status().online is not False and s.retry_in() is None
    assert s.jobs["reversals"].due >= clock.now + 40
    clock.now += 40
    s.jobs["heartbeat"].due = clock.now + 1000  # out of the way
    assert s.step() is s.jobs["reversals"]
    assert s.status().failures == 1 and s.status().online is not False  # garbage is counted; no outage
    clock.now = s.jobs["reversals"].due
    s.jobs["heartbeat"].due = clock.now
    assert s.step() is s.jobs["reversals"]  # connection refused: the link is down, the heartbeat waits for it
    status = s.status()
    assert status.online is False and status.retry_in is not None and s.retry_in() is not None
    assert s.step() is None and ran == ["heartbeat"]


def test_wake_runs_a_job_now_even_while_the_link_waits() -> None:
    clock, ran = Clock(), []
    s = _scheduler(clock)
    def upload() -> Outcome:
        ran.append("upload")
        return Outcome(error="down", offline=True)

    s.add("upload", upload, interval=5)
    for _ in range(4):
        s.wake("upload")
        s.step()
    assert ran == ["upload"] * 4 and s.link.backoff.attempt == 4
    s.wake("upload", reset=True)  # the cashier says the link is back: the backoff starts over
    assert s.link.backoff.attempt == 0 and s.step() is not None


def test_run_once_drains_what_a_job_has_and_is_bounded() -> None:
    clock = Clock()
    pages = list(range(5))
    s = _scheduler(clock)
    s.add("bills", lambda: Outcome(more=bool(pages and pages.pop())), interval=900)
    s.add("endless", lambda: Outcome(more=True), interval=900)
    done = s.run_once(bound=50)
    assert not pages and done["bills"].more is False
    assert s.jobs["endless"].runs == 50  # a job that always has more stops at the bound


def test_run_once_leaves_the_jobs_that_need_the_link_once_it_failed() -> None:
    clock, ran = Clock(), []
    s = _scheduler(clock)
    s.add("upload", lambda: Outcome(error="unreachable", offline=True), interval=5)
    s.add("heartbeat", lambda: ran.append("heartbeat"), interval=5)
    s.add("print queue", lambda: ran.append("print"), interval=5, needs_link=False)
    assert list(s.run_once()) == ["upload", "print queue"] and ran == ["print"]


def test_a_damaged_journal_leaves_the_loop_and_nothing_else_does() -> None:
    ran = {"n": 0}

    def job() -> None:
        ran["n"] += 1
        if ran["n"] == 3:
            raise JournalDamaged("journal damaged: page 7")
        raise RuntimeError("a bug")

    s = Scheduler()
    s.add("job", job, interval=0)
    with pytest.raises(JournalDamaged):
        s.run(threading.Event(), max_wait=0.01)
    assert ran["n"] == 3


def test_run_ends_when_stop_is_set_and_a_name_is_registered_once() -> None:
    s = Scheduler()
    stop, seen = threading.Event(), []

    def after(job: Any) -> None:
        seen.append(job)
        if len([j for j in seen if j is not None]) >= 3:
            stop.set()

    s.add("tick", lambda: None, interval=0)
    s.run(stop, on_step=after, max_wait=0.01)
    assert len([j for j in seen if j is not None]) == 3
    with pytest.raises(ValueError, match="already registered"):
        s.add("tick", lambda: None, interval=1)


def test_the_headless_agent_runs_a_registered_job_beside_the_sync_jobs(
        tmp_path: Path, billing_server: Any, billing_config: Any, seeded_references: list[str]) -> None:
    """A new periodic job is one registration: it runs in the service's scheduler, and its failures back it
    off without holding back the uploads or the heartbeat."""
    ids = seed_journal(Path(billing_config.state.dir), billing_server, seeded_references, approved=3)
    runs: list[int] = []

    def reversals(scheduler: Scheduler, parts: JobParts) -> None:
        def retry() -> Outcome:
            runs.append(parts.journal.queue_stats().count)
            if len(runs) == 1:
                raise ConnectionError("reversal endpoint: boom")
            return Outcome()

        scheduler.add("reversals", retry, interval=0.05, backoff=Backoff(base=0.01, cap=0.05))

    devices = [{"kind": "tpe", "name": "socket://127.0.0.1:8888", "state": "present"}]
    agent = Agent(billing_config, Notifier(None), jobs=[sync_jobs, reversals], devices=lambda: devices)
    agent.start()
    thread = threading.Thread(target=agent.run, name="agent")
    thread.start()
    try:
        for _ in range(400):  # bounded: ~20 s of 50 ms polls
            if (len(runs) >= 3 and {p["payment_id"] for p in billing_server.recorded_payments()}
                    >= set(ids["approved"])):
                break
            agent.stop.wait(0.05)
    finally:
        agent.stop.set()
        thread.join(30)
        agent.close()
    assert not thread.is_alive()
    assert len(runs) >= 3, "the registered job never ran again after it failed"
    assert {p["payment_id"] for p in billing_server.recorded_payments()} == set(ids["approved"])
    beats = requests.get(billing_server.url.rstrip("/") + "/_sandbox/heartbeats",
                         headers=billing_server.admin_headers(), timeout=5).json()["items"]
    assert beats and beats[-1]["body"]["devices"] == devices  # the devices= callable reaches the heartbeat


def test_guichet_run_hands_the_same_jobs_to_the_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    from guichet.cli.run import JOBS, _run_ui

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    got: list[Any] = []

    def ui_run(config: Any, *, notifier: Any, jobs: Any) -> int:
        got.append(jobs)
        return 0

    assert _run_ui(ui_run, config=None) == 0
    assert got == [JOBS] and sync_jobs in JOBS


def test_guichet_sync_once_runs_every_registered_job_and_prints_the_round(
        tmp_path: Path, billing_server: Any, billing_config: Any, seeded_references: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import config
    from guichet.cli import main

    ids = seed_journal(Path(billing_config.state.dir), billing_server, seeded_references, approved=2)
    runs: list[str] = []

    def receipts(scheduler: Scheduler, parts: JobParts) -> None:
        scheduler.add("receipts", lambda: runs.append("receipts"), interval=60)

    monkeypatch.setattr("guichet.cli.pay.JOBS", [sync_jobs, receipts])
    path = config.write_config(billing_config, tmp_path / "guichet.toml")
    r = CliRunner().invoke(main, ["--config", str(path), "sync", "--once"])
    assert r.exit_code == 0, r.output
    assert "uploaded 2, duplicates 0, rejected 0, left 0" in r.output
    assert runs == ["receipts"]
    assert {p["payment_id"] for p in billing_server.recorded_payments()} == set(ids["approved"])


def test_guichet_sync_runs_rounds_until_sigterm(
        tmp_path: Path, billing_server: Any, billing_config: Any, seeded_references: list[str]) -> None:
    import os
    import queue
    import signal
    import subprocess
    import sys

    import config

    ids = seed_journal(Path(billing_config.state.dir), billing_server, seeded_references, approved=3)
    path = config.write_config(billing_config, tmp_path / "guichet.toml")
    proc = subprocess.Popen([sys.executable, "-m", "guichet", "--config", str(path), "sync"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in proc.stdout or ():
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        first = lines.get(timeout=30)  # a guard, not a measure: the first round's line
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert first.startswith("uploaded 3, duplicates 0, rejected 0, left 0; next round in"), first
    assert {p["payment_id"] for p in billing_server.recorded_payments()} == set(ids["approved"])
    assert "Traceback" not in err
