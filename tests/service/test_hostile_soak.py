"""A short soak (bench/soak.py, `./dev bench soak` runs the long one): the headless agent against the sandbox
answering at random from its catalogue of broken answers, then sane. The process never exits, its memory
stays flat, and every payment taken meanwhile reaches the server exactly once."""

from __future__ import annotations

import pytest

from bench.soak import soak
from sandbox.billing.faults import GARBAGE_KINDS

# A Retry-After far ahead is obeyed up to the backoff cap (300 s, tests/core/test_hostile_network.py): longer
# than a test may wait for the drain, so the short soak serves every other kind.
KINDS = [k for k in GARBAGE_KINDS if k not in ("retry_after_huge", "retry_after_date")]


@pytest.mark.slow
def test_a_short_soak_in_garbage_loses_nothing_and_never_stops_the_agent() -> None:
    res = soak(minutes=0.4, rate=0.5, pay_every=4, seed=12, drain_limit=150, kinds=KINDS)
    assert res.failures() == [], res.report() + "\n" + res.log_tail
    assert len(res.payments) >= 4 and res.garbage, res.report()
    assert res.recorded == len(res.payments)
    assert "Traceback" not in res.log_tail
