"""Hardware drivers: one module per device family. No UI and no SQL here; never imports agent or ui."""
