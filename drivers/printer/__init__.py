"""Receipt printers over ESC/POS: URL transports (python-escpos's), real-time status, ink-only raster, seals.

    from drivers.printer import Job, open_printer
    printer = open_printer("tcp://127.0.0.1:9100", timeout=5)
    printer.status().problem        # None, "paper out", "cover open", "offline", ...
    job = Job(); job.image(bitmap); job.cut()
    result = printer.print_job(job.bytes())   # PrintResult; never raises
    result.ok, result.error                   # False, PrinterNotReady('printer not ready: paper out')

Modules: device (URLs, Printer, PrintResult), status (DLE EOT codec, typed errors), raster (the bitmap as
ink-only GS v 0 bands), job (a job's bytes), seal (the signed text of the receipt's QR code).
"""

from drivers.printer.device import Printer, PrinterUrl, PrintResult, open_printer
from drivers.printer.job import Job, JobError
from drivers.printer.status import (
    PrinterError,
    PrinterNotReady,
    PrinterProtocolError,
    PrinterStatus,
    PrinterTimeout,
    PrinterUnavailable,
)

__all__ = [
    "Job",
    "JobError",
    "PrintResult",
    "Printer",
    "PrinterError",
    "PrinterNotReady",
    "PrinterProtocolError",
    "PrinterStatus",
    "PrinterTimeout",
    "PrinterUnavailable",
    "PrinterUrl",
    "open_printer",
]
