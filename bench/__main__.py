"""Benchmarks: `./dev bench NAME` (or `python -m bench NAME`); `./dev bench` lists them.

Each module bench/NAME.py has a main() that prints its figures and the ratios against the peer it names.
Benchmarks never run in the test suite.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    names = available()
    if not argv or argv[0] in ("-h", "--help", "list"):
        print("usage: ./dev bench NAME [ARGS]   (NAME: " + ", ".join(names) + ", or all)")
        return 0 if argv else 2
    todo = names if argv[0] == "all" else [argv[0]]
    for name in todo:
        if name not in names:
            print(f"bench: unknown benchmark {name!r} (one of {', '.join(names)})", file=sys.stderr)
            return 2
        print(f"== bench {name}")
        module = importlib.import_module(f"bench.{name}")
        rc = module.main(argv[1:] if len(todo) == 1 else [])
        if rc:
            return int(rc)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
