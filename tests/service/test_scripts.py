"""install.sh / uninstall.sh: valid bash, and the plan they carry out (--dry-run changes nothing)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts/install.sh"
UNINSTALL = ROOT / "scripts/uninstall.sh"


def dry(script: Path, *args: str) -> list[str]:
    result = subprocess.run(["bash", str(script), "--dry-run", *args], capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]


def test_scripts_parse():
    for script in (INSTALL, UNINSTALL):
        subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)


def test_install_creates_user_venv_config_state_and_enables_the_unit():
    steps = "\n".join(dry(INSTALL))
    assert "useradd --system" in steps or "usermod -a -G dialout guichet" in steps
    assert "usermod -a -G dialout guichet" in steps
    assert "-m venv /opt/guichet/venv" in steps or "/opt/guichet/venv/bin/pip install" in steps
    assert f"/opt/guichet/venv/bin/pip install --quiet {ROOT}" in steps
    assert "install -d -m 0700 -o guichet -g guichet /var/lib/guichet" in steps
    assert "chmod 0600 /etc/guichet/guichet.toml" in steps
    assert "systemctl enable --now guichet.service" in steps
    assert "doctor" in steps


def test_install_headless_enables_the_headless_unit_only():
    steps = dry(INSTALL, "--headless", "--prefix", "/opt/g2")
    assert "systemctl enable --now guichet-headless.service" in steps
    assert "systemctl disable --now guichet.service" in steps
    assert any("/opt/g2/venv/bin/pip install" in s for s in steps)


def test_uninstall_keeps_journal_and_config_unless_purge():
    kept = dry(UNINSTALL)
    assert "rm -rf /opt/guichet" in kept
    assert not any("/var/lib/guichet" in s or "/etc/guichet" in s for s in kept)
    purged = dry(UNINSTALL, "--purge", "--force")
    assert "rm -rf /var/lib/guichet /etc/guichet" in purged


def test_unknown_option_is_a_usage_error():
    result = subprocess.run(["bash", str(INSTALL), "--bogus"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "unknown option --bogus" in result.stderr
