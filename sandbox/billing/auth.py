"""Who is calling the sandbox billing server: per-terminal tokens (contract 1.1), a shared token, the admin.

Contract 1.1: the token identifies one terminal; ``403 forbidden`` when ``X-Terminal-Id`` (or a payment's
``terminal_id``, or a path's terminal id) is not that terminal's; a terminal reads only its own payments and
authorizations and its own agency's bills. The sandbox also keeps the single shared token of contract 1.0
for tests and the demo: it stands for whichever terminal ``X-Terminal-Id`` names, in the server's agency.
The admin token (fault injection, seeding, inspection under ``/_sandbox/``) is no terminal's.

>>> auth = Auth({"ORAN-07-G1": ("t1", "ORAN-07")}, shared_token=None, shared_agency="ORAN-07", admin_token="adm")
>>> auth.identify("Bearer t1", "ORAN-07-G1")
Caller(terminal_id='ORAN-07-G1', agency_id='ORAN-07', admin=False)
>>> try:
...     auth.identify("Bearer t1", "ORAN-07-G2")
... except AuthError as e:
...     print(e)
403 forbidden: X-Terminal-Id ORAN-07-G2 is not this token's terminal
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: a terminal of an agency, or the admin (then terminal and agency are "")."""

    terminal_id: str
    agency_id: str
    admin: bool = False


class AuthError(Exception):
    """Answered as the contract's error body with ``status`` and ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def _same(given: bytes, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given, f"Bearer {expected}".encode())


class Auth:
    """Token checks. ``terminals`` maps a terminal id to ``(token, agency_id)``."""

    def __init__(
        self,
        terminals: Mapping[str, tuple[str, str]] | None,
        *,
        shared_token: str | None,
        shared_agency: str,
        admin_token: str,
    ) -> None:
        self.terminals = dict(terminals or {})
        for tid, (token, agency) in self.terminals.items():
            if not tid.strip() or not token or not agency.strip():
                raise ValueError(f"terminal {tid!r}: id, token and agency must not be empty")
            if token in (shared_token, admin_token):
                raise ValueError(f"terminal {tid}: its token must be its own")
        if not admin_token:
            raise ValueError("admin token: must not be empty")
        if shared_token and shared_token == admin_token:
            raise ValueError("admin token: must differ from the terminals' token")
        self.shared_token = shared_token or None
        self.shared_agency = shared_agency
        self.admin_token = admin_token

    def identify(self, authorization: str, terminal_header: str | None, *, admin_path: bool = False) -> Caller:
        """The caller of a request, or AuthError (401 for a bad token or no X-Terminal-Id, 403 otherwise)."""
        given = authorization.encode("utf-8", "replace")
        if _same(given, self.admin_token):
            if admin_path:
                return Caller("", "", admin=True)
            raise AuthError(403, "forbidden", "the admin token is no terminal's: use a terminal token")
        owner: tuple[str, str] | None = None
        for tid, (token, agency) in self.terminals.items():
            if _same(given, token):
                owner = (tid, agency)
        shared = self.shared_token is not None and _same(given, self.shared_token)
        if owner is None and not shared:
            raise AuthError(401, "unauthorized", "missing or wrong bearer token")
        if admin_path:
            raise AuthError(403, "forbidden", "/_sandbox/ needs the admin token")
        terminal = (terminal_header or "").strip()
        if not terminal:
            raise AuthError(401, "missing_terminal_id", "the X-Terminal-Id header is required")
        if owner is None:  # the shared token: whichever terminal the header names, in the server's agency
            return Caller(terminal, self.shared_agency)
        if terminal != owner[0]:
            raise AuthError(403, "forbidden", f"X-Terminal-Id {terminal[:64]} is not this token's terminal")
        return Caller(owner[0], owner[1])

    def token_of(self, terminal_id: str) -> str:
        """The token a terminal sends (its own, else the shared one); KeyError when it has none."""
        if terminal_id in self.terminals:
            return self.terminals[terminal_id][0]
        if self.shared_token is not None:
            return self.shared_token
        raise KeyError(terminal_id)
