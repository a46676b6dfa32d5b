"""Client of the central billing API (shared/contracts/billing-api.md).

Against the sandbox server (on 127.0.0.1, the tests' stand-in for the billing server):

>>> import config
>>> from sandbox.billing.server import SandboxServer
>>> server = SandboxServer(seed_bills=3).start()
>>> client = BillingClient(config.validate({
...     "terminal": {"id": "ORAN-07-G1", "agency_id": "ORAN-07", "currency": "DZD"},
...     "server": {"url": server.url, "token": "test-token"}, "state": {"dir": "/nonexistent"},
...     "cards": {"hmac_key": "test-hmac-key-0123456789abcdef"}}))
>>> [ref, *_] = server.references(status="unpaid")
>>> bill = client.get_bill(ref)                        # the contract's Bill, validated
>>> bill["reference"] == ref, bill["currency"]
(True, 'DZD')
>>> client.post_batch([])                              # a 4xx with the contract's error body: ApiError
Traceback (most recent call last):
  ...
agent.errors.ApiError: server refused (400 batch_empty): payments: at least 1 payment is required
>>> server.stop()

Every answer we cannot trust (connection error, timeout, 5xx, a body that is not the JSON we expect)
raises ServerUnreachable: callers fall back to the cache or retry later, and nothing is marked sent.
"""

from __future__ import annotations

import email.utils
import json
import logging
import operator
import re
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate, repeat
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from pydantic import ValidationError
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from agent import __version__
from agent.errors import ApiError, BadAnswer, BillNotFound, GuichetError, RetryLater, ServerUnreachable
from config import Config
from contract import models
from contract.models import where

log = logging.getLogger("guichet.billing")

