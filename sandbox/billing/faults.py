"""Fault injection for the sandbox billing server: what a bad agency link or a sick server does.

Faults apply to ``/v1/...`` requests only (never to ``/_sandbox/...``), optionally only to some paths.
Each request draws ONE number in [0, 1) and picks at most one fault from the cumulative rates, in this
order: ``error`` (500 before the handler runs: nothing committed), ``unavailable`` (503 + Retry-After,
nothing committed), ``drop_after_commit`` (the handler runs and commits, then the TCP connection is
aborted without a byte of answer), ``garbage`` (an answer from the catalogue of broken answers in
``garbage.py``: ``GARBAGE_KINDS``, those named in ``garbage_kinds``, ``["all"]`` for every one, the default
``not_json`` a 200 whose body is not JSON; for a payments batch the handler runs
first or not at all, per ``garbage_record``), ``wrong_content_type`` (the handler commits, the answer is a
200 text/html portal page).
``latency_ms`` delays every matching request before it is handled. With a ``seed`` the draws are a fixed
sequence (request N always gets the same fault). ``script`` lists faults to apply, one per matching
request, before any random draw: ``["drop_after_commit", "none", "error", "garbage:batch_short"]``.

>>> f = FaultInjector(FaultSettings(error_rate=1.0))
>>> f.draw("POST", "/v1/payments/batch")
'error'
>>> f.draw("GET", "/_sandbox/faults") is None
True
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from sandbox.billing.garbage import GARBAGE_KINDS, PORTAL_BODY, Broken, Context, applies, build, claims_success
from sandbox.billing.limits import MAX_BODY

FAULTS = ("error", "unavailable", "drop_after_commit", "garbage", "wrong_content_type")
GARBAGE_RECORD = ("random", "always", "never")
_RATE_OF = {
    "error": "error_rate",
    "unavailable": "unavailable_rate",
    "drop_after_commit": "drop_after_commit_rate",
    "garbage": "garbage_rate",
    "wrong_content_type": "wrong_content_type_rate",
}

Scope = dict[str, Any]


@dataclass
class FaultSettings:
    """One fault profile. Rates are probabilities in [0, 1]; their sum must not exceed 1."""

    latency_ms: int = 0
    error_rate: float = 0.0
    unavailable_rate: float = 0.0
    retry_after: int = 1
    drop_after_commit_rate: float = 0.0
    garbage_rate: float = 0.0
    # Which broken answers: ["all"] the whole catalogue; empty = ["not_json"] (what garbage meant before 1.1).
    garbage_kinds: list[str] = field(default_factory=list)
    garbage_record: str = "random"  # a batch answered with garbage: recorded first "always", "never", or 50/50
    drip_seconds: float = 20.0  # how long slow_drip takes
    huge_bytes: int = 8 * 1024 * 1024  # how much huge_body streams
    wrong_content_type_rate: float = 0.0
    seed: int | None = None
    only: list[str] = field(default_factory=list)  # "/v1/payments" or "POST /v1/payments/batch"
    script: list[str] = field(default_factory=list)
    clock_offset: float = 0.0  # seconds added to the heartbeat's server_time

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultSettings:
        """Build from JSON; ValueError names the field at fault (unknown keys included)."""
        names = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in names:
                raise KeyError(key)
        s = cls(**data)
        s.check()
        return s

    def check(self) -> None:
        if not isinstance(self.latency_ms, int) or isinstance(self.latency_ms, bool) or self.latency_ms < 0:
            raise ValueError("latency_ms: must be an integer >= 0")
        if not isinstance(self.retry_after, int) or isinstance(self.retry_after, bool) or self.retry_after < 0:
            raise ValueError("retry_after: must be an integer >= 0 (seconds)")
        total = 0.0
        for name in _RATE_OF.values():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
                raise ValueError(f"{name}: must be a number between 0 and 1")
            total += v
        if total > 1 + 1e-9:
            raise ValueError(f"rates add up to {total:g}; their sum must not exceed 1")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise ValueError("seed: must be an integer or null")
        if not isinstance(self.only, list) or not all(isinstance(p, str) for p in self.only):
            raise ValueError("only: must be a list of path prefixes")
        if not isinstance(self.script, list):
            raise ValueError("script: must be a list of fault names")
        for name in self.script:
            fault, _, kind = name.partition(":") if isinstance(name, str) else ("", "", "")
            if fault not in (*FAULTS, "none") or (kind and (fault != "garbage" or kind not in GARBAGE_KINDS)):
                raise ValueError(f"script: unknown fault {name!r}; one of {', '.join(FAULTS)}, garbage:KIND, none")
        if not isinstance(self.garbage_kinds, list):
            raise ValueError("garbage_kinds: must be a list of kinds")
        for kind in self.garbage_kinds:
            if kind not in GARBAGE_KINDS and kind != "all":
                raise ValueError(f"garbage_kinds: unknown kind {kind!r} (see GARBAGE_KINDS)")
        if self.garbage_record not in GARBAGE_RECORD:
            raise ValueError(f"garbage_record: must be one of {', '.join(GARBAGE_RECORD)}")
        drip = self.drip_seconds
        if isinstance(drip, bool) or not isinstance(drip, int | float) or not 0 <= drip <= 600:
            raise ValueError("drip_seconds: must be a number of seconds from 0 to 600")
        huge = self.huge_bytes
        if not isinstance(huge, int) or isinstance(huge, bool) or not 0 <= huge <= 256 * 1024 * 1024:
            raise ValueError("huge_bytes: must be an integer from 0 to 268435456")
        if isinstance(self.clock_offset, bool) or not isinstance(self.clock_offset, int | float):
            raise ValueError("clock_offset: must be a number of seconds")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FaultInjector:
    """Holds the current profile, draws faults, counts what it injected. Thread-safe."""

    def __init__(self, settings: FaultSettings | None = None) -> None:
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.garbage_kinds: Counter[str] = Counter()
        self.garbage_recorded = self.garbage_not_recorded = 0
        self.garbage_log: deque[dict[str, Any]] = deque(maxlen=200)
        self.set(settings or FaultSettings())

    def recorded_after_all(self, kind: str) -> None:
        """A garbage batch drawn "not recorded" whose answer would have been a true-looking success."""
        with self._lock:
            self.garbage_not_recorded -= 1
            self.garbage_recorded += 1
            for entry in reversed(self.garbage_log):
                if entry["kind"] == kind and entry["recorded"] is False:
                    entry["recorded"] = True
                    break

    def set(self, settings: FaultSettings) -> None:
        settings.check()
        with self._lock:
            self.settings = settings
            self._script = list(settings.script)
            self._rng = random.Random(settings.seed) if settings.seed is not None else random.Random()

    def status(self) -> dict[str, Any]:
        with self._lock:
            data = self.settings.to_dict()
            data["script_left"] = list(self._script)
            data["injected"] = dict(self.injected)
            data["garbage"] = {
                "kinds": dict(self.garbage_kinds),
                "recorded": self.garbage_recorded,
                "not_recorded": self.garbage_not_recorded,
                "log": list(self.garbage_log),
            }
        return data

    def _matches(self, method: str, path: str) -> bool:
        if not path.startswith("/v1/"):
            return False
        only = self.settings.only
        if not only:
            return True
        for rule in only:
            verb, _, prefix = rule.rpartition(" ")
            if path.startswith(prefix) and (not verb or verb.upper() == method.upper()):
                return True
        return False

    def draw(self, method: str, path: str) -> str | None:
        """The fault for this request, or None (latency is separate: ``latency()``)."""
        return self.draw_full(method, path)[0]

    def draw_full(self, method: str, path: str) -> tuple[str | None, str | None, bool]:
        """(fault, garbage kind, whether a garbage batch is recorded first) for this request."""
        with self._lock:
            if not self._matches(method, path):
                return None, None, True
            kind: str | None = None
            if self._script:
                name = self._script.pop(0)
                name, _, kind_named = name.partition(":")
                chosen = None if name == "none" else name
                kind = kind_named or None
            else:
                u = self._rng.random()
                chosen = None
                edge = 0.0
                for name in FAULTS:
                    edge += getattr(self.settings, _RATE_OF[name])
                    if u < edge:
                        chosen = name
                        break
            record = True
            if chosen == "garbage":
                if kind is None or not applies(kind, method, path):
                    pool = self.settings.garbage_kinds or ["not_json"]
                    if "all" in pool:
                        pool = list(GARBAGE_KINDS)
                    fitting = [k for k in pool if applies(k, method, path)]
                    kind = self._rng.choice(fitting) if fitting else None
                if kind is None:  # none of the chosen kinds fits this request: answer it normally
                    return None, None, True
                if method == "POST" and path == "/v1/payments/batch":
                    mode = self.settings.garbage_record
                    record = mode == "always" or (mode == "random" and self._rng.random() < 0.5)
                self.garbage_kinds[kind] += 1
                if record:
                    self.garbage_recorded += 1
                else:
                    self.garbage_not_recorded += 1
                self.garbage_log.append({"kind": kind, "method": method, "path": path, "recorded": record})
            if chosen:
                self.injected[chosen] += 1
            return chosen, kind, record

    def latency(self, method: str, path: str) -> float:
        with self._lock:
            if not self.settings.latency_ms or not self._matches(method, path):
                return 0.0
            return self.settings.latency_ms / 1000

    @property
    def clock_offset(self) -> float:
        return float(self.settings.clock_offset)


async def _send_plain(send: Any, status: int, body: bytes, content_type: str, extra: list[Any]) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + extra})
    await send({"type": "http.response.body", "body": body})


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


async def abort_connection(send: Any) -> bool:
    """Abort the client's TCP connection with no answer at all. ``send`` must be the server's own.

    uvicorn's ``send`` is a bound method of the request cycle, which holds the asyncio transport:
    ``abort()`` closes the socket at once (buffered data discarded), so the client sees the peer
    close before any status line: requests raises ConnectionError.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        return False
    transport.abort()
    # Let connection_lost run so uvicorn marks the cycle disconnected and does not answer 500.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return True


