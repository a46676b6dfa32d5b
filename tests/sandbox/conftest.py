"""Helpers for the sandbox server's tests: a terminal-like HTTP client and contract-shaped payments."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.billing.server import SandboxServer


class Api:
    """requests against the sandbox with the terminal's headers (the admin's for ``_sandbox/``); paths relative
    to the base URL."""

    def __init__(self, server: SandboxServer, timeout: float = 10) -> None:
        self.server = server
        self.session = requests.Session()
        self.session.headers.update(server.headers())
        self.timeout = timeout

    def _kw(self, path: str, kw: dict[str, Any]) -> dict[str, Any]:
        if path.startswith("_sandbox/"):  # the test-only endpoints need the admin token
            kw["headers"] = {**self.server.admin_headers(), **kw.get("headers", {})}
        return kw

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.session.get(self.server.url + path, timeout=self.timeout, **self._kw(path, kw))

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.session.post(self.server.url + path, timeout=self.timeout, **self._kw(path, kw))

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self.session.put(self.server.url + path, timeout=self.timeout, **self._kw(path, kw))

    def batch(self, payments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        r = self.post("v1/payments/batch", json={"payments": payments})
        assert r.status_code == 200, r.text
        results: list[dict[str, Any]] = r.json()["results"]
        return results


def make_payment(
    bill_reference: str, amount: int, *, method: str = "card_terminal", currency: str = "DZD", **changes: Any
) -> dict[str, Any]:
    """A well-formed contract Payment (new UUIDs each call); ``changes`` override fields."""
    pid = str(uuid.uuid4())
    card = None
    authorization = None
    if method != "cash":
        card = {
            "scheme": "CIB",
            "pan_masked": "628058******1239",
            "pan_token": "ab" * 32,
            "expiry": "2028-05",
            "aid": "A0000000031010",
        }
        authorization = {"code": "123456", "reference": "TPE-0001", "approved_at": "2026-11-22T09:14:03+01:00"}
    payment: dict[str, Any] = {
        "payment_id": pid,
        "transaction_id": pid,
        "bill_reference": bill_reference,
        "amount": amount,
        "currency": currency,
        "method": method,
        "card": card,
        "authorization": authorization,
        "agency_id": "ORAN-07",
        "terminal_id": "ORAN-07-G1",
        "cashier_id": "c0042",
        "receipt_number": f"ORAN-07-G1-{pid[:6]}",
        "captured_at": "2026-11-22T09:14:05+01:00",
        "captured_offline": False,
    }
    payment.update(changes)
    return payment


@pytest.fixture
def api(billing_server: SandboxServer) -> Iterator[Api]:
    client = Api(billing_server)
    yield client
    client.session.close()
