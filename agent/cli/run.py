"""`guichet run [--headless]`: the agent, as systemd runs it.

    guichet run --headless      uploads, bill cache, heartbeats; sd_notify READY/STATUS/WATCHDOG (agent/service.py)
    guichet run                 the cashier UI on this terminal (ui.app.run), the agent behind it

Exit status: 0 after a clean stop (SIGTERM), 1 when the journal cannot be used or another agent runs,
2 for a bad config.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys

import click

from agent.cli.common import fail, get_config
from agent.logs import setup_logging


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
    setup_logging(level)
    if headless:
        from agent import service

        sys.exit(service.main(config))
    try:
        app = importlib.import_module("ui.app")
    except ImportError as e:
        fail(f"the cashier UI is not available in this build ({e}); use `guichet run --headless`")
    ui_run = getattr(app, "run", None)
    if not callable(ui_run):
        fail("the cashier UI is not available in this build (ui.app has no run()); use `guichet run --headless`")
    # The UI owns its event loop: it gets the notifier if it can use it (READY/WATCHDOG from its loop).
    from agent.notify import Notifier

    params = inspect.signature(ui_run).parameters
    result = ui_run(config, notifier=Notifier.from_env()) if "notifier" in params else ui_run(config)
    sys.exit(result if isinstance(result, int) else 0)
