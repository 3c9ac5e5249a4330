"""Server logging: to a file (`--log-file`), to stderr (warnings), and to the client as
window/logMessage. Never to stdout: that is the LSP stream."""
from __future__ import annotations

import logging
import sys

from lsprotocol import types

_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}
_FORMAT = "%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s"


class ClientLogHandler(logging.Handler):
    """Sends gradpath's log records to the client (window/logMessage), from any thread."""

    def __init__(self, server, level=logging.INFO):
        super().__init__(level)
        self.server = server
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        loop = getattr(self.server, "loop", None)
        if loop is None or loop.is_closed() or not getattr(self.server, "initialized", False):
            return
        try:
            msg = self.format(record)
            if record.levelno >= logging.ERROR:
                kind = types.MessageType.Error
            elif record.levelno >= logging.WARNING:
                kind = types.MessageType.Warning
            elif record.levelno >= logging.INFO:
                kind = types.MessageType.Info
            else:
                kind = types.MessageType.Log
            params = types.LogMessageParams(type=kind, message=msg)
            loop.call_soon_threadsafe(self._send, params)
        except Exception:  # logging must never raise
            pass

    def _send(self, params) -> None:
        try:
            self.server.window_log_message(params)
        except Exception:
            pass


def setup(log_file: str | None = None) -> logging.Logger:
    root = logging.getLogger("gradpath")
    root.setLevel(logging.DEBUG)
    root.propagate = False
    for h in list(root.handlers):
        root.removeHandler(h)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    err.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(err)
    pygls_log = logging.getLogger("pygls")
    pygls_log.setLevel(logging.WARNING)
    pygls_log.propagate = False
    pygls_log.addHandler(err)
    if log_file:
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(fh)
        pygls_log.addHandler(fh)
    return root


def set_client_level(handler: ClientLogHandler | None, level: str) -> None:
    if handler is not None:
        handler.setLevel(_LEVELS.get(level, logging.INFO))
