"""The soak: the headless agent against a billing server answering garbage at random, then sane.

    ./dev bench soak [--minutes N] [--rate R] [--pay-every S] [--seed K] [--exclude KIND ...]

`guichet run --headless` runs as a real process against the sandbox server (127.0.0.1), which answers a share
R (default 0.5) of the /v1 requests from its catalogue of broken answers (sandbox/billing/faults.py:
GARBAGE_KINDS) for N minutes (default 10, at most 120). Meanwhile `guichet pay REF --method cash --no-upload`
takes a payment every S seconds (default 5; bounded by the seeded bills). Then the server turns sane and the
agent must drain its queue. It fails (exit 1) unless:

- the agent process never exited;
- its RSS, sampled every 2 s, grew by at most 20 MiB from the warmed-up baseline (first/baseline/max/last are
  printed);
- every payment taken reached the server exactly once (recorded once, no conflict, all `uploaded`).

`soak(...)` is the same run as a function (tests/service/test_hostile_soak.py runs a short one).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_MINUTES = 120.0
RSS_GROWTH_LIMIT = 20 * 1024 * 1024
SAMPLE_EVERY = 2.0
WARMUP = 20.0  # seconds of garbage before the RSS baseline: the first huge/deep answers size the heap once
DRAIN_LIMIT = 900.0  # seconds to drain once sane: the backoff cap is 300 s
TERMINAL, AGENCY, TOKEN = "ORAN-07-G1", "ORAN-07", "soak-token"
GUICHET = [sys.executable, "-m", "guichet"]


@dataclass
class SoakResult:
    seconds: float = 0.0
    payments: list[str] = field(default_factory=list)
    pay_failures: int = 0
    pay_errors: dict[str, int] = field(default_factory=dict)  # the one line `guichet pay` printed -> times
    rss: list[int] = field(default_factory=list)  # bytes, every SAMPLE_EVERY s
    baseline: int = 0
    garbage: dict[str, int] = field(default_factory=dict)  # kind -> answers served
    batch_garbage: dict[str, list[int]] = field(default_factory=dict)  # kind -> [recorded, not recorded]
    exited: int | None = None  # the agent's exit status if it died
    recorded: int = 0
    duplicates_on_server: int = 0
    conflicts: int = 0
    missing: list[str] = field(default_factory=list)
    not_uploaded: list[str] = field(default_factory=list)
    drain_seconds: float = 0.0
    stop_status: int | None = None
    log_tail: str = ""

    @property
    def growth(self) -> int:
        return (self.rss[-1] - self.baseline) if self.rss else 0

    def failures(self) -> list[str]:
        out = []
        if self.exited is not None:
            out.append(f"the agent exited with status {self.exited}")
        if self.growth > RSS_GROWTH_LIMIT:
            out.append(f"RSS grew by {self.growth / 2**20:.1f} MiB (limit {RSS_GROWTH_LIMIT / 2**20:.0f})")
        if self.missing:
            out.append(f"{len(self.missing)} payments never reached the server")
        if self.not_uploaded:
            out.append(f"{len(self.not_uploaded)} payments not marked uploaded")
        if self.conflicts:
            out.append(f"{self.conflicts} conflicting submissions")
        if self.stop_status not in (None, 0):
            out.append(f"SIGTERM: exit status {self.stop_status}")
        return out

    def report(self) -> str:
        mib = [f"{v / 2**20:.1f}" for v in (self.rss[0], self.baseline, max(self.rss), self.rss[-1])] if self.rss \
            else ["?"] * 4
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.garbage.items(), key=lambda kv: -kv[1]))
        return "\n".join([
            f"garbage phase      {self.seconds:.0f} s, {sum(self.garbage.values())} broken answers "
            f"of {len(self.garbage)} kinds",
            f"  kinds            {kinds or 'none'}",
            "  batch answers    " + (", ".join(f"{k} {r}+{n}" for k, (r, n) in sorted(self.batch_garbage.items()))
                                     or "none") + "  (recorded first + never recorded)",
            f"payments           {len(self.payments)} taken ({self.pay_failures} `guichet pay` runs failed, "
            f"as a cashier would retry)",
            *(f"  pay failed       {n} x {why}" for why, n in sorted(self.pay_errors.items(), key=lambda kv: -kv[1])),
            f"server             {self.recorded} recorded, {self.duplicates_on_server} duplicate submissions "
            f"answered, {self.conflicts} conflicts",
            f"drain once sane    {self.drain_seconds:.1f} s",
            f"agent RSS (MiB)    first {mib[0]}, baseline {mib[1]}, max {mib[2]}, last {mib[3]} "
            f"({len(self.rss)} samples every {SAMPLE_EVERY:g} s)",
            f"agent              {'alive throughout' if self.exited is None else f'EXITED {self.exited}'}",
        ])


def _rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _write_config(path: Path, url: str, state: Path) -> Path:
    import tomlkit

    data = {
        "terminal": {"id": TERMINAL, "agency_id": AGENCY, "currency": "DZD"},
        "server": {"url": url, "token": TOKEN, "timeout": 2},
        "state": {"dir": str(state)},
        "sync": {"interval": 0.5, "batch_size": 20, "bill_refresh": 5, "heartbeat": 3},
        "cards": {"hmac_key": "soak-hmac-key-0123456789abcdef"},
        "payments": {"default_method": "cash", "methods": ["cash"]},
    }
    path.write_text(tomlkit.dumps(data))
    path.chmod(0o600)
    return path


def soak(minutes: float = 10.0, rate: float = 0.5, pay_every: float = 5.0, seed: int = 7,
         max_payments: int = 500, log: Any = None, drain_limit: float = DRAIN_LIMIT,
         kinds: list[str] | None = None) -> SoakResult:
    """One soak run (see the module's docstring); never raises for a failed expectation: see .failures().

    `kinds`: the garbage kinds served (default: the whole catalogue). A Retry-After far ahead parks the agent
    for the backoff cap (300 s), as the contract asks: a short run leaves those kinds out.
    """
    from agent.journal import Journal
    from sandbox.billing.server import SandboxServer

    minutes = max(0.05, min(minutes, MAX_MINUTES))
    say = log or (lambda *_a: None)
    res = SoakResult()
    with tempfile.TemporaryDirectory(prefix="guichet-soak-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir(mode=0o700)
        with SandboxServer(Path(tmp) / "server.db", token=TOKEN, agency=AGENCY, seed_bills=200) as server:
            cfg = _write_config(Path(tmp) / "guichet.toml", server.url, state)
            refs = server.references(status="unpaid")[:max_payments]
            env = {k: v for k, v in os.environ.items() if not k.startswith(("GUICHET_", "NOTIFY_", "WATCHDOG_"))}
            env["GUICHET_CONFIG"] = str(cfg)
            stderr_path = Path(tmp) / "agent.log"
            with open(stderr_path, "w") as stderr:
                agent = subprocess.Popen([*GUICHET, "run", "--headless"], env=env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=stderr)
            try:
                # Sane for a moment, so the offline cache holds the bills `guichet pay` falls back on.
                _wait(lambda: (state / "bills.db").exists() and agent.poll() is None, 20)
                server.set_faults(garbage_rate=rate, garbage_kinds=kinds or ["all"], seed=seed)
                say(f"soak: {minutes:g} min of garbage at rate {rate:g} (agent pid {agent.pid})")
                start = time.monotonic()
                end = start + minutes * 60
                next_pay = next_sample = start
                while (now := time.monotonic()) < end and agent.poll() is None:
                    if now >= next_sample:
                        rss = _rss(agent.pid)
                        if rss is not None:
                            res.rss.append(rss)
                            if not res.baseline and now - start >= min(WARMUP, minutes * 30):
                                res.baseline = rss
                        next_sample = now + SAMPLE_EVERY
                    if now >= next_pay and refs:
                        ref = refs.pop(0)
                        pid, why = _pay(ref, env)
                        if pid is None:
                            res.pay_failures += 1
                            res.pay_errors[why] = res.pay_errors.get(why, 0) + 1
                        else:
                            res.payments.append(pid)
                        next_pay = time.monotonic() + pay_every
                    time.sleep(0.2)
                res.seconds = time.monotonic() - start
                res.exited = agent.poll()
                res.baseline = res.baseline or (res.rss[0] if res.rss else 0)
                res.garbage = dict(server.fault_status().get("garbage", {}).get("kinds", {}))
                for entry in server.fault_status().get("garbage", {}).get("log", []):
                    if entry.get("path") == "/v1/payments/batch":
                        counts = res.batch_garbage.setdefault(str(entry.get("kind")), [0, 0])
                        counts[0 if entry.get("recorded") else 1] += 1
                if not res.garbage:  # a server without the catalogue counts its injections only
                    res.garbage = {k: v for k, v in server.fault_status().get("injected", {}).items() if v}
                server.set_faults()
                say(f"soak: server sane; draining {len(res.payments)} payments")
                t = time.monotonic()
                if res.exited is None:
                    _wait(lambda: _all_uploaded(Journal, state, res.payments) or agent.poll() is not None,
                          drain_limit)
                res.drain_seconds = time.monotonic() - t
                rss = _rss(agent.pid)
                if rss is not None:
                    res.rss.append(rss)
                res.exited = agent.poll()
                if res.exited is None:
                    agent.send_signal(signal.SIGTERM)
                    res.stop_status = agent.wait(60)
            finally:
                if agent.poll() is None:
                    agent.kill()
                    agent.wait(10)
            res.log_tail = "".join(stderr_path.read_text(errors="replace").splitlines(keepends=True)[-40:])
            recorded = {p["payment_id"]: p for p in server.recorded_payments()}
            res.recorded = len(recorded)
            res.duplicates_on_server = sum(p["duplicates"] for p in recorded.values())
            res.conflicts = sum(p["conflicts"] for p in recorded.values())
            res.missing = [p for p in res.payments if p not in recorded]
            with Journal.open(state, terminal_id=TERMINAL, agency_id=AGENCY) as j:
                res.not_uploaded = [p.payment_id for p in j.list() if p.state != "uploaded"]
    return res


def _wait(cond: Any, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.5)
    return False


def _pay(ref: str, env: dict[str, str]) -> tuple[str | None, str]:
    """`guichet pay REF --method cash --no-upload --json`: (the payment id, "") or (None, why it failed)."""
    try:
        r = subprocess.run([*GUICHET, "pay", ref, "--method", "cash", "--no-upload", "--json"], env=env,
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, "timed out"
    if r.returncode != 0:
        lines = r.stderr.strip().splitlines()
        return None, (lines[-1] if lines else f"exit {r.returncode}")[:100]
    try:
        return str(json.loads(r.stdout)["payment_id"]), ""
    except (ValueError, KeyError, TypeError):
        return None, "no payment in the output"


def _all_uploaded(journal_cls: Any, state: Path, ids: list[str]) -> bool:
    try:
        with journal_cls.open(state, terminal_id=TERMINAL, agency_id=AGENCY) as j:
            return all(p.state == "uploaded" for p in j.list())
    except Exception:  # noqa: BLE001 - busy for a moment: ask again
        return False


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="./dev bench soak")
    ap.add_argument("--minutes", type=float, default=10.0, help=f"garbage phase (default 10, at most {MAX_MINUTES:g})")
    ap.add_argument("--rate", type=float, default=0.5, help="share of requests answered with garbage (0..1)")
    ap.add_argument("--pay-every", type=float, default=5.0, help="seconds between payments")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--exclude", action="append", default=[], metavar="KIND", help="leave a garbage kind out")
    args = ap.parse_args(argv)
    kinds = None
    if args.exclude:
        from sandbox.billing.faults import GARBAGE_KINDS

        kinds = [k for k in GARBAGE_KINDS if k not in args.exclude]
    res = soak(args.minutes, args.rate, args.pay_every, args.seed, log=lambda m: print(m, flush=True), kinds=kinds)
    print(res.report())
    failures = res.failures()
    for f in failures:
        print(f"FAIL: {f}")
    if failures:
        print("agent log (last lines):\n" + res.log_tail)
    print("PASS" if not failures else "FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
