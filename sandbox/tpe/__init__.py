"""A Concert E+ payment terminal simulator (``guichet sandbox tpe``). See ``sandbox.tpe.sim``.

``TEST_PANS``: the card numbers the simulator's cards use (for PCI scans: none may appear anywhere stored).
"""

from sandbox.tpe.sim import BEHAVIOURS, TEST_CARDS, TEST_PANS, TpeSimulator

__all__ = ["BEHAVIOURS", "TEST_CARDS", "TEST_PANS", "TpeSimulator"]
