"""The cashier's Textual app.

    from ui.app import GuichetApp, run
    run(config)                                   # what `guichet run` calls: opens the agent, runs the UI

    app = GuichetApp(Backend.open(config))        # tests: async with app.run_test() as pilot: ...

Screens: login -> payment (F2) with history (F3), needs attention (F4), unknown outcomes (F6),
Z report / close shift (F7), cashier accounts (F12, supervisor); F8 switches language (fr -> ar -> en);
F10 logs out.
All blocking work (PIN hashing, lookups, payments, settling, sync, status polling) runs in thread
workers that post messages back; handlers only repaint.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from config import Config
from ui import console, i18n
from ui.backend import Backend
from ui.i18n import _, t
from ui.messages import DeviceUpdate, LinkInfo, QueueInfo, StatusUpdate
from ui.widgets.status_bar import StatusBar

log = logging.getLogger(__name__)


class GuichetApp(App[int]):
    """The counter. `backend` holds the agent pieces; `demo` (optional) the simulated devices."""

    CSS_PATH = "guichet.tcss"
    TITLE = "guichet"
    ENABLE_COMMAND_PALETTE = False

    BINDINGS = [
        Binding("f2", "goto('payment')", "Payment"),
        Binding("f3", "goto('history')", "History"),
        Binding("f4", "goto('attention')", "Attention"),
        Binding("f6", "goto('unknown')", "Unknown"),
        Binding("f7", "goto('zreport')", "Z report"),
        Binding("f8", "language", "Language"),
        Binding("f10", "logout", "Log out"),
        Binding("f12", "goto('cashiers')", "Cashiers"),
        Binding("ctrl+r", "sync_now", "Upload now"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        # guichet demo only: the demo panel's cards.
        Binding("ctrl+b", "demo_card('cib')", "Insert CIB", priority=True, show=False),
        Binding("ctrl+e", "demo_card('edahabia')", "Insert Edahabia", priority=True, show=False),
        # Ctrl+T, not Ctrl+V: that one pastes into the fields.
        Binding("ctrl+t", "demo_card('visa')", "Insert Visa", priority=True, show=False),
        Binding("ctrl+x", "demo_card('')", "Pull the card", priority=True, show=False),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "demo_card":
            return self.demo is not None
        return True

    def action_demo_card(self, profile: str) -> None:
        from ui.widgets.demo_panel import DemoPanel

        for panel in self.screen.query(DemoPanel):
            panel.card(profile or None)
            return
        if self.demo is not None:
            self.demo_card_worker(profile or None)

    @work(thread=True, exit_on_error=False, group="demo-card", exclusive=True)
    def demo_card_worker(self, profile: str | None) -> None:
        from ui.widgets.demo_panel import card_event

        self.post_message(card_event(self.demo, profile))

    def __init__(
        self,
        backend: Backend,
        *,
        demo: Any = None,
        clock: Callable[[], datetime] | None = None,
        run_sync: bool = True,
        status_interval: float = 1.0,
        auto_login: tuple[str, str] | None = None,
        notifier: Any = None,
        device_registry: Any = None,
        jobs: Sequence[Any] | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.config: Config = backend.config
        self.demo = demo
        self.clock = clock or (lambda: datetime.now(UTC))
        self.run_sync = run_sync
        self.status_interval = status_interval
        self.auto_login = auto_login
        self.notifier = notifier
        self.cashier: Any = None
        self.shift: Any = None
        self.link = LinkInfo(online=None)
        self.queue = QueueInfo()
        self.devices: dict[str, str] = {}
        # agent.devices.DeviceRegistry: made from the config at mount unless given (tests: faster loops).
        self.device_registry: Any = device_registry
        self.last_lookup_online: bool | None = None
        # The agent's periodic jobs (agent.scheduler registrations; default: upload, bill cache, heartbeat),
        # run by the sync worker in the one scheduler the headless service runs too.
        self.jobs = list(jobs) if jobs is not None else None
        self.scheduler: Any = None
        self.stop_event = threading.Event()
        self.stopping: str | None = None  # the signal that asked the UI to end (request_stop)
        self.own_process = False  # set by run(): a stop signal may then end the process (end_if_stuck)
        self._backstop: threading.Thread | None = None
        self.status_wakeup = threading.Event()
        i18n.set_language(self.config.ui.language, bidi=self.config.ui.bidi)
        console.setup(self)  # TERM=linux: the console font's glyphs, 16 colours, no Arabic (ui/console.py)

    # -- life cycle ---------------------------------------------------------------------------------------

    def on_mount(self) -> None:
        from ui.screens.login import LoginScreen

        self.push_screen(LoginScreen())
        self.status_loop()
        if self.run_sync:
            self.sync_loop()
        self.watch_devices()
        if self.notifier is not None and self.notifier.enabled:
            self.call_after_refresh(self.notifier.ready, "cashier UI ready")
            interval = self.notifier.ping_interval
            if interval:
                self.set_interval(interval, self.notifier.watchdog)

    def watch_devices(self) -> None:
        """Reader and TPE states for the status bar, live from the device registry (its own threads: the UI
        thread never waits on a device). The readers only on a counter that reads cards."""
        from agent.devices import DeviceRegistry, DeviceState

        registry = self.device_registry
        if registry is None:
            readers = "card_reader" in self.backend.authorizers or self.demo is not None
            registry = self.device_registry = DeviceRegistry.from_config(self.config, readers=readers)

        def changed(st: DeviceState) -> None:
            now = registry.summary().get(st.kind)
            self.post_message(DeviceUpdate(st.kind, now.state if now else "absent", now.detail if now else ""))

        registry.subscribe(changed)
        try:
            registry.start()
        except Exception as e:  # noqa: BLE001 - no thread for the devices: the bar shows none, payments go on
            log.warning("device registry: %s", e)

    def device_heartbeat(self) -> list[dict[str, str]]:
        """The heartbeat's ``devices`` (billing API 1.1), from the registry; [] before it is made."""
        registry = self.device_registry
        return registry.heartbeat() if registry is not None else []

    def on_unmount(self) -> None:
        self.stop_event.set()
        self.status_wakeup.set()
        if self.device_registry is not None:
            self.device_registry.stop(timeout=0)  # never wait on a device from the UI thread

    def make_status_bar(self) -> StatusBar:
        bar = StatusBar(clock=self.clock, warn_after=self.config.offline.warn_after)
        bar.link, bar.queue, bar.devices = self.link, self.queue, dict(self.devices)
        bar.cashier = self.cashier_label()
        return bar

    def cashier_label(self) -> str:
        if self.cashier is None:
            return ""
        return f"{self.cashier.name} ({self.cashier.cashier_id})"

    def _status_bars(self) -> list[StatusBar]:
        bars: list[StatusBar] = []
        for screen in self.screen_stack:
            bars.extend(screen.query(StatusBar))
        return bars

    # -- workers: status polling and upload ----------------------------------------------------------------

    @work(thread=True, exit_on_error=False, group="status", name="status")
    def status_loop(self) -> None:
        """Reads queue figures from a journal connection of its own, about once a second."""
        journal = self.backend.open_journal()
        try:
            while not self.stop_event.is_set():
                try:
                    self.post_message(StatusUpdate(self._link_now(), self._queue_now(journal)))
                except Exception as e:  # a busy database must not kill the status bar
                    log.warning("status: %s", e)
                self.status_wakeup.wait(self.status_interval)
                self.status_wakeup.clear()
        finally:
            journal.close()

    def refresh_status(self) -> None:
        """Ask the status worker for fresh figures now (after a payment, a settle...)."""
        self.status_wakeup.set()

    def _link_now(self) -> LinkInfo:
        if self.scheduler is not None:
            st = self.scheduler.status()
            return LinkInfo(online=st.online, since=st.since, retry_in=st.retry_in, last_error=st.last_error)
        return LinkInfo(online=self.last_lookup_online, since=self.link.since)

    @staticmethod
    def _queue_now(journal: Any) -> QueueInfo:
        stats = journal.queue_stats()
        return QueueInfo(
            count=stats.count,
            total=dict(stats.total),
            oldest_captured_at=_as_dt(stats.oldest_captured_at),
            needs_attention=stats.needs_attention,
            unknown=stats.unknown,
        )

    @work(thread=True, exit_on_error=False, group="sync", name="sync")
    def sync_loop(self) -> None:
        """Runs the agent's jobs (uploads, bill cache, heartbeat) while the UI runs, unless another process
        (the service) already does: the scheduler of agent/scheduler.py, in this thread, with a journal
        connection and a billing client of its own."""
        from agent.billing import BillingClient
        from agent.errors import AlreadyRunning
        from agent.locks import UploadLock
        from agent.scheduler import Backoff, Job, JobParts, Scheduler, one_line
        from agent.sync import sync_jobs

        def after(job: Job | None) -> None:
            if job is not None:
                self.refresh_status()

        # The scheduler catches what each job raises; this loop is for what escapes it (the journal cannot be
        # opened now, a damaged journal, a bug, even a SystemExit): logged, backed off from, started again.
        # Uploads never stop while the UI runs. What the registrations opened is closed at each restart.
        registrations = self.jobs if self.jobs is not None else [sync_jobs]
        backoff = Backoff()
        while not self.stop_event.is_set():
            try:
                with UploadLock(self.backend.state_dir):
                    journal = self.backend.open_journal()
                    client: BillingClient | None = None
                    try:
                        client = BillingClient(self.config)
                        scheduler = Scheduler()
                        parts = JobParts(self.config, journal, client, self.backend.bills,
                                         devices=self.device_heartbeat)
                        with parts.closing:
                            for register in registrations:
                                register(scheduler, parts)
                            self.scheduler = scheduler
                            scheduler.run(self.stop_event, on_step=after, max_wait=0.5)
                    finally:
                        journal.close()
                        if client is not None:
                            client.close()
            except AlreadyRunning:
                log.info("another process uploads this journal; the UI only shows the queue")
                return
            except BaseException as e:  # noqa: BLE001 - a worker thread: nothing it raises may end the UI
                log.error("upload worker failed: %s; starting it again", one_line(e))
                self.stop_event.wait(backoff.next())

    def action_sync_now(self) -> None:
        """Start an upload round now instead of waiting for the backoff (the link just came back)."""
        if self.scheduler is not None:
            self.scheduler.wake("upload", reset=True)
        self.refresh_status()

    def on_status_update(self, msg: StatusUpdate) -> None:
        if msg.link.online is False and self.link.online is not False and msg.link.since is None:
            msg.link.since = self.clock()
        self.link, self.queue = msg.link, msg.queue
        for bar in self._status_bars():
            bar.update_status(msg.link, msg.queue)

    def on_device_update(self, msg: DeviceUpdate) -> None:
        self.devices[msg.kind] = msg.state
        for bar in self._status_bars():
            bar.update_device(msg.kind, msg.state)

    def note_lookup(self, online: bool) -> None:
        """Without our own sync worker, the last lookup tells whether the server answers."""
        if self.scheduler is None:
            if not online and self.last_lookup_online is not False:
                self.link = LinkInfo(online=False, since=self.clock())
            self.last_lookup_online = online
            self.refresh_status()

    # -- session ------------------------------------------------------------------------------------------

    def logged_in(self, cashier: Any, shift: Any, unknown: int = 0) -> None:
        """After a good PIN: the payment screen, and straight to unknown outcomes if there are any."""
        from ui.screens.payment import PaymentScreen

        self.cashier, self.shift = cashier, shift
        for bar in self._status_bars():
            bar.set_cashier(self.cashier_label())
        self.switch_screen(PaymentScreen())
        if unknown:
            self.call_after_refresh(self.action_goto, "unknown")

    async def action_quit(self) -> None:
        """Quit, but never while a payment waits for its outcome: it would be left unknown. At a counter
        (`guichet run`, not the demo) only a supervisor quits: the cashier logged in, or a supervisor's PIN
        asked for, so nobody at the desk leaves tty1 or the kiosk without the UI."""
        if self.backend.payments_in_flight:
            self.notify(t("A payment is in progress: wait for its outcome before quitting"), severity="warning")
            return
        if self.demo is not None or (self.cashier is not None and self.cashier.is_supervisor):
            await super().action_quit()
            return
        from ui.screens.supervisor import SupervisorScreen

        if isinstance(self.screen, SupervisorScreen):
            return

        def then(who: Any) -> None:
            if who is not None and not self.backend.payments_in_flight:
                log.info("the UI was quit by supervisor %s", who.cashier_id)
                self.exit(0)

        self.push_screen(SupervisorScreen(), then)

    def action_help_quit(self) -> None:
        """Ctrl+C: Textual would tell anyone, in English, which key quits; a counter says nothing."""

    def request_stop(self, why: str) -> None:
        """SIGTERM (systemctl stop, shutdown) or SIGHUP (the kiosk's terminal went away): end the UI once no
        payment is in flight, so each payment reaches its outcome first (units: TimeoutStopSec=200)."""
        if self.backend.payments_in_flight:
            if self.stopping is None:
                log.warning("%s: the UI ends once the payment in flight has its outcome", why)
                self.notify(t("The counter is stopping: it closes once this payment has its outcome"),
                            severity="warning", timeout=30)
            self.stopping = why
            self.set_timer(STOP_POLL, lambda: self.request_stop(why))
            return
        log.info("%s: the UI ends", why)
        self.stopping = why
        self.exit(0)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """App.run with SIGTERM and SIGHUP handled (stop_on_signals), for `guichet run` and the demo."""
        self.own_process = True  # a stop signal may end this process (stop_on_signals' backstop); tests never run()
        restore = stop_on_signals(self)
        try:
            return super().run(*args, **kwargs)
        finally:
            restore()

    def action_logout(self) -> None:
        from ui.screens.login import LoginScreen

        if self.cashier is None:
            return
        self.cashier = None
        while len(self.screen_stack) > 2:
            self.pop_screen()
        self.switch_screen(LoginScreen())

    def action_goto(self, name: str) -> None:
        if self.cashier is None:
            return
        from ui.screens.history import HistoryScreen
        from ui.screens.unknown import UnknownScreen
        from ui.screens.zreport import ZReportScreen

        factories: dict[str, Callable[[], Screen[Any]]] = {
            "history": lambda: HistoryScreen(mode="today"),
            "attention": lambda: HistoryScreen(mode="attention"),
            "unknown": UnknownScreen,
            "zreport": ZReportScreen,
        }
        # Don't leave a payment screen waiting on money: modal screens (the wait panel) stay.
        if getattr(self.screen, "is_modal", False):
            return
        while len(self.screen_stack) > 2:
            self.pop_screen()
        if name == "cashiers":
            self.open_cashiers()
        elif name in factories:
            self.push_screen(factories[name]())

    def open_cashiers(self) -> None:
        """The accounts screen is for supervisors: a cashier at the counter is asked a supervisor's PIN,
        and every change is recorded under that supervisor's id."""
        from ui.screens.cashiers import CashiersScreen
        from ui.screens.supervisor import SupervisorScreen

        if self.cashier is not None and self.cashier.is_supervisor:
            self.push_screen(CashiersScreen(actor=self.cashier))
            return

        def then(who: Any) -> None:
            if who is not None:
                self.push_screen(CashiersScreen(actor=who))

        self.push_screen(SupervisorScreen(), then)

    def action_language(self) -> None:
        langs = i18n.LANGUAGES
        self.set_language(langs[(langs.index(i18n.language()) + 1) % len(langs)])

    def set_language(self, language: str) -> None:
        """Switch language at run time: every screen is composed again from its own state."""
        language = console.switch(self, language)  # the console cannot draw Arabic: says so (ui/console.py)
        i18n.set_language(language)
        for screen in self.screen_stack:
            i18n.retranslate_attrs(screen)  # a message shown before the switch follows it (ui/i18n.py)
            screen.set_class(i18n.is_rtl(), "-rtl")
            relabel = getattr(screen, "relabel", None)
            if relabel:
                relabel()
            else:
                screen.refresh(recompose=True)
        self.refresh_bindings()

    def on_screen_resume(self) -> None:
        self.screen.set_class(i18n.is_rtl(), "-rtl")

    def tr(self, message: str) -> str:
        return _(message)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
