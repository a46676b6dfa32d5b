"""Configuration: schema, loading and validation. Everything imports this; it imports nothing of ours.

>>> from config import load_config, ConfigError
"""

from config.loader import (
    ConfigError,
    dump_config,
    find_config_path,
    init_config,
    load_config,
    loose_permissions,
    redacted,
    set_value,
    validate,
    write_config,
)
from config.schema import Config

__all__ = [
    "Config",
    "ConfigError",
    "dump_config",
    "find_config_path",
    "init_config",
    "load_config",
    "loose_permissions",
    "redacted",
    "set_value",
    "validate",
    "write_config",
]
