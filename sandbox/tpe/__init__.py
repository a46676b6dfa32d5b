"""Concert payment terminal simulators (``guichet sandbox tpe``): E+ on a pty (``sandbox.tpe.eplus_sim``), V3 /
Caisse-AP over TCP (``sandbox.tpe.v3_sim``), on one base (``sandbox.tpe.base``).

``TEST_PANS``: the card numbers the simulators' cards use (for PCI scans: none may appear anywhere stored).
"""

from sandbox.tpe.base import TEST_CARDS, TEST_PANS, Simulator
from sandbox.tpe.eplus_sim import BEHAVIOURS, TpeSimulator
from sandbox.tpe.v3_sim import V3_BEHAVIOURS, V3Simulator

__all__ = ["BEHAVIOURS", "TEST_CARDS", "TEST_PANS", "V3_BEHAVIOURS", "Simulator", "TpeSimulator", "V3Simulator"]
