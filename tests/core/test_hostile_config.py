"""Where the token goes and whom it trusts (issue 12, smaller holes), and the heartbeat's high-water mark."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import config
from agent.billing import BillingClient
from agent.errors import JournalDamaged
from agent.sync import SyncWorker
from tests.core.conftest import with_changes
from tests.core.stub_server import StubServer, json_answer


@pytest.mark.parametrize("url, fault", [
    ("http://host\\@127.0.0.1/", "backslashes"),
    ("http://evil.example@127.0.0.1/", "user name or password"),
    ("https://user:pw@billing.example.dz/", "user name or password"),
    ("http://127.0.0.1:8765/?x=1", "?query"),
    ("http://127.0.0.1:99999/", "not a valid URL"),
    ("http://127.0.0.1 .evil/", "spaces"),
])
def test_a_server_url_that_parsers_read_differently_is_refused_naming_the_key(url, fault):
    with pytest.raises(config.ConfigError) as e:
        config.validate({"server": {"url": url}})
    line = str(e.value)
    assert "server.url" in line and fault in line and "\n" not in line


def test_config_check_refuses_a_userinfo_url(guichet, tmp_path, config_file):
    text = config_file.read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('url = "http://127.0.0.1', 'url = "http://host\\\\@127.0.0.1'))
    bad.chmod(0o600)
    r = guichet("config", "check", cfg=bad)
    assert r.returncode == 2 and "server.url" in r.stderr and "Traceback" not in r.stderr


def test_the_environment_never_replaces_the_configured_ca_nor_adds_a_proxy(billing_config, tmp_path, monkeypatch):
    ca = tmp_path / "agency-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a bundle")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bogus))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bogus))
    dead = "http://127.0.0.1:9/"  # nothing listens: a request sent through it fails
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    configured = BillingClient(with_changes(billing_config, server={"ca_bundle": str(ca), "url": "https://b.dz/"}))
    what = configured.session.merge_environment_settings("https://b.dz/v1/bills", {}, None, None, None)
    assert what["verify"] == str(ca) and what["proxies"] == {}
    default = BillingClient(with_changes(billing_config, server={"url": "https://b.dz/"}))
    what = default.session.merge_environment_settings("https://b.dz/v1/bills", {}, None, None, None)
    assert what["verify"] is True and what["proxies"] == {}

    now = datetime.now(UTC).isoformat()
    with StubServer(lambda m, p, b: json_answer(200, {"server_time": now})) as stub:
        client = BillingClient(with_changes(billing_config, server={"url": stub.url}))
        assert client.heartbeat({})["server_time"] == now  # straight to the server, not via HTTP_PROXY
    assert len(stub.requests) == 1


def test_a_proxy_is_an_explicit_validated_config_key(billing_config):
    now = datetime.now(UTC).isoformat()
    with StubServer(lambda m, p, b: json_answer(200, {"server_time": now})) as proxy:
        cfg = with_changes(billing_config, server={"url": "http://127.0.0.1:9/", "proxy": proxy.url.rstrip("/")})
        assert BillingClient(cfg).heartbeat({})["server_time"] == now
    [(method, target, _)] = proxy.requests
    assert method == "POST" and target.startswith("http://127.0.0.1:9/v1/terminals/")
    for bad, fault in [("socks5://127.0.0.1:1080", "https://"), ("http://u:p@proxy:3128", "user name"),
                       ("http://proxy:3128/path", "without a path")]:
        with pytest.raises(config.ConfigError, match=rf"server\.proxy: .*{fault}"):
            with_changes(billing_config, server={"proxy": bad})


# -- the heartbeat carries the journal's high-water mark and checks the server's --------------------------

def test_the_heartbeat_sends_the_high_water_mark_and_a_server_ahead_blocks_payments(agent, seeded_references):
    [p] = agent.flow.pay([agent.flow.lookup(seeded_references[0])], method="cash", cashier_id="c").payments
    now = datetime.now(UTC).isoformat()
    ahead = f"{agent.config.terminal.id}-{999:06d}"
    with StubServer(lambda m, pa, b: json_answer(200, {"server_time": now, "last_receipt_number": ahead})) as stub:
        cfg = with_changes(agent.config, server={"url": stub.url})
        worker = SyncWorker(cfg, agent.journal, BillingClient(cfg))
        assert worker.heartbeat() is not None
    [(_, _, body)] = stub.requests
    assert body["last_receipt_number"] == p.receipt_number
    assert agent.journal.high_water() == ahead  # no receipt number is ever issued twice
    with pytest.raises(JournalDamaged):
        agent.journal.require_healthy()


def test_a_server_that_does_not_know_the_high_water_field_still_gets_heartbeats(agent):
    now = datetime.now(UTC).isoformat()

    def v10(method, path, body):  # contract 1.0: unknown request fields are refused
        if "last_receipt_number" in body:
            return json_answer(400, {"error": {"code": "unknown_field", "message": "last_receipt_number"}})
        return json_answer(200, {"server_time": now})

    with StubServer(v10) as stub:
        cfg = with_changes(agent.config, server={"url": stub.url})
        worker = SyncWorker(cfg, agent.journal, BillingClient(cfg))
        assert worker.heartbeat() is not None and worker.heartbeat() is not None
    assert [("last_receipt_number" in b) for _, _, b in stub.requests] == [True, False, False]
    agent.journal.require_healthy()


def test_a_garbled_high_water_mark_in_the_answer_is_a_bad_answer_and_changes_nothing(agent):
    now = datetime.now(UTC).isoformat()
    with StubServer(lambda m, p, b: json_answer(200, {"server_time": now, "last_receipt_number": {"x": 1}})) as stub:
        cfg = with_changes(agent.config, server={"url": stub.url})
        worker = SyncWorker(cfg, agent.journal, BillingClient(cfg))
        assert worker.heartbeat() is None
    assert "heartbeat answer: last_receipt_number: should be a valid string" in (worker.status().last_error or "")
    agent.journal.require_healthy()


@pytest.mark.parametrize("url, proxy", [("http://127.0.0.1:8765/", "http://proxy.example:3128"),
                                        ("HTTP://localhost:8765/", "http://10.0.0.9:3128")])
def test_a_plain_http_server_url_through_a_proxy_elsewhere_is_refused(billing_config, url, proxy):
    """The bearer token would cross the proxy's network in clear."""
    with pytest.raises(config.ConfigError, match=r"server\.proxy: .*in clear"):
        with_changes(billing_config, server={"url": url, "proxy": proxy})
    # https to the server, or a sandbox and a proxy both on this machine: allowed
    assert with_changes(billing_config, server={"url": "https://billing.example/", "proxy": proxy}).server.proxy
    assert with_changes(billing_config, server={"url": url, "proxy": "http://127.0.0.1:3128"}).server.proxy


