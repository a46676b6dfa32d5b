"""Card reading: our EMV reader vs the `emv` package (python-emv 1.0.14), same virtual cards, same reader.

    ./dev bench cards                       # or: .venv/bin/python -m bench cards [--reads N] [--profile NAME]

Per profile, with the virtual card inserted in the vpcd reader (real pcscd, pyscard):
- APDUs for one read (counted by the card itself, so both sides are counted the same way);
- ms from connect to card data (connect + read + disconnect), median of N reads;
- our raw transport time (time inside SCardTransmit) and our overhead (read time minus transport);
- python-emv doing what `emv appdata 0` does (list applications, select the first, GET PROCESSING OPTIONS
  with its empty PDOL, READ RECORD the AFL), in its own virtualenv (pyscard 2.0.0, which it needs).
  The peer venv is built on first run in /tmp/guichet-bench-venv-emv (never in the project's venv).

Targets: our APDU count is the profile's minimum (expected_apdus) and never above python-emv's; our
overhead is at most 5 ms above the raw transport time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PEER_VENV = Path(os.environ.get("GUICHET_BENCH_EMV_VENV", "/tmp/guichet-bench-venv-emv"))
PEER_REQS = ["pyscard==2.0.0", "emv==1.0.14"]

# Runs inside the peer venv: N reads the way `emv appdata 0` does them; one JSON line per read, no card data.
PEER_SCRIPT = r'''
import json, sys, time
from smartcard.System import readers
from emv.card import Card
from emv.protocol.data import Tag
name, n = sys.argv[1], int(sys.argv[2])
reader = [r for r in readers() if str(r) == name][0]
for _ in range(n):
    res = {"ok": False}
    t0 = time.perf_counter()
    conn = reader.createConnection()
    data = None
    try:
        card = Card(conn)
        apps = card.list_applications()
        if not apps:
            raise RuntimeError("no application listed")
        card.select_application(apps[0][Tag.ADF_NAME])
        opts = card.get_processing_options()
        data = card.get_application_data(opts["AFL"])
        res["ok"] = True
        res["pan"] = any(getattr(k, "value", None) in (0x5A, 0x57, [0x5A], [0x57]) for k in data)
    except BaseException as e:
        res["error"] = type(e).__name__ + ": " + str(e).splitlines()[0][:120] if str(e) else type(e).__name__
    res["ms"] = (time.perf_counter() - t0) * 1000
    try:
        conn.disconnect()
    except Exception:
        pass
    if data is not None:
        try:  # what `emv appdata` prints (redacted)
            from emv.command.client import as_table
            as_table(data, redact=True)
        except BaseException as e:
            res["render_error"] = type(e).__name__ + ": " + str(e)[:100]
    print(json.dumps(res), flush=True)
'''


def ensure_peer_venv() -> tuple[Path | None, str]:
    py = PEER_VENV / "bin" / "python"
    if py.exists():
        ok = subprocess.run([str(py), "-c", "import emv.card, smartcard"], capture_output=True)
        if ok.returncode == 0:
            return py, ""
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True, capture_output=True)
        res = subprocess.run([str(py), "-m", "pip", "install", "-q", *PEER_REQS], capture_output=True, text=True,
                             timeout=600)
        if res.returncode != 0:
            return None, f"pip install {' '.join(PEER_REQS)} failed: {res.stderr.strip().splitlines()[-1:]}"
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"could not build the python-emv venv: {e}"
    return py, ""


def _wait_presence(reader: str, present: bool, timeout: float = 8.0) -> float:
    from drivers import pcsc

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if any(s.name == reader and s.card_present == present for s in pcsc.reader_states()):
            return time.monotonic() - t0
        time.sleep(0.005)
    raise RuntimeError(f"pcscd did not see the card {'inserted' if present else 'removed'} within {timeout} s")


def _ours(reader: str, cfg: Any, reads: int) -> dict[str, Any]:
    from agent.cards import terminal_for
    from drivers import pcsc
    from drivers.emv import EmvReader

    key = cfg.cards.hmac_key.get_secret_value()
    totals, transports, overheads, counts = [], [], [], []
    for _ in range(reads):
        t0 = time.perf_counter()
        with pcsc.connect(reader) as conn:
            t1 = time.perf_counter()
            card = EmvReader(conn, schemes=cfg.cards.schemes, aids=cfg.cards.aids, terminal=terminal_for(cfg),
                             hmac_key=key).read()
            t2 = time.perf_counter()
        totals.append((time.perf_counter() - t0) * 1000)
        transports.append(conn.transmit_seconds * 1000)
        overheads.append((t2 - t1 - conn.transmit_seconds) * 1000)
        counts.append(card.apdu_count)
        card.wipe()
    return {
        "apdus": counts[0],
        "ms": statistics.median(totals),
        "transport_ms": statistics.median(transports),
        "overhead_ms": statistics.median(overheads),
        "scheme": card.scheme,
    }


def _peer(py: Path, script: Path, reader: str, reads: int, link: Any) -> dict[str, Any]:
    before = link.apdus
    res = subprocess.run([str(py), str(script), reader, str(reads)], capture_output=True, text=True, timeout=120)
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    if not lines:
        tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return {"apdus": None, "ms": None, "note": f"crashed: {tail[:90]}"}
    notes = {x.get("error") or x.get("render_error") for x in lines} - {None}
    ok = [x for x in lines if x["ok"]]
    return {
        "apdus": (link.apdus - before) / len(lines),
        "ms": statistics.median(x["ms"] for x in lines),
        "ok": bool(ok),
        "note": "; ".join(sorted(str(n) for n in notes))[:140] or ("ok" if ok else "failed"),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bench cards")
    ap.add_argument("--reads", type=int, default=20, help="reads per profile and side (median reported)")
    ap.add_argument("--profile", action="append", help="only these profiles")
    ap.add_argument("--no-peer", action="store_true", help="skip python-emv")
    args = ap.parse_args(argv)

    import config
    from drivers import pcsc
    from sandbox.cards.card import VirtualCard
    from sandbox.cards.profiles import PROFILES, sandbox_cards_config
    from sandbox.cards.vpcd import VpcdLink

    try:
        reader = next(n for n in pcsc.list_readers() if n.startswith("Virtual PCD") and n.endswith("00 00"))
    except (pcsc.PcscError, StopIteration) as e:
        print(f"bench cards: needs pcscd with the vpcd reader ({e or 'no Virtual PCD reader'})")
        return
    cfg = config.validate({"cards": sandbox_cards_config()})
    peer_py, why = (None, "skipped (--no-peer)") if args.no_peer else ensure_peer_venv()
    script = Path(tempfile.mkstemp(suffix="_peer_emv.py")[1])
    script.write_text(PEER_SCRIPT)
    names = args.profile or [n for n, p in PROFILES.items() if p.expect_error is None and not p.apdu_delay]

    print(f"cards benchmark: {args.reads} reads per profile, reader {reader!r}, pcscd + vpcd, virtual cards")
    print(f"peer: python-emv 1.0.14 + pyscard 2.0.0 in {PEER_VENV}" if peer_py else f"peer: unavailable: {why}")
    head = (f"{'profile':14} {'min':>3} {'ours':>4} {'ms':>6} {'transp':>6} {'ovh':>5} | "
            f"{'emv':>5} {'ms':>6} {'apdu x':>6} {'time x':>6}  python-emv note")
    print(head)
    print("-" * len(head))
    worst_overhead = 0.0
    all_min = True
    never_more = True
    try:
        for name in names:
            prof = PROFILES[name]
            # A fresh insertion for each side: pcscd keeps the protocol it negotiated for the first
            # connection (python-emv insists on T=0), and neither side should inherit the other's state.
            peer: dict[str, Any] = {"apdus": None, "ms": None, "note": why}
            if peer_py:
                _wait_presence(reader, False)
                link = VpcdLink(VirtualCard(prof)).start()
                try:
                    _wait_presence(reader, True)
                    peer = _peer(peer_py, script, reader, args.reads, link)
                finally:
                    link.remove()
            _wait_presence(reader, False)
            link = VpcdLink(VirtualCard(prof)).start()
            try:
                _wait_presence(reader, True)
                ours = _ours(reader, cfg, args.reads)
            finally:
                link.remove()
            worst_overhead = max(worst_overhead, ours["overhead_ms"])
            all_min &= ours["apdus"] == prof.expected_apdus
            if peer.get("apdus") is not None and peer.get("ok"):
                never_more &= ours["apdus"] <= peer["apdus"]
            pa = f"{peer['apdus']:.0f}" if peer.get("apdus") is not None else "-"
            pm = f"{peer['ms']:.1f}" if peer.get("ms") is not None else "-"
            # Ratios only where python-emv actually read the card: a failed read is not a comparison.
            ar = f"{ours['apdus'] / peer['apdus']:.2f}" if peer.get("ok") and peer.get("apdus") else "-"
            tr = f"{ours['ms'] / peer['ms']:.2f}" if peer.get("ok") and peer.get("ms") else "-"
            print(f"{name:14} {prof.expected_apdus:>3} {ours['apdus']:>4} {ours['ms']:>6.2f} "
                  f"{ours['transport_ms']:>6.2f} {ours['overhead_ms']:>5.2f} | {pa:>5} {pm:>6} {ar:>6} {tr:>6}  "
                  f"{peer.get('note', '')}")
    finally:
        script.unlink(missing_ok=True)
    print()
    print("columns: min = minimum APDUs for the profile; ours/emv = APDUs per read (counted by the card);")
    print("         ms = connect+read+disconnect, median; transp = time inside SCardTransmit; ovh = read - transp;")
    print("         apdu x / time x = ours / python-emv, where python-emv read the card (its counts and ms are")
    print("         shown even when it failed: that is how far it got)")
    print(f"target minimum APDU count on every profile: {'met' if all_min else 'NOT met'}")
    print(f"target never more APDUs than python-emv (where it reads the card): {'met' if never_more else 'NOT met'}")
    print(f"target overhead <= 5 ms above raw transport: worst {worst_overhead:.2f} ms -> "
          f"{'met' if worst_overhead <= 5 else 'NOT met'}")
    print("detection (insert -> pcscd reports the card) is pcscd's vpcd poll (~0.4 s), the same for any library.")


if __name__ == "__main__":
    main()
