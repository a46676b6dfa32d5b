"""`guichet sandbox card --profile NAME`: a virtual card inserted into the vpcd reader until a signal.

    guichet sandbox card --list
    guichet sandbox card --profile cib &        # inserted; SIGTERM or Ctrl-C takes it out
    guichet card read --json
    kill %1
    guichet sandbox card --profile cib --counters cards.json   # the card keeps its ATC, PIN tries... there
    guichet sandbox card --profile cib --counters none         # a fresh card each run

By default the card keeps its counters (ATC, last online ATC, PIN tries, application block, offline balance)
in the user state dir, beside the database `guichet sandbox serve` keeps there by default
(``~/.local/state/guichet/sandbox-card-counters.json`` and its ``.key``), so the default pair of commands run
again the next day goes on from the card's last ATC, as the acquirer's strict ATC rule expects. With
``--counters none`` (or ``:memory:``) a new process is a fresh card, whose first ARQC that server declines as
a replay (N7) when it saw the card before.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click
from platformdirs import user_state_dir

from sandbox.cards.card import VirtualCard
from sandbox.cards.counters import CountersFileError, CounterStore, FileCounterStore
from sandbox.cards.profiles import PROFILES
from sandbox.cards.vpcd import VPCD_HOST, VPCD_PORT, VpcdLink

MEMORY = ("none", ":memory:")  # --counters values that keep the counters in memory


def default_counters() -> Path:
    """Where a card keeps its counters by default: the user state dir, as `guichet sandbox serve` its DB."""
    return Path(user_state_dir("guichet")) / "sandbox-card-counters.json"


def open_counters(option: str | None) -> CounterStore:
    """The store ``--counters`` names: None is the default file, ``none``/``:memory:`` memory.

    >>> type(open_counters("none")).__name__
    'CounterStore'
    """
    if option is not None and option.strip().lower() in MEMORY:
        return CounterStore()
    return FileCounterStore(option if option is not None else default_counters())


@click.command("card")
@click.option("--profile", "profile_name", type=click.Choice(sorted(PROFILES)), help="Which card to insert.")
@click.option("--list", "list_profiles", is_flag=True, help="List the profiles and exit.")
@click.option("--host", default=VPCD_HOST, show_default=True, help="vpcd address (loopback).")
@click.option("--port", default=VPCD_PORT, show_default=True, type=int, help="vpcd port.")
@click.option("--remove-after", type=float, default=None, help="Take the card out after this many seconds.")
@click.option("--counters", "counters_path", type=click.Path(dir_okay=False), default=None,
              help="JSON file where the card keeps its counters (ATC, PIN tries...) between runs; 'none' or "
                   "':memory:' keeps them in memory [default: sandbox-card-counters.json in the user state dir].")
def card(profile_name: str | None, list_profiles: bool, host: str, port: int, remove_after: float | None,
         counters_path: str | None) -> None:
    """A virtual EMV card inserted into the vpcd reader; SIGTERM/SIGINT removes it."""
    if list_profiles:
        for name in sorted(PROFILES):
            click.echo(f"{name:18} {PROFILES[name].description}")
        return
    if not profile_name:
        raise click.UsageError("--profile NAME is required (see --list)")
    profile = PROFILES[profile_name]
    try:
        counters = open_counters(counters_path)
    except CountersFileError as e:
        raise click.ClickException(f"--counters {e}") from None
    link = VpcdLink(VirtualCard(profile, counters=counters), host, port)
    try:
        link.start()
    except ConnectionError as e:
        raise click.ClickException(str(e)) from None
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    click.echo(f"card {profile.name} inserted into vpcd {host}:{port} ({profile.description})", err=True)
    waited = 0.0
    while not stop.is_set() and not link.removed.is_set():
        stop.wait(0.2)
        waited += 0.2
        if remove_after is not None and waited >= remove_after:
            break
    pulled = link.removed.is_set()
    link.remove()
    click.echo(f"card {profile.name} {'pulled out' if pulled else 'removed'} after {link.apdus} APDUs", err=True)
