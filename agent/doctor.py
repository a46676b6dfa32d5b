"""The checks behind `guichet doctor`: each a plain function returning Check(name, ok, severity, detail, fix).

    from agent.doctor import run_checks
    for c in run_checks("/etc/guichet/guichet.toml"):    # reads the config, asks the server
        print(c.label, c.name, c.detail, c.fix)
    ok   config      /etc/guichet/guichet.toml is valid (terminal ORAN-07-G2, agency ORAN-07)
    FAIL server      billing server unreachable: ... connection refused
                     check the network cable and server.url ...

A failed check (severity "error") makes `guichet doctor` exit 1; a warning does not. Checks that cannot
run (no TPE configured, config invalid) are reported as skipped with the reason. Nothing here writes to
the journal or the config; the state-directory check creates and removes one temporary file, and the
server check sends one heartbeat.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import os
import pwd
import re
import shutil
import socket
import sqlite3
import stat
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from agent.ages import age_text
from agent.devices import DeviceRegistry, DeviceState, ReaderProbe
from config import Config, ConfigError, load_config
from config.loader import find_config_path, loose_permissions
from drivers.concert import protocol_for

Severity = Literal["error", "warning", "info"]

SERVICE_USER = "guichet"
DISK_FAIL = 100 * 2**20  # bytes free below which the journal may not be able to write
DISK_WARN = 500 * 2**20
PCSC_TIMEOUT = 10.0


@dataclass
class Check:
    """One line of `guichet doctor`. ``ok`` False + severity "error" is a failure, "warning" a warning."""

    name: str
    ok: bool
    severity: Severity
    detail: str
    fix: str = ""
    skipped: bool = False

    @property
    def label(self) -> str:
        if self.skipped:
            return "skip"
        if self.ok:
            return "ok"
        return "WARN" if self.severity == "warning" else "FAIL"

    @property
    def failed(self) -> bool:
        return not self.ok and self.severity == "error"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.label.lower()}


def passed(name: str, detail: str) -> Check:
    return Check(name, True, "info", detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, "error", detail, fix)


def warning(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, "warning", detail, fix)


def skipped(name: str, reason: str) -> Check:
    return Check(name, True, "info", f"not checked: {reason}", skipped=True)


T = TypeVar("T")


def _bounded(fn: Callable[[], T], timeout: float) -> T:
    """Run fn in a daemon thread and give up after `timeout` s (a wedged pcscd must not hang doctor)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the caller below
            box["error"] = e

    t = threading.Thread(target=target, daemon=True, name="doctor-probe")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return,unused-ignore]


# -- config ----------------------------------------------------------------------------------------


def check_config(path: Path) -> tuple[Check, Config | None]:
    try:
        cfg = load_config(path)
    except ConfigError as e:
        fix = (
            f"create it with `guichet --config {path} config init`"
            if not path.exists()
            else f"correct the key named above in {path}, then run `guichet config check`"
        )
        return failed("config", str(e), fix), None
    if not cfg.cards.hmac_key.get_secret_value():
        return failed("config", f"{path}: cards.hmac_key is not set; card tokens cannot be made",
                      "set the company key: `guichet config set cards.hmac_key <key from the head office>`"), cfg
    if not cfg.server.token.get_secret_value():
        return failed("config", f"{path}: server.token is not set",
                      "set this terminal's token: `guichet config set server.token <token>`"), cfg
    if loose_permissions(path):
        return warning("config", f"{path} is readable by other users; it holds the token and the PAN key",
                       f"chmod 600 {path}"), cfg
    return passed("config", f"{path} is valid (terminal {cfg.terminal.id}, agency {cfg.terminal.agency_id})"), cfg


# -- state directory, journal, disk ------------------------------------------------------------------


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _service_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return None


