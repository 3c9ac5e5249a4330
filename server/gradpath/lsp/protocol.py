"""A pygls protocol that answers malformed traffic the way JSON-RPC / LSP say it should.

pygls 2 structures each message inside `json.loads(..., object_hook=structure_message)` and only
logs what fails there, so a request whose params do not validate would never be answered. Here:
- a request that cannot be structured gets error -32602 (InvalidParams) with its id, or -32600
  (InvalidRequest) when its id/method are not even well-typed;
- a body that is not JSON gets -32700 (Parse error) with id null (see `parse_error`);
- a message that is not a JSON-RPC object gets -32600 with id null;
- before `initialize`, requests get -32002 (ServerNotInitialized) and notifications other than
  `exit` are dropped;
- `exit` records the process status: 0 after `shutdown`, 1 without (see server.main).
"""
from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types
from pygls.protocol import LanguageServerProtocol

log = logging.getLogger("gradpath.lsp")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
SERVER_NOT_INITIALIZED = -32002


class _Answered:
    """Stands for a message that was already answered (or dropped) while being structured."""

    def __repr__(self) -> str:
        return "<answered>"


ANSWERED = _Answered()


def _valid_id(v: Any) -> bool:
    return isinstance(v, (int, str)) and not isinstance(v, bool)


class GradpathProtocol(LanguageServerProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initialize_seen = False
        self.exit_code: int | None = None

    # -- answering errors --------------------------------------------------------------------------
    def send_error(self, msg_id: Any, code: int, message: str) -> None:
        try:
            self._send_data({"jsonrpc": "2.0", "id": msg_id if _valid_id(msg_id) else None,
                             "error": {"code": code, "message": message}})
        except Exception:
            log.debug("could not send error %s", code, exc_info=True)

    def parse_error(self, error: Exception) -> None:
        log.warning("unparsable message: %s", error)
        self.send_error(None, PARSE_ERROR, f"Parse error: {error}")

    # -- structuring ---------------------------------------------------------------------------------
    def structure_message(self, data: dict[str, Any]):
        try:
            return super().structure_message(data)
        except Exception as exc:
            if not isinstance(data, dict) or "jsonrpc" not in data:
                raise
            method, msg_id = data.get("method"), data.get("id")
            if "id" in data and "method" in data:
                if not _valid_id(msg_id) or not isinstance(method, str):
                    self.send_error(msg_id, INVALID_REQUEST, "Invalid request")
                else:
                    log.warning("invalid params for %s (id %s): %s", method, msg_id, exc.__cause__ or exc)
                    self.send_error(msg_id, INVALID_PARAMS, f"Invalid params for {method}")
            else:
                log.warning("dropped a malformed message (%s): %s", method or "response", exc.__cause__ or exc)
            return ANSWERED

    def handle_message(self, message):
        if message is ANSWERED:
            return
        if not hasattr(message, "jsonrpc"):
            # JSON that is not a JSON-RPC object: `[]`, `null`, `"text"`, `{"foo": 1}`.
            msg_id = message.get("id") if isinstance(message, dict) else None
            log.warning("not a JSON-RPC message: %.200r", message)
            self.send_error(msg_id, INVALID_REQUEST, "Invalid request")
            return
        method = getattr(message, "method", None)
        if method == types.EXIT:
            self.exit_code = 0 if self._shutdown else 1
        if not self.initialize_seen and isinstance(method, str):
            if method == types.INITIALIZE:
                self.initialize_seen = True
            elif method != types.EXIT:
                if hasattr(message, "id"):
                    self.send_error(message.id, SERVER_NOT_INITIALIZED, "Server not initialized")
                else:
                    log.warning("notification %s before initialize dropped", method)
                return
        return super().handle_message(message)
