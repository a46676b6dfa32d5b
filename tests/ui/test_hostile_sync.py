"""The UI's upload worker outlives a billing server that answers garbage, and uploads once it is sane again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.core.stub_server import StubServer, json_answer
from tests.core.test_review_fixes import requests_forward
from tests.ui.conftest import login, screen_name, text_of, type_into, wait_for

pytestmark = pytest.mark.anyio


async def test_the_upload_worker_survives_a_garbage_batch_answer_and_uploads_later(
    ui_app: Any, ui_config: Any, billing_server: Any, seeded_references: list[str]
) -> None:
    forward = requests_forward(billing_server)
    garbage = {"on": True, "served": 0}

    def handler(method: str, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
        if garbage["on"] and path.endswith("/payments/batch"):
            garbage["served"] += 1
            # A result whose `error` is a string: the shape that killed the worker (issue 12).
            return json_answer(200, {"results": [{"payment_id": p["payment_id"], "status": "rejected",
                                                  "error": "invalid_payment"} for p in body["payments"]]})
        return forward(method, path, body)

    ref = seeded_references[0]
    with StubServer(handler) as stub:
        cfg = ui_config.model_copy(deep=True)
        cfg.server.url = stub.url
        app = ui_app(cfg, status_interval=0.1)
        async with app.run_test(size=(160, 44)) as pilot:
            await login(pilot)
            await type_into(pilot, "#reference", ref)
            await wait_for(pilot, lambda: app.screen.basket, "the bill in the basket")
            await pilot.press("f5")
            await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", "the receipt")
            await pilot.press("enter")
            [p] = app.backend.journal.list(bill_reference=ref)
            await wait_for(pilot, lambda: garbage["served"] >= 2, "two garbage batch answers")
            await wait_for(pilot, lambda: "Hors ligne" in text_of(pilot, "#sb-link"), "offline in the bar")
            link = app.scheduler.status()
            assert "results[0].error" in (link.last_error or "")
            assert app.backend.journal.get(p.payment_id).state == "approved"  # kept, never marked rejected
            sync = [w for w in app.workers if w.name == "sync"]
            assert sync and not sync[0].is_finished, "the upload worker died"

            garbage["on"] = False  # the server is sane again
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: "Non transmis : 0" in text_of(pilot, "#sb-queue"), "the queue drained")
            await wait_for(pilot, lambda: "En ligne" in text_of(pilot, "#sb-link"), "online in the bar")
    assert app.backend.journal.get(p.payment_id).state == "uploaded"
    assert [r["payment_id"] for r in billing_server.recorded_payments()] == [p.payment_id]


async def test_a_job_registered_beside_the_uploads_runs_in_the_ui_and_its_failures_stop_nothing(
    ui_app: Any, ui_config: Any, billing_server: Any, seeded_references: list[str]
) -> None:
    """The UI runs the composition root's jobs in the one scheduler: a job that raises every time (a receipt
    sender whose SMTP server is down) is backed off and retried, and the payment still goes up."""
    from agent.scheduler import Backoff, JobParts, Scheduler
    from agent.sync import sync_jobs

    runs: list[int] = []

    def receipts(scheduler: Scheduler, parts: JobParts) -> None:
        def send() -> None:
            runs.append(parts.journal.queue_stats().count)
            raise OSError("smtp 127.0.0.1:2525: connection refused")

        scheduler.add("receipts", send, interval=0.05, needs_link=False, backoff=Backoff(base=0.01, cap=0.05))

    ref = seeded_references[1]
    app = ui_app(ui_config, status_interval=0.1, jobs=[sync_jobs, receipts])
    async with app.run_test(size=(160, 44)) as pilot:
        await login(pilot)
        await type_into(pilot, "#reference", ref)
        await wait_for(pilot, lambda: app.screen.basket, "the bill in the basket")
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", "the receipt")
        await pilot.press("enter")
        [p] = app.backend.journal.list(bill_reference=ref)
        await wait_for(pilot, lambda: len(runs) >= 3, "the registered job retried after its failures")
        await wait_for(pilot, lambda: app.backend.journal.get(p.payment_id).state == "uploaded", "the upload")
        job = app.scheduler.jobs["receipts"]
        assert job.last_error == "OSError: smtp 127.0.0.1:2525: connection refused" and job.failures >= 3
        sync = [w for w in app.workers if w.name == "sync"]
        assert sync and not sync[0].is_finished, "the scheduler's worker died"
    assert [r["payment_id"] for r in billing_server.recorded_payments()] == [p.payment_id]


async def test_a_job_that_raises_systemexit_never_ends_the_uis_uploads(
    ui_app: Any, ui_config: Any, billing_server: Any, seeded_references: list[str]
) -> None:
    """Review 3, finding 5: a library's sys.exit() in a job is that job's failure; the sync thread, the UI and
    the uploads go on."""
    from agent.scheduler import Backoff, JobParts, Scheduler
    from agent.sync import sync_jobs

    raised: list[int] = []

    def plugin(scheduler: Scheduler, parts: JobParts) -> None:
        def run() -> None:
            raised.append(1)
            raise SystemExit(3)

        scheduler.add("plugin", run, interval=0.05, needs_link=False, backoff=Backoff(base=0.01, cap=0.05))

    ref = seeded_references[2]
    app = ui_app(ui_config, status_interval=0.1, jobs=[sync_jobs, plugin])
    async with app.run_test(size=(160, 44)) as pilot:
        await wait_for(pilot, lambda: len(raised) >= 2, "the job raised SystemExit twice")
        await login(pilot)
        await type_into(pilot, "#reference", ref)
        await wait_for(pilot, lambda: app.screen.basket, "the bill in the basket")
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", "the receipt")
        await pilot.press("enter")
        [p] = app.backend.journal.list(bill_reference=ref)
        await wait_for(pilot, lambda: app.backend.journal.get(p.payment_id).state == "uploaded", "the upload")
        assert app.scheduler.jobs["plugin"].last_error == "SystemExit: 3"
        sync = [w for w in app.workers if w.name == "sync"]
        assert sync and not sync[0].is_finished, "the scheduler's worker died"
        assert app.is_running


async def test_the_ui_sync_worker_closes_what_its_registrations_opened_at_each_restart(
    ui_app: Any, ui_config: Any, billing_server: Any
) -> None:
    """Review 3, finding 8: a damaged journal ends the scheduler and the UI starts its worker again; what a
    registration opened (the receipts' stores) is closed each time, never leaked."""
    from agent.errors import JournalDamaged
    from agent.scheduler import JobParts, Scheduler
    from agent.sync import sync_jobs

    opened: list[int] = []
    closed: list[int] = []

    def store(scheduler: Scheduler, parts: JobParts) -> None:
        opened.append(1)
        parts.closing.callback(closed.append, 1)

        def check() -> None:
            raise JournalDamaged("journal.db: database disk image is malformed")

        scheduler.add("check", check, 60, needs_link=False)

    app = ui_app(ui_config, status_interval=0.1, jobs=[sync_jobs, store])
    async with app.run_test(size=(160, 44)) as pilot:
        await wait_for(pilot, lambda: len(opened) >= 2 and len(closed) >= 2, "two restarts", rounds=600)
        assert len(closed) >= len(opened) - 1  # only the running one is open
        sync = [w for w in app.workers if w.name == "sync"]
        assert sync and not sync[0].is_finished
    for _ in range(200):  # the worker thread ends after the UI's stop event (bounded: 10 s)
        if len(closed) == len(opened):
            break
        await asyncio.sleep(0.05)
    assert len(closed) == len(opened)  # and that one is closed when the UI quits
