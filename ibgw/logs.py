"""Log records to stderr, redacted: :func:`install_logging` is called once by the CLI
and the MCP server. Kept apart from :mod:`ibgw.redact` (which only knows what is
secret) and :mod:`ibgw.output` (which ``ibgw --help`` imports: no ``logging`` there)."""

from __future__ import annotations

import logging
import sys

from . import redact
from .output import defer_warning, emit


class _StderrHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr`` and never prints a failing record."""

    def __init__(self, level=logging.NOTSET, defer: bool = False):
        logging.Handler.__init__(self, level)
        self.addFilter(redact.RedactingFilter())
        self.setFormatter(redact.RedactingFormatter("ibgw: %(levelname)s: %(name)s: %(message)s"))
        self._ibgw = True
        self.defer = defer

    def emit(self, record):
        if not self.defer:
            return super().emit(record)
        # -o json: stderr holds at most one JSON object; a warning joins the error
        # object's "warnings" (ibgw.output.DEFERRED_WARNINGS) instead of a text line
        try:
            defer_warning(redact.REDACTOR.safe_text(f"{record.name}: {record.getMessage()}"))
        except Exception:
            self.handleError(record)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__/setStream compatibility
        pass

    def handleError(self, record):  # noqa: N802 - logging API
        # The default prints the record's message and arguments unredacted.
        try:
            emit(f"ibgw: {redact._WITHHELD}\n", err=True)
        except Exception:
            pass


class _RedactingRecordFactory:
    """Wraps the log record factory so a record is redacted when it is created, before
    any handler (ours or another library's) sees it."""

    def __init__(self, base):
        self.base = base
        self.filter = redact.RedactingFilter()

    def __call__(self, *args, **kwargs):
        record = self.base(*args, **kwargs)
        self.filter.filter(record)
        return record


def install_logging(debug: bool = False, defer: bool = False) -> logging.Handler:
    """Send log records to stderr through redaction. With ``debug`` the ``ibgw``
    loggers log at DEBUG; everything else stays at WARNING, and the HTTP stack's
    debug output (``http.client`` prints, urllib3/requests records) stays off.
    With ``defer`` (``-o json`` without ``--debug``) records are held in
    ``ibgw.output.DEFERRED_WARNINGS`` for the JSON error object instead."""
    import http.client

    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_ibgw", False):
            root.removeHandler(handler)
    handler = _StderrHandler(defer=defer and not debug)
    root.addHandler(handler)
    if not isinstance(logging.getLogRecordFactory(), _RedactingRecordFactory):
        logging.setLogRecordFactory(_RedactingRecordFactory(logging.getLogRecordFactory()))
    root.setLevel(logging.WARNING)
    logging.getLogger("ibgw").setLevel(logging.DEBUG if debug else logging.WARNING)

    http.client.HTTPConnection.debuglevel = 0
    for name in redact._QUIET_LOGGERS:
        lg = logging.getLogger(name)
        lg.setLevel(logging.WARNING)
        lg.propagate = True
    for name, lg in list(logging.root.manager.loggerDict.items()):
        if isinstance(lg, logging.Logger) and name.startswith(
            tuple(q + "." for q in redact._QUIET_LOGGERS)
        ):
            if lg.level and lg.level < logging.WARNING:
                lg.setLevel(logging.NOTSET)
    last = _StderrHandler(logging.WARNING, defer=defer and not debug)
    logging.lastResort = last
    logging.captureWarnings(True)
    return handler
