"""The status bar shows the TPE's real state, live from the device registry: ready, not answering (a terminal
that stops answering ENQ), absent (its USB-serial adapter unplugged), ready again once plugged back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.devices import DeviceRegistry, TpeProbe
from drivers.concert import link_for
from sandbox.tpe import TpeSimulator
from tests.ui.conftest import login, text_of, wait_for

pytestmark = pytest.mark.anyio

FAST = {"baud": 38400, "framing": "8N1", "ack_timeout": 0.3, "max_retries": 0}


async def test_status_bar_follows_the_tpe(ui_app: Any, ui_config: Any, tmp_path: Path) -> None:
    from config.schema import TpeConfig

    sim = TpeSimulator.on_pty(baud=38400, framing="8N1", ack_timeout=0.3).start()
    adapter = tmp_path / "ttyUSB0"  # stands for /dev/ttyUSB0: removed and made again as a plug would
    adapter.symlink_to(sim.path)
    cfg = ui_config.model_copy(deep=True)
    cfg.ui.language = "en"
    cfg.tpe = TpeConfig(port=str(adapter), baud=38400, framing="8N1", ack_timeout=0.3)
    registry = DeviceRegistry([TpeProbe(link_for(str(adapter), **FAST), interval=0.05, liveness=0.2, retry=0.2)])
    app = ui_app(cfg, run_sync=False, status_interval=3600, device_registry=registry)
    try:
        async with app.run_test(size=(140, 44)) as pilot:
            await login(pilot)

            def bar() -> str:
                return text_of(pilot, "#sb-devices")

            await wait_for(pilot, lambda: "TPE: ready" in bar(), "the TPE ready")
            sim.behaviour = "silent"
            await wait_for(pilot, lambda: "TPE: not answering" in bar(), "the TPE not answering")
            adapter.unlink()
            sim.stop()
            await wait_for(pilot, lambda: "TPE: absent" in bar(), "the TPE absent")
            again = TpeSimulator.on_pty(baud=38400, framing="8N1", ack_timeout=0.3).start()
            try:
                adapter.symlink_to(again.path)
                await wait_for(pilot, lambda: "TPE: ready" in bar(), "the TPE back")
                app.set_language("fr")  # the bar composed again keeps the state, in French
                await wait_for(pilot, lambda: "TPE : prêt" in bar() or "TPE: prêt" in bar(), "the French label")
                assert "configured" not in bar()
            finally:
                again.stop()
    finally:
        sim.stop()
        registry.stop()
    assert not registry.running


async def test_status_bar_follows_the_reader(ui_app: Any, ui_config: Any) -> None:
    """PC/SC events through the registry: a card in the vpcd reader shows at once, and its removal."""
    import os

    from agent.devices import ReaderProbe
    from sandbox.cards.card import VirtualCard
    from sandbox.cards.profiles import PROFILES
    from sandbox.cards.vpcd import VpcdLink
    from tests.cards.conftest import _vpcd_reader, vpcd_lock, wait_presence

    name, why = _vpcd_reader()
    if name is None:
        if os.environ.get("CI"):
            pytest.fail(f"pcscd + vpcd are required in CI: {why}")
        pytest.skip(why)
    cfg = ui_config.model_copy(deep=True)
    cfg.ui.language = "en"
    registry = DeviceRegistry([ReaderProbe(name, wait=0.3)])
    app = ui_app(cfg, run_sync=False, status_interval=3600, device_registry=registry)
    with vpcd_lock():
        wait_presence(name, False)
        try:
            async with app.run_test(size=(140, 44)) as pilot:
                await login(pilot)
                await wait_for(pilot, lambda: "Reader: ready" in text_of(pilot, "#sb-devices"), "the reader")
                link = VpcdLink(VirtualCard(PROFILES["cib"])).start()
                try:
                    await wait_for(pilot, lambda: "Reader: card present" in text_of(pilot, "#sb-devices"),
                                   "the card")
                finally:
                    link.remove()
                await wait_for(pilot, lambda: "Reader: ready" in text_of(pilot, "#sb-devices"), "the card out")
        finally:
            registry.stop()
            wait_presence(name, False)
