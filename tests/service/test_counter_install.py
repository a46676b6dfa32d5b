"""A counter install: pyproject.toml without the `sandbox` extra, so no FastAPI, Starlette or uvicorn.

The extra is made unimportable with a sitecustomize on PYTHONPATH (a meta path finder that refuses those
names and writes down every attempt): `guichet doctor` and `guichet run --headless` work and never reach for
them; `guichet sandbox serve` says how to install the extra instead of a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.conftest import GUICHET, write_config

BLOCKER = '''
import os, sys

class NoSandboxExtra:
    """The sandbox extra is not installed: its modules cannot be imported (each attempt is logged)."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("fastapi", "starlette", "uvicorn"):
            with open(os.environ["GUICHET_TEST_BLOCKED_LOG"], "a") as log:
                log.write(name + "\\n")
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoSandboxExtra())
'''


class Counter:
    """The environment of a process on a counter install, and what it tried to import from the extra."""

    def __init__(self, tmp: Path) -> None:
        site = tmp / "no-sandbox-extra"
        site.mkdir()
        (site / "sitecustomize.py").write_text(BLOCKER)
        self.log = tmp / "blocked.log"
        self.log.touch()
        self.env = {"PYTHONPATH": str(site), "GUICHET_TEST_BLOCKED_LOG": str(self.log)}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([GUICHET, *args], capture_output=True, text=True, timeout=60,
                              env={**os.environ, **self.env}, stdin=subprocess.DEVNULL)

    def attempts(self) -> list[str]:
        return self.log.read_text().split()


@pytest.fixture
def counter(tmp_path: Path) -> Counter:
    return Counter(tmp_path)


@pytest.fixture
def cfg(tmp_path: Path, billing_server) -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return write_config(tmp_path / "g.toml", billing_server.url, state)


def test_the_extra_is_really_missing(counter):
    r = subprocess.run([sys.executable, "-c", "import fastapi"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, **counter.env})
    assert r.returncode == 1 and "No module named 'fastapi'" in r.stderr
    assert counter.attempts() == ["fastapi"]


def test_doctor_runs_without_the_sandbox(counter, cfg):
    import json

    r = counter.run("--config", str(cfg), "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(r.stdout)}
    for name in ("config", "state_dir", "journal", "server", "server_token"):
        assert checks[name]["status"] == "ok", checks[name]
    assert "Traceback" not in r.stderr
    assert counter.attempts() == []


def test_the_headless_agent_runs_without_the_sandbox(counter, cfg, notify_socket, spawn):
    agent = spawn(cfg, notify_socket.path, env=counter.env)
    assert notify_socket.wait_for(lambda m: "READY=1" in m).startswith("READY=1")
    online = notify_socket.seen_or_wait(lambda m: m.startswith("STATUS=online"))
    assert "0 unsent" in online
    assert agent.terminate() == 0
    assert "stopped cleanly" in "".join(agent.stderr)
    assert counter.attempts() == []


@pytest.mark.parametrize("args", [("sandbox", "serve"), ("sandbox", "serve", "--help")])
def test_the_sandbox_says_how_to_install_it(counter, args):
    r = counter.run(*args)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "guichet: the sandbox is not installed here (a counter install leaves it out): "
        "pip install 'guichet[sandbox]', or ./dev setup in a checkout"
    ]
    assert counter.attempts()  # it did reach for the extra, and was told it is not there


def test_the_demo_says_how_to_install_it_and_leaves_nothing_behind(counter, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    counter.env["TMPDIR"] = str(tmp)
    r = counter.run("demo", "--headless", "--script", os.devnull)
    assert r.returncode == 2
    assert "pip install 'guichet[sandbox]'" in r.stderr and "Traceback" not in r.stderr
    assert list(tmp.iterdir()) == []


def test_the_sandbox_tools_that_need_no_server_still_work(counter):
    """The virtual card and the TPE simulator need only the base install."""
    for sub in ("card", "tpe"):
        r = counter.run("sandbox", sub, "--help")
        assert r.returncode == 0, r.stderr
    assert counter.attempts() == []
