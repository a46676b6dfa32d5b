"""Run the sandbox billing server in-process (uvicorn in a background thread), for tests and the demo.

>>> with SandboxServer(tmp_db, seed_bills=50, agency="ORAN-07", token="test-token") as srv:  # doctest: +SKIP
...     requests.get(srv.url + "v1/bills/" + srv.references()[0], headers=srv.headers())
...     requests.get(srv.url + "_sandbox/payments", headers=srv.admin_headers())
...     srv.set_faults(unavailable_rate=1.0, retry_after=3)   # every /v1 call now answers 503
...     srv.stop(); srv.start()                              # link down, then back on the SAME port + DB
...     srv.recorded_payments()

``url`` ends with "/" (``http://127.0.0.1:PORT/``), like the config's ``server.url``. Per-terminal tokens
(contract 1.1): ``SandboxServer(terminals={"ORAN-07-G1": ("tok-g1", "ORAN-07"), ...})``; then there is no
shared token unless ``token=`` is given too.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from sandbox.billing.acquirer import IssuerBehaviour
from sandbox.billing.app import SandboxApp, create_app
from sandbox.billing.faults import FaultInjector, FaultSettings
from sandbox.billing.seed import generate_bills
from sandbox.billing.sender import ReceiptSender
from sandbox.billing.store import Store


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0 = a free port); SO_REUSEADDR so a restart can rebind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (with proto 0 it does not,
    # and every response then waits ~40 ms for the client's delayed ACK: headers and body are 2 writes).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)  # connections made from now on wait in the backlog until uvicorn accepts them
    return sock


class QuickServer(uvicorn.Server):
    """uvicorn.Server that stops in milliseconds instead of 0.2 s+ (its main loop polls every 0.1 s and
    its shutdown sleeps 0.1 s): tests start and stop a server per test, and ``stop()`` simulates a
    link going down, so in-flight connections are aborted after a short grace period."""

    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            try:
                await asyncio.wait_for(self._wake.wait(), 0.1)
            except TimeoutError:
                pass
            should_exit = await self.on_tick(counter)

    def request_stop(self) -> None:
        """Thread-safe: make ``run()`` return promptly."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # loop closed meanwhile
                pass

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # idle keep-alive connections close now; busy ones after their answer
        deadline = loop.time() + float(self.config.timeout_graceful_shutdown or 2)
        while (self.server_state.connections or self.server_state.tasks) and loop.time() < deadline:
            await asyncio.sleep(0.005)
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        for task in list(self.server_state.tasks):
            task.cancel()
        for server in self.servers:
            await server.wait_closed()


def make_uvicorn(app: SandboxApp) -> QuickServer:
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http="h11",  # the drop-after-commit fault relies on its request cycle holding the transport
        ws="none",
        loop="asyncio",
        timeout_graceful_shutdown=2,
        timeout_keep_alive=30,
    )
    return QuickServer(config)


_SHARED = "test-token"  # noqa: S105  (a sandbox credential)