def check_state_dir(state_dir: str | os.PathLike[str]) -> Check:
    d = Path(state_dir)
    name = "state_dir"
    if not d.exists():
        parent = next((p for p in d.parents if p.exists()), Path("/"))
        if os.access(parent, os.W_OK) and parent.is_dir():
            return warning(name, f"{d} does not exist yet; the agent will create it at first start",
                           f"create it now: install -d -m 0700 -o {SERVICE_USER} -g {SERVICE_USER} {d}")
        return failed(name, f"{d} does not exist and {parent} is not writable",
                      f"create it: install -d -m 0700 -o {SERVICE_USER} -g {SERVICE_USER} {d}")
    if not d.is_dir():
        return failed(name, f"{d} is not a directory",
                      f"move {d} aside and create a directory: install -d -m 0700 {d} (or set state.dir)")
    st = d.stat()
    mode = stat.S_IMODE(st.st_mode)
    euid = os.geteuid()
    owner = _user_name(st.st_uid)
    # The owner must be able to write, whoever runs doctor: root ignores the mode bits, the service does not.
    if not mode & stat.S_IWUSR:
        return failed(name, f"{d} is read-only (mode {mode:04o}, owner {owner}): the journal cannot be written",
                      f"chmod 0700 {d}")
    if euid != 0 and st.st_uid != euid:
        return failed(name, f"{d} belongs to {owner}, not to {_user_name(euid)} who runs guichet",
                      f"chown -R {_user_name(euid)}: {d}")
    # A real write, fsync'ed: catches read-only mounts, full disks and ACLs that the mode does not show.
    try:
        fd, tmp = tempfile.mkstemp(prefix=".doctor-", dir=d)
        try:
            os.write(fd, b"guichet doctor\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as e:
        return failed(name, f"{d} is not writable: {e.strerror or e}",
                      f"check the mount and permissions of {d} (mount | grep {d.anchor}; ls -ld {d})")
    if euid == 0 and st.st_uid == 0 and _service_user() is not None:
        return warning(name, f"{d} belongs to root; the service runs as {SERVICE_USER}",
                       f"chown -R {SERVICE_USER}:{SERVICE_USER} {d}")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return warning(name, f"{d} has mode {mode:04o}; other users can look into the journal", f"chmod 0700 {d}")
    return passed(name, f"{d} writable, owner {owner}, mode {mode:04o}")


def _journal_loss(conn: sqlite3.Connection, path: Path) -> tuple[str | None, str | None]:
    """(a loss of committed payments not yet accepted, a high-water mark that cannot be read): the loss is
    recorded in the journal, or its mark file (journal.hwm) is ahead of it. Read-only: the mark is opened
    O_RDONLY, never created nor chmod'ed, and read BEFORE the counter (the journal's own order, see
    `compare_high_water`), so a payment committed meanwhile never looks like a loss."""
    from agent.journal import HWM_NAME, compare_high_water, read_high_water

    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'incident'").fetchone():
        row = conn.execute("SELECT message FROM incident WHERE accepted_at IS NULL LIMIT 1").fetchone()
        if row:
            return str(row[0]), None
    mark = path.with_name(HWM_NAME)

    def counter() -> int:
        row = conn.execute("SELECT value FROM counters WHERE name = 'receipt'").fetchone()
        return int(row[0]) if row else 0

    try:
        reading = compare_high_water(lambda: read_high_water(mark), counter)
    except OSError as e:
        return None, f"{mark}: cannot be read ({e.strerror or e}): a loss of committed payments would go unseen"
    if reading.lost:
        return (f"{path}: lost committed payments: the journal ends at receipt {reading.counter},"
                f" {mark.name} recorded {reading.mark}"), None
    return None, None


def _parked(conn: sqlite3.Connection, path: Path) -> tuple[int, list[str], str | None]:
    """(outcomes parked in journal.pending, the payment ids among them the journal does not hold, a read
    problem). Read-only."""
    from agent.journal import PENDING_NAME, read_pending

    pending = path.with_name(PENDING_NAME)
    try:
        records = read_pending(pending)
    except OSError as e:
        return 0, [], f"{pending}: cannot be read ({e.strerror or e})"
    missing: list[str] = []
    for r in records:
        for pid in [str(i) for i in r.get("payment_ids") or []][:64]:
            if not conn.execute("SELECT 1 FROM payment WHERE payment_id = ?", (pid,)).fetchone():
                missing.append(pid)
    return len(records), missing, None


def check_journal(state_dir: str | os.PathLike[str], cfg: Config | None = None) -> Check:
    """Integrity, size, unsent count and oldest age, read-only (never creates or migrates the journal)."""
    from agent.journal import DB_NAME

    path = Path(state_dir) / DB_NAME
    name = "journal"
    if not path.exists():
        return passed(name, f"no journal yet at {path} (created at first start)")
    size = sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as e:
        return failed(name, f"{path}: cannot open: {e}", f"check the owner and mode of {path} (ls -l {path})")
    try:
        integrity = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
        if integrity != "ok":
            return failed(name, f"{path}: integrity check failed: {integrity}",
                          "stop the service, copy the journal aside (cp -a), and call support; do not delete it")
        counts = dict(conn.execute("SELECT state, COUNT(*) FROM payments GROUP BY state").fetchall())
        oldest = conn.execute("SELECT MIN(captured_at) FROM payments WHERE state = 'approved'").fetchone()[0]
        loss, mark_problem = _journal_loss(conn, path)
        if loss:
            return failed(name, loss, "check the lost receipts with the server, then a supervisor runs"
                          " `guichet journal accept-loss --supervisor ID`")
        parked, missing, parked_problem = _parked(conn, path)
        if missing:
            return failed(name, f"{path}: an outcome parked in journal.pending is for payment(s) the journal does"
                          f" not hold: {', '.join(missing[:5])}",
                          "keep journal.pending; check those payments with the TPE tickets and the server, and"
                          " call support; do not delete it")
    except sqlite3.Error as e:
        return failed(name, f"{path}: {e}",
                      "stop the service, copy the journal aside (cp -a), and call support; do not delete it")
    finally:
        conn.close()
    unsent = int(counts.get("approved", 0))
    unknown = int(counts.get("unknown", 0))
    rejected = int(counts.get("rejected", 0))
    detail = f"{path}: integrity ok, {size / 2**20:.1f} MiB, {unsent} unsent"
    if mark_problem or parked_problem:
        return warning(name, f"{detail}; {mark_problem or parked_problem}",
                       f"check the owner and mode of the files in {path.parent} (ls -l {path.parent})")
    if parked:
        return warning(name, f"{detail}; {parked} outcome(s) parked in journal.pending, not yet in the journal",
                       "free disk space: they are written at the next payment or start")
    age = None
    if oldest:
        age = (datetime.now().astimezone() - datetime.fromisoformat(oldest)).total_seconds()
        detail += f", oldest {age_text(age)}"
    if unknown:
        return warning(name, f"{detail}; {unknown} payment(s) in doubt (unknown)",
                       "settle them from the TPE tickets in the cashier UI (or `guichet queue list`)")
    if rejected:
        return warning(name, f"{detail}; {rejected} payment(s) rejected by the server",
                       "a supervisor must review them: `guichet queue list`")
    warn_after = cfg.offline.warn_after if cfg is not None else 14_400
    if age is not None and age > warn_after:
        return warning(name, f"{detail}: older than offline.warn_after ({age_text(warn_after)})",
                       "check the link to the billing server, then `guichet sync --once`")
    return passed(name, detail)


def check_disk(state_dir: str | os.PathLike[str]) -> Check:
    d = Path(state_dir)
    where = next((p for p in (d, *d.parents) if p.exists()), Path("/"))
    usage = shutil.disk_usage(where if where.is_dir() else where.parent)
    free = usage.free
    detail = f"{free / 2**20:.0f} MiB free of {usage.total / 2**30:.1f} GiB on the journal's file system"
    if free < DISK_FAIL:
        return failed("disk", detail, "free some space (journalctl --vacuum-size=100M; apt-get clean)")
    if free < DISK_WARN or free < usage.total * 0.05:
        return warning("disk", detail, "free some space soon (journalctl --vacuum-size=100M; apt-get clean)")
    return passed("disk", detail)


# -- devices -----------------------------------------------------------------------------------------


def _list_readers() -> list[str]:
    from drivers.pcsc import list_readers  # here: a pyscard that cannot load fails this check, not doctor

    return list_readers()


def device_states(cfg: Config | None) -> list[DeviceState]:
    """One look at every device through the registry (the one the running agent reads), bounded: a wedged
    pcscd must not hang doctor."""
    registry = DeviceRegistry.from_config(cfg, readers=True) if cfg is not None else DeviceRegistry([ReaderProbe()])
    # Each probe gets its own limit, side by side: a wedged pcscd leaves the TPE's verdict standing.
    return _bounded(lambda: registry.refresh(limit=PCSC_TIMEOUT - 2), PCSC_TIMEOUT)


def check_pcscd(cfg: Config | None, states: list[DeviceState] | None = None) -> list[Check]:
    """pcscd reachable, then readers present (and the configured one among them), from the registry."""
    needed = cfg is None or "card_reader" in cfg.payments.methods
    fix_pcscd = "start it: systemctl enable --now pcscd.socket (Debian package pcscd)"
    try:
        readers = [st for st in (states if states is not None else device_states(cfg)) if st.kind == "reader"]
    except Exception as e:  # noqa: BLE001 - any failure here means "cannot reach pcscd"
        readers = [DeviceState("reader", "pcscd", "unavailable", f"pcscd cannot be reached: {e}")]
    down = next((st for st in readers if st.state in ("unavailable", "error")), None)
    if down is not None:
        c = failed("pcscd", down.detail, fix_pcscd) if needed else warning("pcscd", down.detail, fix_pcscd)
        return [c, skipped("readers", "pcscd unreachable")]
    out = [passed("pcscd", "pcscd answers")]
    wanted = cfg.cards.reader if cfg is not None else ""
    present = [st.name for st in readers if st.state in ("ready", "card_present", "busy")]
    if not present and wanted:
        try:
            names = _bounded(_list_readers, PCSC_TIMEOUT)
        except Exception:  # noqa: BLE001 - the listing only decorates the message
            names = []
        if names:
            out.append(failed("readers", f"no reader matches cards.reader={wanted!r}; found: {', '.join(names)}",
                              "plug that reader in, or `guichet config set cards.reader \"<part of a name above>\"`"))
            return out
    if not present:
        detail = "no PC/SC reader connected"
        fix = "plug the card reader in (lsusb should list it); see journalctl -u pcscd"
        out.append(failed("readers", detail, fix) if needed else warning("readers", detail, fix))
    else:
        out.append(passed("readers", ", ".join(present)))
    return out


def _is_url(port: str) -> bool:
    return "://" in port


def check_serial(cfg: Config | None) -> Check:
    """The TPE port: present, ours to open (dialout), not held by another program."""
    from serial.tools import list_ports

    found = [p.device for p in list_ports.comports()]
    name = "serial_port"
    port = cfg.tpe.port if cfg is not None else ""
    if not port:
        listing = ", ".join(found) if found else "none"
        return skipped(name, f"no TPE configured (tpe.port empty); serial ports present: {listing}")
    if not _is_url(port):
        p = Path(port)
        if not p.exists():
            listing = ", ".join(found) if found else "none found"
            return failed(name, f"{port} does not exist (serial ports present: {listing})",
                          "plug the terminal's cable in, or `guichet config set tpe.port <one of the ports>`")
        if os.geteuid() != 0 and not os.access(p, os.R_OK | os.W_OK):
            st = p.stat()
            group = _group_name(st.st_gid)
            me = _user_name(os.geteuid())
            return failed(name, f"{port} belongs to group {group}; {me} may not open it",
                          f"usermod -a -G {group} {me} (then log in again / restart the service)")
    if _is_url(port):
        return passed(name, f"{port} (a network URL: checked by the TPE handshake)")
    # Open and lock it as pyserial's exclusive=True does (flock), without touching the line settings:
    # a port another program holds answers EWOULDBLOCK (flock) or EBUSY (TIOCEXCL).
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.EBUSY:
            return failed(name, f"{port} is busy: another program holds it exclusively",
                          f"find it with `fuser -v {port}` and stop it (ModemManager or a second guichet?)")
        return failed(name, f"{port} cannot be opened: {e.strerror}", "check the cable and tpe.port")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return failed(name, f"{port} is busy: another program holds it (locked)",
                      f"find it with `fuser -v {port}` and stop it (ModemManager or a second guichet?)")
    finally:
        os.close(fd)  # closing drops our lock too
    if re.fullmatch(r"/dev/tty(USB|ACM)\d+", port):
        # Numbered in plugging order: after a reboot it may be the printer's adapter, and the registry's
        # liveness probe would then write ENQ to the printer.
        stable = _by_id(port)
        return warning(name, f"{port} opens, but ttyUSB/ttyACM numbers follow the plugging order: after a "
                       "reboot it may name another device (the printer)",
                       f"`guichet config set tpe.port {stable}`" if stable
                       else "set tpe.port to the terminal's /dev/serial/by-id/... link")
    return passed(name, f"{port} opens")


def _by_id(port: str) -> str:
    """The /dev/serial/by-id link to ``port``'s device, or ""."""
    real = os.path.realpath(port)
    try:
        links = sorted(Path("/dev/serial/by-id").iterdir())
    except OSError:
        return ""
    return next((str(link) for link in links if os.path.realpath(link) == real), "")


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def check_tpe(cfg: Config | None, port_ok: bool, states: list[DeviceState] | None = None) -> Check:
    """The terminal answers the registry's liveness check (E+: ENQ/ACK; V3: a TCP connect)."""
    name = "tpe"
    if cfg is None or not cfg.tpe.port:
        return skipped(name, "no TPE configured")
    if not port_ok:
        return skipped(name, "the serial port is not usable")
    v3 = protocol_for(cfg.tpe.port, cfg.tpe.protocol) == "V3"
    try:
        found = [st for st in (states if states is not None else device_states(cfg)) if st.kind == "tpe"]
    except Exception as e:  # noqa: BLE001 - bounded: a wedged probe is a failed check
        found = [DeviceState("tpe", cfg.tpe.port, "error", str(e))]
    st = found[0] if found else DeviceState("tpe", cfg.tpe.port, "unknown", "not probed")
    if st.state == "ready":
        what = "accepted a Caisse-AP (V3) connection" if v3 else st.detail
        return passed(name, f"terminal on {cfg.tpe.port} {what}")
    if st.state == "busy":
        return warning(name, f"terminal on {cfg.tpe.port} busy: {st.detail}", "run doctor again after the payment")
    if v3:
        fix = ("switch the terminal on, check it is on the network, and that its Caisse-AP IP mode listens on "
               f"the port of tpe.port ({cfg.tpe.port})")
    else:
        fix = (f"switch the terminal on, check the cable, and that tpe.baud={cfg.tpe.baud} and "
               f"tpe.framing={cfg.tpe.framing} match the terminal's cash-register settings")
    return failed(name, f"{st.state}: {st.detail}", fix)


# -- billing server ----------------------------------------------------------------------------------


def _queue(state_dir: str | os.PathLike[str]) -> tuple[int, str | None]:
    """Unsent count and oldest capture time, for the heartbeat doctor sends (read-only; 0 when unknown)."""
    from agent.journal import DB_NAME

    path = Path(state_dir) / DB_NAME
    if not path.exists():
        return 0, None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            n, oldest = conn.execute(
                "SELECT COUNT(*), MIN(captured_at) FROM payments WHERE state = 'approved'"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0, None
    return int(n), oldest


def check_server(cfg: Config | None) -> list[Check]:
    """One heartbeat (with the real queue depth): reachable, TLS valid, token accepted, clock skew."""
    names = ("server", "server_tls", "server_token", "clock")
    if cfg is None:
        return [skipped(n, "config invalid") for n in names]
    from agent import __version__
    from agent.billing import BillingClient, server_time_skew
    from agent.errors import ApiError, ServerUnreachable
    from agent.sync import CLOCK_SKEW_WARN  # the limit the running agent warns at, so both agree

    url = cfg.server.url
    https = url.startswith("https://")
    local = any(h in url for h in ("//127.", "//localhost", "//[::1]"))
    client = BillingClient(cfg.model_copy(update={"server": cfg.server.model_copy(
        update={"timeout": min(cfg.server.timeout, 5.0)})}))
    probe = _tcp_probe(url, min(cfg.server.timeout, 5.0))
    if probe is not None:
        return [
            failed("server", probe,
                   f"check the network cable and the agency link, and server.url ({url}); "
                   f"try: curl -sS {url}v1/"),
            *(skipped(n, "server unreachable") for n in names[1:]),
        ]
    depth, oldest = _queue(cfg.state.dir)
    body = {"agent_version": __version__, "queue_depth": depth, "oldest_pending_at": oldest, "devices": []}
    try:
        answer = client.heartbeat(body)
    except ServerUnreachable as e:
        text = str(e)
        if "TLS" in text or "SSL" in text or "certificate" in text.lower():
            return [
                passed("server", f"{url} answers TCP"),
                failed("server_tls", text,
                       "check the clock (certificates have dates), server.ca_bundle, and that server.url "
                       "names the host on the certificate"),
                skipped("server_token", "TLS failed"),
                skipped("clock", "TLS failed"),
            ]
        return [
            failed("server", text,
                   f"check the network cable and the agency link, and server.url ({url}); "
                   f"try: curl -sS {url}v1/"),
            skipped("server_tls", "server unreachable"),
            skipped("server_token", "server unreachable"),
            skipped("clock", "server unreachable"),
        ]
    except ApiError as e:
        reach = passed("server", f"{url} answers")
        tls = passed("server_tls", "certificate verified") if https else _plain_http(url, local)
        if e.status in (401, 403):
            token = failed("server_token", f"the server refused this terminal's token ({e.status} {e.code})",
                           "ask the head office for this terminal's token, then "
                           "`guichet config set server.token <token>`")
        else:
            token = failed("server_token", f"heartbeat refused: {e}",
                           f"check terminal.id ({cfg.terminal.id}) is enrolled on the billing server")
        return [reach, tls, token, skipped("clock", "heartbeat refused")]
    finally:
        client.close()
    out = [
        passed("server", f"{url} answers"),
        passed("server_tls", "certificate verified") if https else _plain_http(url, local),
        passed("server_token", f"token accepted for terminal {cfg.terminal.id}"),
    ]
    skew = server_time_skew(answer)
    if skew is None:
        out.append(warning("clock", "the server did not send its time", "update the billing server"))
    elif abs(skew) > CLOCK_SKEW_WARN:
        out.append(warning("clock", f"this PC's clock is {skew:+.0f} s off the server's",
                           "turn on time sync: timedatectl set-ntp true (check: timedatectl status)"))
    else:
        out.append(passed("clock", f"{skew:+.1f} s off the server's"))
    return out


def _tcp_probe(url: str, timeout: float) -> str | None:
    """None when a TCP connection opens; else what went wrong, in words a technician can act on."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        return f"billing server {host}: name not found ({e.strerror}); check DNS or server.url"
    last = ""
    for family, kind, proto, _, addr in infos:
        try:
            with socket.socket(family, kind, proto) as s:
                s.settimeout(timeout)
                s.connect(addr)
                return None
        except TimeoutError:
            last = f"billing server {host}:{port}: no answer within {timeout:g} s"
        except OSError as e:
            last = f"billing server {host}:{port}: {e.strerror or e}"
    return last or f"billing server {host}:{port}: no address"


def _plain_http(url: str, local: bool) -> Check:
    if local:
        return passed("server_tls", f"plain http to a local server ({url})")
    return warning("server_tls", f"{url} is plain http: the token and payments cross the network unencrypted",
                   "use the https:// address of the billing server in server.url")


# -- all of them -------------------------------------------------------------------------------------


@dataclass
class Doctor:
    """What the checks of one doctor run share: the config (once its check has read it), the device states
    (one registry look, on first use) and the checks done so far, by name."""

    path: Path
    cfg: Config | None = None
    done: dict[str, Check] = field(default_factory=dict)
    _devices: list[DeviceState] | None = None

    @property
    def devices(self) -> list[DeviceState]:
        if self._devices is None:
            try:
                self._devices = device_states(self.cfg)
            except Exception as e:  # noqa: BLE001 - wedged pcscd or TPE line: each device check says so
                self._devices = [DeviceState("reader", "pcscd", "unavailable", f"pcscd cannot be reached: {e}")]
        return self._devices

    def state_dir(self) -> Path | None:
        return Path(self.cfg.state.dir) if self.cfg is not None else None


CheckFn = Callable[[Doctor], "Check | list[Check]"]


def config_checks(d: Doctor) -> Check:
    check, d.cfg = check_config(d.path)
    return check


def _needs_state(name: str, fn: Callable[[Path, Doctor], Check]) -> CheckFn:
    def run(d: Doctor) -> Check:
        state = d.state_dir()
        return fn(state, d) if state is not None else skipped(name, "config invalid")

    run.__name__ = f"{name}_check"
    return run


def reader_checks(d: Doctor) -> list[Check]:
    return check_pcscd(d.cfg, d.devices)


def emv_checks(d: Doctor) -> list[Check]:
    """A counter that reads cards: a CA public key for every scheme rule's RID (offline data authentication),
    and a PIN pad on the reader (PC/SC part 10 VERIFY PIN DIRECT). Warnings: payments still go online."""
    from drivers.emv.checks import ca_key_gaps, reader_pin_pad

    names = ("ca_keys", "pin_pad")
    if d.cfg is None:
        return [skipped(n, "config invalid") for n in names]
    if "card_reader" not in d.cfg.payments.methods:
        return [skipped(n, "card_reader is not among payments.methods") for n in names]
    gaps = ca_key_gaps(d.cfg)
    if gaps:
        more = f" (and {len(gaps) - 2} more)" if len(gaps) > 2 else ""
        ca = warning("ca_keys", "; ".join(gaps[:2]) + more,
                     "add the acquirer's CA public keys to [[emv.ca_keys]] in the config")
    else:
        ca = passed("ca_keys", f"a CA public key for each of the {len(d.cfg.cards.schemes)} scheme rule(s)")
    readers = [st.name for st in d.devices if st.kind == "reader" and st.state in ("ready", "card_present", "busy")]
    if not readers:
        return [ca, skipped("pin_pad", "no reader to ask")]
    try:
        has = _bounded(lambda: reader_pin_pad(readers[0]), PCSC_TIMEOUT)
    except Exception as e:  # noqa: BLE001 - a reader that cannot be asked is no PIN pad verdict
        has, why = None, str(e)
    else:
        why = "the reader cannot be asked in direct mode"
    if has is None:
        pin = skipped("pin_pad", why)
    elif has:
        pin = passed("pin_pad", f"{readers[0]} has a PIN pad (VERIFY PIN DIRECT)")
    else:
        pin = warning("pin_pad", f"{readers[0]} has no PIN pad (PC/SC part 10 VERIFY PIN DIRECT): the cardholder"
                      " cannot enter the PIN on the reader", "use a card reader with a PIN pad for chip and PIN cards")
    return [ca, pin]


def serial_check(d: Doctor) -> Check:
    return check_serial(d.cfg)


def tpe_check(d: Doctor) -> Check:
    port = d.done.get("serial_port")
    usable = port is not None and (port.ok or port.severity == "warning") and not port.skipped
    return check_tpe(d.cfg, usable, d.devices if usable else [])


def server_checks(d: Doctor) -> list[Check]:
    return check_server(d.cfg)


def timezone_check(d: Doctor) -> Check:
    from agent.dayclose.checks import timezone_check as check  # deferred: it builds on this module's Check

    return check(d)


def kiosk_check(d: Doctor) -> list[Check]:
    from agent.kiosk import kiosk_checks  # deferred: agent.kiosk builds on this module's Check

    return kiosk_checks(d.cfg)


# Every check, in the order a technician fixes things. A check is a function of the Doctor returning one
# Check or a list; a new one is one line: ``add_check(check_kiosk, before="server")`` or an entry here.
CHECKS: list[CheckFn] = [
    config_checks,
    _needs_state("state_dir", lambda state, d: check_state_dir(state)),
    _needs_state("journal", lambda state, d: check_journal(state, d.cfg)),
    _needs_state("disk", lambda state, d: check_disk(state)),
    reader_checks,
    emv_checks,
    serial_check,
    tpe_check,
    server_checks,
    timezone_check,
    kiosk_check,
]


def add_check(fn: CheckFn, *, before: CheckFn | None = None) -> CheckFn:
    """Register a check (at the end, or before another); returns it, so it serves as a decorator."""
    if fn not in CHECKS:
        CHECKS.insert(CHECKS.index(before) if before in CHECKS else len(CHECKS), fn)
    return fn


def run_checks(config_path: str | os.PathLike[str] | None = None) -> list[Check]:
    """Every check of ``CHECKS``, in order. A check that raises is one failed line, never doctor's end."""
    d = Doctor(find_config_path(config_path))
    checks: list[Check] = []
    for fn in list(CHECKS):
        try:
            got = fn(d)
        except Exception as e:  # noqa: BLE001 - a broken check is reported, the others still run
            name = getattr(fn, "__name__", "check").removesuffix("_check").removesuffix("_checks")
            got = failed(name, f"the check itself failed: {type(e).__name__}: {e}", "report this to support")
        for c in got if isinstance(got, list) else [got]:
            d.done[c.name] = c
            checks.append(c)
    return checks
