"""The daemon core: payment flow, journal, bill cache, sync, service integration, the `guichet` CLI."""

__version__ = "0.3.0"
