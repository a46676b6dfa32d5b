"""`python -m guichet ...`, the same as the installed `guichet` command (tests and benches run it so)."""

from guichet.cli import main

main()
