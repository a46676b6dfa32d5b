"""The systemd units: `systemd-analyze verify` passes, and they ask for what the counter needs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted((ROOT / "systemd").glob("*.service"))
# The agent's own units; the kiosk unit runs the same agent inside cage + foot (checked on its own below).
AGENT_UNITS = [u for u in UNITS if u.name != "guichet-kiosk.service"]
INSTALLED_EXE = "/opt/guichet/venv/bin/guichet"

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None and not os.environ.get("CI"),
    reason="systemd-analyze not installed (Debian package systemd)",
)


def staged(tmp_path: Path, unit: Path, text: str | None = None) -> Path:
    """A copy whose ExecStart= points at an executable that exists here (verify checks it is executable)."""
    exe = Path(sys.executable).with_name("guichet")
    body = (text if text is not None else unit.read_text()).replace(INSTALLED_EXE, str(exe))
    out = tmp_path / unit.name
    out.write_text(body)
    return out


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)],
        capture_output=True, text=True, timeout=60, cwd=path.parent,
    )


def parse(unit: Path) -> dict[str, dict[str, str]]:
    """Section -> key -> value; a repeated key (After=, DeviceAllow=) joins its values with spaces."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current[key] = f"{current[key]} {value}".strip() if key in current else value
    return sections


def test_the_units_exist():
    assert {u.name for u in UNITS} >= {"guichet.service", "guichet-headless.service", "guichet-kiosk.service"}


@needs_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_analyze_verify_is_clean(tmp_path, unit):
    result = verify(staged(tmp_path, unit))
    # verify exits 0 on unknown keys and bad values ("..., ignoring"): any line naming our unit is a failure.
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if unit.name in line]
    assert result.returncode == 0, result.stderr
    assert complaints == []


@needs_analyze
def test_verify_catches_a_broken_unit(tmp_path):
    """The check above is not vacuous: a misspelt key and a bad value are reported for our file."""
    unit = next(u for u in UNITS if u.name == "guichet.service")
    text = unit.read_text().replace("WatchdogSec=", "WatchdogSecs=").replace("Type=notify", "Type=notifyy")
    result = verify(staged(tmp_path, unit, text))
    out = result.stdout + result.stderr
    assert "Unknown key 'WatchdogSecs'" in out
    assert "notifyy" in out


@needs_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_security_exposure_is_low(tmp_path, unit):
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(staged(tmp_path, unit))],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert m, result.stdout + result.stderr
    assert float(m.group(1)) <= 2.5


@pytest.mark.parametrize("unit", AGENT_UNITS, ids=lambda u: u.name)
def test_units_ask_for_watchdog_restart_hardening_and_serial_devices(unit):
    text = unit.read_text()
    svc = parse(unit)["Service"]
    assert svc["Type"] == "notify"
    assert int(svc["WatchdogSec"]) > 0
    # The console UI exits 0 when a supervisor quits it: tty1 must not stay dead (review 6, finding 3).
    assert svc["Restart"] == ("always" if "TTYPath" in svc else "on-failure")
    assert svc["StateDirectory"] == "guichet"
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": "", "DevicePolicy": "closed"}.items():
        assert svc[key] == value, key
    assert "dialout" in svc["SupplementaryGroups"]
    # By device class, so a re-plugged USB adapter (new node) is still allowed.
    assert "DeviceAllow=char-ttyUSB rw" in text and "DeviceAllow=char-ttyACM rw" in text
    after = parse(unit)["Unit"]["After"]
    assert "pcscd.socket" in after and "network-online.target" in after


def test_kiosk_unit_puts_the_ui_on_a_tty_and_headless_does_not():
    kiosk = parse(ROOT / "systemd/guichet.service")["Service"]
    headless = parse(ROOT / "systemd/guichet-headless.service")["Service"]
    assert kiosk["StandardInput"].startswith("tty") and kiosk["TTYPath"] == "/dev/tty1"
    assert kiosk["ExecStart"].endswith(" run")
    assert headless["ExecStart"].endswith(" run --headless")
    assert "TTYPath" not in headless


