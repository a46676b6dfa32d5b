"""Find, read, validate and edit the TOML configuration.

    cfg = load_config("/etc/guichet/guichet.toml")
    cfg.terminal.id                                  # 'ORAN-07-G2'
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomlkit
from platformdirs import user_config_dir
from pydantic import SecretStr, ValidationError

from config.schema import SECRET_KEYS, Config

SYSTEM_PATH = Path("/etc/guichet/guichet.toml")
EXAMPLE_PATH = Path(__file__).with_name("example.toml")


class ConfigError(Exception):
    """A configuration that cannot be used. The message names the file, the key and the problem."""


def user_path() -> Path:
    return Path(user_config_dir("guichet")) / "guichet.toml"


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file in force: --config, then $GUICHET_CONFIG, then /etc/guichet, then the user dir."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("GUICHET_CONFIG")
    if env:
        return Path(env)
    if SYSTEM_PATH.exists():
        return SYSTEM_PATH
    return user_path()


def format_validation_error(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "missing"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def validate(data: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {format_validation_error(e)}") from None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (create one with `guichet config init`)") from None
    except (PermissionError, IsADirectoryError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate the config in force; raise ConfigError naming the key at fault."""
    p = find_config_path(path)
    return validate(read_toml(p), str(p))


def loose_permissions(path: Path) -> bool:
    """True when a config file holding secrets can be read by others than its owner."""
    try:
        return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        return False


def redacted(cfg: Config) -> dict[str, Any]:
    """The config as plain data with secrets hidden (for `config show`, logs and doctor)."""
    data = cfg.model_dump(mode="python")
    for key in SECRET_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        data[section][name] = "(set, hidden)" if value.get_secret_value() else "(not set)"
    return data


def write_secure(path: Path, text: str) -> None:
    """Write atomically with mode 0600: the file holds the server token and the PAN key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".guichet-", suffix=".toml", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def example_text(**overrides: str) -> str:
    """The commented example config, with a fresh PAN key and any top-level values overridden."""
    doc = tomlkit.parse(EXAMPLE_PATH.read_text(encoding="utf-8"))
    doc["cards"]["hmac_key"] = secrets.token_hex(32)
    if "receipts" not in doc:  # the example leaves the section commented out: init writes it with a fresh key
        doc["receipts"] = tomlkit.table()
    doc["receipts"]["signing_key"] = secrets.token_hex(32)
    for dotted, value in overrides.items():
        section, name = dotted.split(".", 1)
        doc[section][name] = value
    return tomlkit.dumps(doc)


def init_config(path: Path, *, force: bool = False, **overrides: str) -> Path:
    if path.exists() and not force:
        raise ConfigError(f"{path}: already exists (use --force to replace it)")
    text = example_text(**overrides)
    validate(tomllib.loads(text), str(path))
    write_secure(path, text)
    return path


def _coerce(raw: str, current: Any) -> Any:
    """Turn the command-line text into the type the key holds now."""
    if isinstance(current, bool):
        low = raw.strip().lower()
        if low in ("true", "yes", "on", "1"):
            return True
        if low in ("false", "no", "off", "0"):
            return False
        raise ValueError("expected true or false")
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    if isinstance(current, list):
        value = json.loads(raw)
        if not isinstance(value, list):
            raise ValueError('expected a JSON list, e.g. ["a", "b"]')
        return value
    return raw


def set_value(path: Path, key: str, raw: str) -> Config:
    """Set one dotted key, keeping the file's comments; nothing is written unless the result validates."""
    if "." not in key:
        raise ConfigError(f"{key}: expected SECTION.KEY, e.g. terminal.id")
    section, name = key.split(".", 1)
    text = path.read_text(encoding="utf-8") if path.exists() else example_text()
    doc = tomlkit.parse(text)
    defaults = Config().model_dump(mode="python")
    if section not in defaults or name not in defaults[section]:
        raise ConfigError(f"{key}: unknown key")
    if section not in doc:
        doc[section] = tomlkit.table()
    # The schema's type decides (an int in the file must not make a float key integer-only).
    current = defaults[section][name]
    section_model = Config.model_fields[section].annotation
    annotation = section_model.model_fields[name].annotation if section_model is not None else None
    if annotation is float:
        current = 0.0
    if isinstance(current, SecretStr):
        current = ""
    try:
        value = _coerce(raw, current)
    except (ValueError, json.JSONDecodeError) as e:
        raise ConfigError(f"{key}: {raw!r}: {e}") from None
    doc[section][name] = value
    new_text = tomlkit.dumps(doc)
    cfg = validate(tomllib.loads(new_text), str(path))
    write_secure(path, new_text)
    return cfg


def dump_config(cfg: Config) -> str:
    """The config as TOML, secrets included (for writing a file; never print this)."""
    data = cfg.model_dump(mode="python")
    for key in SECRET_KEYS:
        section, name = key.split(".")
        data[section][name] = getattr(getattr(cfg, section), name).get_secret_value()
    return tomlkit.dumps(data)


def write_config(cfg: Config, path: Path) -> Path:
    """Write a validated config to `path` with mode 0600."""
    write_secure(path, dump_config(cfg))
    return path