class SandboxServer:
    """The sandbox billing server on 127.0.0.1 in a daemon thread. Context manager; restartable.

    ``db`` defaults to a fresh temporary file. ``seed_bills`` bills are generated for ``agency``
    (deterministic for a given ``seed``; re-seeding an existing DB adds nothing). ``token`` is the shared
    terminal token (default "test-token" unless ``terminals`` is given); ``terminals`` maps terminal ids to
    ``(token, agency_id)``; ``admin_token`` (random by default) opens ``/_sandbox/``. ``issuer`` and
    ``issuer_pans``: the sandbox issuer's behaviour and extra known cards (sandbox.billing.acquirer).
    """

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        token: str | None = _SHARED,
        terminals: Mapping[str, tuple[str, str]] | None = None,
        admin_token: str | None = None,
        agency: str = "ORAN-07",
        seed_bills: int = 0,
        seed: int = 1,
        currency: str = "DZD",
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultSettings | None = None,
        decline_pans: tuple[str, ...] = (),
        issuer: IssuerBehaviour | None = None,
        issuer_pans: tuple[str, ...] = (),
        smtp: str | None = None,
        sms_url: str | None = None,
        sms_file: str | Path | None = None,
    ) -> None:
        if db is None:
            self._tmp: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(prefix="sandbox-")
            db = Path(self._tmp.name) / "billing.db"
        else:
            self._tmp = None
        self.db_path = Path(db)
        if terminals and token == _SHARED:
            token = None  # per-terminal tokens only, unless a shared one is asked for explicitly
        self.token = token
        self.terminals = dict(terminals or {})
        self.admin_token = admin_token or secrets.token_urlsafe(16)
        self.agency = agency
        self.host = host
        self.port = port
        self.store = Store(self.db_path)
        if seed_bills:
            self.store.add_bills(generate_bills(seed_bills, agency, seed=seed, currency=currency))
        self.faults = FaultInjector(faults)
        self.app = create_app(
            self.store, token=token, terminals=self.terminals, agency=agency, admin_token=self.admin_token,
            faults=self.faults, decline_pans=decline_pans, issuer=issuer, issuer_pans=issuer_pans,
        )  # fmt: skip
        # POST /v1/receipts/{n}/send really sends: e-mail to the `smtp` relay (HOST:PORT), SMS to `sms_url`
        # or appended to `sms_file` (sandbox.billing.sender); without any, requests are only recorded.
        self.sender: ReceiptSender | None = None
        if smtp or sms_url or sms_file:
            self.sender = ReceiptSender(smtp=smtp, sms_url=sms_url, sms_file=Path(sms_file) if sms_file else None)
            self.app.state.receipt_sender = self.sender
        self._server: QuickServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> SandboxServer:
        """Listen (again) on the same port; returns self once it accepts connections."""
        if self.running:
            return self
        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        server = make_uvicorn(self.app)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"sandbox-billing:{self.port}", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive():
                sock.close()
                raise RuntimeError(f"sandbox billing server failed to start on {self.url}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"sandbox billing server did not start within {timeout} s")
            time.sleep(0.002)
        return self  # asyncio's server owns (and closes) the socket now

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening and close connections (clients then get connection refused). Keeps the DB."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.request_stop()
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        self._server, self._thread = None, None

    def close(self) -> None:
        """Stop and close the database (and remove the temporary DB if we made it)."""
        self.stop()
        self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- for tests ---------------------------------------------------------------------------------------

    def headers(self, terminal_id: str = "ORAN-07-G1") -> dict[str, str]:
        """The headers a terminal sends: its bearer token (or the shared one) and X-Terminal-Id."""
        return {"Authorization": f"Bearer {self.app.auth.token_of(terminal_id)}", "X-Terminal-Id": terminal_id}

    def admin_headers(self) -> dict[str, str]:
        """The headers for ``/_sandbox/`` (fault injection, seeding, inspection): the admin token."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Replace the fault profile: ``set_faults(error_rate=0.3, seed=7)``; ``set_faults()`` clears it."""
        self.faults.set(FaultSettings.from_dict(settings))
        return self.faults.status()

    def fault_status(self) -> dict[str, Any]:
        """The profile in force plus ``injected``: how many of each fault were actually served."""
        return self.faults.status()

    def recorded_payments(self) -> list[dict[str, Any]]:
        """Recorded payments in order, each with ``count`` (submissions of its payment_id); see Store."""
        return self.store.recorded_payments()

    def rejections(self) -> list[dict[str, Any]]:
        return self.store.rejections()

    def bill(self, reference: str) -> dict[str, Any]:
        """The bill as stored now; KeyError if there is none."""
        bill = self.store.get_bill(reference)
        if bill is None:
            raise KeyError(reference)
        return bill

    def put_bill(self, **fields: Any) -> dict[str, Any]:
        """Create or change a bill (version bumped, so the delta feed shows it)."""
        return self.store.put_bill(fields)

    def references(self, status: str | None = "unpaid", limit: int | None = None) -> list[str]:
        """This server's references for its agency in seed order (default: the unpaid ones)."""
        return self.store.references(agency=self.agency, status=status, limit=limit)

    def customer_with_bills(self, minimum: int = 2) -> tuple[str, list[str]]:
        """(customer_id, unpaid references) of the first customer holding at least ``minimum`` open bills."""
        for ref in self.store.references(agency=self.agency, status="unpaid"):
            bill = self.bill(ref)
            items = self.store.customer_bills(bill["customer_id"]) or []
            if len(items) >= minimum:
                return bill["customer_id"], [b["reference"] for b in items]
        raise LookupError(f"no customer with {minimum} open bills in this sandbox")