async def run_with_faults(injector: FaultInjector, scope: Scope, receive: Any, send: Any, app: Any) -> None:
    """ASGI wrapper: apply the injector's faults to one HTTP request handled by ``app``."""
    if scope.get("type") != "http":
        await app(scope, receive, send)
        return
    method, path = scope.get("method", "GET"), scope.get("path", "")
    delay = injector.latency(method, path)
    if delay:
        await asyncio.sleep(delay)
    fault, kind, record = injector.draw_full(method, path)
    if fault is None:
        await app(scope, receive, send)
        return
    if fault == "error":
        await _send_plain(
            send, 500, _error_body("internal_error", "sandbox: injected server error"), "application/json", []
        )
        return
    if fault == "unavailable":
        retry = str(injector.settings.retry_after).encode()
        await _send_plain(
            send,
            503,
            _error_body("unavailable", "sandbox: injected unavailability, retry later"),
            "application/json",
            [(b"retry-after", retry)],
        )
        return
    if fault == "garbage" and kind is not None:
        await _answer_garbage(injector, kind, record, scope, receive, send, app)
        return

    # The remaining faults let the handler run (and commit) first, then spoil the answer.
    async def swallow(message: Any) -> None:
        return None

    await app(scope, receive, swallow)
    if fault == "drop_after_commit":
        if await abort_connection(send):
            return
        # Not uvicorn: start a response and break it mid-way (the client still gets an error).
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
        raise ConnectionAbortedError("sandbox: injected drop after commit")
    await _send_plain(send, 200, PORTAL_BODY, "text/html; charset=utf-8", [])


