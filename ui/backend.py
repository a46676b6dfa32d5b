"""The agent pieces the cashier UI drives, opened from one config.

    backend = Backend.open(config)            # claims the counter, recovers a crashed predecessor's leftovers
    app = GuichetApp(backend)
    ...
    backend.close()

The journal, bill cache, billing client, payment flow and authorizers come from the lead's
`agent.context.AgentContext` (the same ones `guichet pay` uses); cashiers and shifts from
`agent.cashiers.CashierStore`. Pass `authorizers=` to choose the payment methods yourself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.cashiers import CashierStore
from config import Config

log = logging.getLogger(__name__)


@dataclass
class Backend:
    config: Config
    context: Any  # agent.context.AgentContext
    cashiers: CashierStore
    extras: dict[str, Any] = field(default_factory=dict)
    _in_flight: int = 0
    _idle: threading.Condition = field(default_factory=threading.Condition)

    @contextmanager
    def payment_in_flight(self) -> Iterator[None]:
        """Around flow.pay(): the journal stays open, and the app refuses to quit, until it has an outcome."""
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    @property
    def payments_in_flight(self) -> int:
        with self._idle:
            return self._in_flight

    def wait_idle(self, timeout: float) -> bool:
        """Wait (bounded) for payments in flight to reach their outcome; True when none is left."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    @property
    def journal(self) -> Any:
        return self.context.journal

    @property
    def flow(self) -> Any:
        return self.context.flow

    @property
    def bills(self) -> Any:
        return self.context.bills

    @property
    def client(self) -> Any:
        return self.context.client

    @property
    def authorizers(self) -> dict[str, Any]:
        return dict(self.context.flow.authorizers)

    @property
    def state_dir(self) -> Path:
        return Path(self.config.state.dir)

    @classmethod
    def open(
        cls,
        config: Config,
        *,
        authorizers: dict[str, Any] | None = None,
        cashiers: CashierStore | None = None,
    ) -> Backend:
        """Open everything; raises AlreadyRunning when another process takes payments on this counter."""
        from agent.context import AgentContext

        methods: list[str] = list(dict.fromkeys([*config.payments.methods, config.payments.default_method]))
        Path(config.state.dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        ctx = AgentContext.open(config, methods, take_payments=True)
        if authorizers is not None:
            ctx.flow.authorizers = dict(authorizers)
        try:
            store = cashiers or CashierStore.open(
                config.state.dir, max_attempts=config.ui.pin_attempts, lockout_seconds=config.ui.lockout_seconds
            )
        except BaseException:
            ctx.close()
            raise
        return cls(config, ctx, store)

    def methods(self) -> list[str]:
        """Methods offered to the cashier: configured and available, the default first."""
        cfg = self.config.payments
        avail: list[str] = [m for m in dict.fromkeys([cfg.default_method, *cfg.methods]) if m in self.authorizers]
        return avail

    def open_journal(self) -> Any:
        """A second journal connection, for a thread of its own (status polling, sync)."""
        from agent.journal import Journal

        return Journal.open(
            self.state_dir, terminal_id=self.config.terminal.id, agency_id=self.config.terminal.agency_id,
            check=False,  # the first connection ran quick_check (O(file size)); losses are re-read per payment
        )

    def close(self) -> None:
        # Never close the journal under a payment that is talking to a card or a terminal: its outcome
        # must be written. Bounded by the longest wait a payment can have.
        bound = self.config.tpe.answer_timeout + self.config.cards.read_timeout + 2 * self.config.server.timeout
        if not self.wait_idle(bound):
            log.error("closing with a payment still in flight; it will show as unknown at the next start")
        for closer in (self.context.close, self.cashiers.close):
            try:
                closer()
            except Exception as e:
                log.warning("close: %s", e)
