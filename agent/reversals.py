"""Reversals sent until acknowledged (contract 1.1, issue 14): a scheduler job over the journal's queue.

An approval the counter could not complete (the card answered an AAC at its second GENERATE AC, left the
reader, or no answer came back) is undone with ``POST /v1/authorizations/{id}/reversal``. The card reader sends
it once at once; when that is not acknowledged the payment is written `unknown` and the reversal queued in the
same journal transaction (Journal.transition(reversal=...)). This job sends the oldest one per step, and
returns ``more=True`` while others wait:

- acknowledged (200 ``reversed``): the queue entry is done and the transaction's `unknown` payments become
  `declined`, in one journal transaction (Journal.finish_reversal);
- 404 (the server holds no approval): the same, as ``no_approval``; for a ``timeout`` reversal only once the
  authorization request can no longer be on its way (GRACE after it was queued, as agent.payments believes a
  404 of GET /v1/authorizations), before that it is tried again;
- no answer, or a refusal: counted on the entry (attempts, last error), tried again by the scheduler's backoff;
- no payment of the transaction is `unknown` any more (a person settled it): done as ``settled``, not sent.

    scheduler.add("reversals", lambda: drain(journal, client, grace=GRACE), INTERVAL)
    reversal_jobs(scheduler, parts)        # the registration (guichet/cli/run.py: JOBS)
"""

from __future__ import annotations

import logging
from datetime import datetime

from agent import clock
from agent.billing import BillingClient
from agent.errors import ApiError, GuichetError, ServerUnreachable
from agent.journal import Journal
from agent.scheduler import JobParts, Outcome, Scheduler, is_outage, one_line
from agent.states import State

log = logging.getLogger("guichet.reversals")

INTERVAL = 30.0  # seconds between looks at an empty queue (a queued reversal is also retried on backoff)


def grace(server_timeout: float) -> float:
    """Seconds after which a 404 for a `timeout` reversal is believed: the request is no longer on its way.

    >>> grace(10)
    80.0
    """
    return 2 * float(server_timeout) + 60.0


def drain(journal: Journal, client: BillingClient, *, grace: float, now: datetime | None = None) -> Outcome:
    """One step: the oldest waiting reversal, sent once. ServerUnreachable is counted on it, then raised (the
    scheduler takes the link down); other refusals are this job's error (its backoff)."""
    waiting = journal.reversals_waiting(limit=2)
    if not waiting:
        return Outcome()
    r = waiting[0]
    tid, reason = str(r["transaction_id"]), str(r["reason"])
    more = len(waiting) > 1
    if State.UNKNOWN.value not in r["states"]:
        journal.finish_reversal(tid, "settled")
        log.info("reversal of %s not sent: its payments were settled meanwhile (%s)", tid, ", ".join(r["states"]))
        return Outcome(more=more)
    try:
        reversed_ = client.reverse_authorization(tid, reason)
    except ServerUnreachable as e:
        journal.note_reversal_failure(tid, one_line(e))
        if is_outage(e):
            raise
        return Outcome(error=f"reversal of {tid}: {one_line(e)}", retry_after=e.retry_after)
    except (ApiError, GuichetError) as e:
        journal.note_reversal_failure(tid, one_line(e))
        return Outcome(error=f"reversal of {tid}: {one_line(e)}")
    if not reversed_ and reason == "timeout":
        age = ((now or clock.utc_now()) - clock.parse(str(r["queued_at"]))).total_seconds()
        if age < grace:
            wait = grace - age
            journal.note_reversal_failure(tid, "no approval on record yet: the request may still be on its way")
            return Outcome(error=f"reversal of {tid}: no approval on record yet", retry_after=wait)
    declined = journal.finish_reversal(tid, "reversed" if reversed_ else "no_approval")
    log.warning("reversal of %s (%s) %s: %d payment(s) declined", tid, reason,
                "acknowledged" if reversed_ else "not needed (no approval on the server)", len(declined),
                extra={"payment_id": tid})
    return Outcome(more=more)


def reversal_jobs(scheduler: Scheduler, parts: JobParts) -> None:
    """Registration (guichet/cli/run.py JOBS): the reversal queue, drained while the link is up."""
    wait = grace(parts.config.server.timeout)
    scheduler.add("reversals", lambda: drain(parts.journal, parts.client, grace=wait), INTERVAL)
