"""`guichet sandbox serve`: the sandbox billing server in the foreground.

    guichet sandbox serve --port 0 --seed-bills 200 --agency ORAN-07 --token demo --admin-token adm
    listening on http://127.0.0.1:41877/
    seeded 200 bills for ORAN-07 (200 new; first reference 101604366313)
    database ~/.local/state/guichet/sandbox-billing.db; shared token demo; admin token adm

Per-terminal tokens (contract 1.1): ``--terminal ORAN-07-G1:ORAN-07:tok1`` (repeatable); with any of them,
there is no shared token unless ``--token`` is given too.

The first stdout line is always ``listening on URL`` (with the real port when ``--port 0``), so scripts
and tests can start it as a subprocess and read where it is. Stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import secrets
import signal
from pathlib import Path
from types import FrameType

import click
from platformdirs import user_state_dir

from sandbox.billing.acquirer import IssuerBehaviour, parse_scheme_cvn
from sandbox.billing.app import create_app
from sandbox.billing.faults import GARBAGE_KINDS, GARBAGE_RECORD, FaultInjector, FaultSettings
from sandbox.billing.seed import generate_bills
from sandbox.billing.sender import ReceiptSender
from sandbox.billing.server import bind_socket, make_uvicorn
from sandbox.billing.store import Store

_RATE = click.FloatRange(0, 1)


def default_db() -> Path:
    return Path(user_state_dir("guichet")) / "sandbox-billing.db"


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0 = a free port.")
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="SQLite file [default: user state dir].")
@click.option("--token", default="sandbox-token", show_default=True, envvar="GUICHET_SANDBOX_TOKEN",
              help="Shared bearer token: stands for whichever terminal X-Terminal-Id names.")  # fmt: skip
@click.option(
    "--terminal",
    "terminal_specs",
    multiple=True,
    metavar="ID:AGENCY:TOKEN",
    help="A terminal and its own token (repeatable); then no shared token unless --token is given.",
)
@click.option(
    "--admin-token",
    envvar="GUICHET_SANDBOX_ADMIN_TOKEN",
    help="Token of the /_sandbox/ endpoints (faults, seeding) [default: random, printed].",
)
@click.option("--seed-bills", default=0, type=click.IntRange(0, 1_000_000), help="Generate N bills (idempotent).")
@click.option("--agency", default="ORAN-07", show_default=True, help="Agency of the seeded bills.")
@click.option("--seed", default=1, show_default=True, help="Seed of the bill generator.")
@click.option("--currency", default="DZD", show_default=True, type=click.Choice(["DZD", "TND", "EUR"]))
@click.option("--decline-pan", "decline_pans", multiple=True, help="A PAN that authorizations decline (51).")
@click.option("--scheme-cvn", "scheme_cvns", multiple=True, metavar="SCHEME=CVN",
              help="Cryptogram version of a scheme's cards: 10, 16, 18, 20, or iad (from 9F10). "
                   "Default CIB=18 EDAHABIA=18 VISA=iad MASTERCARD=iad.")
@click.option("--bad-arpc", is_flag=True, help="Approvals carry a wrong ARPC (the card then declines).")
@click.option("--issuer-scripts", is_flag=True, help="Approvals carry issuer scripts 71 and 72.")
@click.option("--bad-script-mac", is_flag=True, help="The issuer scripts' MACs are wrong (the card refuses them).")
@click.option("--strict-atc/--no-strict-atc", default=True, show_default=True,
              help="An ARQC whose ATC is not above the card's last is a replay (off: only a lower ATC).")
@click.option("--require-chip-data/--no-require-chip-data", default=True, show_default=True,
              help="Decline a chip or contactless authorization without `emv` (off: a contract 1.0 client).")
@click.option("--issuer-pan", "issuer_pans", multiple=True,
              help="A card whose offline TCs the issuer verifies (besides the virtual cards); memory only.")
@click.option("--clock-offset", default=0.0, help="Seconds added to the heartbeat's server_time.")
@click.option("--latency", default=0, type=click.IntRange(0), help="Delay every /v1 request by MS.")
@click.option("--error-rate", default=0.0, type=_RATE, help="Share of requests answered 500.")
@click.option("--unavailable-rate", default=0.0, type=_RATE, help="Share answered 503 + Retry-After.")
@click.option("--retry-after", default=1, type=click.IntRange(0), help="Retry-After seconds of the 503s.")
@click.option("--drop-after-commit-rate", default=0.0, type=_RATE,
              help="Share handled and committed, then the connection dropped without an answer.")  # fmt: skip
@click.option(
    "--garbage-rate",
    default=0.0,
    type=_RATE,
    help="Share answered from the catalogue of broken answers (see docs/sandbox-server.md).",
)
@click.option(
    "--garbage-kind",
    "garbage_kinds",
    multiple=True,
    type=click.Choice(("all", *GARBAGE_KINDS)),
    help="Which broken answers (repeatable; 'all' = the whole catalogue) [default: not_json].",
)
@click.option(
    "--garbage-record",
    default="random",
    show_default=True,
    type=click.Choice(GARBAGE_RECORD),
    help="Whether a batch answered with garbage is recorded first.",
)
@click.option("--wrong-content-type-rate", default=0.0, type=_RATE,
              help="Share committed then answered 200 text/html.")  # fmt: skip
@click.option("--fault-seed", default=None, type=int, help="Make the fault draws a fixed sequence.")
@click.option("--smtp", default=None, metavar="HOST:PORT", help="E-mail receipts through this SMTP relay.")
@click.option("--sms-url", default=None, metavar="URL", help="Text receipts through this HTTP gateway (POST JSON).")
@click.option("--sms-file", default=None, type=click.Path(dir_okay=False), help="Append texted receipts here.")
def serve(
    host: str,
    port: int,
    db_path: str | None,
    token: str,
    terminal_specs: tuple[str, ...],
    admin_token: str | None,
    seed_bills: int,
    agency: str,
    seed: int,
    currency: str,
    decline_pans: tuple[str, ...],
    scheme_cvns: tuple[str, ...],
    bad_arpc: bool,
    issuer_scripts: bool,
    bad_script_mac: bool,
    strict_atc: bool,
    require_chip_data: bool,
    issuer_pans: tuple[str, ...],
    clock_offset: float,
    latency: int,
    error_rate: float,
    unavailable_rate: float,
    retry_after: int,
    drop_after_commit_rate: float,
    garbage_rate: float,
    garbage_kinds: tuple[str, ...],
    garbage_record: str,
    wrong_content_type_rate: float,
    fault_seed: int | None,
    smtp: str | None,
    sms_url: str | None,
    sms_file: str | None,
) -> None:
    """Run the simulated central billing server (API v1.1) with optional fault injection."""
    if not token:
        raise click.BadParameter("must not be empty", param_hint="--token")
    terminals: dict[str, tuple[str, str]] = {}
    for spec in terminal_specs:
        parts = spec.split(":", 2)  # the token may hold colons
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise click.BadParameter(f"{spec!r}: expected ID:AGENCY:TOKEN", param_hint="--terminal")
        terminals[parts[0]] = (parts[2], parts[1])
    source = click.get_current_context().get_parameter_source("token")
    shared: str | None = token
    if terminals and source == click.core.ParameterSource.DEFAULT:
        shared = None
    admin = admin_token or secrets.token_urlsafe(16)
    faults = FaultSettings(
        latency_ms=latency,
        error_rate=error_rate,
        unavailable_rate=unavailable_rate,
        retry_after=retry_after,
        drop_after_commit_rate=drop_after_commit_rate,
        garbage_rate=garbage_rate,
        garbage_kinds=list(garbage_kinds),
        garbage_record=garbage_record,
        wrong_content_type_rate=wrong_content_type_rate,
        seed=fault_seed,
        clock_offset=clock_offset,
    )
    try:
        faults.check()
    except ValueError as e:
        raise click.UsageError(f"fault options: {e}") from None
    issuer = IssuerBehaviour(bad_arpc=bad_arpc, scripts=issuer_scripts, bad_script_mac=bad_script_mac,
                             strict_atc=strict_atc, require_chip_data=require_chip_data)
    for spec in scheme_cvns:
        try:
            scheme, cvn = parse_scheme_cvn(spec)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--scheme-cvn") from None
        issuer.scheme_cvns[scheme] = cvn
    for pan in issuer_pans:
        if not (pan.isascii() and pan.isdigit() and 12 <= len(pan) <= 19):
            raise click.BadParameter("must be 12 to 19 digits", param_hint="--issuer-pan")
    db = Path(db_path) if db_path else default_db()
    try:
        store = Store(db)
    except Exception as e:  # sqlite3.Error, OSError: one line, not a traceback
        raise click.ClickException(f"--db {db}: cannot open: {e}") from None
    added = 0
    if seed_bills:
        added = store.add_bills(generate_bills(seed_bills, agency, seed=seed, currency=currency))
    try:
        app = create_app(store, token=shared, terminals=terminals, agency=agency, admin_token=admin,
                         faults=FaultInjector(faults), decline_pans=decline_pans, issuer=issuer,
                         issuer_pans=issuer_pans)  # fmt: skip
    except ValueError as e:
        store.close()
        raise click.UsageError(f"tokens: {e}") from None
    if smtp or sms_url or sms_file:
        try:
            app.state.receipt_sender = ReceiptSender(smtp=smtp, sms_url=sms_url,
                                                     sms_file=Path(sms_file) if sms_file else None)
        except ValueError as e:
            store.close()
            raise click.UsageError(str(e)) from None
        click.echo(f"receipts: e-mail via {smtp or 'no relay'}; SMS to {sms_url or sms_file or 'nowhere'}")
    try:
        sock = bind_socket(host, port)
    except OSError as e:
        store.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    chosen = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"listening on http://{shown}:{chosen}/")
    if seed_bills:
        first = store.references(agency=agency, limit=1)
        click.echo(
            f"seeded {seed_bills} bills for {agency} ({added} new; first reference {first[0] if first else '-'})"
        )
    tokens = f"shared token {shared}" if shared else "no shared token"
    if terminals:
        tokens += "; terminals " + ", ".join(f"{t} ({a})" for t, (_, a) in terminals.items())
    click.echo(f"database {db}; {tokens}; admin token {admin}")
    server = make_uvicorn(app)
    # uvicorn stops gracefully on SIGINT/SIGTERM, then re-raises the signal: make that a clean exit 0.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        store.close()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
