"""Build the agent's parts from a config: journal, bill cache, billing client, authorizers, payment flow.

    with AgentContext.open(config) as ctx:      # config: a loaded GuichetConfig
        result = ctx.flow.pay([ctx.flow.lookup("410726095518")], method="cash", cashier_id="c0042")
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from agent import clock
from agent.authorize import Authorizer, CashAuthorizer
from agent.billing import BillingClient
from agent.bills import BillCache
from agent.errors import JournalError, OfflineLimitExceeded
from agent.journal import Journal, Payment
from agent.limits import check_offline
from agent.locks import CounterLock
from agent.payments import PaymentFlow
from agent.sync import SyncWorker
from config import Config

log = logging.getLogger("guichet")

# method -> (module, class) of its authorizer; each takes the Config. Loaded only when configured.
AUTHORIZERS = {
    "card_terminal": ("agent.authorizers.tpe", "TpeAuthorizer"),
    "card_reader": ("agent.authorizers.card_reader", "ReaderAuthorizer"),
}


def offline_room(config: Config, journal: Journal) -> Callable[[int], bool]:
    """Whether the agent's offline limits take a card payment of `amount` now, by the flow's own rule
    (agent.limits.check_offline). Asked by the card reader while its payment is already `authorizing` in the
    journal, which counts it as in doubt: taken out once, so that it is counted once, as the new payment.

        ReaderAuthorizer(config, client, offline_allowed=offline_room(config, journal))
    """

    def allowed(amount: int) -> bool:
        stats = journal.queue_stats()
        currency = config.terminal.currency
        stats.in_doubt_total[currency] = max(0, stats.in_doubt_total.get(currency, 0) - amount)
        stats.in_doubt_count = max(0, stats.in_doubt_count - 1)
        try:
            check_offline(config.offline, stats, amount, 1, currency)
        except OfflineLimitExceeded as e:
            log.info("no offline approval: %s", e)
            return False
        return True

    return allowed


def build_authorizers(config: Config, client: BillingClient, methods: list[str],
                      journal: Journal | None = None) -> dict[str, Authorizer]:
    """The authorizers of `methods`; with the `journal`, the card reader may approve offline within the agent's
    offline limits (offline_room), else never."""
    found: dict[str, Authorizer] = {}
    for method in methods:
        if method == "cash":
            found["cash"] = CashAuthorizer()
            continue
        if method == "card_terminal" and not config.tpe.port:
            continue
        module, cls = AUTHORIZERS[method]
        try:
            factory = getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError) as e:
            log.warning("method %s unavailable: %s", method, e)
            continue
        if method == "card_reader":
            room = offline_room(config, journal) if journal is not None else None
            found[method] = factory(config, client, offline_allowed=room)
        else:
            found[method] = factory(config)
    return found


@dataclass
class AgentContext:
    config: Config
    journal: Journal
    bills: BillCache
    client: BillingClient
    flow: PaymentFlow
    counter: CounterLock | None = None

    @classmethod
    def open(cls, config: Config, methods: list[str] | None = None, *, take_payments: bool = False) -> AgentContext:
        """Open the journal and cache. With take_payments, claim the counter (AlreadyRunning if another
        process has it) and settle what a crashed predecessor left mid-step."""
        clock.set_zone(clock.agency_zone(config))  # every local time shown from now on is the agency's
        state = config.state.dir
        journal = Journal.open(state, terminal_id=config.terminal.id, agency_id=config.terminal.agency_id)
        counter = None
        try:
            bills = BillCache.open(state)
            if take_payments:
                counter = CounterLock(state)
                counter.acquire()
                try:
                    recovered = journal.recover()
                except JournalError:
                    if journal.damage is None:
                        raise
                    recovered = []  # a damaged journal: what can be read still is; new payments are refused
                for p in recovered:
                    log.warning(
                        "payment %s left %s by a restart",
                        p.receipt_number,
                        p.state,
                        extra={"payment_id": p.payment_id, "state": p.state},
                    )
        except BaseException:
            journal.close()
            raise
        client = BillingClient(config)
        wanted = list(methods if methods is not None else config.payments.methods)
        flow = PaymentFlow(config, journal, client, bills, build_authorizers(config, client, wanted, journal))
        return cls(config, journal, bills, client, flow, counter)

    def recover_if_idle(self) -> list[Payment]:
        """Settle leftovers of a crash when no process is taking payments (headless agent, sync)."""
        if self.counter is not None:
            return []
        lock = CounterLock(self.config.state.dir)
        if not lock.try_acquire():
            return []
        try:
            return self.journal.recover()
        finally:
            lock.release()

    def sync_worker(self) -> SyncWorker:
        return SyncWorker(self.config, self.journal, self.client, self.bills)

    def close(self) -> None:
        if self.counter is not None:
            self.counter.release()
        self.client.close()
        self.bills.close()
        self.journal.close()

    def __enter__(self) -> AgentContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