STOP_POLL = 0.5  # seconds between two looks at the payments in flight once asked to stop
STOP_GRACE = 10.0  # seconds the UI has to end, once no payment is in flight, before its process ends regardless


def end_if_stuck(app: Any, why: str, grace: float = STOP_GRACE) -> threading.Thread:
    """A stop signal's backstop in a real process: Textual's shutdown writes the terminal's last codes through a
    writer thread, and a terminal that went away without being drained (SIGHUP) blocks that write, and the UI's
    loop with it, for ever, holding the counter's lock. Once no payment is in flight and `grace` has passed, the
    process ends. Every payment's state is committed by then, so this is no worse than the crash the journal is
    built for; while a payment is in flight it waits (systemd's TimeoutStopSec is the last word there)."""

    def backstop() -> None:
        while not app.backend.wait_idle(1.0):
            pass
        time.sleep(grace)
        # The log may go to that same stuck terminal (stderr): it gets a moment, never the last word.
        said = threading.Thread(target=log.error, daemon=True, args=(
            "%s: the UI did not end %.0f s after its last payment; ending the process", why, grace))
        said.start()
        said.join(2.0)
        os._exit(0)

    thread = threading.Thread(target=backstop, name="stop-backstop", daemon=True)
    thread.start()
    return thread


def stop_on_signals(app: GuichetApp) -> Callable[[], None]:
    """Route SIGTERM and SIGHUP to app.request_stop (on the app's event loop); returns what puts the
    previous handlers back. Only the main thread may set handlers: elsewhere this does nothing.

        restore = stop_on_signals(app)
        try: app.run()
        finally: restore()
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # before the UI's loop runs or after it ended: nothing is in flight
            log.info("%s before the UI runs: ignored", name)
            app.stopping = name
            return
        loop.call_soon_threadsafe(app.request_stop, name)
        if app.own_process and app._backstop is None:
            app._backstop = end_if_stuck(app, name)  # the loop itself may be what is stuck

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def _as_dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def run(config: Config, *, notifier: Any = None, backend: Backend | None = None,
        jobs: Sequence[Any] | None = None) -> int:
    """`guichet run`: the cashier UI on this terminal, with the upload worker inside.

    Claims the counter (one process takes payments), settles a crashed predecessor's leftovers (they show
    up as unknown outcomes at login). With a systemd `notifier`, READY=1 goes out when the first screen is
    up and WATCHDOG=1 from the UI's own event loop, so a frozen UI is detected.
    """
    from agent.errors import AlreadyRunning, JournalError

    own = backend is None
    try:
        backend = backend or Backend.open(config)
    except (AlreadyRunning, JournalError) as e:
        import sys

        print(f"guichet: {e}", file=sys.stderr)
        return 1
    try:
        app = GuichetApp(backend, notifier=notifier, jobs=jobs)
        app.run()
        return 0
    finally:
        if notifier is not None:
            notifier.stopping()
        if own:
            backend.close()