def test_a_socks_proxy_is_refused_naming_the_proxy():
    with pytest.raises(config.ConfigError, match=r"server\.proxy: the proxy URL must be http://host:port"):
        config.validate({"server": {"proxy": "socks5://127.0.0.1:1080"}})


def test_one_garbage_unknown_field_does_not_switch_off_the_high_water_check_for_good(agent):
    from agent.sync import HWM_RETRY

    now = datetime.now(UTC).isoformat()
    refusals = [json_answer(400, {"error": {"code": "unknown_field", "message": "last_receipt_number"}})]

    def once(method, path, body):  # one garbage refusal, then a 1.1 server
        if "last_receipt_number" in body and refusals:
            return refusals.pop()
        return json_answer(200, {"server_time": now, "last_receipt_number": None})

    with StubServer(once) as stub:
        cfg = with_changes(agent.config, server={"url": stub.url})
        worker = SyncWorker(cfg, agent.journal, BillingClient(cfg))
        clock = [1000.0]
        worker.clock = lambda: clock[0]
        assert worker.heartbeat() is not None and worker.heartbeat() is not None
        clock[0] += HWM_RETRY
        assert worker.heartbeat() is not None
    assert [("last_receipt_number" in b) for _, _, b in stub.requests] == [True, False, False, True]


def test_the_server_timeout_is_bounded_so_a_service_step_fits_the_watchdog():
    """systemd's WatchdogSec=60 (systemd/*.service) must exceed a step: 2 x server.timeout + a 3 s probe."""
    import re
    from pathlib import Path

    units = Path(__file__).resolve().parents[2] / "systemd"
    watchdog = min(int(m) for f in units.glob("*.service")
                   for m in re.findall(r"^WatchdogSec=(\d+)", f.read_text(), re.M))
    assert config.validate({"server": {"timeout": 25}}).server.timeout == 25
    assert 2 * 25 + 3 < watchdog
    with pytest.raises(config.ConfigError, match=r"server\.timeout"):
        config.validate({"server": {"timeout": 30}})
