"""Core fixtures: the agent's parts on a real journal, and the real `guichet` CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import config
from agent.context import AgentContext
from sandbox.billing.server import SandboxServer

GUICHET = [sys.executable, "-m", "guichet"]


def with_changes(cfg: config.Config, **sections: dict) -> config.Config:
    data = cfg.model_dump(mode="python")
    for section in ("server", "cards"):
        for key in ("token", "hmac_key"):
            if key in data[section]:
                data[section][key] = data[section][key].get_secret_value()
    for section, values in sections.items():
        data[section].update(values)
    return config.validate(data)


@pytest.fixture
def agent(billing_config: config.Config) -> Iterator[AgentContext]:
    """Journal + bill cache + client + flow (cash) on the test config, claiming the counter."""
    ctx = AgentContext.open(billing_config, ["cash"], take_payments=True)
    yield ctx
    ctx.close()


@pytest.fixture
def config_file(billing_config: config.Config, tmp_path: Path) -> Path:
    return config.write_config(billing_config, tmp_path / "guichet.toml")


Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def guichet(config_file: Path) -> Runner:
    """Run the real `guichet` CLI with the test config: guichet("pay", ref, "--json", env={...})."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60, cfg: Path | None = None):
        full_env = {k: v for k, v in os.environ.items() if k != "GUICHET_CRASHPOINT"}
        full_env.update({"GUICHET_CONFIG": str(cfg or config_file), **(env or {})})
        return subprocess.run(
            [*GUICHET, *args], capture_output=True, text=True, env=full_env, timeout=timeout, stdin=subprocess.DEVNULL
        )

    return run


def recorded_ids(server: SandboxServer) -> list[str]:
    """payment_id of every payment the server recorded (one row per recorded payment)."""
    return [p["payment_id"] for p in server.recorded_payments()]