async def _answer_garbage(
    injector: FaultInjector, kind: str, record: bool, scope: Scope, receive: Any, send: Any, app: Any
) -> None:
    """Read the request (bounded), run the handler when ``record``, then answer with the broken ``kind``."""
    buffered: list[Any] = []
    size = 0
    while True:  # bounded: stops past MAX_BODY (then the app answers 413 itself) or at the last chunk
        message = await receive()
        buffered.append(message)
        if message.get("type") != "http.request":
            break
        size += len(message.get("body", b""))
        if size > MAX_BODY or not message.get("more_body", False):
            break

    async def replay() -> Any:
        return buffered.pop(0) if buffered else await receive()

    raw_request = b"".join(m.get("body", b"") for m in buffered if m.get("type") == "http.request")
    if size > MAX_BODY:
        await app(scope, replay, send)
        return
    try:
        request_json = json.loads(raw_request) if raw_request else None
    except (ValueError, RecursionError):
        request_json = None
    async def run_handler() -> tuple[int | None, bytes]:
        parts: list[bytes] = []
        seen: dict[str, int] = {}

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))

        await app(scope, replay, capture)
        return seen.get("status"), b"".join(parts)

    status, raw = await run_handler() if record else (None, None)
    s = injector.settings

    def context() -> Context:
        return Context(scope.get("method", "GET"), scope.get("path", ""), request_json, status, raw,
                       random.Random(), drip_seconds=float(s.drip_seconds), huge_bytes=s.huge_bytes)  # fmt: skip

    broken = build(kind, context())
    if not record and claims_success(broken, request_json):
        # "Not recorded" is a fault only with an answer outside the contract; a well-formed success for a batch
        # never recorded would be a lie, not a fault: record it first, as the answer says.
        status, raw = await run_handler()
        injector.recorded_after_all(kind)
        broken = build(kind, context())
    await send_broken(send, broken)


async def send_broken(send: Any, b: Broken) -> None:
    """Send one broken answer as ASGI messages (streamed with pauses, or cut, as it says)."""
    headers = list(b.headers)
    if b.content_type:
        headers.append((b"content-type", b.content_type.encode()))
    length = len(b.body) if b.length == -1 else b.length
    if length is not None and b.status != 204:
        headers.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": b.status, "headers": headers})
    if b.chunks is None:
        await send({"type": "http.response.body", "body": b"" if b.status == 204 else b.body})
        return
    for chunk in b.chunks:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if b.delay:
            await asyncio.sleep(b.delay)
    if b.abort and await abort_connection(send):
        return
    await send({"type": "http.response.body", "body": b"", "more_body": False})
