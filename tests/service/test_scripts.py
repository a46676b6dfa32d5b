"""install.sh / uninstall.sh: valid bash, and the plan they carry out (--dry-run changes nothing)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

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
    # --no-start changes the next boot only: a live console counter is not stopped (review 6, finding 10).
    assert "systemctl disable guichet.service" in steps
    assert "systemctl disable guichet-headless.service" in steps
    assert not any("--now" in s for s in steps)


def test_install_kiosk_locks_the_keyboard_to_the_session():
    """No autovt login on Ctrl+Alt+F2, no power key, no SysRq, no Ctrl+Alt+Del (review 6, finding 3)."""
    steps = dry(INSTALL, "--kiosk")
    assert "write /etc/systemd/logind.conf.d/guichet-kiosk.conf" in steps
    assert "write /etc/sysctl.d/90-guichet-kiosk.conf" in steps
    assert not any("logind.conf.d" in s or "sysctl.d" in s for s in dry(INSTALL))  # console: untouched


def test_install_kiosk_with_debs_installs_cage_foot_and_the_font():
    steps = dry(INSTALL, "--kiosk", "--with-debs")
    assert any("apt-get install" in s and "cage foot fonts-dejavu-core" in s for s in steps)


def test_uninstall_removes_the_kiosk_unit_and_its_files():
    kept = dry(UNINSTALL)
    assert "rm -f /etc/systemd/system/guichet-kiosk.service" in kept
    assert "systemctl disable --now guichet-kiosk.service" in kept
    assert "rm -rf /opt/guichet" in kept  # /opt/guichet/kiosk/foot.ini with it
    assert "rm -rf /var/lib/guichet /etc/guichet" in dry(UNINSTALL, "--purge", "--force")  # kiosk.env with it


# -- a real install and uninstall, on a throwaway copy of the machine ------------------------------------

# Run as root in a private mount namespace where /etc, /opt, /var/lib and /var/log are overlays: the scripts
# really create the user, the directories and the units, and the machine itself never sees them. The venv
# is stubbed (a real one would download every dependency): python is Debian's, pip does nothing, guichet
# writes the config it is asked for.
SANDBOX = r"""
set -eu
work="$1"; shift
for d in /etc /opt /var/lib /var/log; do
    n="$(echo "$d" | tr / _)"
    mkdir -p "$work/upper$n" "$work/work$n"
    mount -t overlay overlay -o "lowerdir=$d,upperdir=$work/upper$n,workdir=$work/work$n" "$d"
done
venv=/opt/guichet/venv/bin
mkdir -p "$venv"
ln -s /usr/bin/python3 "$venv/python"
printf '#!/bin/sh\nexit 0\n' > "$venv/pip"
printf '#!/bin/sh\n[ "$3" = config ] && echo "# stub config" > "$2"\nexit 0\n' > "$venv/guichet"
chmod 0755 "$venv/pip" "$venv/guichet"
"$@"
"""


def _in_sandbox(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unshare", "-m", "sh", "-c", SANDBOX + script, "sandbox", str(tmp_path), "true"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def _can_sandbox(tmp_path: Path) -> bool:
    import os

    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return _in_sandbox(tmp_path / "probe", "").returncode == 0


SNAPSHOT = ("{ find /etc /opt /var/lib -xdev -printf '%y %m %U:%G %p\\n'; "
            "find /etc -xdev -type f ! -name '*-' -exec md5sum {} +; } | grep -v ' /etc/.*-$' | sort")


def test_install_kiosk_then_uninstall_purge_leaves_nothing_behind(tmp_path: Path) -> None:
    if not _can_sandbox(tmp_path):
        pytest.skip("needs root and overlay mounts in a private mount namespace (unshare -m)")
    work = tmp_path / "run"
    script = f"""
# A clean machine: no guichet from an earlier run of this host's tests or demos.
rm -rf /var/lib/guichet /etc/guichet /etc/systemd/system/guichet*.service
if id guichet >/dev/null 2>&1; then userdel guichet; fi
{SNAPSHOT} > {tmp_path}/before
bash {INSTALL} --kiosk --no-start </dev/null
test -f /etc/systemd/system/guichet-kiosk.service && test -f /opt/guichet/kiosk/foot.ini
test -f /etc/guichet/kiosk.env && test -f /etc/guichet/guichet.toml && test -d /var/lib/guichet
grep -q '^guichet:' /etc/passwd
# The lockdown (review 6, finding 3): logind, sysctl, Ctrl+Alt+Del masked.
grep -qx 'NAutoVTs=0' /etc/systemd/logind.conf.d/guichet-kiosk.conf
grep -qx 'ReserveVT=0' /etc/systemd/logind.conf.d/guichet-kiosk.conf
grep -qx 'HandlePowerKey=ignore' /etc/systemd/logind.conf.d/guichet-kiosk.conf
grep -qx 'kernel.sysrq = 0' /etc/sysctl.d/90-guichet-kiosk.conf
test "$(readlink /etc/systemd/system/ctrl-alt-del.target)" = /dev/null
grep -q 'ExecStart=/usr/bin/cage -- /usr/bin/foot --config=/opt/guichet/kiosk/foot.ini' \\
    /etc/systemd/system/guichet-kiosk.service
echo INSTALLED
bash {UNINSTALL} --purge --force </dev/null
echo REMOVED
# The shadow tools' backups do not keep the user either (review 6, finding 13).
for f in passwd shadow group gshadow; do
    if [ -f /etc/$f- ] && grep -q '^guichet:' /etc/$f-; then echo "LEFT IN /etc/$f-"; fi
done
{SNAPSHOT} > {tmp_path}/after
"""
    r = _in_sandbox(work, script)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "INSTALLED" in r.stdout and "REMOVED" in r.stdout
    assert "LEFT IN" not in r.stdout, r.stdout
    before = (tmp_path / "before").read_text().splitlines()
    after = (tmp_path / "after").read_text().splitlines()
    # The stub venv stood in for pip's work: /opt/guichet is gone with it; everything else is as it was.
    assert not [line for line in after if " /opt/guichet" in line]
    before = [line for line in before if " /opt/guichet" not in line]
    assert sorted(set(after) - set(before)) == [], "left behind"
    assert sorted(set(before) - set(after)) == [], "removed or changed"
