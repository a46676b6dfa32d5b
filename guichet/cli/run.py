"""`guichet run [--headless]`: the agent, as systemd runs it.

    guichet run --headless      uploads, bill cache, heartbeats; sd_notify READY/STATUS/WATCHDOG (agent/service.py)
    guichet run                 the cashier UI on this terminal (ui.app.run), the agent behind it

Exit status: 0 after a clean stop (SIGTERM), 1 when the journal cannot be used or another agent runs,
2 for a bad config.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import threading
from typing import Any

import click

from agent.logs import setup_logging
from agent.notify import Notifier
from agent.reversals import reversal_jobs
from agent.scheduler import Registration
from agent.sync import sync_jobs
from guichet.cli.common import fail, get_config
from ui.receipt import receipt_jobs  # no Textual: the print queue and the e-mail/SMS requests

# Every periodic job of the agent, run by the one scheduler (agent/scheduler.py) in the headless service and
# in the cashier UI alike. A new job (reversals to retry, receipts to send, a print queue) is one entry here:
# a callable (scheduler, JobParts) that calls scheduler.add(name, run, interval).
JOBS: list[Registration] = [sync_jobs, receipt_jobs, reversal_jobs]


@click.command()
@click.option("--headless", is_flag=True, help="No UI: the agent only (sync, devices, service).")
@click.option("--log-level", default=None, help="DEBUG, INFO (default), WARNING or ERROR; or $GUICHET_LOG_LEVEL.")
@click.pass_context
def run(ctx: click.Context, headless: bool, log_level: str | None) -> None:
    """The agent (systemd runs this); the cashier UI on the terminal unless --headless."""
    level = (log_level or os.environ.get("GUICHET_LOG_LEVEL") or "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail(f"--log-level: {level!r} is not DEBUG, INFO, WARNING or ERROR", usage=True)
    config = get_config(ctx)
    if headless or not sys.stderr.isatty():
        # Log lines on the terminal the UI draws on would garble it: there, the UI shows what matters.
        setup_logging(level)
    if headless:
        from agent import service

        sys.exit(service.main(config, jobs=JOBS))
    # Imported here, not at the top: the headless service on a counter never loads Textual.
    from ui.app import run as ui_run

    sys.exit(_run_ui(ui_run, config))


def _run_ui(ui_run: Any, config: Any) -> int:
    """The UI owns its event loop, so it should send READY=1 and WATCHDOG=1 itself: it gets the notifier
    when ui.app.run() takes a `notifier` argument. Otherwise READY=1 goes out just before the UI starts and
    a keep-alive thread pings the watchdog for the process (a frozen UI is then not detected; logged)."""
    notifier = Notifier.from_env()
    params = inspect.signature(ui_run).parameters
    extra: dict[str, Any] = {"jobs": JOBS} if "jobs" in params else {}
    if "notifier" in params:
        result = ui_run(config, notifier=notifier, **extra)
        return result if isinstance(result, int) else 0
    stop = threading.Event()
    if notifier.enabled:
        notifier.ready(status="cashier UI starting")
        interval = notifier.ping_interval
        if interval is not None:
            logging.getLogger("guichet.run").warning(
                "ui.app.run() takes no notifier: the watchdog covers the process, not the UI's event loop"
            )

            def keepalive() -> None:
                while not stop.wait(interval):
                    notifier.watchdog()

            threading.Thread(target=keepalive, name="watchdog-keepalive", daemon=True).start()
    try:
        result = ui_run(config, **extra)
    finally:
        stop.set()
        notifier.stopping()
    return result if isinstance(result, int) else 0
