"""Fixtures for the TPE tests: the Concert simulators (E+ on a real pty, V3 on a loopback TCP port), and links
with short timeouts.

    def test_x(tpe_sim, tpe_link):
        sim = tpe_sim(behaviour="refuse")          # running in a thread; stopped at teardown
        result = tpe_link(sim).pay(123450, "DZD")

    def test_y(v3_sim, v3_link):
        sim = v3_sim(behaviour="refuse")           # tcp://127.0.0.1:PORT
        result = v3_link(sim).pay(123450, "DZD")

    def test_z(terminal):                          # run once per protocol: "E+" then "V3"
        sim = terminal.sim(behaviour="refuse")
        result = terminal.link(sim).pay(123450, "DZD")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import config
from config import Config
from drivers.concert import ConcertLink, V3Link
from sandbox.tpe import TpeSimulator, V3Simulator

FAST_BAUD = 115200
# Short but generous against a loaded CI machine: every wait is bounded by these.
TPE_TIMEOUTS = {"ack_timeout": 0.5, "answer_timeout": 1.5, "max_retries": 3, "cancel_grace": 0.6}


@pytest.fixture
def tpe_sim() -> Iterator[Callable[..., TpeSimulator]]:
    sims: list[TpeSimulator] = []

    def make(**kw: Any) -> TpeSimulator:
        kw.setdefault("baud", FAST_BAUD)
        kw.setdefault("framing", "7E1")
        kw.setdefault("think", 0.0)
        kw.setdefault("pin_delay", 0.3)
        kw.setdefault("ack_timeout", 0.5)
        sim = TpeSimulator.on_pty(**kw)
        sims.append(sim)
        return sim.start()

    yield make
    for sim in sims:
        sim.stop()


@pytest.fixture
def tpe_link() -> Callable[..., ConcertLink]:
    def make(sim: TpeSimulator, *, port: str | None = None, **kw: Any) -> ConcertLink:
        opts: dict[str, Any] = {"baud": sim.baud, "framing": sim.framing, **TPE_TIMEOUTS, **kw}
        return ConcertLink(port or sim.path, **opts)

    return make


@pytest.fixture
def v3_sim() -> Iterator[Callable[..., V3Simulator]]:
    sims: list[V3Simulator] = []

    def make(**kw: Any) -> V3Simulator:
        kw.setdefault("think", 0.0)
        kw.setdefault("pin_delay", 0.3)
        kw.setdefault("read_quiet", 0.3)
        sim = V3Simulator("127.0.0.1", 0, **kw)
        sims.append(sim)
        return sim.start()

    yield make
    for sim in sims:
        sim.stop()


V3_QUIET = 0.02  # loopback delivers an answer at once: a short quiet time keeps the suite fast


@pytest.fixture
def v3_link() -> Callable[..., V3Link]:
    def make(sim: V3Simulator | str, **kw: Any) -> V3Link:
        opts: dict[str, Any] = {**TPE_TIMEOUTS, "quiet": V3_QUIET, **kw}
        return V3Link(sim if isinstance(sim, str) else sim.url, **opts)

    return make


@dataclass(frozen=True)
class Terminal:
    """One protocol's simulator and link makers, for the tests that every link must pass."""

    protocol: str
    sim: Callable[..., Any]  # TpeSimulator | V3Simulator, started
    link: Callable[..., Any]  # ConcertLink | V3Link for that simulator (keyword options override)


@pytest.fixture
def terminals(tpe_sim, tpe_link, v3_sim, v3_link) -> dict[str, Terminal]:
    return {"E+": Terminal("E+", tpe_sim, tpe_link), "V3": Terminal("V3", v3_sim, v3_link)}


@pytest.fixture(params=["E+", "V3"])
def terminal(request: pytest.FixtureRequest, terminals: dict[str, Terminal]) -> Terminal:
    return terminals[request.param]


def tpe_config(port: str, *, baud: int = FAST_BAUD, framing: str = "7E1", **tpe: Any) -> Config:
    return config.validate(
        {
            "tpe": {"port": port, "baud": baud, "framing": framing, **TPE_TIMEOUTS, **tpe},
            "cards": {
                "hmac_key": "k" * 32,
                "schemes": [
                    {"name": "EDAHABIA", "bins": ["628058"]},
                    {"name": "CIB", "bins": ["603620"]},
                    {"name": "VISA", "bins": ["4"]},
                ],
            },
        }
    )
