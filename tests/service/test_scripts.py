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


def test_install_kiosk_sets_up_cage_foot_and_enables_only_the_kiosk_unit():
    steps = dry(INSTALL, "--kiosk", "--no-start")
    assert f"install -m 0644 {ROOT}/scripts/kiosk-foot.ini /opt/guichet/kiosk/foot.ini" in steps
    assert any(s.endswith("/etc/systemd/system/guichet-kiosk.service") for s in steps)
    assert "systemctl enable guichet-kiosk.service" in steps  # --no-start: enabled for the next boot only
    assert "systemctl disable --now guichet.service" in steps
    assert "systemctl disable --now guichet-headless.service" in steps
    assert not any("enable --now" in s for s in steps)


def test_install_kiosk_with_debs_installs_cage_foot_and_the_font():
    steps = dry(INSTALL, "--kiosk", "--with-debs")
    assert any("apt-get install" in s and "cage foot fonts-dejavu-core" in s for s in steps)


def test_uninstall_removes_the_kiosk_unit_and_its_files():
    kept = dry(UNINSTALL)
    assert "rm -f /etc/systemd/system/guichet-kiosk.service" in kept
    assert "systemctl disable --now guichet-kiosk.service" in kept
    assert "rm -rf /opt/guichet" in kept  # /opt/guichet/kiosk/foot.ini with it
    assert "rm -rf /var/lib/guichet /etc/guichet" in dry(UNINSTALL, "--purge", "--force")  # kiosk.env with it
