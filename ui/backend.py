"""The agent pieces the cashier UI drives, opened from one config.

    backend = Backend.open(config)            # journal, bill cache, billing client, flow, cashiers
    app = GuichetApp(backend)
    ...
    backend.close()

Authorizers are picked like the headless agent does (agent.context.build_authorizers): the configured
methods that are installed ("card_terminal" only when `tpe.port` is set).
Pass `authorizers=` to choose them yourself (the demo and the tests do).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.cashiers import CashierStore
from config import Config

log = logging.getLogger(__name__)


def default_authorizers(config: Config, client: Any) -> dict[str, Any]:
    """The authorizers this counter can use, by method name (configured methods, plus cash)."""
    from agent.context import build_authorizers

    wanted: list[str] = list(dict.fromkeys([*config.payments.methods, config.payments.default_method]))
    return dict(build_authorizers(config, client, wanted))


@dataclass
class Backend:
    config: Config
    journal: Any
    client: Any
    bills: Any
    flow: Any
    cashiers: CashierStore
    authorizers: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)

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
        from agent.billing import BillingClient
        from agent.bills import BillCache
        from agent.journal import Journal
        from agent.payments import PaymentFlow

        state = Path(config.state.dir)
        state.mkdir(parents=True, exist_ok=True)
        journal = Journal.open(state, terminal_id=config.terminal.id, agency_id=config.terminal.agency_id)
        client = BillingClient(config)
        bills = BillCache.open(state)
        auths = authorizers if authorizers is not None else default_authorizers(config, client)
        flow = PaymentFlow(config, journal, client, bills, authorizers=auths)
        store = cashiers or CashierStore.open(state)
        return cls(config, journal, client, bills, flow, store, auths)

    def methods(self) -> list[str]:
        """Methods offered to the cashier: configured and available, default first."""
        cfg = self.config.payments
        wanted: list[str] = list(cfg.methods)
        if cfg.default_method not in wanted:
            wanted.insert(0, cfg.default_method)
        avail = [m for m in wanted if m in self.authorizers]
        if cfg.default_method in avail:
            avail.remove(cfg.default_method)
            avail.insert(0, cfg.default_method)
        return avail

    def open_journal(self) -> Any:
        """A second journal connection, for a thread of its own (status polling, sync)."""
        from agent.journal import Journal

        return Journal.open(
            self.state_dir, terminal_id=self.config.terminal.id, agency_id=self.config.terminal.agency_id
        )

    def close(self) -> None:
        for closer in (self.client.close, self.bills.close, self.journal.close, self.cashiers.close):
            try:
                closer()
            except Exception as e:
                log.warning("close: %s", e)
