"""The sandbox billing server: the central billing API (contract v1) on 127.0.0.1, with fault injection.

>>> from sandbox.billing.server import SandboxServer
>>> with SandboxServer(seed_bills=100, agency="ORAN-07", token="t") as srv:  # doctest: +SKIP
...     print(srv.url, srv.references()[0])

CLI: ``guichet sandbox serve --port 0 --seed-bills 100 --agency ORAN-07``. See docs/sandbox-server.md.
"""
