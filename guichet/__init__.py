"""The entry points of guichet: the composition root at the top of the layers.

`guichet.cli` builds the `guichet` command, starts the cashier UI or the headless service (`guichet run`)
and wires the sandbox into the demo (`guichet demo`). Nothing below imports this package; docs/layers.md
says what may import what, and tests/test_layers.py holds every module to it.

    $ guichet --help
    $ python -m guichet doctor
"""
