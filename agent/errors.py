"""Errors the agent reports to cashiers and technicians: one clear line each."""

from __future__ import annotations


class GuichetError(Exception):
    """Base of the agent's errors; str(e) is the one line shown to the user."""


class JournalError(GuichetError):
    """The journal cannot be opened or written (corrupt, read-only, wrong version)."""


class InvalidTransition(GuichetError):
    pass


class BillNotFound(GuichetError):
    pass


class BillNotPayable(GuichetError):
    pass


class BillBlocked(GuichetError):
    """An unknown or in-flight payment exists for the bill: a double charge is worse than a wait."""


class OfflineLimitExceeded(GuichetError):
    pass


class InvalidAmount(GuichetError):
    pass


class MethodUnavailable(GuichetError):
    pass


class ServerUnreachable(GuichetError):
    """Connection error, timeout, 5xx, or an answer we cannot trust (garbage, wrong content type).

    `sent` is False only when the request certainly never reached the server (connection refused, no
    route, unknown host, connect timeout): then a POST had no effect there.
    """

    def __init__(self, message: str, retry_after: float | None = None, *, sent: bool = True) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.sent = sent


class RetryLater(ServerUnreachable):
    """429 or 503: the server asked us to wait at least `retry_after` seconds."""


class ApiError(GuichetError):
    """A 4xx answer with the contract's error body: not retried."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"server refused ({status} {code}): {message}")
        self.status = status
        self.code = code
        self.message = message


class AlreadyRunning(GuichetError):
    pass


class StorageError(GuichetError):
    """The state directory cannot be written or read as needed (disk full, I/O error, read-only):
    one line naming the file and the cause; nothing already stored is lost."""


class JournalDamaged(JournalError):
    """The journal failed its integrity check, or lost payments it had committed (its high-water mark,
    kept outside the database file, is ahead of it): no new payment until a supervisor acts."""


class SettlementRefused(GuichetError):
    """An unknown outcome cannot be settled as asked: what was typed from the ticket is malformed (or shows a
    full card number), the server's authorization record contradicts it, or that record cannot be read now."""


class BadAnswer(ServerUnreachable):
    """The server answered something outside the contract (a field of the wrong type or out of bounds, a body
    too large or too deep, a batch that does not match): one line naming the field; treated as no answer."""


class SettlementRefusal(SettlementRefused):
    """A SettlementRefused whose reason has a name: `kind` (ui/text.py SETTLE_REFUSALS translates each) and the
    `params` its text needs, so the cashier reads why in their language, not the core's English line."""

    def __init__(self, message: str, kind: str, **params: object) -> None:
        super().__init__(message)
        self.kind = kind
        self.params = params
