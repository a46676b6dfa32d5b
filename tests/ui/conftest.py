"""UI test helpers: a GuichetApp on the real journal/flow/sandbox server, and bounded waits for Pilot.

    async def test_x(ui_app):
        app = ui_app()                          # cash only, cashiers c0042/4826 and supervisor s0001/917355
        async with app.run_test(size=(140, 44)) as pilot:
            await login(pilot)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from argon2.low_level import Type
from textual.pilot import Pilot

import config
from agent.cashiers import CashierStore
from config.schema import PaymentsConfig
from ui.backend import Backend

CASHIER = ("c0042", "4826")
SUPERVISOR = ("s0001", "917355")


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio through anyio's pytest plugin (mark: pytest.mark.anyio)."""
    return "asyncio"


@pytest.fixture
def ui_config(billing_config: config.Config) -> config.Config:
    """The sandbox config, cash only (the card methods have their own engineers' fixtures)."""
    cfg = billing_config.model_copy(deep=True)
    cfg.payments = PaymentsConfig(default_method="cash", methods=["cash"])
    return cfg


@pytest.fixture
def ui_backend(ui_config: config.Config) -> Iterator[Callable[..., Backend]]:
    opened: list[Backend] = []

    def make(cfg: config.Config | None = None, **kwargs: Any) -> Backend:
        cfg = cfg or ui_config
        # argon2id all the same, at test cost: the PIN logic is what these tests check, not the KDF's price.
        store = CashierStore.open(cfg.state.dir, hasher=PasswordHasher(type=Type.ID, time_cost=1, memory_cost=8192))
        existing = {c.cashier_id for c in store.list()}
        if CASHIER[0] not in existing:
            store.add(CASHIER[0], "Amel B.", CASHIER[1])
            store.add(SUPERVISOR[0], "Karim S.", SUPERVISOR[1], role="supervisor")
        backend = Backend.open(cfg, cashiers=store, **kwargs)
        opened.append(backend)
        return backend

    yield make
    for b in opened:
        b.close()


@pytest.fixture
def ui_app(ui_backend: Callable[..., Backend]) -> Callable[..., Any]:
    from ui.app import GuichetApp

    def make(cfg: config.Config | None = None, **kwargs: Any) -> GuichetApp:
        backend_kw = {k: kwargs.pop(k) for k in ("authorizers",) if k in kwargs}
        return GuichetApp(ui_backend(cfg, **backend_kw), **kwargs)

    return make


async def wait_for(pilot: Pilot[Any], cond: Callable[[], Any], what: str, rounds: int = 400) -> Any:
    """Let the app run until cond() is truthy (bounded: ~20 s of 50 ms pauses); fail naming `what`.

    A widget cond() looks for that is not there yet (NoMatches) counts as "not yet": screens are pushed at
    once but composed a moment later, and a loaded machine stretches that moment."""
    from textual.css.query import NoMatches

    for _ in range(rounds):
        try:
            value = cond()
        except NoMatches:
            value = None
        if value:
            return value
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def screen_name(pilot: Pilot[Any]) -> str:
    """The screen the cashier sees: its class name once it is composed and mounted, "" before.

    `app.screen` changes as soon as a screen is pushed; its widgets exist only after its compose has run,
    so a test that acts on the name alone races the compose."""
    screen = pilot.app.screen
    return type(screen).__name__ if screen.is_mounted else ""


def text_of(pilot: Pilot[Any], selector: str) -> str:
    from textual.widgets import Static

    w = pilot.app.screen.query_one(selector, Static)
    return str(w.render())


async def type_into(
    pilot: Pilot[Any], selector: str, text: str, enter: bool = True, keys: bool = False
) -> None:
    """Fill an Input (as a paste would; keys=True types key by key, ~50 ms each) then press Enter."""
    from textual.widgets import Input

    field = pilot.app.screen.query_one(selector, Input)
    field.focus()
    await pilot.pause()
    if keys:
        await pilot.press(*list(text))
    else:
        field.value = text
        field.cursor_position = len(text)
        await pilot.pause()
    if enter:
        await pilot.press("enter")


async def login(pilot: Pilot[Any], who: tuple[str, str] = CASHIER) -> None:
    await wait_for(pilot, lambda: screen_name(pilot) == "LoginScreen", "the login screen")
    await wait_for(pilot, lambda: pilot.app.screen.query("#cashier-id"), "the login form")
    await type_into(pilot, "#cashier-id", who[0])
    await type_into(pilot, "#pin", who[1])
    await wait_for(pilot, lambda: screen_name(pilot) in ("PaymentScreen", "UnknownScreen"), "login")


Waiter = Callable[[Pilot[Any], Callable[[], Any], str], Awaitable[Any]]


@pytest.fixture
def tpe_sim() -> Iterator[Any]:
    """The TPE simulator on a pty (8N1 at 38400 so frames take milliseconds), approving by default."""
    from sandbox.tpe import TpeSimulator

    with TpeSimulator.on_pty(baud=38400, framing="8N1", behaviour="approve", pin_delay=0.1) as sim:
        yield sim


@pytest.fixture
def tpe_config(ui_config: config.Config, tpe_sim: Any) -> config.Config:
    """ui_config with the TPE simulator as the card terminal (default method), cash as the other."""
    from config.schema import TpeConfig

    cfg = ui_config.model_copy(deep=True)
    cfg.tpe = TpeConfig(port=tpe_sim.path, baud=38400, framing="8N1", ack_timeout=1, answer_timeout=2)
    cfg.payments = PaymentsConfig(default_method="card_terminal", methods=["card_terminal", "cash"])
    return cfg