def test_kiosk_unit_runs_the_ui_in_foot_in_cage_in_a_logind_session_and_restarts_it():
    unit = parse(ROOT / "systemd/guichet-kiosk.service")
    svc = unit["Service"]
    exe = svc["ExecStart"].split()
    assert exe[0] == "/usr/bin/cage" and "/usr/bin/foot" in exe
    assert exe[-1] == "run" and exe[exe.index("/usr/bin/foot") + 1].startswith("--config=/opt/guichet/kiosk/")
    assert "-s" not in exe  # no VT switching away from the cashier's screen
    # logind session on seat0 / tty1: cage gets the DRM and input devices from logind.
    assert svc["PAMName"] == "login" and svc["TTYPath"] == "/dev/tty1"
    assert "XDG_SESSION_TYPE=wayland" in svc["Environment"]
    assert svc["User"] == "guichet"
    # The UI's READY/WATCHDOG come from a grandchild: a frozen UI or any dead part restarts the session.
    assert svc["Type"] == "notify" and svc["NotifyAccess"] == "all" and int(svc["WatchdogSec"]) > 0
    assert svc["Restart"] == "always"
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes",
                       "CapabilityBoundingSet": "", "DevicePolicy": "closed"}.items():
        assert svc[key] == value, key
    assert "char-drm rw" in svc["DeviceAllow"] and "char-input rw" in svc["DeviceAllow"]
    assert "char-ttyUSB rw" in svc["DeviceAllow"]
    conflicts = unit["Unit"]["Conflicts"].split()
    assert {"getty@tty1.service", "guichet.service", "guichet-headless.service"} <= set(conflicts)
    # The two agent units give the screen up to the kiosk too.
    assert "guichet-kiosk.service" in parse(ROOT / "systemd/guichet.service")["Unit"]["Conflicts"]
    assert "guichet-kiosk.service" in parse(ROOT / "systemd/guichet-headless.service")["Unit"]["Conflicts"]


@pytest.mark.skipif(shutil.which("foot") is None and not os.environ.get("CI"), reason="foot not installed")
def test_kiosk_foot_settings_are_valid_and_open_no_other_window():
    ini = ROOT / "scripts/kiosk-foot.ini"
    result = subprocess.run(["foot", "--check-config", f"--config={ini}"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert " err:" not in result.stderr
    text = ini.read_text()
    assert "font=DejaVu Sans Mono" in text
    for binding in ("spawn-terminal=none", "show-urls-launch=none", "unicode-input=none"):
        assert binding in text
    # Nothing started by what runs inside (OSC 777), no middle-click paste (review 6, finding 15).
    assert "notify=/bin/false" in text and "[mouse-bindings]\nprimary-paste=none" in text


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_no_user_specifier_that_resolves_to_the_manager_in_a_system_unit(unit):
    """%U/%u/%h in a system unit name the manager (root, /root), never User= (systemd.unit(5)): the kiosk's
    /run/user/%U was /run/user/0, so cage could not create its Wayland socket (review 6, finding 1)."""
    svc = parse(unit)["Service"]
    for key, value in svc.items():
        assert not re.search(r"%[Uuh]", value), f"{unit.name}: {key}={value}"


def test_kiosk_session_runtime_dir_is_writable_and_it_never_stops_restarting():
    unit = parse(ROOT / "systemd/guichet-kiosk.service")
    paths = unit["Service"]["ReadWritePaths"].split()
    assert "/run/user" in paths  # pam_systemd's /run/user/<uid of guichet>, whatever that uid is
    # No start limit: after 20 quick deaths the counter would show a bare VT (review 6, finding 3).
    assert unit["Unit"]["StartLimitIntervalSec"] == "0"
    assert "StartLimitBurst" not in unit["Unit"]
    console = parse(ROOT / "systemd/guichet.service")["Unit"]
    assert console["StartLimitIntervalSec"] == "0"
    # logind (over D-Bus) opens the seat's devices for cage.
    for dep in ("systemd-logind.service", "dbus.socket"):
        assert dep in unit["Unit"]["After"] and dep in unit["Unit"]["Wants"]

