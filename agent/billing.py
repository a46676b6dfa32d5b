"""Client of the central billing API (shared/contracts/billing-api.md).

>>> client = BillingClient(config)
>>> bill = client.get_bill("410726095518")
>>> results = client.post_batch([payment.to_api() for payment in batch])

Every answer we cannot trust (connection error, timeout, 5xx, a body that is not the JSON we expect)
raises ServerUnreachable: callers fall back to the cache or retry later, and nothing is marked sent.
"""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from agent import __version__
from agent.errors import ApiError, BillNotFound, RetryLater, ServerUnreachable
from config import Config


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


class BillingClient:
    """One session per terminal: bearer token, X-Terminal-Id, TLS verification, per-request timeout."""

    def __init__(self, config: Config, session: requests.Session | None = None) -> None:
        self.base = config.server.url.rstrip("/") + "/v1/"
        self.timeout = config.server.timeout
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "Authorization": f"Bearer {config.server.token.get_secret_value()}",
                "X-Terminal-Id": config.terminal.id,
                "User-Agent": f"guichet/{__version__}",
                "Accept": "application/json",
            }
        )
        if config.server.ca_bundle:
            self.session.verify = config.server.ca_bundle
        if config.server.client_cert:
            self.session.cert = config.server.client_cert
        self.terminal_id = config.terminal.id

    def close(self) -> None:
        self.session.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        url = self.base + path
        try:
            # Never follow redirects: requests would replay a POST body (a PAN, for /authorizations) to
            # whatever host the Location names.
            r = self.session.request(
                method,
                url,
                json=json_body,
                params=params,
                headers=headers,
                timeout=timeout or self.timeout,
                allow_redirects=False,
            )
        except (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError) as e:
            # Nothing of the request left us: the connection (or its TLS handshake) never completed.
            raise ServerUnreachable(
                f"billing server unreachable ({urlsplit(url).netloc}): {_reason(e)}", sent=False
            ) from None
        except requests.Timeout:
            raise ServerUnreachable(f"billing server: no answer within {timeout or self.timeout:g} s") from None
        except requests.RequestException as e:
            raise ServerUnreachable(
                f"billing server unreachable ({urlsplit(url).netloc}): {_reason(e)}", sent=not _never_sent(e)
            ) from None
        if 300 <= r.status_code < 400:
            raise ServerUnreachable(f"billing server answered a redirect ({r.status_code}); redirects are refused")
        if r.status_code in (429, 503):
            wait = parse_retry_after(r.headers.get("Retry-After"))
            raise RetryLater(f"billing server busy ({r.status_code}), retry after {wait or 0:g} s", wait)
        if r.status_code >= 500:
            raise ServerUnreachable(f"billing server error {r.status_code}")
        ctype = r.headers.get("Content-Type", "")
        if "json" not in ctype.split(";")[0]:
            raise ServerUnreachable(
                f"billing server answered {r.status_code} with content type {ctype or 'none'!r}, not JSON"
            )
        try:
            body = r.json()
        except ValueError:
            raise ServerUnreachable(f"billing server answered {r.status_code} with a body that is not JSON") from None
        if r.status_code >= 400:
            err = body.get("error") if isinstance(body, dict) else None
            if not isinstance(err, dict):
                raise ServerUnreachable(f"billing server answered {r.status_code} without an error body")
            if r.status_code == 408:
                raise ServerUnreachable("billing server: request timeout (408)")
            raise ApiError(r.status_code, str(err.get("code", "error")), str(err.get("message", "")))
        return r.status_code, body

    @staticmethod
    def _expect(body: Any, key: str, kind: type) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get(key), kind):
            raise ServerUnreachable(f"billing server: answer without a valid {key!r}")
        return body[key]

    # -- bills -------------------------------------------------------------------------------------

    def get_bill(self, reference: str) -> dict[str, Any]:
        try:
            _, body = self._request("GET", f"bills/{quote(reference, safe='')}")
        except ApiError as e:
            if e.status == 404:
                raise BillNotFound(f"bill {reference}: not found on the billing server") from None
            raise
        _check_bill(body)
        return dict(body)

    def customer_bills(self, customer_id: str) -> list[dict[str, Any]]:
        try:
            _, body = self._request("GET", f"customers/{quote(customer_id, safe='')}/bills")
        except ApiError as e:
            if e.status == 404:
                return []
            raise
        items = self._expect(body, "items", list)
        for b in items:
            _check_bill(b)
        return list(items)

    def bills_feed(
        self, agency: str, updated_after: str | None = None, limit: int = 1000
    ) -> tuple[list[dict[str, Any]], str | None]:
        params: dict[str, Any] = {"agency": agency, "limit": limit}
        if updated_after:
            params["updated_after"] = updated_after
        _, body = self._request("GET", "bills", params=params)
        items = self._expect(body, "items", list)
        for b in items:
            _check_bill(b)
        cursor = body.get("next_cursor")
        return list(items), cursor if isinstance(cursor, str) else None

    # -- payments ----------------------------------------------------------------------------------

    def post_batch(self, payments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Upload payments; one result per payment in the same order, checked against what we sent."""
        _, body = self._request("POST", "payments/batch", json_body={"payments": payments})
        results = self._expect(body, "results", list)
        sent = [p["payment_id"] for p in payments]
        if [r.get("payment_id") if isinstance(r, dict) else None for r in results] != sent:
            raise ServerUnreachable("billing server: batch results do not match the payments sent")
        for r in results:
            if r.get("status") not in ("accepted", "duplicate", "rejected"):
                raise ServerUnreachable(f"billing server: unknown result status {r.get('status')!r}")
        return list(results)

    def get_payment(self, payment_id: str) -> dict[str, Any] | None:
        try:
            _, body = self._request("GET", f"payments/{quote(payment_id, safe='')}")
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        return dict(body)

    # -- authorizations (card_reader) ----------------------------------------------------------------

    def authorize(self, body: dict[str, Any], idempotency_key: str, timeout: float | None = None) -> dict[str, Any]:
        _, answer = self._request(
            "POST", "authorizations", json_body=body, headers={"Idempotency-Key": idempotency_key}, timeout=timeout
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("approved"), bool):
            raise ServerUnreachable("billing server: authorization answer without 'approved'")
        return answer

    def get_authorization(self, payment_id: str) -> dict[str, Any] | None:
        """What the acquirer decided, or None for 404 (the request never reached it)."""
        try:
            _, body = self._request("GET", f"authorizations/{quote(payment_id, safe='')}")
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        if not isinstance(body, dict) or not isinstance(body.get("approved"), bool):
            raise ServerUnreachable("billing server: authorization answer without 'approved'")
        return dict(body)

    # -- heartbeat ---------------------------------------------------------------------------------

    def heartbeat(self, body: dict[str, Any]) -> dict[str, Any]:
        _, answer = self._request("POST", f"terminals/{quote(self.terminal_id, safe='')}/heartbeat", json_body=body)
        return dict(answer) if isinstance(answer, dict) else {}


_BILL_FIELDS = {
    "reference": str,
    "amount_due": int,
    "currency": str,
    "status": str,
    "version": int,
}


def _check_bill(b: Any) -> None:
    if not isinstance(b, dict):
        raise ServerUnreachable("billing server: a bill that is not an object")
    for key, kind in _BILL_FIELDS.items():
        v = b.get(key)
        if not isinstance(v, kind) or isinstance(v, bool):
            raise ServerUnreachable(f"billing server: bill field {key!r} missing or not {kind.__name__}")


_REASONS = (
    ("Connection refused", "connection refused"),
    ("Name or service not known", "unknown host name"),
    ("Temporary failure in name resolution", "host name lookup failed"),
    ("No route to host", "no route to host"),
    ("Network is unreachable", "network unreachable"),
    ("RemoteDisconnected", "the server closed the connection without answering"),
    ("Connection aborted", "the connection dropped before the answer"),
    ("Connection reset", "connection reset"),
)


_NOT_SENT = (
    "Connection refused",
    "Name or service not known",
    "Temporary failure in name resolution",
    "No route to host",
    "Network is unreachable",
)


def _never_sent(e: Exception) -> bool:
    """True when the connection was never made, so the server cannot have seen the request."""
    return any(needle in str(e) for needle in _NOT_SENT)


def _reason(e: Exception) -> str:
    text = str(e)
    for needle, reason in _REASONS:
        if needle in text:
            return reason
    return _short(e)


def _short(e: Exception) -> str:
    text = str(e)
    return text if len(text) < 160 else text[:157] + "..."


def server_time_skew(answer: dict[str, Any]) -> float | None:
    """Seconds our clock is ahead (+) or behind (-) the server's, from a heartbeat answer."""
    try:
        server = datetime.fromisoformat(str(answer["server_time"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    if server.tzinfo is None:
        return None
    return (datetime.now(UTC) - server).total_seconds()
