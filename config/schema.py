"""The configuration schema: every key of DESIGN.md's "Configuration", validated before use."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    Field,
    SecretStr,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from config.cash import CashConfig
from config.emv import EmvConfig, hex_field
from config.money import CURRENCIES
from config.receipts import PrinterConfig, ReceiptsConfig
from config.section import Section as _Section


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TerminalConfig(_Section):
    id: str = Field("ORAN-07-G1", min_length=1, max_length=40)
    agency_id: str = Field("ORAN-07", min_length=1, max_length=32)
    currency: str = "DZD"
    # The agency's IANA zone (Africa/Algiers): its business day, Z report and day close. "" = the machine's.
    timezone: str = Field("", max_length=64)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        if v:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{v!r} is not an IANA time zone (like Africa/Algiers)") from None
        return v

    @field_validator("id", "agency_id")
    @classmethod
    def _ident(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v):
            raise ValueError("only letters, digits, '.', '_' and '-' are allowed")
        return v

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str) -> str:
        if v not in CURRENCIES:
            raise ValueError(f"unknown currency {v!r}; one of {', '.join(CURRENCIES)}")
        return v


def _split_url(v: str, what: str) -> SplitResult:
    """urlsplit, refusing what different URL parsers read differently (the host requests connects to must be
    the host we checked): backslashes, spaces, control characters, and any user@ part."""
    if any(c in v for c in "\\ ") or not v.isprintable():
        raise ValueError(f"{what} must not contain backslashes, spaces or control characters")
    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0..65535
    except ValueError as e:
        raise ValueError(f"not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        if what == "the proxy URL":
            raise ValueError("the proxy URL must be http://host:port or https://host:port (no socks)")
        raise ValueError("must start with https:// (or http:// for a local sandbox)")
    if "@" in parts.netloc:
        raise ValueError(f"{what} must not hold a user name or password (user@host)")
    if parts.query or parts.fragment:
        raise ValueError(f"{what} must not have a ?query or #fragment")
    return parts


class ServerConfig(_Section):
    url: str = "http://127.0.0.1:8765/"
    token: SecretStr = SecretStr("")
    ca_bundle: str = ""
    client_cert: str = ""
    # A service step is one request (at most 2 x timeout, the deadline) plus the device probe (3 s): 25 s keeps
    # it under systemd's WatchdogSec=60, so a slow server never gets a healthy agent killed.
    timeout: float = Field(10, gt=0, le=25)
    # An explicit HTTP(S) proxy; the environment's HTTP(S)_PROXY is never used (nor REQUESTS_CA_BUNDLE).
    proxy: str = ""

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = _split_url(v, "the server URL")
        if parts.scheme == "http":
            # The bearer token, and the full PAN of card-reader payments, must never cross a network in clear.
            host = parts.hostname or ""
            if host != "localhost" and not _loopback(host):
                raise ValueError(f"plain http:// to {host}: use https:// (http is only for a sandbox on this machine)")
        return v if v.endswith("/") else v + "/"

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, v: str, info: ValidationInfo) -> str:
        if v:
            parts = _split_url(v, "the proxy URL")
            if parts.path not in ("", "/"):
                raise ValueError("the proxy URL is scheme://host:port, without a path")
            # An http:// server URL through a proxy sends the bearer token (and a PAN) in clear to the proxy
            # and beyond: only a sandbox and a proxy both on this machine may do that. (url is checked first.)
            host = parts.hostname or ""
            url = info.data.get("url", "")
            if urlsplit(url).scheme == "http" and host != "localhost" and not _loopback(host):
                raise ValueError(
                    f"{host} with a plain http:// server URL would carry the token in clear; use https:// for "
                    "the server (an http:// server URL takes a proxy only on this machine)"
                )
        return v


class StateConfig(_Section):
    dir: str = "/var/lib/guichet"


class SyncConfig(_Section):
    batch_size: int = Field(100, ge=1, le=500)
    interval: float = Field(5, gt=0, le=3600)
    bill_refresh: float = Field(900, gt=0)
    heartbeat: float = Field(60, gt=0)


class OfflineConfig(_Section):
    # Strict: money is whole minor units; 50000.00 (meant as dinars?) or 1e6 must not slip through as an int.
    max_payment_amount: StrictInt = Field(5_000_000, ge=0)
    max_total_amount: StrictInt = Field(50_000_000, ge=0)
    max_count: StrictInt = Field(500, ge=0)
    warn_after: StrictInt = Field(14_400, ge=0)


class SchemeRule(_Section):
    name: str = Field(min_length=1)
    aids: list[str] = []
    bins: list[str] = []
    labels: list[str] = []
    # EMV (Book 3 10.6, 10.7): the terminal action codes of this scheme, its floor limit (minor units; 0 = every
    # transaction online), the cryptogram version its cards use (0 = read from the card's 9F10; the sandbox
    # acquirer follows it), 9F09, and the contactless limits (minor units, 0 = none): above cl_limit no tap,
    # from cl_cvm_limit a CVM (or insert the card), below cl_floor_limit a tap may be approved offline by the
    # card (fDDA; only while the server is unreachable and [offline] allows it; the TTQ sent to an application
    # follows its own scheme's rule; 0 = that scheme never taps offline: docs/emv.md). (TOML has no null: 0 says
    # "not set".)
    tac_default: str = "DC4000A800"
    tac_denial: str = "0010000000"
    tac_online: str = "DC4004F800"
    floor_limit: StrictInt = Field(0, ge=0)
    cvn: int = Field(0, ge=0, le=255)
    app_version: str = "0002"
    cl_limit: StrictInt = Field(0, ge=0)
    cl_cvm_limit: StrictInt = Field(0, ge=0)
    cl_floor_limit: StrictInt = Field(0, ge=0)

    @field_validator("tac_default", "tac_denial", "tac_online")
    @classmethod
    def _tac(cls, v: str) -> str:
        return hex_field(v, "a terminal action code", (5,))

    @field_validator("app_version")
    @classmethod
    def _version(cls, v: str) -> str:
        return hex_field(v, "app_version", (2,))

    @field_validator("aids")
    @classmethod
    def _aids(cls, v: list[str]) -> list[str]:
        for aid in v:
            if not re.fullmatch(r"(?:[0-9A-Fa-f]{2}){5,16}", aid):
                raise ValueError(f"AID {aid!r} must be 5 to 16 bytes of hex")
        return [a.upper() for a in v]

    @field_validator("bins")
    @classmethod
    def _bins(cls, v: list[str]) -> list[str]:
        for b in v:
            if not re.fullmatch(r"\d{1,11}(?:-\d{1,11})?", b):
                raise ValueError(f"BIN {b!r} must be digits or a range like 628058-628059")
        return v


class CardsConfig(_Section):
    hmac_key: SecretStr = SecretStr("")
    reader: str = ""
    read_timeout: float = Field(30, gt=0)
    # Selected when the card has no PSE/PPSE, in this order.
    aids: list[str] = ["A0000000031010", "A0000000032010", "A0000000041010", "A0000000043060"]
    schemes: list[SchemeRule] = [
        SchemeRule(name="VISA", aids=["A0000000031010", "A0000000032010"], bins=["4"]),
        SchemeRule(name="MASTERCARD", aids=["A0000000041010", "A0000000043060"], bins=["51-55", "2221-2720"]),
    ]


class TpeConfig(_Section):
    port: str = ""
    baud: int = Field(9600, ge=300, le=921600)
    framing: Literal["7E1", "8N1"] = "7E1"
    pos_number: str = "01"
    protocol: Literal["E+", "V3"] = "E+"  # a tcp:// or caisse-ap:// port means V3 whatever this says
    ack_timeout: float = Field(2.0, gt=0, le=60)
    answer_timeout: float = Field(180, gt=0, le=900)
    max_retries: int = Field(3, ge=0, le=10)
    cancel_grace: float = Field(30, gt=0, le=900)  # after a cancel, how long to wait for the TPE's own answer

    @field_validator("pos_number")
    @classmethod
    def _pos(cls, v: str) -> str:
        if not re.fullmatch(r"\d{2}", v):
            raise ValueError('must be two digits, e.g. "01"')
        return v

    @model_validator(mode="after")
    def _v3_over_tcp(self) -> TpeConfig:
        if self.protocol == "V3" and ("://" in self.port and not re.match(r"(?i)(tcp|caisse-ap)://", self.port)
                                      or self.port.startswith("/")):
            raise ValueError(f'port: {self.port!r}: protocol "V3" runs over TCP: give tcp://host:8888')
        return self


class PaymentsConfig(_Section):
    allow_partial: bool = False
    default_method: Literal["card_terminal", "card_reader", "cash"] = "card_terminal"
    methods: list[Literal["card_terminal", "card_reader", "cash"]] = ["card_terminal", "card_reader"]


class UiConfig(_Section):
    language: Literal["fr", "ar", "en"] = "fr"
    bidi: Literal["app", "terminal"] = "app"
    pin_attempts: int = Field(5, ge=1, le=20)  # wrong PINs in a row before the account locks
    lockout_seconds: int = Field(300, ge=0, le=86_400)  # how long it stays locked (or a supervisor unlocks)


class Config(_Section):
    terminal: TerminalConfig = TerminalConfig()
    server: ServerConfig = ServerConfig()
    state: StateConfig = StateConfig()
    sync: SyncConfig = SyncConfig()
    offline: OfflineConfig = OfflineConfig()
    cards: CardsConfig = CardsConfig()
    tpe: TpeConfig = TpeConfig()
    payments: PaymentsConfig = PaymentsConfig()
    ui: UiConfig = UiConfig()
    emv: EmvConfig = EmvConfig()
    printer: PrinterConfig = PrinterConfig()
    receipts: ReceiptsConfig = ReceiptsConfig()
    cash: CashConfig = CashConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.payments.default_method not in self.payments.methods and self.payments.default_method != "cash":
            raise ValueError("payments.default_method: must be one of payments.methods")
        return self


SECRET_KEYS = ("server.token", "cards.hmac_key", "receipts.signing_key")
