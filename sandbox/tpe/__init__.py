"""Concert payment terminal simulators (``guichet sandbox tpe``): E+ on a pty (``sandbox.tpe.sim``), V3 /
Caisse-AP over TCP (``sandbox.tpe.v3sim``).

``TEST_PANS``: the card numbers the simulators' cards use (for PCI scans: none may appear anywhere stored).
"""

from sandbox.tpe.sim import BEHAVIOURS, TEST_CARDS, TEST_PANS, TpeSimulator
from sandbox.tpe.v3sim import V3_BEHAVIOURS, V3Simulator

__all__ = ["BEHAVIOURS", "TEST_CARDS", "TEST_PANS", "V3_BEHAVIOURS", "TpeSimulator", "V3Simulator"]
