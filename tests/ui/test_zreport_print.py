"""The Z report prints on the receipt printer (P); with the paper out it waits in the print queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.ui.conftest import login, screen_name, text_of, wait_for

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("behaviour", ["ok", "paper_out"])
async def test_the_z_report_prints_or_waits_for_the_paper(ui_app: Any, ui_config: Any, seeded_references: list[str],
                                                          tmp_path: Path, behaviour: str) -> None:
    from agent.printing import PrintQueue
    from sandbox.printer import VirtualPrinter

    with VirtualPrinter(tmp_path / "paper", behaviour=behaviour) as vp:
        vp.listen("127.0.0.1", 0)
        cfg = ui_config.model_copy(deep=True)
        cfg.ui.language = "en"
        cfg.printer.url = vp.url
        app = ui_app(cfg, run_sync=False)
        async with app.run_test(size=(160, 50)) as pilot:
            await login(pilot)
            flow = app.backend.flow
            flow.pay([flow.lookup(seeded_references[0])], method="cash", cashier_id="c0042")
            await pilot.press("f7")
            await wait_for(pilot, lambda: screen_name(pilot) == "ZReportScreen", "the Z report")
            await wait_for(pilot, lambda: app.screen.report is not None, "the report computed")
            await pilot.press("p")
            want = "Printed" if behaviour == "ok" else "Waiting for the printer"
            await wait_for(pilot, lambda: want in text_of(pilot, "#z-message"), want)
        queue = PrintQueue.open(cfg.state.dir)
        try:
            assert queue.count() == (0 if behaviour == "ok" else 1)
        finally:
            queue.close()
        if behaviour == "ok":  # on paper: the virtual printer kept the job as a picture
            assert len(vp.jobs) == 1 and vp.jobs[0].path.exists()
