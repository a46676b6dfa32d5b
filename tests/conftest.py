"""Fixtures shared by every area's tests: the sandbox billing server over real HTTP, and a config for it.

    def test_lookup(billing_server, billing_config, seeded_references):
        ref = seeded_references[0]                      # unpaid; its customer holds 3 unpaid bills
        ...                                             # billing_config.server.url == billing_server.url
        billing_server.set_faults(unavailable_rate=1.0, retry_after=2)
        billing_server.stop(); billing_server.start()   # link down and back, same port and DB
        billing_server.recorded_payments()              # what the server recorded, with counts
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

import config
from agent import clock
from sandbox.billing.server import SandboxServer

# CI runs the same examples every time (a submission must not land or fail by luck); a developer's run
# explores new ones, and the failures it finds become @example regressions.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

BILLING_TOKEN = "test-token"
BILLING_AGENCY = "ORAN-07"
BILLING_TERMINAL = "ORAN-07-G1"
BILLING_SEED_BILLS = 200
TEST_HMAC_KEY = "test-hmac-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def _own_tpe_locks(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own TPE lock directory (children inherit it): a pty number reused by the next test must not
    see the last one's "an unknown payment may still be answered" window (drivers/concert, docs/devices.md)."""
    monkeypatch.setenv("GUICHET_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))
    # pytest-xdist's workers carry COLUMNS/LINES, which Textual obeys over the real terminal's size: a UI started
    # in a tmux window or a kiosk's terminal by a test would be drawn at that size instead.
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
    # The agency's display zone is the process's (agent.clock.set_zone, set when a config is opened): each test
    # starts from the machine's, as a new process would.
    monkeypatch.setattr(clock, "_ZONE", None)


@pytest.fixture
def billing_server(tmp_path: Path) -> Iterator[SandboxServer]:
    """A running sandbox billing server (127.0.0.1, free port) with 200 seeded bills for ORAN-07.

    Token "test-token"; DB at tmp_path/"billing-server.db"; faults off. Function-scoped: each test gets
    a fresh server and database.
    """
    server = SandboxServer(
        tmp_path / "billing-server.db",
        token=BILLING_TOKEN,
        agency=BILLING_AGENCY,
        seed_bills=BILLING_SEED_BILLS,
    )
    with server:
        yield server


@pytest.fixture
def billing_config(tmp_path: Path, billing_server: SandboxServer) -> config.Config:
    """A validated Config pointing at ``billing_server``: terminal ORAN-07-G1 of agency ORAN-07,
    state.dir = tmp_path/"state", a test HMAC key, short sync interval, every payment method enabled."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    return config.validate(
        {
            # The agency's zone, as the sandbox server reckons its business day (UTC+01:00): a close run
            # between 23:00 and midnight UTC is of the same day on both sides.
            "terminal": {"id": BILLING_TERMINAL, "agency_id": BILLING_AGENCY, "currency": "DZD",
                         "timezone": "Africa/Algiers"},
            "server": {"url": billing_server.url, "token": BILLING_TOKEN, "timeout": 5},
            "state": {"dir": str(state)},
            "sync": {"interval": 0.05, "batch_size": 100, "bill_refresh": 900, "heartbeat": 60},
            "cards": {"hmac_key": TEST_HMAC_KEY},
            "payments": {
                "default_method": "card_terminal",
                "methods": ["card_terminal", "card_reader", "cash"],
            },
        }
    )


@pytest.fixture
def seeded_references(billing_server: SandboxServer) -> list[str]:
    """The billing server's unpaid references in seed order. The first one is stable for the seed, its
    customer holds 3 unpaid bills (water, electricity, gas) and its amount does not end in 51."""
    return billing_server.references(status="unpaid")
