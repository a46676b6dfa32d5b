"""`guichet doctor [--json]`: one screen that checks the installation and says what to fix.

    $ guichet doctor
    ok    config        /etc/guichet/guichet.toml is valid (terminal ORAN-07-G2, agency ORAN-07)
    FAIL  server        billing server unreachable: ... Connection refused
          fix: check the network cable and the agency link, and server.url ...

Exit status: 0 when nothing failed (warnings allowed), 1 when a check failed.
``--json`` prints a list of {"name", "ok", "severity", "status", "detail", "fix", "skipped"}.
"""

from __future__ import annotations

import click

from agent.doctor import run_checks
from guichet.cli.common import print_json


@click.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON list of the checks.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check the installation and explain what to fix."""
    checks = run_checks(ctx.find_root().ensure_object(dict).get("config_path"))
    if as_json:
        print_json([c.to_json() for c in checks])
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            click.echo(f"{c.label:<5} {c.name:<{width}}  {c.detail}")
            if c.fix and not c.ok:
                click.echo(f"{'':<5} {'':<{width}}  fix: {c.fix}")
        bad = sum(c.failed for c in checks)
        warn = sum(not c.ok and not c.failed for c in checks)
        click.echo(f"{bad} failed, {warn} warning(s), {sum(c.ok and not c.skipped for c in checks)} ok")
    ctx.exit(1 if any(c.failed for c in checks) else 0)