MAX_BODY = 1024 * 1024  # bytes of one answer (decoded), the bill feed apart; the contract's requests have the same
FEED_BYTES_PER_ITEM = 4 * 1024  # the bill feed's cap: `limit` bills of at most this, between the two bounds
MAX_FEED_BODY = 8 * 1024 * 1024
MAX_DEPTH = 64  # JSON nesting of one answer; the contract's deepest is 4
# Arrays and objects of one answer, at most one per this many bytes: 8 MiB of `[[],[],...]` would cost
# json.loads some 430 MB (an empty list is 56 bytes); a real answer has far fewer (a bill is ~400 bytes).
BYTES_PER_CONTAINER = 64
DEADLINE_FACTOR = 2.0  # a whole request (connect, send, headers, body) gets at most 2 x server.timeout
RETRY_AFTER_CAP = 300.0  # the backoff cap: a server cannot park the agent for longer
CHUNK = 64 * 1024
SUCCESS = (200, 202)  # the contract's success statuses
CONTRACT_4XX = frozenset({400, 401, 403, 404, 409, 413, 422})  # refusals with a meaning (408, 429 apart)
LOGGED_ITEMS = 5  # bad bills logged one by one per answer; the rest are counted in one line


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date, capped at RETRY_AFTER_CAP.

    >>> parse_retry_after("120"), parse_retry_after("99999999"), parse_retry_after("soon")
    (120.0, 300.0, None)
    """
    if not value:
        return None
    value = value.strip()[:64]
    if re.fullmatch(r"[0-9]{1,12}", value):  # ASCII only: str.isdigit() takes "²", which float() refuses
        return min(float(value), RETRY_AFTER_CAP)
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        wait = when.timestamp() - (now if now is not None else time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(0.0, wait), RETRY_AFTER_CAP)


# -- the total deadline of one request ------------------------------------------------------------------
#
# requests' timeouts bound each socket operation, not a request: a server that sends one byte every few
# seconds (headers or body) holds the worker forever. A timer shuts the request's socket down when its total
# time is up, which ends any blocked read at once. The connections register their socket for the request
# being made on this thread.

_current = threading.local()


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        # Set when the first byte of the request starts going out (not a proxy's CONNECT, not the TLS
        # handshake): until then the server cannot have seen it, after it a POST may have taken effect.
        self.sent = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()

    def watch(self, sock: Any) -> None:
        if sock is None:
            return
        with self._lock:
            self._socks.append(sock)
            expired = self.expired
        if expired:
            _shutdown(sock)

    def fire(self) -> None:
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for sock in socks:
            _shutdown(sock)

    def passed(self) -> bool:
        return self.expired or time.monotonic() >= self.at


def _shutdown(sock: Any) -> None:
    # The plain socket's shutdown, also under TLS: SSLSocket.shutdown drops the SSL object that the request's
    # own thread may be reading with at that moment. Ending the TCP stream is all the timer needs.
    try:
        if isinstance(sock, socket.socket):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _watch(sock: Any) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.watch(sock)


def _mark_sent() -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.sent = True


class _Watched:
    """What both watched connections add: the socket is registered with the deadline, and the request is
    marked sent when its bytes start going out. http.client opens a plain connection lazily in send(), and
    a proxy tunnel's CONNECT goes through send() inside connect(): neither is our request."""

    sock: Any
    _connecting = False

    def connect(self) -> None:
        self._connecting = True
        try:
            super().connect()  # type: ignore[misc]
        finally:
            self._connecting = False
        _watch(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:  # a kept-alive connection is not connected again
        _watch(self.sock)
        super().request(*args, **kwargs)  # type: ignore[misc]

    def send(self, data: Any) -> None:
        if self.sock is None:
            self.connect()  # http.client's auto_open, done before the mark so a refused connect is not sent
        if not self._connecting:
            _mark_sent()
        super().send(data)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _Adapter(HTTPAdapter):
    """requests' adapter whose connections register their socket with the request's deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # a JSON string, escapes included
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEP = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")  # opening 2, closing 0: step - 1 is +1/-1


def json_shape(raw: bytes) -> tuple[int, int]:
    """(deepest nesting, number of arrays and objects) of JSON text, from the raw bytes, before any parser
    builds it: strings (with their escapes) are skipped, so brackets inside them do not count. All in C
    (regex, translate, accumulate): about 0.1 s for 8 MiB.

    >>> json_shape(rb'{"a": [1, {"b": "]]"}], "c": "\\"[["}')
    (3, 3)
    """
    brackets = _STRING.sub(b"", raw).translate(_BRACKET_STEP, _NOT_BRACKETS)
    containers = brackets.count(2)
    if not brackets:
        return 0, 0
    return max(accumulate(map(operator.sub, brackets, repeat(1)))), containers


def parse_json(raw: bytes, status: int = 200) -> Any:
    """The body as JSON, or BadAnswer: not JSON, nested deeper than MAX_DEPTH, or more arrays and objects
    than one per BYTES_PER_CONTAINER bytes (either is checked on the raw bytes before json.loads, which
    recurses and builds every container)."""
    depth, containers = json_shape(raw)
    if depth > MAX_DEPTH:
        raise BadAnswer(f"billing server: answer {status} nested deeper than {MAX_DEPTH} levels")
    if containers > 1024 + len(raw) // BYTES_PER_CONTAINER:  # a thousand cost nothing, however small the body
        raise BadAnswer(f"billing server: answer {status} holds {containers} arrays and objects in {len(raw)} bytes")
    try:
        # JSON between systems is UTF-8 (RFC 8259); json.loads(bytes) would also guess UTF-16/32.
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise BadAnswer(f"billing server: answer {status} nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # also UnicodeDecodeError, a BOM, and ints of more than 4300 digits
        raise BadAnswer(f"billing server answered {status} with a body that is not JSON") from None


def feed_cap(limit: int) -> int:
    """Bytes allowed for one page of the bill feed of `limit` items (1 MiB .. 8 MiB)."""
    return min(MAX_FEED_BODY, max(MAX_BODY, limit * FEED_BYTES_PER_ITEM))


@dataclass(frozen=True)
class FeedPage:
    """One page of the bill feed: the bills that passed validation, the cursor, and how many came."""

    items: list[dict[str, Any]]
    next_cursor: str | None
    received: int
    skipped: int


class BillingClient:
    """One session per terminal: bearer token, X-Terminal-Id, TLS verification, per-request timeout.

    Every answer is bounded (MAX_BODY bytes, the feed feed_cap(limit); MAX_DEPTH levels and one array or
    object per BYTES_PER_CONTAINER bytes, checked before parsing; DEADLINE_FACTOR x timeout in all) and
    validated into contract.models before it is returned; anything else raises BadAnswer naming the field.
    `skipped` counts the bills dropped from lists for a bad field.
    """

    def __init__(self, config: Config, session: requests.Session | None = None) -> None:
        self.base = config.server.url.rstrip("/") + "/v1/"
        self.timeout = config.server.timeout
        self.session = session or requests.Session()
        # The environment must not change where the token goes or which CA is trusted: REQUESTS_CA_BUNDLE
        # or CURL_CA_BUNDLE would replace server.ca_bundle, HTTP(S)_PROXY would route the token elsewhere,
        # ~/.netrc would add credentials. A proxy is only server.proxy.
        self.session.trust_env = False
        adapter = _Adapter()
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
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
        proxy = getattr(config.server, "proxy", "")
        if proxy:
            self.session.proxies = {"http": proxy, "https": proxy}
        self.terminal_id = config.terminal.id
        self.skipped = 0

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
        max_body: int = MAX_BODY,
    ) -> tuple[int, Any]:
        url = self.base + path
        per_op = timeout or self.timeout
        deadline = _Deadline(per_op * DEADLINE_FACTOR)
        timer = threading.Timer(deadline.seconds, deadline.fire)
        timer.daemon = True
        _current.deadline = deadline
        timer.start()
        try:
            return self._exchange(method, url, deadline, json_body=json_body, params=params, headers=headers,
                                  timeout=per_op, max_body=max_body)
        except GuichetError:
            raise
        except Exception:
            # A socket shut under a library mid-read can surface as anything (ValueError, AttributeError...):
            # once the deadline fired, it is the deadline, one line. Otherwise it is a bug and stays visible.
            if deadline.expired:
                raise ServerUnreachable(
                    f"billing server: no complete answer within {deadline.seconds:g} s", sent=deadline.sent
                ) from None
            raise
        finally:
            timer.cancel()
            _current.deadline = None

    def _exchange(
        self,
        method: str,
        url: str,
        deadline: _Deadline,
        *,
        json_body: Any,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        timeout: float,
        max_body: int,
    ) -> tuple[int, Any]:
        too_long = f"billing server: no complete answer within {deadline.seconds:g} s"
        try:
            # Never follow redirects: requests would replay a POST body (a PAN, for /authorizations) to
            # whatever host the Location names.
            r = self.session.request(
                method,
                url,
                json=json_body,
                params=params,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                stream=True,
            )
        except requests.Timeout:
            if deadline.expired:
                raise ServerUnreachable(too_long, sent=deadline.sent) from None
            raise ServerUnreachable(f"billing server: no answer within {timeout:g} s", sent=deadline.sent) from None
        except requests.RequestException as e:
            # Sent or not is what the connection did, never the error's type: an SSLError can be a failed
            # handshake (nothing left us) or a bad record in the answer to a request the server took.
            if deadline.expired:
                raise ServerUnreachable(too_long, sent=deadline.sent) from None
            raise ServerUnreachable(
                f"billing server unreachable ({urlsplit(url).netloc}): {_reason(e)}", sent=deadline.sent
            ) from None
        try:
            if deadline.expired:  # headers cut short by the deadline: what arrived is not an answer
                raise ServerUnreachable(too_long)
            status = r.status_code
            if 300 <= status < 400:
                raise ServerUnreachable(f"billing server answered a redirect ({status}); redirects are refused")
            if status in (429, 503):
                wait = parse_retry_after(r.headers.get("Retry-After"))
                raise RetryLater(f"billing server busy ({status}), retry after {wait or 0:g} s", wait)
            if status >= 500:
                raise ServerUnreachable(f"billing server error {status}")
            if status < 400 and status not in SUCCESS:
                # A 2xx the contract never gives (299, 204...) is not a success: a batch must not be marked sent.
                raise BadAnswer(f"billing server answered {status}, a status the contract does not give")
            ctype = r.headers.get("Content-Type", "")[:100]
            if "json" not in ctype.split(";")[0]:
                raise ServerUnreachable(
                    f"billing server answered {status} with content type {ctype or 'none'!r}, not JSON"
                )
            raw = self._read(r, deadline, too_long, max_body)
        finally:
            r.close()
        body = parse_json(raw, status)
        if status >= 400:
            if status == 408:
                raise ServerUnreachable("billing server: request timeout (408)")
            if status not in CONTRACT_4XX:  # a 418 or a proxy's 405 says nothing about our request: no answer
                raise BadAnswer(f"billing server answered {status}, a status the contract does not give")
            try:
                err = models.ErrorBody.model_validate(body).error
            except ValidationError as e:
                raise BadAnswer(f"billing server answered {status} without a valid error body: {where(e)}") from None
            raise ApiError(status, err.code, err.message)
        return status, body

    @staticmethod
    def _read(r: requests.Response, deadline: _Deadline, too_long: str, max_body: int) -> bytes:
        """The body, at most max_body bytes (decoded) and within the request's deadline."""
        declared = r.headers.get("Content-Length", "")
        limit = f"{max_body >> 20} MiB" if max_body % (1 << 20) == 0 else f"{max_body >> 10} KiB"
        if declared.isascii() and declared.isdigit() and int(declared) > max_body:
            raise BadAnswer(f"billing server: answer of {int(declared)} bytes, above the {limit} limit")
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in r.iter_content(CHUNK):
                size += len(chunk)
                if size > max_body:
                    raise BadAnswer(f"billing server: answer above the {limit} limit")
                chunks.append(chunk)
                if deadline.passed():
                    raise ServerUnreachable(too_long)
        except requests.RequestException as e:
            if deadline.expired:
                raise ServerUnreachable(too_long) from None
            if isinstance(e, requests.Timeout):
                raise ServerUnreachable(f"billing server: answer cut by a timeout ({_short(e)})") from None
            raise ServerUnreachable(f"billing server: the answer was cut ({_reason(e)})") from None
        if deadline.expired:  # the socket was shut down: what we have may be a truncated body
            raise ServerUnreachable(too_long)
        return b"".join(chunks)

    @staticmethod
    def _model(model: type[models._Answer], body: Any, what: str, root: str = "") -> Any:
        try:
            return model.model_validate(body)
        except ValidationError as e:
            raise BadAnswer(f"billing server: {what}: {where(e, root)}") from None

    def _bills(self, items: list[Any], root: str) -> tuple[list[dict[str, Any]], int]:
        """The items that are valid bills, normalised; a bad one is logged, counted and skipped, so one
        broken bill never blocks the others (nor every later refresh)."""
        good: list[dict[str, Any]] = []
        bad = 0
        for i, item in enumerate(items):
            try:
                good.append(models.Bill.model_validate(item).to_api())
            except ValidationError as e:
                bad += 1
                if bad <= LOGGED_ITEMS:
                    log.warning("billing server: %s; bill skipped", where(e, f"{root}[{i}]"))
        if bad > LOGGED_ITEMS:
            log.warning("billing server: %d more bills skipped in this answer", bad - LOGGED_ITEMS)
        self.skipped += bad
        return good, bad

    # -- bills -------------------------------------------------------------------------------------

    def get_bill(self, reference: str) -> dict[str, Any]:
        try:
            _, body = self._request("GET", f"bills/{quote(reference, safe='')}")
        except ApiError as e:
            if e.status == 404:
                raise BillNotFound(f"bill {reference}: not found on the billing server") from None
            raise
        bill: models.Bill = self._model(models.Bill, body, "bill")
        return bill.to_api()

    def customer_bills(self, customer_id: str) -> list[dict[str, Any]]:
        try:
            _, body = self._request("GET", f"customers/{quote(customer_id, safe='')}/bills")
        except ApiError as e:
            if e.status == 404:
                return []
            raise
        page: models.BillList = self._model(models.BillList, body, "customer bills")
        return self._bills(page.items, "items")[0]

    def bills_feed_page(self, agency: str, updated_after: str | None = None, limit: int = 1000) -> FeedPage:
        """One page of the delta feed; `received` counts every item the server sent (caught up when it is
        below `limit`), `skipped` those that were not valid bills."""
        params: dict[str, Any] = {"agency": agency, "limit": limit}
        if updated_after:
            params["updated_after"] = updated_after
        _, body = self._request("GET", "bills", params=params, max_body=feed_cap(limit))
        page: models.BillPage = self._model(models.BillPage, body, "bill feed")
        items, bad = self._bills(page.items, "items")
        return FeedPage(items, page.next_cursor, len(page.items), bad)

    def bills_feed(
        self, agency: str, updated_after: str | None = None, limit: int = 1000
    ) -> tuple[list[dict[str, Any]], str | None]:
        page = self.bills_feed_page(agency, updated_after, limit)
        return page.items, page.next_cursor

    # -- payments ----------------------------------------------------------------------------------

    def post_batch(self, payments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Upload payments; one result per payment in the same order, checked against what we sent.

        An answer that does not match is one BadAnswer for the whole batch: nothing is marked sent.
        """
        _, body = self._request("POST", "payments/batch", json_body={"payments": payments})
        answer: models.BatchResults = self._model(models.BatchResults, body, "batch answer")
        sent = [p["payment_id"] for p in payments]
        if [r.payment_id for r in answer.results] != sent:
            raise BadAnswer("billing server: batch results do not match the payments sent")
        return [r.model_dump(exclude_none=True) for r in answer.results]

    def get_payment(self, payment_id: str) -> dict[str, Any] | None:
        try:
            _, body = self._request("GET", f"payments/{quote(payment_id, safe='')}")
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        record: models.PaymentRecord = self._model(models.PaymentRecord, body, "payment")
        return record.model_dump(exclude_unset=True)

    # -- authorizations (card_reader) ----------------------------------------------------------------

    def authorize(self, body: dict[str, Any], idempotency_key: str, timeout: float | None = None) -> dict[str, Any]:
        _, answer = self._request(
            "POST", "authorizations", json_body=body, headers={"Idempotency-Key": idempotency_key}, timeout=timeout
        )
        auth: models.AuthorizationAnswer = self._model(models.AuthorizationAnswer, answer, "authorization answer")
        return auth.model_dump(exclude_unset=True)

    def get_authorization(self, payment_id: str) -> dict[str, Any] | None:
        """What the acquirer decided, or None for 404 (the request never reached it)."""
        try:
            _, body = self._request("GET", f"authorizations/{quote(payment_id, safe='')}")
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        auth: models.AuthorizationAnswer = self._model(models.AuthorizationAnswer, body, "authorization answer")
        return auth.model_dump(exclude_unset=True)

    def reverse_authorization(self, payment_id: str, reason: str) -> bool:
        """`POST /v1/authorizations/{payment_id}/reversal` (1.1, idempotent): True once the server says reversed,
        False for 404 `authorization_not_found` (it holds no approval under that key). ServerUnreachable for no
        answer, BadAnswer for one outside the contract (another payment's), ApiError for any other refusal.

            client.reverse_authorization(transaction_id, "card_declined_after_approval")

        reason: card_declined_after_approval | card_removed | cancelled | timeout
        """
        try:
            _, answer = self._request("POST", f"authorizations/{quote(payment_id, safe='')}/reversal",
                                      json_body={"reason": reason})
        except ApiError as e:
            if e.status == 404:
                return False
            raise
        done: models.ReversalAnswer = self._model(models.ReversalAnswer, answer, "reversal answer")
        if done.payment_id != payment_id:
            raise BadAnswer(f"billing server: reversal answer: payment_id {done.payment_id[:64]!r} is not "
                            f"{payment_id[:64]!r}")
        return True

    # -- receipts (contract 1.1) ------------------------------------------------------------------

    def send_receipt(self, receipt_number: str, channel: str, to: str, language: str | None = None) -> str:
        """Ask the server to e-mail or text a receipt; its answer's status ("queued").

        ApiError 404 receipt_not_found while none of the receipt's payments has reached the server (keep the
        request, send it after the upload); 400 invalid_address; ServerUnreachable for no answer.
        """
        body: dict[str, Any] = {"channel": channel, "to": to}
        if language:
            body["language"] = language
        _, answer = self._request("POST", f"receipts/{quote(receipt_number, safe='')}/send", json_body=body)
        if not isinstance(answer, dict) or answer.get("status") != "queued" \
                or answer.get("receipt_number") != receipt_number:
            raise BadAnswer("billing server: receipt send answer: status/receipt_number not as asked")
        return "queued"

    # -- heartbeat ---------------------------------------------------------------------------------

    def heartbeat(self, body: dict[str, Any]) -> dict[str, Any]:
        _, answer = self._request("POST", f"terminals/{quote(self.terminal_id, safe='')}/heartbeat", json_body=body)
        beat: models.HeartbeatAnswer = self._model(models.HeartbeatAnswer, answer, "heartbeat answer")
        return beat.model_dump(exclude_none=True)


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
